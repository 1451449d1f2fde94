#include "server/http/prometheus_metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "server/model/study_summary.h"

namespace hpo::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Latency buckets from 0.5 ms to 10 s: an AskTrial of the GP sampler over many trials is the slowest.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *buckets;
}

// A workers table that cannot grow without bound: at most this many ids are remembered.
constexpr size_t kMaxRememberedWorkers = 10000;

// Per-study figures, computed from a snapshot of the coordinator at each scrape.
class StudyCollector final : public prometheus::Collectable {
 public:
  void SetCoordinator(const Coordinator* c) { c_.store(c); }

  std::vector<MetricFamily> Collect() const override {
    const Coordinator* c = c_.load();
    if (c == nullptr) return {};
    MetricFamily info{"hpo_study_info",
                      "One per study (value 1): its name, sampler, pruner and state.",
                      MetricType::Gauge,
                      {}};
    MetricFamily started{
        "hpo_trials_started_total", "Trials handed to a worker, per study.", MetricType::Counter, {}};
    MetricFamily finished{"hpo_trials_finished_total",
                          "Trials that ended, per study and final state (completed, pruned, failed).",
                          MetricType::Counter,
                          {}};
    MetricFamily retried{"hpo_trials_retried_total",
                         "FAILED trials whose parameters were handed out again as a new trial, per study.",
                         MetricType::Counter,
                         {}};
    MetricFamily leases{"hpo_trials_leases_lost_total",
                        "Trials failed because their worker stopped sending heartbeats, per study.",
                        MetricType::Counter,
                        {}};
    MetricFamily running{"hpo_trials_running", "Trials RUNNING now, per study.", MetricType::Gauge, {}};
    MetricFamily waiting{
        "hpo_trials_waiting", "Trials WAITING (queued) now, per study.", MetricType::Gauge, {}};
    MetricFamily max_trials{"hpo_study_max_trials", "The study's max_trials.", MetricType::Gauge, {}};
    MetricFamily best{"hpo_study_best_value",
                      "The best completed trial's objective value, per study.",
                      MetricType::Gauge,
                      {}};
    MetricFamily total_running{
        "hpo_running_trials", "Trials RUNNING now, over all studies.", MetricType::Gauge, {}};
    double all_running = 0;
    std::vector<StudySummary> summaries;
    for (int64_t after = 0;;) {  // a page at a time: no copy of every study's trials
      std::vector<StudySummary> page = c->ListStudySummaries(after, 1000);
      if (page.empty()) break;
      after = page.back().study.id;
      for (StudySummary& s : page) summaries.push_back(std::move(s));
    }
    for (const StudySummary& summary : summaries) {
      const Study& s = summary.study;
      const std::string id = std::to_string(s.id);
      auto add = [&](MetricFamily& f, double v, std::vector<ClientMetric::Label> extra = {}) {
        ClientMetric m;
        m.label.push_back({"study", id});
        for (auto& l : extra) m.label.push_back(std::move(l));
        if (f.type == MetricType::Counter) {
          m.counter.value = v;
        } else {
          m.gauge.value = v;
        }
        f.metric.push_back(std::move(m));
      };
      add(info, 1,
          {{"name", s.spec.name},
           {"sampler", s.spec.sampler.value("type", "")},
           {"pruner", s.spec.pruner.value("type", "")},
           {"state", StateName(s.state)}});
      const int n_started = summary.started, n_retried = summary.retried, n_leases = summary.leases_lost;
      const TrialCounts& counts = summary.counts;
      add(started, n_started);
      add(finished, counts.completed, {{"state", "completed"}});
      add(finished, counts.pruned, {{"state", "pruned"}});
      add(finished, counts.failed, {{"state", "failed"}});
      add(retried, n_retried);
      add(leases, n_leases);
      add(running, counts.running);
      add(waiting, counts.waiting);
      add(max_trials, s.spec.max_trials);
      if (summary.best) add(best, summary.best->value);
      all_running += counts.running;
    }
    total_running.metric.emplace_back();
    total_running.metric.back().gauge.value = all_running;
    std::vector<MetricFamily> out;
    for (MetricFamily* f : {&info, &started, &finished, &retried, &leases, &running, &waiting, &max_trials,
                            &best, &total_running}) {
      if (!f->metric.empty()) out.push_back(std::move(*f));
    }
    return out;
  }

