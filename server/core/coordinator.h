// The coordinator's use cases: studies, handing out trials under leases,
// measurements with prune decisions, completion, failure and recovery.
// Depends only on the Storage, Sampler and Pruner interfaces. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/clock.h"
#include "server/core/diagnosis.h"
#include "server/core/types.h"
#include "server/pruner/pruner.h"
#include "server/sampler/sampler.h"
#include "server/storage/storage.h"

namespace hpo::server {

struct CoordinatorOptions {
  // A RUNNING trial whose worker sent nothing for this long is failed (and retried).
  absl::Duration lease_timeout = absl::Seconds(30);
  // How often workers are asked to send heartbeats.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // How long a worker with nothing to do waits before asking again.
  absl::Duration idle_retry = absl::Seconds(1);
  // Told, at start-up, about each stored trial that Open failed because it cannot be served
  // (parameters that do not fit the study's spec). Unset: not told.
  std::function<void(const std::string&)> warn;
};

// A trial handed to a worker.
struct Assignment {
  Trial trial;
  TaskSpec task;
  std::string metric;
};

enum class Action { kContinue, kPrune, kStop };
struct Decision {
  Action action = Action::kContinue;
  std::string reason;
};

struct HeartbeatResult {
  bool keep_running = true;
  std::string reason;
};

class Coordinator {
 public:
  // Loads every study from `storage`. RUNNING trials get a fresh lease so
  // that their workers can reconnect and go on. A trial whose parameters do not fit its
  // study's spec (a parameter it does not have, or a value of the wrong type) is stored
  // FAILED, saying why, and never handed out. kDataLoss, naming the row, for a study whose
  // spec cannot be read.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Coordinator>> Open(
      std::unique_ptr<Storage> storage, const Clock* clock, CoordinatorOptions options);

  // kInvalidArgument for a bad spec (the message says what to fix).
  [[nodiscard]] absl::StatusOr<Study> CreateStudy(const std::string& spec_json);
  // Snapshots. kNotFound for an unknown id.
  [[nodiscard]] absl::StatusOr<Study> GetStudy(int64_t study_id) const;
  std::vector<Study> ListStudies() const;
  // No new trials; RUNNING and WAITING trials are failed with the reason "study stopped".
  [[nodiscard]] absl::StatusOr<Study> StopStudy(int64_t study_id);
  // kNotFound when the study is unknown or has no completed trial.
  [[nodiscard]] absl::StatusOr<Trial> BestTrial(int64_t study_id) const;
  // Findings about `study_id` (see diagnosis.h); `trial` < 0 judges the best trial.
  [[nodiscard]] absl::StatusOr<std::vector<Finding>> Diagnose(int64_t study_id, int trial) const;
  // Queues a trial with the given parameters (a JSON object name -> value; any
  // active parameter left out is sampled when the trial is handed out). It is
  // handed out before any sampled trial and uses one of max_trials.
  // kInvalidArgument for an unknown, inactive or out-of-range parameter;
  // kFailedPrecondition when the study is not running or has no trial left.
  [[nodiscard]] absl::StatusOr<Trial> EnqueueTrial(int64_t study_id, const std::string& params_json);

  // The next trial for a worker that can run `task_types` (only of `study_id`
  // when non-zero), RUNNING under its lease; nullopt when there is none now.
  [[nodiscard]] absl::StatusOr<std::optional<Assignment>> AskTrial(
      const std::string& worker_id, const std::vector<std::string>& task_types, int64_t study_id);
  // Stores a measurement and decides. kNotFound: unknown trial; kInvalidArgument:
  // non-finite value, a step not after the last, or a `data` report that breaks the
  // contract of worker_reports.h; kFailedPrecondition: the trial is not RUNNING
  // (finished, or its lease was lost). Resending the last measurement (same step and
  // value) is answered again, not refused. `data`, when given, is stored with the
  // measurement (in the same write) and replaces any earlier one.
  [[nodiscard]] absl::StatusOr<Decision> Report(int64_t trial_id, Measurement measurement,
                                                std::optional<DataReport> data = std::nullopt);
  [[nodiscard]] absl::StatusOr<HeartbeatResult> Heartbeat(int64_t trial_id,
                                                          const std::string& worker_id);
  // RUNNING -> COMPLETED, value = best measurement, with the per-class figures `classes`
  // (kInvalidArgument, nothing changed, when they break the contract of worker_reports.h or
  // count other classes than the trial's data report names). Idempotent on a COMPLETED trial.
  [[nodiscard]] absl::StatusOr<Trial> CompleteTrial(int64_t trial_id,
                                                    std::map<std::string, double> final_metrics,
                                                    std::optional<ClassReport> classes = std::nullopt);
  // RUNNING -> FAILED; with `retry`, the same parameters go to a new trial
  // (at most max_retries times in a chain). Idempotent on a FAILED trial.
  [[nodiscard]] absl::StatusOr<Trial> FailTrial(int64_t trial_id, const std::string& reason,
                                                bool retry);
  // Fails (and retries) every RUNNING trial whose lease has expired. Returns how many.
  int ReapExpiredLeases();

  const CoordinatorOptions& options() const { return options_; }

 private:
  struct Entry {
    Study study;
    StudySpec spec;
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<Pruner> pruner;
    bool exhausted = false;  // the sampler has nothing left (grid): no new trials
  };

  Coordinator(std::unique_ptr<Storage> storage, const Clock* clock, CoordinatorOptions options)
      : storage_(std::move(storage)), clock_(clock), options_(options) {}

  absl::StatusOr<std::pair<Entry*, Trial*>> FindTrial(int64_t trial_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Fail(Entry& e, Trial& t, const std::string& reason, bool retry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StartTrial(Entry& e, Trial& t, const std::string& worker)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FinishIfDone(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Samples the active parameters `t` lacks (enqueued trials may be partial).
  absl::Status FillParams(Entry& e, Trial& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static std::string NotRunningMessage(const Trial& t);

  mutable absl::Mutex mu_;
  std::unique_ptr<Storage> storage_ ABSL_GUARDED_BY(mu_);
  const Clock* clock_;
  const CoordinatorOptions options_;
  std::map<int64_t, Entry> studies_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::pair<int64_t, int>> trial_index_ ABSL_GUARDED_BY(mu_);  // id -> study, number
  std::map<int64_t, absl::Time> leases_ ABSL_GUARDED_BY(mu_);                    // RUNNING trial -> deadline
};

}  // namespace hpo::server
