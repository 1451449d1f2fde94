// hpo-coordinator-bench: a C++ gRPC load generator for hpo-server (issue 12). One scenario per run,
// one JSON object on stdout. Driven by bench/coordinator_bench.py, which starts the server, reads its
// CPU time and RSS from /proc, runs the Optuna anchor in the same run and writes the table.
//
// The loop of every scenario is a worker's: AskTrial, 10 reports on one ReportProgress stream (each
// answered with the median pruner's decision; a PRUNE ends the trial), CompleteTrial.
//   --scenario=loop           N clients (--clients) for --seconds: trials/s, report latency p50/p99
//   --scenario=interference   one client asks a --gp_trials-trial gp study in a loop while --clients
//                             clients run the loop on a random study: the latter's report p50/p99
//   --scenario=fill           runs the loop with --clients until the study has --until trials
//   --scenario=enqueue_fill   fills a study to --until finished trials cheaply (EnqueueTrial with
//                             fixed parameters, ask, one report, complete): for tpe/gp asks at scale
//   --scenario=ask            --asks sampled asks of --study (each trial then gets one report and is
//                             completed): ask latency p50/p99
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "hpo/v1/coordinator.grpc.pb.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "hpo-server address");
ABSL_FLAG(std::string, scenario, "loop", "loop, interference, fill, enqueue_fill or ask");
ABSL_FLAG(int, clients, 1, "concurrent clients, each with its own channel and stream");
ABSL_FLAG(double, seconds, 5, "how long loop and interference run");
ABSL_FLAG(int64_t, study, 0, "the study to use (0: create one)");
ABSL_FLAG(std::string, sampler, "random", "sampler of a created study");
ABSL_FLAG(int, until, 1000, "fill / enqueue_fill: stop when the study has this many trials");
ABSL_FLAG(int, asks, 20, "ask: how many sampled asks");
ABSL_FLAG(int, gp_trials, 1000, "interference: finished trials in the gp study before it is asked from");
ABSL_FLAG(int, steps, 10, "reports per trial");
ABSL_FLAG(int, metrics, 0, "other figures per report (a CNN worker sends about 4: losses, accuracy, seconds)");

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = hpo::v1;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string Spec(const std::string& name, const std::string& sampler) {
  nlohmann::json j = {
      {"name", name},
      {"task", {{"type", "external"}, {"max_steps", absl::GetFlag(FLAGS_steps)}}},
      {"objective", {{"direction", "maximize"}}},
      {"parameters", nlohmann::json::parse(R"([
         {"name": "x", "type": "float", "low": 0, "high": 1},
         {"name": "y", "type": "float", "low": 0.0001, "high": 1, "log": true},
         {"name": "k", "type": "int", "low": 1, "high": 8}])")},
      {"sampler", {{"type", sampler}, {"seed", 1}}},
      {"pruner", {{"type", "median"}, {"startup_trials", 5}}},
      {"max_trials", 1000000}};
  return j.dump();
}

struct Stats {
  std::mutex mu;
  std::vector<double> report_ms, ask_ms;
  std::atomic<int64_t> trials{0}, reports{0}, errors{0};
  std::string first_error;
  void Error(const grpc::Status& s, const char* what) {
    errors++;
    std::lock_guard<std::mutex> l(mu);
    if (first_error.empty()) first_error = absl::StrCat(what, ": ", s.error_message());
  }
};

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

std::unique_ptr<v1::Coordinator::Stub> Connect() {
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);  // one connection per client, as separate workers have
  return v1::Coordinator::NewStub(
      grpc::CreateCustomChannel(absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials(), args));
}

int64_t CreateStudy(v1::Coordinator::Stub* stub, const std::string& name, const std::string& sampler) {
  grpc::ClientContext ctx;
  v1::CreateStudyRequest req;
  req.set_spec_json(Spec(name, sampler));
  v1::CreateStudyResponse resp;
  grpc::Status s = stub->CreateStudy(&ctx, req, &resp);
  if (!s.ok()) {
    std::cerr << "CreateStudy: " << s.error_message() << "\n";
    std::exit(1);
  }
  return resp.study().id();
}

