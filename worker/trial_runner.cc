#include "worker/trial_runner.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/train/trainer.h"

namespace hpo::worker {
namespace {

std::map<std::string, ParamVariant> ToParams(const hpo::v1::Trial& t) {
  std::map<std::string, ParamVariant> out;
  for (const auto& [name, v] : t.params()) {
    switch (v.kind_case()) {
      case hpo::v1::ParamValue::kFloatValue: out[name] = v.float_value(); break;
      case hpo::v1::ParamValue::kIntValue: out[name] = v.int_value(); break;
      case hpo::v1::ParamValue::kStringValue: out[name] = v.string_value(); break;
      case hpo::v1::ParamValue::kBoolValue: out[name] = v.bool_value(); break;
      default: break;
    }
  }
  return out;
}

// Renews the trial's lease every `interval` until destroyed; notes when the
// coordinator says the trial is no longer ours.
class HeartbeatThread {
 public:
  HeartbeatThread(CoordinatorClient& client, int64_t trial_id, std::chrono::milliseconds interval)
      : thread_([this, &client, trial_id, interval] {
          std::unique_lock<std::mutex> lock(mu_);
          while (!cv_.wait_for(lock, interval, [this] { return done_; })) {
            lock.unlock();
            auto r = client.Heartbeat(trial_id);
            lock.lock();
            if (r.ok() && !r->keep_running()) {
              reason_ = r->reason();
              revoked_ = true;
            } else if (!r.ok() && r.status().code() == absl::StatusCode::kNotFound) {
              reason_ = std::string(r.status().message());
              revoked_ = true;
            }
          }
        }) {}
  ~HeartbeatThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool revoked() {
    std::lock_guard<std::mutex> lock(mu_);
    return revoked_;
  }
  std::string reason() {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, revoked_ = false;
  std::string reason_;
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace

TrialOutcome RunTrial(CoordinatorClient& client, const hpo::v1::AskTrialResponse& a,
                      const RunnerOptions& options, const std::atomic<bool>& stop) {
  const hpo::v1::Trial& trial = a.trial();
  const hpo::v1::Task& task = a.task();
  const int64_t id = trial.id();
  const std::string name = absl::StrCat("trial ", trial.number(), " of study ", trial.study_id());
  auto fail = [&](const std::string& reason, bool retry) {
    spdlog::warn("{} failed: {}", name, reason);
    if (auto s = client.Fail(id, reason, retry); !s.ok()) {
      spdlog::error("{}: could not report the failure: {}", name, std::string(s.message()));
    }
    return retry ? TrialOutcome::kHandedBack : TrialOutcome::kFailed;
  };

  HeartbeatThread heartbeat(client, id, std::chrono::milliseconds(std::max(200, a.heartbeat_interval_ms())));
  auto config = CnnConfigFromParams(ToParams(trial), 0x9E3779B97F4A7C15ULL * (trial.study_id() + 1) + trial.number());
  if (!config.ok()) return fail(std::string(config.status().message()), false);
  SplitOptions split;
  split.train_examples = task.train_examples();
  split.val_examples = task.val_examples();
  split.test_examples = task.test_examples();
  split.seed = static_cast<uint64_t>(task.data_seed());
  split.imbalance_classes.assign(task.imbalance_classes().begin(), task.imbalance_classes().end());
  split.imbalance_keep = task.imbalance_classes().empty() ? 1.0 : task.imbalance_keep();
  auto data = LoadSplit(options.data_root, task.dataset(), split);
  if (!data.ok()) return fail(absl::StrCat("data set: ", data.status().message()), false);

  spdlog::info("{} (id {}): {} train / {} validation images, up to {} epochs", name, id,
               (*data)->train.count, (*data)->val.count, task.max_epochs());
  bool pruned = false, lost = false, diverged = false;
  std::string why;
  int last_epoch = 0;
  auto on_epoch = [&](const EpochReport& r) -> bool {
    last_epoch = r.epoch;
    hpo::v1::Measurement m;
    m.set_step(r.epoch);
    const double value = a.metric() == "val_loss"                ? r.val_loss
                         : a.metric() == "val_balanced_accuracy" ? r.val_balanced_accuracy
                         : a.metric() == "val_macro_f1"          ? r.val_macro_f1
                                                                 : r.val_accuracy;
    if (!std::isfinite(value)) {
      diverged = true;
      why = absl::StrCat("training diverged: ", a.metric(), " is ", value, " at epoch ", r.epoch);
      return false;
    }
    m.set_value(value);
    auto& metrics = *m.mutable_metrics();
    metrics["val_accuracy"] = r.val_accuracy;
    metrics["val_loss"] = r.val_loss;
    metrics["val_balanced_accuracy"] = r.val_balanced_accuracy;
    metrics["val_macro_f1"] = r.val_macro_f1;
    if (task.executions_per_trial() > 1) metrics["val_accuracy_std"] = r.val_accuracy_std;
    metrics["train_accuracy"] = r.train_accuracy;
    metrics["train_loss"] = r.train_loss;  // NaN when every batch diverged: the coordinator drops it
    metrics["train_nonfinite_fraction"] = r.train_nonfinite_fraction;
    metrics["learning_rate"] = r.learning_rate;
    metrics["epoch_seconds"] = r.seconds;
    metrics["train_images_per_second"] = r.train_images_per_second;
    auto d = client.Report(id, m);
    if (!d.ok()) {
      lost = true;
      why = std::string(d.status().message());
      return false;
    }
    spdlog::info("{} epoch {}/{}: val_accuracy {:.4f} (train {:.4f}), {:.1f}s, {:.0f} img/s -> {}", name,
                 r.epoch, task.max_epochs(), r.val_accuracy, r.train_accuracy, r.seconds,
                 r.train_images_per_second,
                 d->action() == hpo::v1::ProgressDecision::CONTINUE ? "continue" : "stop");
    if (d->action() != hpo::v1::ProgressDecision::CONTINUE) {
      pruned = true;
      why = d->reason();
      return false;
    }
    return !stop.load() && !heartbeat.revoked();
  };
  TrainOptions train_options;
  train_options.max_epochs = task.max_epochs();
  train_options.executions = std::max(1, task.executions_per_trial());
  train_options.metric = a.metric();
  train_options.minimize = a.metric() == "val_loss";
  auto result = TrainCnn(*config, **data, train_options, on_epoch,
                         [&] { return stop.load() || heartbeat.revoked(); });
  client.CloseStream();
  if (stop.load() && !pruned && !lost) {
    return fail(absl::StrCat("worker ", client.worker_id(), " shut down during epoch ", last_epoch + 1,
                             "; handed back"),
                true);
  }
  if (heartbeat.revoked()) {
    spdlog::warn("{}: the coordinator took the trial back: {}", name, heartbeat.reason());
    return TrialOutcome::kLost;
  }
  if (lost) {
    spdlog::warn("{}: the coordinator refused the measurement: {}", name, why);
    return TrialOutcome::kLost;
  }
  if (diverged) return fail(why, false);
  if (!result.ok()) return fail(std::string(result.status().message()), false);
  if (pruned) {
    spdlog::info("{} pruned: {}", name, why);
    return TrialOutcome::kPruned;
  }
  std::map<std::string, double> final_metrics = {{"test_accuracy", result->test_accuracy},
                                                 {"test_loss", result->test_loss},
                                                 {"epochs_run", result->epochs_run},
                                                 {"patience_stop", result->patience_stop ? 1.0 : 0.0},
                                                 {"diverged_stop", result->diverged_stop ? 1.0 : 0.0}};
  // Training class counts (for the imbalance diagnosis), per-class recall and the confusion
  // matrix of the best epoch, on validation.
  std::map<int, int64_t> counts, val_counts;
  for (uint8_t label : (*data)->train.labels) ++counts[label];
  for (uint8_t label : (*data)->val.labels) ++val_counts[label];
  for (size_t c = 0; c < result->val_recall.size(); ++c) {
    final_metrics[absl::StrCat("train_count/", c)] = static_cast<double>(counts[static_cast<int>(c)]);
    final_metrics[absl::StrCat("val_count/", c)] = static_cast<double>(val_counts[static_cast<int>(c)]);
    if (c < result->train_recall.size()) final_metrics[absl::StrCat("train_recall/", c)] = result->train_recall[c];
  }
  // Mean pixel value of each split on [0, 1] (for the train/validation mismatch diagnosis); the
  // channels are the same size, so it is the mean of the channel means.
  auto pixel_mean = [](const ImageSet& s) {
    const std::vector<double> means = ComputeChannelStats(s).mean;
    return means.empty() ? 0.0 : std::accumulate(means.begin(), means.end(), 0.0) / means.size();
  };
  final_metrics["train_pixel_mean"] = pixel_mean((*data)->train);
  final_metrics["val_pixel_mean"] = pixel_mean((*data)->val);
  for (size_t c = 0; c < result->val_recall.size(); ++c) {
    final_metrics[absl::StrCat("val_recall/", c)] = result->val_recall[c];
    for (size_t p = 0; p < result->confusion[c].size(); ++p) {
      final_metrics[absl::StrCat("val_confusion/", c, "/", p)] = static_cast<double>(result->confusion[c][p]);
    }
  }
  if (auto s = client.Complete(id, final_metrics); !s.ok()) {
    spdlog::error("{}: could not complete: {}", name, std::string(s.message()));
    return TrialOutcome::kLost;
  }
  spdlog::info("{} completed{}: best {} {:.4f} at epoch {}, test_accuracy {:.4f}", name,
               result->patience_stop   ? " (early stopping: no improvement)"
               : result->diverged_stop ? " (stopped: the training loss was NaN or infinite in every batch)"
                                       : "", a.metric(), result->best_value,
               result->best_epoch, result->test_accuracy);
  return TrialOutcome::kCompleted;
}

}  // namespace hpo::worker