 private:
  std::atomic<const Coordinator*> c_{nullptr};
};

// Workers seen recently (AskTrial or Heartbeat), as a gauge computed at scrape time.
class WorkerCollector final : public prometheus::Collectable {
 public:
  explicit WorkerCollector(absl::Duration window) : window_(window) {}

  void Seen(std::string_view worker_id) {
    const absl::Time now = absl::Now();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = last_seen_.find(std::string(worker_id));
    if (it != last_seen_.end()) {
      it->second = now;
      return;
    }
    if (last_seen_.size() >= kMaxRememberedWorkers) Expire(now);
    if (last_seen_.size() >= kMaxRememberedWorkers) return;  // still full: all are live; count saturates
    last_seen_.emplace(std::string(worker_id), now);
  }

  std::vector<MetricFamily> Collect() const override {
    std::lock_guard<std::mutex> lock(mu_);
    Expire(absl::Now());
    MetricFamily f{"hpo_workers_connected",
                   "Distinct workers that asked for a trial or sent a heartbeat within the lease timeout.",
                   MetricType::Gauge,
                   {}};
    f.metric.emplace_back();
    f.metric.back().gauge.value = static_cast<double>(last_seen_.size());
    return {f};
  }

 private:
  void Expire(absl::Time now) const {
    for (auto it = last_seen_.begin(); it != last_seen_.end();) {
      it = now - it->second > window_ ? last_seen_.erase(it) : std::next(it);
    }
  }

  const absl::Duration window_;
  mutable std::mutex mu_;
  mutable std::map<std::string, absl::Time, std::less<>> last_seen_;
};

class PrometheusMetricsImpl final : public PrometheusMetrics {
 public:
  explicit PrometheusMetricsImpl(absl::Duration worker_window)
      : registry_(std::make_shared<prometheus::Registry>()),
        studies_(std::make_shared<StudyCollector>()),
        workers_(std::make_shared<WorkerCollector>(worker_window)),
        rpcs_(prometheus::BuildCounter()
                  .Name("hpo_rpc_requests_total")
                  .Help("gRPC calls answered, by method and status code (each measurement on the "
                        "ReportProgress stream counts as one).")
                  .Register(*registry_)),
        rpc_errors_(prometheus::BuildCounter()
                        .Name("hpo_rpc_errors_total")
                        .Help("gRPC calls answered with a status other than OK, by method and code.")
                        .Register(*registry_)),
        rpc_latency_(prometheus::BuildHistogram()
                         .Name("hpo_rpc_latency_seconds")
                         .Help("Time in the handler, by method.")
                         .Register(*registry_)),
        ask_latency_(prometheus::BuildHistogram()
                         .Name("hpo_ask_latency_seconds")
                         .Help("AskTrial, sampling included, by the sampler of the study whose trial was "
                               "handed out (none: nothing to hand out).")
                         .Register(*registry_)),
        report_latency_(prometheus::BuildHistogram()
                            .Name("hpo_report_latency_seconds")
                            .Help("One measurement on the ReportProgress stream: store it and decide.")
                            .Register(*registry_)
                            .Add({}, LatencyBuckets())),
        reports_(prometheus::BuildCounter()
                     .Name("hpo_reports_total")
                     .Help("Measurements stored, by the decision sent back (continue, prune, stop).")
                     .Register(*registry_)),
        commit_latency_(prometheus::BuildHistogram()
                            .Name("hpo_storage_commit_seconds")
                            .Help("One SQLite write transaction, commit included, by operation.")
                            .Register(*registry_)),
        commit_errors_(prometheus::BuildCounter()
                           .Name("hpo_storage_errors_total")
                           .Help("SQLite write transactions that failed, by operation.")
                           .Register(*registry_)) {
    for (const char* d : {"continue", "prune", "stop"}) reports_.Add({{"decision", d}});
  }

