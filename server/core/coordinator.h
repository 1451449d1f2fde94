// The coordinator's use cases: studies, handing out trials under leases,
// measurements with prune decisions, completion, failure and recovery.
// Depends only on the Storage, Sampler and Pruner interfaces. Thread-safe.
//
// Locks (acquired in this order; never the other way):
//   Entry::sample_mu   one study's sampler and its history snapshot: one sample at a time per
//                      study; held while the sampler computes, with no other lock held
//   Entry::mu          one study's trials, leases, waiting queue and counters; a report, heartbeat
//                      or ask of one study never waits for another study
//   map_mu_            (a leaf) the map of studies and the index of trials (id -> study, number);
//                      held only to find or add an entry, never while taking another lock
//   commit_mu_         (a leaf) the group-commit queue (Commit); never held while taking another lock
//   storage_mu_        (a leaf) the Storage (one SQLite connection): writes are serialized, each short
// Group commit: the writes of a report, ask or completion go through Commit, which runs all the
// writes waiting at that moment (of any studies) in one transaction. Each caller returns once that
// transaction is committed, so a reply still goes out only after its write is stored.
// A sampler runs on a snapshot of its study's trials, brought up to date under Entry::mu from the
// trials changed since the last sample (so its cost is the changes, not the study's size); its
// result is committed only if the study still allows that trial, else dropped and sampled again.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <atomic>
#include <deque>
#include <exception>
#include <set>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/clock.h"
#include "server/core/diagnosis.h"
#include "server/model/study_summary.h"
#include "server/model/types.h"
#include "server/core/work_pool.h"
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
  // Builds a study's sampler and pruner from its spec (and the pruner from the study's seed too;
  // unset: the registries, MakeSampler and MakePruner). Tests inject fakes here.
  std::function<absl::StatusOr<std::unique_ptr<Sampler>>(const StudySpec&)> make_sampler;
  std::function<absl::StatusOr<std::unique_ptr<Pruner>>(const StudySpec&, uint64_t study_seed)> make_pruner;
  // The sampling pool of AskTrialAsync: threads, and how many asks may wait for one (beyond
  // that: kResourceExhausted, "retry later").
  int sampling_threads = 4;
  int max_waiting_asks = 1024;
  // Bounds on what clients can make the coordinator hold (README "Limits"); beyond them,
  // kResourceExhausted naming the limit: studies (delete old ones to make room), and trials
  // RUNNING at once across all studies (leases).
  int max_studies = 10'000;
  int max_running_trials = 100'000;
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