// One worker's trial: ask, `steps` reports, complete. False when the study has nothing to hand out.
bool OneTrial(v1::Coordinator::Stub* stub, int64_t study, const std::string& worker, int steps, Stats* stats,
              bool record_reports, bool record_ask) {
  v1::AskTrialResponse ask;
  {
    grpc::ClientContext ctx;
    v1::AskTrialRequest req;
    req.set_worker_id(worker);
    req.add_task_types("external");
    req.set_study_id(study);
    const auto t0 = Clock::now();
    grpc::Status s = stub->AskTrial(&ctx, req, &ask);
    if (!s.ok()) {
      stats->Error(s, "AskTrial");
      return false;
    }
    if (record_ask) {
      std::lock_guard<std::mutex> l(stats->mu);
      stats->ask_ms.push_back(Ms(Clock::now() - t0));
    }
    if (!ask.assigned()) return false;
  }
  const int64_t id = ask.trial().id();
  double x = 0.5;
  for (const auto& [name, value] : ask.trial().params()) {
    if (name == "x") x = value.float_value();
  }
  bool pruned = false;
  {
    grpc::ClientContext ctx;
    auto stream = stub->ReportProgress(&ctx);
    std::vector<double> local;
    for (int step = 1; step <= steps && !pruned; ++step) {
      v1::ProgressReport r;
      r.set_trial_id(id);
      r.set_worker_id(worker);
      r.mutable_measurement()->set_step(step);
      // Each trial a little better than the ones before at every step: the median pruner decides at
      // every report (with the whole history) and never prunes, so every trial sends all its reports.
      r.mutable_measurement()->set_value(step + 1e-6 * ask.trial().number() + 1e-9 * x);
      static const char* const kNames[] = {"val_loss", "train_loss", "train_accuracy", "epoch_seconds",
                                           "learning_rate", "val_balanced_accuracy", "images_per_second",
                                           "grad_norm"};
      for (int m = 0; m < std::min(8, absl::GetFlag(FLAGS_metrics)); ++m) {
        (*r.mutable_measurement()->mutable_metrics())[kNames[m]] = 0.5 / step + 0.01 * m;
      }
      const auto t0 = Clock::now();
      v1::ProgressDecision d;
      if (!stream->Write(r) || !stream->Read(&d)) break;
      local.push_back(Ms(Clock::now() - t0));
      stats->reports++;
      pruned = d.action() == v1::ProgressDecision::PRUNE;
    }
    stream->WritesDone();
    grpc::Status s = stream->Finish();
    if (!s.ok()) stats->Error(s, "ReportProgress");
    if (record_reports) {
      std::lock_guard<std::mutex> l(stats->mu);
      stats->report_ms.insert(stats->report_ms.end(), local.begin(), local.end());
    }
  }
  if (!pruned) {
    grpc::ClientContext ctx;
    v1::CompleteTrialRequest req;
    req.set_trial_id(id);
    req.set_worker_id(worker);
    v1::CompleteTrialResponse resp;
    grpc::Status s = stub->CompleteTrial(&ctx, req, &resp);
    if (!s.ok()) stats->Error(s, "CompleteTrial");
  }
  stats->trials++;
  return true;
}

int64_t TrialCount(v1::Coordinator::Stub* stub, int64_t study) {
  grpc::ClientContext ctx;
  v1::GetStudyRequest req;
  req.set_study_id(study);
  v1::GetStudyResponse resp;
  if (!stub->GetStudy(&ctx, req, &resp).ok()) return -1;
  const auto& c = resp.study().counts();
  return c.waiting() + c.running() + c.completed() + c.pruned() + c.failed();
}

nlohmann::json Summary(Stats& stats, double seconds) {
  nlohmann::json j;
  j["seconds"] = seconds;
  j["trials"] = stats.trials.load();
  j["reports"] = stats.reports.load();
  j["trials_per_s"] = stats.trials.load() / seconds;
  j["report_p50_ms"] = Quantile(stats.report_ms, 0.5);
  j["report_p99_ms"] = Quantile(stats.report_ms, 0.99);
  j["report_max_ms"] = stats.report_ms.empty() ? 0 : *std::max_element(stats.report_ms.begin(), stats.report_ms.end());
  j["ask_p50_ms"] = Quantile(stats.ask_ms, 0.5);
  j["ask_p99_ms"] = Quantile(stats.ask_ms, 0.99);
  j["asks"] = stats.ask_ms.size();
  j["errors"] = stats.errors.load();
  if (!stats.first_error.empty()) j["first_error"] = stats.first_error;
  return j;
}

