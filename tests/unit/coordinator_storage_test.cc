// The coordinator against a store that refuses writes (issue 12): for every path that writes,
// a failed write is returned to the caller as the store said it, and changes nothing. The
// coordinator's state then still equals what the store holds, and what a coordinator opened
// afresh on that store would serve; the same call succeeds once the store takes writes again.
#include <gtest/gtest.h>

#include "server/core/coordinator.h"
#include "server/storage/memory_storage.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/faulty_storage.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::DumpStudies;
using ::hpo::testing::FakeClock;
using ::hpo::testing::FaultyStorage;
using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;
using ::hpo::testing::WriteKind;

std::string Spec(int max_trials) {
  return R"({
  "name": "faults", "task": {"type": "cnn", "dataset": "d", "max_epochs": 3},
  "parameters": [{"name": "learning_rate", "type": "float", "low": 0.001, "high": 0.1, "log": true}],
  "sampler": {"type": "random", "seed": 7},
  "pruner": {"type": "median", "startup_trials": 1},
  "max_trials": )" + std::to_string(max_trials) + "}";
}

absl::Status DiskFull() { return absl::ResourceExhaustedError("disk full"); }

// The store as a coordinator opened afresh reads it, without letting that coordinator's own
// start-up writes (repairs, a study found finished) reach the store under test.
class ReadOnlyView final : public Storage {
 public:
  explicit ReadOnlyView(Storage* inner) : inner_(inner) {}
  absl::StatusOr<std::vector<Study>> LoadAll() override { return inner_->LoadAll(); }
  absl::StatusOr<int64_t> CreateStudy(const Study&) override { return absl::UnimplementedError("read-only"); }
  absl::Status UpdateStudyState(int64_t, StudyState) override { return absl::OkStatus(); }
  absl::Status DeleteStudy(int64_t) override { return absl::OkStatus(); }
  absl::StatusOr<int64_t> CreateTrial(const Trial&) override { return absl::UnimplementedError("read-only"); }
  absl::Status UpdateTrial(const Trial&, const Measurement*) override { return absl::OkStatus(); }
  absl::Status Transaction(const std::function<absl::Status()>& body) override { return body(); }
  absl::StatusOr<std::vector<TrialDetails>> LoadTrialDetails(int64_t id, int first, int limit) override {
    return inner_->LoadTrialDetails(id, first, limit);
  }

 private:
  Storage* inner_;
};

class CoordinatorStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory_ = NewMemoryStorage();
    auto faulty = std::make_unique<FaultyStorage>(memory_.get());
    faulty_ = faulty.get();
    auto c = Coordinator::Open(std::move(faulty), &clock_, CoordinatorOptions{});
    ASSERT_THAT(c, IsOk());
    c_ = std::move(*c);
  }

  // A coordinator's studies, with the details of finished trials that it keeps in storage only.
  static std::vector<Study> Details(const Coordinator& c) {
    std::vector<Study> out;
    for (const Study& s : c.ListStudies()) {
      auto d = c.GetStudyWithDetails(s.id);
      EXPECT_THAT(d, IsOk());
      out.push_back(d.ok() ? *d : s);
    }
    return out;
  }
  // The coordinator's studies, as text.
  std::string Served() { return DumpStudies(Details(*c_)); }
  // What the store holds, as text.
  std::string Stored() {
    auto all = memory_->LoadAll();
    EXPECT_THAT(all, IsOk());
    return all.ok() ? DumpStudies(*all) : "";
  }
  // What a coordinator opened now on the store would serve.
  std::string Reopened() {
    auto c = Coordinator::Open(std::make_unique<ReadOnlyView>(memory_.get()), &clock_, CoordinatorOptions{});
    EXPECT_THAT(c, IsOk());
    return c.ok() ? DumpStudies(Details(**c)) : "";
  }
  // The coordinator serves what the store holds, and what a restart would serve.
  void ExpectConsistent() {
    const std::string served = Served();
    EXPECT_EQ(served, Stored());
    EXPECT_EQ(served, Reopened());
  }
  // After a refused call: nothing changed anywhere.
  void ExpectUnchanged(const std::string& before) {
    EXPECT_EQ(Served(), before);
    ExpectConsistent();
  }

  int64_t NewStudy(int max_trials = 3) {
    auto s = c_->CreateStudy(Spec(max_trials));
    EXPECT_THAT(s, IsOk());
    return s.ok() ? s->id : 0;
  }
  Trial Ask() {
    auto a = c_->AskTrial("w1", {"cnn"}, 0);
    EXPECT_THAT(a, IsOk());
    if (!a.ok() || !a->has_value()) {
      ADD_FAILURE() << "no trial handed out";
      return Trial();
    }
    return (*a)->trial;
  }
  absl::StatusOr<Decision> Report(int64_t id, int step, double value) {
    return c_->Report(id, Measurement{step, value, {{"val_loss", 0.5}}, {}});
  }
  // One trial asked, reported at step 1 with `value` and completed.
  void CompletedTrial(double value) {
    Trial t = Ask();
    ASSERT_THAT(Report(t.id, 1, value), IsOk());
    ASSERT_THAT(c_->CompleteTrial(t.id, {{"test_accuracy", value}}), IsOk());
  }

  FakeClock clock_;
  std::unique_ptr<Storage> memory_;
  FaultyStorage* faulty_ = nullptr;  // owned by c_
  std::unique_ptr<Coordinator> c_;
};