struct TrialPage {
  std::vector<Trial> trials;
  int total = 0;  // trials in the study
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
  // Memory: once a trial has finished (COMPLETED, PRUNED, FAILED), the coordinator keeps of it
  // only what samplers, pruners and summaries use (parameters, state, value and the value of each
  // step); its final metrics, data and class reports and each measurement's metrics stay in
  // storage only.
  // Snapshots without those details (counts, best trial, values per step); kNotFound for an
  // unknown id.
  [[nodiscard]] absl::StatusOr<Study> GetStudy(int64_t study_id) const;
  std::vector<Study> ListStudies() const;
  // Summaries of the studies with ids above `after_id`, by id, at most `limit`: each costs the
  // same whatever its number of trials (the figures are kept as trials change).
  std::vector<StudySummary> ListStudySummaries(int64_t after_id, int limit) const;
  // One study's summary (as ListStudySummaries). kNotFound.
  [[nodiscard]] absl::StatusOr<StudySummary> GetStudySummary(int64_t study_id) const;
  // GetStudy with every trial's details, read back from storage (a cost that grows with the study:
  // for a client that asked for all of it). Storage errors are passed on.
  [[nodiscard]] absl::StatusOr<Study> GetStudyWithDetails(int64_t study_id) const;
  // Trials numbered `first_number`.. of a study, in number order, at most `limit`, with their
  // details (a copy of those only: a page of a large study costs the page), and the study's trial
  // count. kNotFound.
  [[nodiscard]] absl::StatusOr<TrialPage> ListTrials(int64_t study_id, int first_number, int limit) const;
  // Deletes a study with its trials and measurements, from storage and memory; its trials'
  // later reports get kNotFound. kNotFound for an unknown id.
  [[nodiscard]] absl::Status DeleteStudy(int64_t study_id);
  // No new trials; RUNNING and WAITING trials are failed with the reason "study stopped".
  [[nodiscard]] absl::StatusOr<Study> StopStudy(int64_t study_id);
  // With its details. kNotFound when the study is unknown or has no completed trial.
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
  //
  // Lease holders: `holder` names the identity that gets the lease (the service passes
  // "token:<id>" when tokens are on, else the worker id; empty: `worker_id`). Report, Heartbeat,
  // CompleteTrial and FailTrial given a non-empty `holder` refuse with kPermissionDenied when it
  // is not the trial's holder; an empty one is not checked (in-process callers). A trial loaded
  // at start-up has no holder until the first call that names one, which takes it.
  [[nodiscard]] absl::StatusOr<std::optional<Assignment>> AskTrial(
      const std::string& worker_id, const std::vector<std::string>& task_types, int64_t study_id,
      const std::string& holder = "");
  // AskTrial on the sampling pool: `done` is called there (or at once, with kResourceExhausted,
  // when max_waiting_asks asks already wait). For the gRPC service, whose callback threads must
  // not wait for a sampler.
  void AskTrialAsync(std::string worker_id, std::vector<std::string> task_types, int64_t study_id,
                     std::string holder,
                     absl::AnyInvocable<void(absl::StatusOr<std::optional<Assignment>>) &&> done);
  // Stores a measurement and decides. kNotFound: unknown trial; kInvalidArgument:
  // non-finite value, a step not after the last, or a `data` report that breaks the
  // contract of worker_reports.h; kFailedPrecondition: the trial is not RUNNING
  // (finished, or its lease was lost). Resending the last measurement (same step and
  // value) is answered again, not refused. `data`, when given, is stored with the
  // measurement (in the same write) and replaces any earlier one.
  [[nodiscard]] absl::StatusOr<Decision> Report(int64_t trial_id, Measurement measurement,
                                                std::optional<DataReport> data = std::nullopt,
                                                const std::string& holder = "");
  [[nodiscard]] absl::StatusOr<HeartbeatResult> Heartbeat(int64_t trial_id,
                                                          const std::string& worker_id,
                                                          const std::string& holder = "");
  // RUNNING -> COMPLETED, value = best measurement, with the per-class figures `classes`
  // (kInvalidArgument, nothing changed, when they break the contract of worker_reports.h or
  // count other classes than the trial's data report names). Idempotent on a COMPLETED trial.
  [[nodiscard]] absl::StatusOr<Trial> CompleteTrial(int64_t trial_id,
                                                    std::map<std::string, double> final_metrics,
                                                    std::optional<ClassReport> classes = std::nullopt,
                                                    const std::string& holder = "");
  // RUNNING -> FAILED; with `retry`, the same parameters go to a new trial
  // (at most max_retries times in a chain). Idempotent on a FAILED trial.
  [[nodiscard]] absl::StatusOr<Trial> FailTrial(int64_t trial_id, const std::string& reason,
                                                bool retry, const std::string& holder = "");
  // Fails (and retries) every RUNNING trial whose lease has expired. Returns how many.
  int ReapExpiredLeases();
  // Time budgets (spec max_minutes): once a study's has run out, no trial of it starts (asks get none,
  // EnqueueTrial kFailedPrecondition, a lost trial is not retried) and trials running then finish as
  // usual. This fails its WAITING trials, saying why, and completes it when none is left unfinished.
  // Returns how many studies it completed. Called periodically, with ReapExpiredLeases.
  int EndTimeBudgets();

  ~Coordinator();
  const CoordinatorOptions& options() const { return options_; }

 private:
  struct Lease {
    absl::Time deadline;
    std::string holder;  // empty: not known yet (loaded at start-up); the next caller takes it
  };
  struct Entry {
    Entry(StudySpec s, std::unique_ptr<Sampler> sa, std::unique_ptr<Pruner> pr)
        : spec(std::move(s)), pruner(std::move(pr)), sampler(std::move(sa)) {}
    const StudySpec spec;
    const std::unique_ptr<Pruner> pruner;  // told of every change (Put) and asked, under mu

    absl::Mutex sample_mu ABSL_ACQUIRED_BEFORE(mu);
    std::unique_ptr<Sampler> sampler ABSL_GUARDED_BY(sample_mu);
    Study snapshot ABSL_GUARDED_BY(sample_mu);  // what the sampler sees (see the top of this file)

    mutable absl::Mutex mu;
    Study study ABSL_GUARDED_BY(mu);
    bool exhausted ABSL_GUARDED_BY(mu) = false;  // the sampler has nothing left (grid)
    std::deque<int> waiting ABSL_GUARDED_BY(mu);  // numbers of WAITING trials, oldest first (may be stale)
    std::map<int64_t, Lease> leases ABSL_GUARDED_BY(mu);  // RUNNING trial id -> lease
    std::set<int> changed ABSL_GUARDED_BY(mu);  // numbers changed since the snapshot was synced
    StudySummary figures ABSL_GUARDED_BY(mu);   // counts, used slots and best (not its `study`), kept by Put
  };
  using EntryPtr = std::shared_ptr<Entry>;
  struct TrialRef {
    EntryPtr entry;
    int number = 0;
  };
  enum class Outcome { kAssigned, kNothing, kBusy };

  Coordinator(std::unique_ptr<Storage> storage, const Clock* clock, CoordinatorOptions options);

