#include "worker/trial_runner.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
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
            } else if (!r.ok() && (r.status().code() == absl::StatusCode::kNotFound ||
                                   r.status().code() == absl::StatusCode::kPermissionDenied ||
                                   r.status().code() == absl::StatusCode::kUnauthenticated)) {
              // Gone, held by another identity (README "Security"), or our token was revoked.
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
  client.set_stream_idle_timeout(absl::Milliseconds(a.stream_idle_timeout_ms()));
  auto config =
      CnnConfigFromParams(ToParams(trial), TrialSeed(trial.study_id(), trial.number(), task.training_seed()));
  if (!config.ok()) return fail(std::string(config.status().message()), false);
  SplitOptions split;
  split.train_examples = task.train_examples();
  split.val_examples = task.val_examples();
  split.test_examples = task.test_examples();
  split.seed = static_cast<uint64_t>(task.data_seed());
  split.imbalance_classes.assign(task.imbalance_classes().begin(), task.imbalance_classes().end());
  split.imbalance_keep = task.imbalance_classes().empty() ? 1.0 : task.imbalance_keep();
  split.image_height = task.image_height();
  split.image_width = task.image_width();
  split.channels = task.channels();
  split.resize = task.resize();
  split.threads = options.threads;
  split.cache_dir = options.cache_dir;
  const absl::Time load_start = absl::Now();
  auto data = LoadSplit(options.data_root, task.dataset(), split);
  if (!data.ok()) return fail(absl::StrCat("data set: ", data.status().message()), false);
  const DataSplit& ds = **data;
  if (ds.skipped_files > 0) {
    spdlog::warn("{}: skipped {} file(s) of data set {} that are not usable images, e.g. {}", name, ds.skipped_files,
                 task.dataset(), absl::StrJoin(ds.skipped_examples, "; "));
  }
  spdlog::info("{} (id {}): {} train / {} validation / {} test images of {} classes, {}x{}x{} ({}, loaded in {:.2f} s{}), "
               "up to {} epochs",
               name, id, ds.train.count, ds.val.count, ds.test.count, ds.class_names.size(), ds.train.channels,
               ds.train.height, ds.train.width, ds.format, absl::ToDoubleSeconds(absl::Now() - load_start),
               ds.from_cache ? " from the decoded-image cache" : "", task.max_epochs());
  hpo::v1::DataReport data_report;
  data_report.set_format(ds.format);
  for (const std::string& c : ds.class_names) data_report.add_class_names(c);
  data_report.set_train_images(ds.train.count);
  data_report.set_val_images(ds.val.count);
  data_report.set_test_images(ds.test.count);
  data_report.set_channels(ds.train.channels);
  data_report.set_height(ds.train.height);
  data_report.set_width(ds.train.width);
  data_report.set_skipped_files(ds.skipped_files);
  for (const std::string& e : ds.skipped_examples) data_report.add_skipped_examples(e);
  bool data_sent = false;
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
    metrics["train_images"] = static_cast<double>(r.train_images);
    auto d = client.Report(id, m, data_sent ? nullptr : &data_report);
    data_sent = data_sent || d.ok();
    if (!d.ok()) {
      lost = true;
      why = std::string(d.status().message());
      return false;
    }
    spdlog::info("{} epoch {}/{}{}: val_accuracy {:.4f} (train {:.4f}), {:.1f}s, {:.0f} img/s -> {}", name,
                 r.epoch, task.max_epochs(),
                 r.train_images < ds.train.count ? absl::StrCat(" (partial: ", r.train_images, " of ",
                                                                ds.train.count, " training images)")
                                                 : std::string(),
                 r.val_accuracy, r.train_accuracy, r.seconds, r.train_images_per_second,
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
  train_options.partial_epochs.assign(task.partial_epochs().begin(), task.partial_epochs().end());
  auto result = TrainCnn(*config, ds, train_options, on_epoch,
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
  std::map<std::string, double> final_metrics = {{"epochs_run", result->epochs_run},
                                                 {"patience_stop", result->patience_stop ? 1.0 : 0.0},
                                                 {"diverged_stop", result->diverged_stop ? 1.0 : 0.0}};
  if (ds.test.count > 0) {  // an image folder without test/ has no test accuracy
    final_metrics["test_accuracy"] = result->test_accuracy;
    final_metrics["test_loss"] = result->test_loss;
  }
  // Per-class figures of the best epoch: training counts (for the imbalance diagnosis), recall on
  // both splits and the validation confusion matrix.
  hpo::v1::ClassReport classes;
  const size_t n = result->val_recall.size();
  std::vector<int64_t> counts(n), val_counts(n);
  for (uint8_t label : ds.train.labels) ++counts[label];
  for (uint8_t label : ds.val.labels) ++val_counts[label];
  for (size_t c = 0; c < n; ++c) {
    classes.add_train_count(counts[c]);
    classes.add_val_count(val_counts[c]);
    classes.add_val_recall(result->val_recall[c]);
    if (result->train_recall.size() == n) classes.add_train_recall(result->train_recall[c]);
    for (size_t p = 0; p < n; ++p) classes.add_val_confusion(c < result->confusion.size() && p < result->confusion[c].size() ? result->confusion[c][p] : 0);
  }
  // Mean pixel value of each split on [0, 1] (for the train/validation mismatch diagnosis); the
  // channels are the same size, so it is the mean of the channel means.
  auto pixel_mean = [](const ImageSet& s) {
    const std::vector<double> means = ComputeChannelStats(s).mean;
    return means.empty() ? 0.0 : std::accumulate(means.begin(), means.end(), 0.0) / means.size();
  };
  final_metrics["train_pixel_mean"] = pixel_mean(ds.train);
  final_metrics["val_pixel_mean"] = pixel_mean(ds.val);
  if (auto s = client.Complete(id, final_metrics, &classes); !s.ok()) {
    spdlog::error("{}: could not complete: {}", name, std::string(s.message()));
    return TrialOutcome::kLost;
  }
  spdlog::info("{} completed{}: best {} {:.4f} at epoch {}{}", name,
               result->patience_stop   ? " (early stopping: no improvement)"
               : result->diverged_stop ? " (stopped: the training loss was NaN or infinite in every batch)"
                                       : "", a.metric(), result->best_value, result->best_epoch,
               ds.test.count > 0 ? absl::StrFormat(", test_accuracy %.4f", result->test_accuracy) : ", no test split");
  return TrialOutcome::kCompleted;
}

}  // namespace hpo::worker