// `clients` threads run the loop on `study` until `stop` (or, with until > 0, until the study has
// that many trials).
void RunLoop(int64_t study, int clients, std::atomic<bool>* stop, int64_t until, Stats* stats,
             const std::string& tag) {
  std::vector<std::thread> threads;
  std::atomic<int64_t> started{0};
  int64_t base = 0;
  if (until > 0) {
    auto stub = Connect();
    base = TrialCount(stub.get(), study);
  }
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = Connect();
      const std::string worker = absl::StrCat(tag, "-", c);
      while (!stop->load()) {
        if (until > 0 && base + started.fetch_add(1) >= until) break;
        if (!OneTrial(stub.get(), study, worker, absl::GetFlag(FLAGS_steps), stats, true, false)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string scenario = absl::GetFlag(FLAGS_scenario);
  const int clients = absl::GetFlag(FLAGS_clients);
  auto stub = Connect();
  int64_t study = absl::GetFlag(FLAGS_study);
  nlohmann::json out = {{"scenario", scenario}, {"clients", clients}};
  Stats stats;
  std::atomic<bool> stop{false};

  if (scenario == "loop" || scenario == "fill") {
    if (study == 0) study = CreateStudy(stub.get(), "bench-loop", absl::GetFlag(FLAGS_sampler));
    const auto t0 = Clock::now();
    std::thread timer;
    if (scenario == "loop") {
      timer = std::thread([&] {
        std::this_thread::sleep_for(std::chrono::duration<double>(absl::GetFlag(FLAGS_seconds)));
        stop = true;
      });
    }
    RunLoop(study, clients, &stop, scenario == "fill" ? absl::GetFlag(FLAGS_until) : 0, &stats, "loop");
    if (timer.joinable()) timer.join();
    out.update(Summary(stats, std::chrono::duration<double>(Clock::now() - t0).count()));
  } else if (scenario == "interference") {
    // A gp study with gp_trials finished trials (enqueued with fixed parameters: no sampling).
    const int64_t gp = CreateStudy(stub.get(), "bench-gp", "gp");
    for (int i = 0; i < absl::GetFlag(FLAGS_gp_trials); ++i) {
      grpc::ClientContext ctx;
      v1::EnqueueTrialRequest req;
      req.set_study_id(gp);
      req.set_params_json(absl::StrCat(R"({"x": )", (i * 0.618034) - static_cast<int>(i * 0.618034),
                                       R"(, "y": )", 0.0001 + 0.9 * ((i * 0.7548777) - static_cast<int>(i * 0.7548777)),
                                       R"(, "k": )", 1 + i % 8, "}"));
      v1::EnqueueTrialResponse resp;
      if (!stub->EnqueueTrial(&ctx, req, &resp).ok()) break;
      Stats ignore;
      OneTrial(stub.get(), gp, "filler", 1, &ignore, false, false);
    }
    study = CreateStudy(stub.get(), "bench-victim", "random");
    Stats gp_stats;
    std::thread asker([&] {
      auto s = Connect();
      while (!stop.load()) OneTrial(s.get(), gp, "gp-asker", 1, &gp_stats, false, true);
    });
    // Let the first gp ask start before measuring.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto t0 = Clock::now();
    std::thread timer([&] {
      std::this_thread::sleep_for(std::chrono::duration<double>(absl::GetFlag(FLAGS_seconds)));
      stop = true;
    });
    RunLoop(study, clients, &stop, 0, &stats, "victim");
    timer.join();
    asker.join();
    out.update(Summary(stats, std::chrono::duration<double>(Clock::now() - t0).count()));
    out["gp_asks"] = gp_stats.ask_ms.size();
    out["gp_ask_p50_ms"] = Quantile(gp_stats.ask_ms, 0.5);
  } else if (scenario == "enqueue_fill") {
    if (study == 0) study = CreateStudy(stub.get(), "bench-fill", absl::GetFlag(FLAGS_sampler));
    const int until = absl::GetFlag(FLAGS_until);
    const auto t0 = Clock::now();
    std::atomic<int> next{static_cast<int>(TrialCount(stub.get(), study))};
    std::vector<std::thread> threads;
    for (int c = 0; c < std::max(1, clients); ++c) {
      threads.emplace_back([&, c] {
        auto s = Connect();
        for (int i = next.fetch_add(1); i < until; i = next.fetch_add(1)) {
          grpc::ClientContext ctx;
          v1::EnqueueTrialRequest req;
          req.set_study_id(study);
          const double u = (i * 0.618034) - static_cast<int>(i * 0.618034);
          const double w = (i * 0.7548777) - static_cast<int>(i * 0.7548777);
          req.set_params_json(absl::StrCat(R"({"x": )", u, R"(, "y": )", 0.0001 + 0.9 * w, R"(, "k": )", 1 + i % 8, "}"));
          v1::EnqueueTrialResponse resp;
          grpc::Status st = s->EnqueueTrial(&ctx, req, &resp);
          if (!st.ok()) {
            stats.Error(st, "EnqueueTrial");
            return;
          }
          OneTrial(s.get(), study, absl::StrCat("filler-", c), 1, &stats, false, false);
        }
      });
    }
    for (auto& t : threads) t.join();
    out.update(Summary(stats, std::chrono::duration<double>(Clock::now() - t0).count()));
  } else if (scenario == "ask") {
    const auto t0 = Clock::now();
    for (int i = 0; i < absl::GetFlag(FLAGS_asks); ++i) {
      OneTrial(stub.get(), study, "asker", 1, &stats, false, true);
    }
    out.update(Summary(stats, std::chrono::duration<double>(Clock::now() - t0).count()));
  } else {
    std::cerr << "unknown --scenario " << scenario << "\n";
    return 2;
  }
  out["study"] = study;
  std::cout << out.dump() << std::endl;
  return stats.errors.load() > 0 ? 1 : 0;
}