  EntryPtr FindStudy(int64_t study_id) const ABSL_LOCKS_EXCLUDED(map_mu_);
  absl::StatusOr<TrialRef> FindTrial(int64_t trial_id) const ABSL_LOCKS_EXCLUDED(map_mu_);
  void IndexTrial(const Trial& t) ABSL_LOCKS_EXCLUDED(map_mu_);
  // Every change to a trial of `e` goes through here: stores `t` at t.number (appending a new
  // one) and keeps the counters, the waiting queue, the snapshot's change set and the pruner's
  // incremental state (Pruner::Observe).
  void Put(Entry& e, Trial t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Checks `holder` against the lease of RUNNING trial `t` (taking it when it has no holder).
  static absl::Status CheckHolder(Entry& e, const Trial& t, const std::string& holder)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  absl::StatusOr<Outcome> TryStudy(const EntryPtr& e, const std::string& worker, const std::string& holder,
                                   bool wait, std::optional<Assignment>* out);
  absl::StatusOr<Outcome> SampleAndStart(Entry& e, const std::string& worker,
                                         const std::string& holder, std::optional<Assignment>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.sample_mu);
  absl::Status Fail(Entry& e, const Trial& t, const std::string& reason, bool retry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  absl::Status Start(Entry& e, Trial t, const std::string& worker, const std::string& holder)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Whether storing `updated` (a new or changed trial of `e`) finishes the study: no trial left
  // to hand out and none unfinished.
  bool EndsStudy(const Entry& e, const Trial& updated) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Whether the study's time budget (spec max_minutes) has run out.
  bool OutOfTime(const Entry& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // No new trial may start: the sampler is exhausted, max_trials are used, or the time is out.
  bool NothingToHandOut(const Entry& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // "ran out of its time budget (max_minutes 30) at 2026-12-07 18:00:00 UTC"
  static std::string TimeBudgetText(const Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Stores `updated` (with `m` when not null) and, when it ends the study (*ends), the study's
  // COMPLETED state in the same transaction: both or neither.
  absl::Status WriteTrial(Entry& e, const Trial& updated, const Measurement* m, bool* ends)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Completes a study with nothing left to hand out or finish (start-up, an exhausted sampler).
  absl::Status FinishIfDone(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Sets a study's state in memory (after it is stored) and keeps running_.
  void SetState(Entry& e, StudyState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  static std::string NotRunningMessage(const Trial& t);
  static StudySummary SummaryOf(const Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu);
  // Trials of `e` not finished yet (WAITING or RUNNING), from its kept counts.
  static int UnfinishedTrials(const Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu) {
    return e.figures.counts.waiting + e.figures.counts.running;
  }
  // Puts back into the finished trials among `trials` (of study `study_id`, in number order) the
  // details that Put dropped from memory, read from storage a page at a time (storage_mu_ is
  // never held for long). Trials not in storage (a study deleted meanwhile) stay as they are.
  absl::Status AddDetails(int64_t study_id, std::vector<Trial>& trials) const
      ABSL_LOCKS_EXCLUDED(storage_mu_);
  // Runs `body` (storage writes, on the Storage it is given) in one transaction with the writes
  // that other threads queued meanwhile, and returns `body`'s status once that transaction has
  // committed. When the shared transaction fails, each body is run again in a transaction of its
  // own, so that one refused write does not fail the others; a body may run more than once, so
  // it must only write and set its outputs.
  absl::Status Commit(const std::function<absl::Status(Storage&)>& body)
      ABSL_LOCKS_EXCLUDED(storage_mu_, commit_mu_);

  const Clock* clock_;
  const CoordinatorOptions options_;
  mutable absl::Mutex map_mu_;
  std::map<int64_t, EntryPtr> studies_ ABSL_GUARDED_BY(map_mu_);
  std::set<int64_t> running_ ABSL_GUARDED_BY(map_mu_);  // ids of RUNNING studies: what AskTrial looks at
  std::atomic<int> leased_{0};  // RUNNING trials across all studies (max_running_trials)
  std::unordered_map<int64_t, std::pair<int64_t, int>> trial_index_ ABSL_GUARDED_BY(map_mu_);  // id -> study, number
  struct PendingWrite {
    const std::function<absl::Status(Storage&)>* body;
    absl::Status status;
    std::exception_ptr thrown;  // what the body (or the store) threw, rethrown to its caller
    bool done = false;
  };
  // Commit's leader: runs `batch` in one transaction, then alone when that fails. Never throws.
  void RunBatch(const std::vector<PendingWrite*>& batch) ABSL_LOCKS_EXCLUDED(storage_mu_);
  absl::Mutex commit_mu_;
  absl::CondVar commit_cv_;
  std::vector<PendingWrite*> commit_queue_ ABSL_GUARDED_BY(commit_mu_);
  bool committing_ ABSL_GUARDED_BY(commit_mu_) = false;  // a thread is running a batch
  mutable absl::Mutex storage_mu_;
  std::unique_ptr<Storage> storage_ ABSL_GUARDED_BY(storage_mu_);
  std::unique_ptr<WorkPool> pool_;  // last: destroyed (joined) first
};

}  // namespace hpo::server
