// The storage interface: the durable record of studies, trials and measurements.
// The coordinator keeps the working copy in memory and writes through this
// interface before it acknowledges anything.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/model/types.h"

namespace hpo::server {

// What Storage::LoadTrialDetails reads back for one trial.
struct TrialDetails {
  int number = 0;
  std::map<std::string, double> final_metrics;
  std::optional<DataReport> data;
  std::optional<ClassReport> classes;
  std::vector<std::pair<int, std::map<std::string, double>>> metrics;  // (step, metrics), by step
};

// The contract, checked for every implementation by tests/unit/storage_conformance_test.cc
// (SQLite: sqlite_storage.h; in memory: memory_storage.h):
//
// - Ids: studies and trials get ids 1, 2, 3, ... in the order they are stored (one sequence
//   for studies, one for trials across all studies). A new id is never one already stored;
//   the id of a write that was rolled back may be given again.
// - What reads back is what was written, with the spelling of the SQLite columns: times to the
//   millisecond (absl::InfinitePast(), "not yet", reads back as itself; so does the Unix epoch
//   itself, stored as 0); metrics and final metrics without their non-finite values (JSON has no
//   spelling for them); a NaN trial value as no value. Text is UTF-8; parameter values are
//   finite. Study::spec is not stored (spec_json is what says it) and reads back empty.
// - Refusals change nothing: kNotFound for an unknown study or trial id, kAlreadyExists for a
//   trial number or measurement step that is stored already, kInvalidArgument for a trial
//   number that is not its study's next one or a NaN measurement value. An implementation's own
//   failures: kResourceExhausted (full disk), kUnavailable (I/O, file gone), kDataLoss
//   (damaged), kInternal (anything else).
// - Thread-safe: every call may come from any thread. A Transaction's body runs under the
//   store's lock, so that no other thread's call sees or interleaves with it; calls from inside
//   the body (on the same thread) join the transaction.
class Storage {
 public:
  virtual ~Storage() = default;

  // Every study (ordered by id) with its trials (index == number) and their measurements,
  // ordered by step (oldest first). A snapshot: later writes do not change it.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Study>> LoadAll() = 0;
  // Stores a new study: spec_json, state, seed and created (its id and trials are ignored);
  // returns its id.
  [[nodiscard]] virtual absl::StatusOr<int64_t> CreateStudy(const Study& study) = 0;
  // kNotFound for an unknown study.
  [[nodiscard]] virtual absl::Status UpdateStudyState(int64_t study_id, StudyState state) = 0;
  // Deletes a study with its trials and measurements, all in one transaction. kNotFound for an
  // unknown study.
  [[nodiscard]] virtual absl::Status DeleteStudy(int64_t study_id) = 0;
  // Stores a new trial: study_id, number, state, parameters, retry_of, worker, created and
  // started (the rest, and its id, are ignored: UpdateTrial stores them); returns its id.
  // `number` must be the study's next one (0, 1, 2, ...).
  [[nodiscard]] virtual absl::StatusOr<int64_t> CreateTrial(const Trial& trial) = 0;
  // Stores the trial's mutable fields (state, parameters, value, best step, final
  // metrics, reason, worker, retried, times, data and class reports) and, when
  // `measurement` is not null, appends it, all in one transaction. The trial is found by its
  // id; its study_id, number, retry_of, created and measurements are not written.
  [[nodiscard]] virtual absl::Status UpdateTrial(const Trial& trial,
                                                 const Measurement* measurement) = 0;
  // Runs `body` so that all its writes commit together or not at all: when `body` returns an
  // error (its own, or one of its writes' passed on), or the commit fails, nothing it wrote is
  // kept and that status is returned. Called from inside another Transaction's body, it joins
  // that transaction (no savepoint: the outer one commits or rolls back everything).
  [[nodiscard]] virtual absl::Status Transaction(const std::function<absl::Status()>& body) = 0;
  // The details of study `study_id`'s trials numbered `first_number`.. (at most `limit`, in
  // number order) that the coordinator does not keep in memory once a trial has finished: final
  // metrics, data and class reports and each measurement's metrics, as LoadAll reads them back. An unknown
  // study, or a range past its last trial, gives an empty list.
  [[nodiscard]] virtual absl::StatusOr<std::vector<TrialDetails>> LoadTrialDetails(int64_t study_id,
                                                                                   int first_number,
                                                                                   int limit) = 0;
};

}  // namespace hpo::server