  void SetCoordinator(const Coordinator* coordinator) override {
    studies_->SetCoordinator(coordinator);
    coordinator_.store(coordinator);
  }

  std::string Scrape() override {
    // The registry's families, then the figures computed now (as prometheus-cpp's Exposer does
    // with every Collectable it serves).
    std::vector<MetricFamily> families = registry_->Collect();
    for (const prometheus::Collectable* c : {static_cast<const prometheus::Collectable*>(studies_.get()),
                                             static_cast<const prometheus::Collectable*>(workers_.get())}) {
      for (MetricFamily& f : c->Collect()) families.push_back(std::move(f));
    }
    prometheus::TextSerializer serializer;
    return serializer.Serialize(families);
  }

  void RpcDone(std::string_view method, absl::StatusCode code, absl::Duration latency) override {
    const std::string m(method);
    const std::string c = absl::StatusCodeToString(code);
    const double seconds = absl::ToDoubleSeconds(latency);
    rpcs_.Add({{"method", m}, {"code", c}}).Increment();
    if (code != absl::StatusCode::kOk) rpc_errors_.Add({{"method", m}, {"code", c}}).Increment();
    rpc_latency_.Add({{"method", m}}, LatencyBuckets()).Observe(seconds);
    if (method == "ReportProgress") report_latency_.Observe(seconds);
  }

  void Asked(int64_t study_id, absl::Duration latency) override {
    ask_latency_.Add({{"sampler", SamplerOf(study_id)}}, LatencyBuckets())
        .Observe(absl::ToDoubleSeconds(latency));
  }

  void Reported(std::string_view decision) override {
    reports_.Add({{"decision", std::string(decision)}}).Increment();
  }

  void WorkerSeen(std::string_view worker_id) override { workers_->Seen(worker_id); }

  void StorageWrite(std::string_view op, absl::Duration latency, bool ok) override {
    commit_latency_.Add({{"op", std::string(op)}}, LatencyBuckets()).Observe(absl::ToDoubleSeconds(latency));
    if (!ok) commit_errors_.Add({{"op", std::string(op)}}).Increment();
  }

 private:
  // The sampler type of a study, looked up once per study (a study's spec never changes).
  std::string SamplerOf(int64_t study_id) {
    if (study_id == 0) return "none";
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = samplers_.find(study_id); it != samplers_.end()) return it->second;
    }
    const Coordinator* c = coordinator_.load();
    std::string name = "unknown";
    if (c != nullptr) {
      if (auto s = c->GetStudySummary(study_id); s.ok()) name = s->study.spec.sampler.value("type", "unknown");
    }
    std::lock_guard<std::mutex> lock(mu_);
    samplers_[study_id] = name;
    return name;
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StudyCollector> studies_;
  std::shared_ptr<WorkerCollector> workers_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Counter>& rpc_errors_;
  prometheus::Family<prometheus::Histogram>& rpc_latency_;
  prometheus::Family<prometheus::Histogram>& ask_latency_;
  prometheus::Histogram& report_latency_;
  prometheus::Family<prometheus::Counter>& reports_;
  prometheus::Family<prometheus::Histogram>& commit_latency_;
  prometheus::Family<prometheus::Counter>& commit_errors_;
  std::atomic<const Coordinator*> coordinator_{nullptr};
  std::mutex mu_;
  std::map<int64_t, std::string> samplers_;
};

}  // namespace

std::unique_ptr<PrometheusMetrics> PrometheusMetrics::Create(absl::Duration worker_window) {
  return std::make_unique<PrometheusMetricsImpl>(worker_window);
}

}  // namespace hpo::server
