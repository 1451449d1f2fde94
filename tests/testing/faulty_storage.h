// A Storage for unit tests that fails the writes it is told to, in front of any other Storage.
//
//   auto memory = NewMemoryStorage();
//   auto faulty = std::make_unique<FaultyStorage>(memory.get());   // borrowed: memory outlives it
//   faulty->FailNthWrite(1, absl::ResourceExhaustedError("disk full"));  // the next write fails
//   faulty->FailEvery(WriteKind::kCreateTrial, absl::UnavailableError("gone"));
//
// A write that fails is not passed on: the store behind is not touched by it. A write made from
// inside a Transaction's body fails there; the body gets the status and, when it returns it,
// the store behind rolls the whole transaction back. WriteKind::kCommit fails a Transaction
// after its body succeeded, which rolls it back too. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/storage/storage.h"

namespace hpo::testing {

enum class WriteKind {
  kCreateStudy,
  kUpdateStudyState,
  kDeleteStudy,
  kCreateTrial,
  kUpdateTrial,  // with or without a measurement
  kCommit,       // the end of a (non-nested) Transaction whose body succeeded
};
const char* WriteKindName(WriteKind kind);

class FaultyStorage final : public server::Storage {
 public:
  // Owns `inner`.
  explicit FaultyStorage(std::unique_ptr<server::Storage> inner);
  // Borrows `inner`, which must outlive this object.
  explicit FaultyStorage(server::Storage* inner);

  // The `n`th write from now (1: the next one; kCommit counts too) fails with `status`, once
  // (n <= 0: none).
  // Replaces an earlier FailNthWrite that has not fired yet.
  void FailNthWrite(int n, absl::Status status);
  // Every write of `kind` fails with `status` until Clear().
  void FailEvery(WriteKind kind, absl::Status status);
  // LoadAll and LoadTrialDetails fail with `status` until Clear().
  void FailLoadAll(absl::Status status);
  // No more failures.
  void Clear();

  // Every write asked for so far, in order (including those that failed).
  std::vector<WriteKind> writes() const;
  // How many writes were failed so far.
  int failed() const;

  absl::StatusOr<std::vector<server::Study>> LoadAll() override;
  absl::StatusOr<int64_t> CreateStudy(const server::Study& study) override;
  absl::Status UpdateStudyState(int64_t study_id, server::StudyState state) override;
  absl::Status DeleteStudy(int64_t study_id) override;
  absl::StatusOr<int64_t> CreateTrial(const server::Trial& trial) override;
  absl::Status UpdateTrial(const server::Trial& trial, const server::Measurement* measurement) override;
  absl::Status Transaction(const std::function<absl::Status()>& body) override;
  absl::StatusOr<std::vector<server::TrialDetails>> LoadTrialDetails(int64_t study_id, int first_number,
                                                                     int limit) override;

 private:
  // OK, or the failure this write of `kind` gets (the write is then not passed on).
  absl::Status Next(WriteKind kind);

  std::unique_ptr<server::Storage> owned_;
  server::Storage* const inner_;
  mutable absl::Mutex mu_;
  int nth_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none
  absl::Status nth_status_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<WriteKind, absl::Status>> every_ ABSL_GUARDED_BY(mu_);
  absl::Status load_status_ ABSL_GUARDED_BY(mu_);
  std::vector<WriteKind> writes_ ABSL_GUARDED_BY(mu_);
  int failed_ ABSL_GUARDED_BY(mu_) = 0;
  int depth_ ABSL_GUARDED_BY(mu_) = 0;  // Transaction nesting of the thread inside the store
};

// Everything `studies` holds, one field a line, for comparing two stores or two snapshots in a
// test (a failure shows the difference). Times as the store spells them: Unix milliseconds,
// "-inf" for not set (absl::InfinitePast(), or the epoch, which a default absl::Time is).
std::string DumpStudies(const std::vector<server::Study>& studies);

}  // namespace hpo::testing