TEST_F(CoordinatorStorageTest, CreateStudy) {
  faulty_->FailEvery(WriteKind::kCreateStudy, DiskFull());
  EXPECT_THAT(c_->CreateStudy(Spec(3)), StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_TRUE(c_->ListStudies().empty());
  ExpectUnchanged("");
  faulty_->Clear();
  auto s = c_->CreateStudy(Spec(3));
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->id, 1);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, AskTrialCreatingATrial) {
  const int64_t study = NewStudy();
  const std::string before = Served();
  faulty_->FailEvery(WriteKind::kCreateTrial, DiskFull());
  EXPECT_THAT(c_->AskTrial("w1", {"cnn"}, 0), StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_TRUE(c_->GetStudy(study)->trials.empty());
  ExpectUnchanged(before);
  faulty_->Clear();
  Trial t = Ask();
  EXPECT_EQ(t.number, 0);
  EXPECT_EQ(t.state, TrialState::kRunning);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, AskTrialHandingOutAQueuedTrial) {
  const int64_t study = NewStudy();
  ASSERT_THAT(c_->EnqueueTrial(study, R"({"learning_rate": 0.01})"), IsOk());
  const std::string before = Served();
  faulty_->FailEvery(WriteKind::kUpdateTrial, DiskFull());
  EXPECT_THAT(c_->AskTrial("w1", {"cnn"}, 0), StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_EQ(c_->GetStudy(study)->trials[0].state, TrialState::kWaiting);
  ExpectUnchanged(before);
  faulty_->Clear();
  Trial t = Ask();
  EXPECT_EQ(t.number, 0);
  EXPECT_EQ(std::get<double>(t.params.at("learning_rate")), 0.01);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, Report) {
  const int64_t study = NewStudy();
  Trial t = Ask();
  const std::string before = Served();
  faulty_->FailNthWrite(1, DiskFull());
  EXPECT_THAT(Report(t.id, 1, 0.5), StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_TRUE(c_->GetStudy(study)->trials[0].measurements.empty());
  ExpectUnchanged(before);
  // The fault was for one write only: the same report goes through.
  auto d = Report(t.id, 1, 0.5);
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->action, Action::kContinue);
  EXPECT_EQ(c_->GetStudy(study)->trials[0].measurements.size(), 1u);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, ReportThatPrunes) {
  const int64_t study = NewStudy(3);
  CompletedTrial(0.9);
  Trial t = Ask();
  const std::string before = Served();
  faulty_->FailEvery(WriteKind::kUpdateTrial, DiskFull());
  EXPECT_THAT(Report(t.id, 1, 0.1), StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_EQ(c_->GetStudy(study)->trials[1].state, TrialState::kRunning);
  ExpectUnchanged(before);
  faulty_->Clear();
  auto d = Report(t.id, 1, 0.1);
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->action, Action::kPrune);
  EXPECT_EQ(c_->GetStudy(study)->trials[1].state, TrialState::kPruned);
  ExpectConsistent();
}

// The last trial's end also ends the study: a separate write of the study's state.
TEST_F(CoordinatorStorageTest, ReportThatPrunesTheLastTrial) {
  // The trial's write and the study's COMPLETED commit in one transaction (Coordinator::WriteTrial):
  // when the study's write fails, the trial is not changed either, and the caller's retry succeeds.
  const int64_t study = NewStudy(2);
  CompletedTrial(0.9);
  Trial t = Ask();
  const std::string before = Served();
  faulty_->FailEvery(WriteKind::kUpdateStudyState, DiskFull());
  EXPECT_THAT(Report(t.id, 1, 0.1), StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  ExpectUnchanged(before);
  faulty_->Clear();
  auto d = Report(t.id, 1, 0.1);
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->action, Action::kPrune);
  EXPECT_EQ(c_->GetStudy(study)->state, StudyState::kCompleted);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, CompleteTrial) {
  const int64_t study = NewStudy(3);
  Trial t = Ask();
  ASSERT_THAT(Report(t.id, 1, 0.7), IsOk());
  const std::string before = Served();
  faulty_->FailEvery(WriteKind::kUpdateTrial, DiskFull());
  EXPECT_THAT(c_->CompleteTrial(t.id, {{"test_accuracy", 0.7}}),
              StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_EQ(c_->GetStudy(study)->trials[0].state, TrialState::kRunning);
  ExpectUnchanged(before);
  faulty_->Clear();
  auto done = c_->CompleteTrial(t.id, {{"test_accuracy", 0.7}});
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->state, TrialState::kCompleted);
  EXPECT_EQ(done->final_metrics.at("test_accuracy"), 0.7);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, CompleteTrialThatEndsTheStudy) {
  // The trial's write and the study's COMPLETED commit in one transaction (Coordinator::WriteTrial):
  // when the study's write fails, the trial is not changed either, and the caller's retry succeeds.
  const int64_t study = NewStudy(1);
  Trial t = Ask();
  ASSERT_THAT(Report(t.id, 1, 0.7), IsOk());
  const std::string before = Served();
  faulty_->FailEvery(WriteKind::kUpdateStudyState, DiskFull());
  EXPECT_THAT(c_->CompleteTrial(t.id, {}), StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  ExpectUnchanged(before);
  faulty_->Clear();
  ASSERT_THAT(c_->CompleteTrial(t.id, {}), IsOk());
  EXPECT_EQ(c_->GetStudy(study)->state, StudyState::kCompleted);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, FailTrialWithRetry) {
  const int64_t study = NewStudy(3);
  Trial t = Ask();
  const std::string before = Served();
  // The retry is created after the failed trial is written, in one transaction: failing the
  // second write must take back the first.
  faulty_->FailEvery(WriteKind::kCreateTrial, DiskFull());
  EXPECT_THAT(c_->FailTrial(t.id, "out of memory", /*retry=*/true),
              StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  ExpectUnchanged(before);
  faulty_->Clear();
  // And a commit that fails.
  faulty_->FailEvery(WriteKind::kCommit, absl::UnavailableError("commit lost"));
  EXPECT_THAT(c_->FailTrial(t.id, "out of memory", /*retry=*/true),
              StatusIs(absl::StatusCode::kUnavailable, "commit lost"));
  ExpectUnchanged(before);
  faulty_->Clear();
  auto failed = c_->FailTrial(t.id, "out of memory", /*retry=*/true);
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->state, TrialState::kFailed);
  EXPECT_TRUE(failed->retried);
  auto s = c_->GetStudy(study);
  ASSERT_EQ(s->trials.size(), 2u);
  EXPECT_EQ(s->trials[1].state, TrialState::kWaiting);
  EXPECT_EQ(s->trials[1].retry_of, 0);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, StopStudy) {
  const int64_t study = NewStudy(3);
  Trial running = Ask();
  ASSERT_THAT(Report(running.id, 1, 0.5), IsOk());
  ASSERT_THAT(c_->EnqueueTrial(study, R"({"learning_rate": 0.02})"), IsOk());
  const std::string before = Served();
  // The study's state is its last write, after both trials': all of them are taken back.
  faulty_->FailEvery(WriteKind::kUpdateStudyState, DiskFull());
  EXPECT_THAT(c_->StopStudy(study), StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_EQ(c_->GetStudy(study)->state, StudyState::kRunning);
  ExpectUnchanged(before);
  // The running trial still takes reports.
  EXPECT_THAT(Report(running.id, 2, 0.6), IsOk());
  faulty_->Clear();
  auto stopped = c_->StopStudy(study);
  ASSERT_THAT(stopped, IsOk());
  EXPECT_EQ(stopped->state, StudyState::kStopped);
  for (const Trial& t : stopped->trials) EXPECT_EQ(t.state, TrialState::kFailed);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, EnqueueTrial) {
  const int64_t study = NewStudy(3);
  const std::string before = Served();
  faulty_->FailNthWrite(1, DiskFull());
  EXPECT_THAT(c_->EnqueueTrial(study, R"({"learning_rate": 0.02})"),
              StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_TRUE(c_->GetStudy(study)->trials.empty());
  ExpectUnchanged(before);
  auto t = c_->EnqueueTrial(study, R"({"learning_rate": 0.02})");
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->number, 0);
  EXPECT_EQ(t->state, TrialState::kWaiting);
  ExpectConsistent();
}

TEST_F(CoordinatorStorageTest, ReapExpiredLeases) {
  const int64_t study = NewStudy(3);
  Trial t = Ask();
  clock_.Advance(c_->options().lease_timeout + absl::Seconds(1));
  const std::string before = Served();
  faulty_->FailEvery(WriteKind::kUpdateTrial, DiskFull());
  EXPECT_EQ(c_->ReapExpiredLeases(), 0);  // nothing could be stored: nothing reaped
  ExpectUnchanged(before);
  faulty_->Clear();
  faulty_->FailEvery(WriteKind::kCreateTrial, DiskFull());  // the retry, in the same transaction
  EXPECT_EQ(c_->ReapExpiredLeases(), 0);
  ExpectUnchanged(before);
  faulty_->Clear();
  // Tried again at the next round, now that the store takes writes.
  EXPECT_EQ(c_->ReapExpiredLeases(), 1);
  auto s = c_->GetStudy(study);
  ASSERT_EQ(s->trials.size(), 2u);
  EXPECT_EQ(s->trials[0].state, TrialState::kFailed);
  EXPECT_NE(s->trials[0].reason.find("lease lost"), std::string::npos) << s->trials[0].reason;
  EXPECT_EQ(s->trials[1].state, TrialState::kWaiting);
  ExpectConsistent();
}

// A whole study run with the first write of every call refused (and the call then made again)
// ends as a run without faults does, consistent at every step.
TEST_F(CoordinatorStorageTest, AStudyRunThroughIntermittentFaultsEndsConsistent) {
  const int64_t study = NewStudy(3);
  int refused = 0;
  auto retrying = [&](auto call) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      faulty_->FailNthWrite(attempt == 0 ? 1 : 0, DiskFull());
      auto r = call();
      if (r.ok()) return r;
      ++refused;
      EXPECT_THAT(r, StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
      ExpectConsistent();
    }
    return call();
  };
  for (int i = 0; i < 3; ++i) {
    auto a = retrying([&] { return c_->AskTrial("w1", {"cnn"}, 0); });
    ASSERT_THAT(a, IsOk());
    ASSERT_TRUE(a->has_value());
    const int64_t id = (**a).trial.id;
    for (int step = 1; step <= 3; ++step) {
      ASSERT_THAT(retrying([&] { return Report(id, step, 0.5 + 0.1 * step + 0.01 * i); }), IsOk());
    }
    ASSERT_THAT(retrying([&] { return c_->CompleteTrial(id, {}); }), IsOk());
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(faulty_->failed(), 0);
  auto s = c_->GetStudy(study);
  ASSERT_THAT(s, IsOk());
  ASSERT_EQ(s->trials.size(), 3u);
  for (const Trial& t : s->trials) {
    EXPECT_EQ(t.state, TrialState::kCompleted);
    EXPECT_EQ(t.measurements.size(), 3u);
  }
  EXPECT_EQ(s->state, StudyState::kCompleted);
  ExpectConsistent();
}

}  // namespace
}  // namespace hpo::server
