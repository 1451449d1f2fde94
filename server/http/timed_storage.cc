#include "server/http/timed_storage.h"

#include <utility>

#include "absl/time/clock.h"

namespace hpo::server {
namespace {

class TimedStorage final : public Storage {
 public:
  TimedStorage(std::unique_ptr<Storage> inner, StorageTimer* timer)
      : inner_(std::move(inner)), timer_(timer) {}

  absl::StatusOr<std::vector<Study>> LoadAll() override { return inner_->LoadAll(); }
  absl::StatusOr<int64_t> CreateStudy(const Study& study) override {
    return Timed("create_study", [&] { return inner_->CreateStudy(study); });
  }
  absl::Status UpdateStudyState(int64_t study_id, StudyState state) override {
    return Timed("update_study", [&] { return inner_->UpdateStudyState(study_id, state); });
  }
  absl::Status DeleteStudy(int64_t study_id) override {
    return Timed("delete_study", [&] { return inner_->DeleteStudy(study_id); });
  }
  absl::StatusOr<int64_t> CreateTrial(const Trial& trial) override {
    return Timed("create_trial", [&] { return inner_->CreateTrial(trial); });
  }
  absl::Status UpdateTrial(const Trial& trial, const Measurement* measurement) override {
    return Timed(measurement != nullptr ? "add_measurement" : "update_trial",
                 [&] { return inner_->UpdateTrial(trial, measurement); });
  }
  absl::Status Transaction(const std::function<absl::Status()>& body) override {
    return Timed("transaction", [&] { return inner_->Transaction(body); });
  }
  absl::StatusOr<std::vector<TrialDetails>> LoadTrialDetails(int64_t study_id, int first_number,
                                                             int limit) override {
    return inner_->LoadTrialDetails(study_id, first_number, limit);  // a read: not a commit
  }

 private:
  static bool StatusOk(const absl::Status& s) { return s.ok(); }
  template <typename T>
  static bool StatusOk(const absl::StatusOr<T>& s) {
    return s.ok();
  }

  // Only the outermost call on this thread is a commit of its own. The coordinator calls the
  // storage under its lock, one thread at a time, but a thread-local depth is right either way.
  template <typename F>
  decltype(std::declval<F>()()) Timed(const char* op, F&& f) {
    thread_local int depth = 0;
    if (depth > 0) return f();
    struct Nest {
      Nest() { ++depth; }
      ~Nest() { --depth; }
    };
    const absl::Time start = absl::Now();
    auto result = [&] {
      Nest nest;
      return f();
    }();
    timer_->StorageWrite(op, absl::Now() - start, StatusOk(result));
    return result;
  }

  std::unique_ptr<Storage> inner_;
  StorageTimer* timer_;
};

}  // namespace

std::unique_ptr<Storage> NewTimedStorage(std::unique_ptr<Storage> inner, StorageTimer* timer) {
  return std::make_unique<TimedStorage>(std::move(inner), timer);
}

}  // namespace hpo::server
