#include "server/core/coordinator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <future>
#include <iostream>
#include <filesystem>
#include <set>

#include "server/storage/sqlite_storage.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;

using hpo::testing::FakeClock;

constexpr char kSpec[] = R"({
  "name": "unit", "task": {"type": "cnn", "dataset": "d", "max_epochs": 3},
  "parameters": [{"name": "learning_rate", "type": "float", "low": 0.001, "high": 0.1, "log": true}],
  "sampler": {"type": "random", "seed": 7},
  "pruner": {"type": "median", "startup_trials": 1},
  "max_trials": 3})";

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::filesystem::temp_directory_path() /
          ("hpo_coord_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db");
    Cleanup();
    Reopen();
  }
  void TearDown() override {
    c_.reset();
    Cleanup();
  }
  void Cleanup() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db_.string() + suffix);
  }
  void Reopen() {
    c_.reset();
    auto storage = OpenSqliteStorage(db_.string());
    ASSERT_THAT(storage, IsOk());
    auto c = Coordinator::Open(std::move(*storage), &clock_, CoordinatorOptions{});
    ASSERT_THAT(c, IsOk());
    c_ = std::move(*c);
  }
  Assignment Ask(const std::string& worker = "w1") {
    auto a = c_->AskTrial(worker, {"cnn"}, 0);
    EXPECT_THAT(a, IsOk());
    EXPECT_TRUE(a->has_value());
    return **a;
  }
  absl::StatusOr<Decision> Report(int64_t id, int step, double value) {
    return c_->Report(id, Measurement{step, value, {{"val_loss", 0.5}}, {}});
  }

  FakeClock clock_;
  std::filesystem::path db_;
  std::unique_ptr<Coordinator> c_;
};

TEST_F(CoordinatorTest, ListsTrialsAPageAtATime) {
  auto study = c_->CreateStudy(kSpec);
  ASSERT_THAT(study, IsOk());
  for (int i = 0; i < 3; ++i) Ask(absl::StrCat("w", i));
  auto page = c_->ListTrials(study->id, 1, 5);
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->total, 3);
  ASSERT_EQ(page->trials.size(), 2u);
  EXPECT_EQ(page->trials[0].number, 1);
  EXPECT_EQ(page->trials[1].number, 2);
  EXPECT_EQ(c_->ListTrials(study->id, 0, 1)->trials.size(), 1u);
  EXPECT_TRUE(c_->ListTrials(study->id, 3, 10)->trials.empty());
  EXPECT_TRUE(c_->ListTrials(study->id, 7, 10)->trials.empty());
  EXPECT_THAT(c_->ListTrials(study->id + 1, 0, 10), StatusIs(absl::StatusCode::kNotFound, "no study"));
}

TEST_F(CoordinatorTest, DeleteStudyForgetsItEverywhere) {
  auto doomed = c_->CreateStudy(kSpec);
  auto kept = c_->CreateStudy(kSpec);
  ASSERT_THAT(doomed, IsOk());
  auto a = c_->AskTrial("w1", {"cnn"}, doomed->id);
  ASSERT_TRUE(a.ok() && a->has_value());
  ASSERT_THAT(Report((*a)->trial.id, 1, 0.5), IsOk());
  ASSERT_THAT(c_->DeleteStudy(doomed->id), IsOk());
  EXPECT_THAT(c_->GetStudy(doomed->id), StatusIs(absl::StatusCode::kNotFound, "no study"));
  EXPECT_THAT(Report((*a)->trial.id, 2, 0.6), StatusIs(absl::StatusCode::kNotFound, "no trial"));
  EXPECT_THAT(c_->DeleteStudy(doomed->id), StatusIs(absl::StatusCode::kNotFound, "no study"));
  // Asks go to the other study only, and a restart does not bring it back.
  auto b = c_->AskTrial("w2", {"cnn"}, 0);
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->trial.study_id, kept->id);
  Reopen();
  ASSERT_EQ(c_->ListStudies().size(), 1u);
  EXPECT_EQ(c_->ListStudies()[0].id, kept->id);
}

TEST_F(CoordinatorTest, StudiesAndRunningTrialsAreBounded) {
  CoordinatorOptions options;
  options.max_studies = 2;
  options.max_running_trials = 2;
  c_.reset();
  auto storage = OpenSqliteStorage(db_.string());
  ASSERT_THAT(storage, IsOk());
  auto c = Coordinator::Open(std::move(*storage), &clock_, options);
  ASSERT_THAT(c, IsOk());
  c_ = std::move(*c);
  auto first = c_->CreateStudy(kSpec);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  EXPECT_THAT(c_->CreateStudy(kSpec), StatusIs(absl::StatusCode::kResourceExhausted, "--max_studies=2"));
  Assignment a = Ask("w1");
  Ask("w2");
  EXPECT_THAT(c_->AskTrial("w3", {"cnn"}, 0), StatusIs(absl::StatusCode::kResourceExhausted, "--max_running_trials=2"));
  // A trial that ends frees its place; a deleted study frees its own.
  ASSERT_THAT(Report(a.trial.id, 1, 0.5), IsOk());
  ASSERT_THAT(c_->CompleteTrial(a.trial.id, {}), IsOk());
  EXPECT_THAT(c_->AskTrial("w3", {"cnn"}, 0), IsOk());
  ASSERT_THAT(c_->DeleteStudy(first->id), IsOk());
  EXPECT_THAT(c_->CreateStudy(kSpec), IsOk());
}

TEST_F(CoordinatorTest, RunsAStudyToMaxTrialsAndKeepsTheBest) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  EXPECT_EQ(a.trial.number, 0);
  EXPECT_EQ(a.task.max_epochs, 3);
  EXPECT_EQ(a.trial.state, TrialState::kRunning);
  ASSERT_THAT(Report(a.trial.id, 1, 0.6), IsOk());
  ASSERT_THAT(Report(a.trial.id, 2, 0.8), IsOk());
  ASSERT_THAT(Report(a.trial.id, 3, 0.7), IsOk());
  auto done = c_->CompleteTrial(a.trial.id, {{"test_accuracy", 0.78}});
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(*done->value, 0.8);  // best over the epochs, not the last
  EXPECT_EQ(done->best_step, 2);

  Assignment b = Ask();
  ASSERT_THAT(Report(b.trial.id, 1, 0.9), IsOk());
  ASSERT_THAT(c_->CompleteTrial(b.trial.id, {}), IsOk());
  Assignment c = Ask();
  auto d = Report(c.trial.id, 1, 0.1);  // below the median of completed trials at step 1
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->action, Action::kPrune);
  EXPECT_FALSE(c_->AskTrial("w1", {"cnn"}, 0)->has_value());  // max_trials reached

  auto study = c_->GetStudy(1);
  ASSERT_THAT(study, IsOk());
  EXPECT_EQ(study->state, StudyState::kCompleted);
  EXPECT_EQ(study->trials[2].state, TrialState::kPruned);
  EXPECT_EQ(study->trials[2].measurements.size(), 1u);  // a pruned trial keeps its measurements
  auto best = c_->BestTrial(1);
  ASSERT_THAT(best, IsOk());
  EXPECT_EQ(best->number, 1);
  EXPECT_EQ(*best->value, 0.9);
}

TEST_F(CoordinatorTest, RefusesBadReportsWithClearStatuses) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  EXPECT_THAT(Report(999, 1, 0.5), StatusIs(absl::StatusCode::kNotFound, "no trial with id 999"));
  EXPECT_THAT(Report(a.trial.id, 1, std::nan("")), StatusIs(absl::StatusCode::kInvalidArgument, "finite"));
  EXPECT_THAT(Report(a.trial.id, 1, INFINITY), StatusIs(absl::StatusCode::kInvalidArgument, "finite"));
  ASSERT_THAT(Report(a.trial.id, 2, 0.5), IsOk());
  EXPECT_THAT(Report(a.trial.id, 1, 0.6), StatusIs(absl::StatusCode::kInvalidArgument, "steps must increase"));
  EXPECT_THAT(Report(a.trial.id, 2, 0.6), StatusIs(absl::StatusCode::kInvalidArgument, "steps must increase"));
  EXPECT_THAT(Report(a.trial.id, 2, 0.5), IsOk());  // a resend of the last report is answered again
  ASSERT_THAT(c_->CompleteTrial(a.trial.id, {}), IsOk());
  EXPECT_THAT(Report(a.trial.id, 3, 0.7), StatusIs(absl::StatusCode::kFailedPrecondition, "is COMPLETED"));
  EXPECT_EQ(c_->GetStudy(1)->trials[0].measurements.size(), 1u);  // nothing refused was stored
  EXPECT_THAT(c_->CompleteTrial(a.trial.id, {{"test_accuracy", NAN}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "finite"));
  Assignment b = Ask();
  EXPECT_THAT(c_->CompleteTrial(b.trial.id, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "report at least one step"));
  EXPECT_THAT(c_->AskTrial("w1", {"cnn"}, 42), StatusIs(absl::StatusCode::kNotFound, "no study with id 42"));
  EXPECT_THAT(c_->AskTrial("w1", {"external"}, 1), StatusIs(absl::StatusCode::kFailedPrecondition, "cannot run"));
  EXPECT_FALSE(c_->AskTrial("w1", {"external"}, 0)->has_value());  // trials only go to workers that can run them
}

TEST_F(CoordinatorTest, AWorkerThatGoesSilentLosesItsTrialWhichIsRetriedOnce) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask("dead-worker");
  ASSERT_THAT(Report(a.trial.id, 1, 0.5), IsOk());
  clock_.Advance(absl::Seconds(20));
  EXPECT_EQ(c_->ReapExpiredLeases(), 0);
  EXPECT_TRUE(c_->Heartbeat(a.trial.id, "dead-worker")->keep_running);  // renews to t+50s
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(c_->ReapExpiredLeases(), 0);
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(c_->ReapExpiredLeases(), 1);

  Study s = *c_->GetStudy(1);
  ASSERT_EQ(s.trials.size(), 2u);
  EXPECT_EQ(s.trials[0].state, TrialState::kFailed);
  EXPECT_NE(s.trials[0].reason.find("lease lost: worker dead-worker"), std::string::npos);
  EXPECT_TRUE(s.trials[0].retried);
  EXPECT_EQ(s.trials[1].state, TrialState::kWaiting);
  EXPECT_EQ(s.trials[1].retry_of, 0);
  EXPECT_EQ(s.trials[1].params, s.trials[0].params);
  // Late reports from the lost worker are refused, and it is told to stop.
  EXPECT_THAT(Report(a.trial.id, 2, 0.6), StatusIs(absl::StatusCode::kFailedPrecondition, "lease lost"));
  EXPECT_FALSE(c_->Heartbeat(a.trial.id, "dead-worker")->keep_running);

  Assignment retry = Ask("w2");
  EXPECT_EQ(retry.trial.number, 1);
  EXPECT_EQ(retry.trial.retry_of, 0);
  clock_.Advance(absl::Seconds(31));
  EXPECT_EQ(c_->ReapExpiredLeases(), 1);  // the retry fails too: no third attempt
  s = *c_->GetStudy(1);
  EXPECT_EQ(s.trials.size(), 2u);
  EXPECT_FALSE(s.trials[1].retried);
  // The failed original does not use a slot: 2 more trials reach max_trials = 3.
  for (int i = 0; i < 2; ++i) {
    Assignment t = Ask("w2");
    ASSERT_THAT(Report(t.trial.id, 1, 0.9), IsOk());
    ASSERT_THAT(c_->CompleteTrial(t.trial.id, {}), IsOk());
  }
  EXPECT_EQ(c_->GetStudy(1)->state, StudyState::kCompleted);
}

// A finished trial's details (final metrics, class report, each measurement's metrics) leave
// memory and are read back from storage for whoever asks for them; running trials keep theirs.
TEST_F(CoordinatorTest, FinishedTrialsKeepTheirDetailsInStorageOnly) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  ASSERT_THAT(c_->Report(a.trial.id, Measurement{1, 0.5, {{"train_loss", 0.9}, {"val_loss", 1.1}}, {}}), IsOk());
  ASSERT_THAT(c_->Report(a.trial.id, Measurement{2, 0.6, {{"train_loss", 0.7}}, {}}), IsOk());
  Assignment b = Ask();
  ASSERT_THAT(c_->Report(b.trial.id, Measurement{1, 0.4, {{"train_loss", 1.3}}, {}}), IsOk());
  auto done = c_->CompleteTrial(a.trial.id, {{"test_accuracy", 0.61}});
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->final_metrics.at("test_accuracy"), 0.61);  // the reply has them
  auto check = [&](const Trial& t) {
    EXPECT_EQ(t.final_metrics.at("test_accuracy"), 0.61);
    ASSERT_EQ(t.measurements.size(), 2u);
    EXPECT_EQ(t.measurements[0].metrics.at("val_loss"), 1.1);
    EXPECT_EQ(t.measurements[1].metrics.at("train_loss"), 0.7);
  };
  for (int restart = 0; restart < 2; ++restart) {
    SCOPED_TRACE(restart ? "after a restart" : "before a restart");
    Study plain = *c_->GetStudy(1);
    EXPECT_TRUE(plain.trials[0].final_metrics.empty());
    EXPECT_TRUE(plain.trials[0].measurements[0].metrics.empty());
    EXPECT_EQ(plain.trials[0].measurements[1].value, 0.6);  // values per step stay
    EXPECT_EQ(plain.trials[0].value, 0.6);
    EXPECT_EQ(plain.trials[1].measurements[0].metrics.at("train_loss"), 1.3);  // still running
    check(c_->GetStudyWithDetails(1)->trials[0]);
    check(c_->ListTrials(1, 0, 10)->trials[0]);
    check(*c_->BestTrial(1));
    check(*c_->CompleteTrial(a.trial.id, {}));  // idempotent: answered with the stored trial
    EXPECT_EQ(c_->ListTrials(1, 0, 10)->trials[1].measurements[0].metrics.at("train_loss"), 1.3);
    Reopen();
  }
}

TEST_F(CoordinatorTest, ARestartLosesNothingAcknowledgedAndRunningTrialsGoOn) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  ASSERT_THAT(Report(a.trial.id, 1, 0.5), IsOk());
  Assignment b = Ask();
  ASSERT_THAT(Report(b.trial.id, 1, 0.4), IsOk());
  ASSERT_THAT(c_->CompleteTrial(b.trial.id, {{"test_accuracy", 0.41}}), IsOk());
  Reopen();
  clock_.Advance(absl::Seconds(25));  // the restart gave running trials a fresh lease
  EXPECT_EQ(c_->ReapExpiredLeases(), 0);
  ASSERT_THAT(Report(a.trial.id, 2, 0.7), IsOk());
  ASSERT_THAT(c_->CompleteTrial(a.trial.id, {}), IsOk());
  Study s = *c_->GetStudyWithDetails(1);
  EXPECT_EQ(s.trials[1].final_metrics.at("test_accuracy"), 0.41);
  EXPECT_EQ(s.trials[0].measurements.size(), 2u);
  // Same seed, same trial number: the third trial's parameters do not depend on the restart.
  Assignment c = Ask();
  EXPECT_EQ(c.trial.number, 2);
  Study before = s;
  ASSERT_THAT(Report(c.trial.id, 1, 0.9), IsOk());
  ASSERT_THAT(c_->CompleteTrial(c.trial.id, {}), IsOk());
  Reopen();
  EXPECT_EQ(c_->GetStudy(1)->state, StudyState::kCompleted);
  EXPECT_EQ(c_->BestTrial(1)->number, 2);
}

TEST_F(CoordinatorTest, StoppingAStudyFailsRunningTrialsAndHandsOutNoMore) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  auto stopped = c_->StopStudy(1);
  ASSERT_THAT(stopped, IsOk());
  EXPECT_EQ(stopped->state, StudyState::kStopped);
  EXPECT_EQ(stopped->trials[0].state, TrialState::kFailed);
  EXPECT_FALSE(c_->Heartbeat(a.trial.id, "w1")->keep_running);
  EXPECT_FALSE(c_->AskTrial("w1", {"cnn"}, 0)->has_value());
  EXPECT_THAT(c_->StopStudy(5), StatusIs(absl::StatusCode::kNotFound, "no study with id 5"));
}

TEST_F(CoordinatorTest, SameSeedGivesTheSameTrialsInAnotherStudy) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  auto a = c_->AskTrial("w", {"cnn"}, 1);
  auto b = c_->AskTrial("w", {"cnn"}, 2);
  ASSERT_TRUE(a.ok() && b.ok() && a->has_value() && b->has_value());
  EXPECT_EQ((*a)->trial.params, (*b)->trial.params);
}

}  // namespace
}  // namespace hpo::server

namespace hpo::server {
namespace {

DataReport Data(std::vector<std::string> names) {
  DataReport d;
  d.format = "image_folder";
  d.class_names = std::move(names);
  d.train_images = 90;
  d.val_images = 30;
  d.channels = 1;
  d.height = d.width = 28;
  d.skipped_files = 1;
  d.skipped_examples = {"cat/readme.txt: not an image"};
  return d;
}

ClassReport Classes(int n) {
  ClassReport c;
  for (int a = 0; a < n; ++a) {
    c.train_count.push_back(30);
    c.val_count.push_back(10);
    c.train_recall.push_back(0.9);
    c.val_recall.push_back(0.8);
    for (int b = 0; b < n; ++b) c.val_confusion.push_back(a == b ? 8 : a == (b + 1) % n ? 2 : 0);
  }
  return c;
}

TEST_F(CoordinatorTest, StoresTheDataReportWithAMeasurementAndTheClassReportOnCompletion) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  EXPECT_EQ(a.task.val_examples, 0);  // not in the spec: the worker picks the default
  ASSERT_THAT(c_->Report(a.trial.id, Measurement{1, 0.5, {}, {}}, Data({"cat", "dog"})), IsOk());
  Reopen();  // stored with the measurement
  ASSERT_TRUE(c_->GetStudy(1)->trials[0].data.has_value());
  EXPECT_EQ(c_->GetStudy(1)->trials[0].data->class_names, (std::vector<std::string>{"cat", "dog"}));
  // A later report's data replaces it; a report without data leaves it.
  ASSERT_THAT(c_->Report(a.trial.id, Measurement{2, 0.6, {}, {}}, Data({"cat", "dog", "bird"})), IsOk());
  ASSERT_THAT(Report(a.trial.id, 3, 0.7), IsOk());
  EXPECT_EQ(c_->GetStudy(1)->trials[0].data->class_names.size(), 3u);
  auto done = c_->CompleteTrial(a.trial.id, {{"test_accuracy", 0.7}}, Classes(3));
  ASSERT_THAT(done, IsOk());
  ASSERT_TRUE(done->classes.has_value());
  EXPECT_TRUE(*done->classes == Classes(3));
  Reopen();
  auto best = c_->BestTrial(1);
  ASSERT_THAT(best, IsOk());
  ASSERT_TRUE(best->data.has_value() && best->classes.has_value());
  EXPECT_TRUE(*best->data == Data({"cat", "dog", "bird"}));
  EXPECT_TRUE(*best->classes == Classes(3));
  EXPECT_EQ(best->final_metrics.at("test_accuracy"), 0.7);
  // A trial completed without classes (or with an empty report) has none.
  Assignment b = Ask();
  ASSERT_THAT(Report(b.trial.id, 1, 0.9), IsOk());  // above the median: not pruned
  EXPECT_FALSE(c_->GetStudy(1)->trials[1].data.has_value());
  // A resend of the last measurement (a worker retrying after a lost answer) may carry the data.
  ASSERT_THAT(c_->Report(b.trial.id, Measurement{1, 0.9, {}, {}}, Data({"cat"})), IsOk());
  EXPECT_EQ(c_->GetStudy(1)->trials[1].measurements.size(), 1u);
  ASSERT_TRUE(c_->GetStudy(1)->trials[1].data.has_value());
  ASSERT_THAT(c_->CompleteTrial(b.trial.id, {}, ClassReport{}), IsOk());
  EXPECT_FALSE(c_->GetStudy(1)->trials[1].classes.has_value());
  Reopen();
  EXPECT_EQ(c_->GetStudyWithDetails(1)->trials[1].data->class_names, std::vector<std::string>{"cat"});
  EXPECT_FALSE(c_->GetStudy(1)->trials[1].data.has_value());  // finished: in storage only
}

TEST_F(CoordinatorTest, RefusesBadDataReportsAndChangesNothing) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  std::vector<std::string> many(257, "c");
  for (size_t i = 0; i < many.size(); ++i) many[i] += std::to_string(i);
  struct Bad {
    std::string what;
    DataReport data;
    const char* message;
  };
  std::vector<Bad> cases = {
      {"257 classes", Data(many), "at most 256 classes"},
      {"empty name", Data({"cat", ""}), "class_names[1] must be 1 to 256 bytes of UTF-8 without control characters"},
      {"long name", Data({std::string(257, 'x')}), "class_names[0] must be 1 to 256 bytes"},
      {"control character", Data({"cat", "d\tog"}), "without control characters"},
      {"not UTF-8", Data({"caf\xe9"}), "not UTF-8"},
      {"truncated UTF-8", Data({"caf\xc3"}), "not UTF-8"},
      {"overlong UTF-8", Data({"\xc0\xaf"}), "not UTF-8"},
  };
  DataReport d = Data({"cat"});
  d.skipped_examples.assign(11, "x: not an image");
  cases.push_back({"11 examples", d, "11 skipped_examples; send at most 10"});
  d = Data({"cat"});
  d.skipped_examples = {std::string(1025, 'x')};
  cases.push_back({"long example", d, "skipped_examples[0] must be at most 1024 bytes"});
  d = Data({"cat"});
  d.train_images = -1;
  cases.push_back({"negative count", d, "train_images is -1; it must be >= 0"});
  d = Data({"cat"});
  d.skipped_files = -3;
  cases.push_back({"negative skipped", d, "skipped_files is -3"});
  for (const Bad& c : cases) {
    EXPECT_THAT(c_->Report(a.trial.id, Measurement{1, 0.5, {}, {}}, c.data),
                StatusIs(absl::StatusCode::kInvalidArgument, c.message))
        << c.what;
  }
  Trial t = c_->GetStudy(1)->trials[0];
  EXPECT_TRUE(t.measurements.empty());  // the measurement that came with bad data was not stored
  EXPECT_FALSE(t.data.has_value());
  EXPECT_EQ(t.state, TrialState::kRunning);
  // Longest accepted: 256 names of 256 bytes (multi-byte UTF-8 too), 10 examples of 1024 bytes.
  std::vector<std::string> widest(256);
  for (size_t i = 0; i < widest.size(); ++i) {
    widest[i] = std::to_string(i) + "\u00e9";
    widest[i] += std::string(256 - widest[i].size(), 'x');
  }
  d = Data(widest);
  d.skipped_examples.assign(10, std::string(1024, 'y'));
  ASSERT_THAT(c_->Report(a.trial.id, Measurement{1, 0.5, {}, {}}, d), IsOk());
  EXPECT_EQ(c_->GetStudy(1)->trials[0].data->class_names.size(), 256u);
}

TEST_F(CoordinatorTest, RefusesBadClassReportsAndChangesNothing) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  ASSERT_THAT(c_->Report(a.trial.id, Measurement{1, 0.5, {}, {}}, Data({"cat", "dog", "bird"})), IsOk());
  struct Bad {
    std::string what;
    ClassReport classes;
    const char* message;
  };
  std::vector<Bad> cases;
  ClassReport c = Classes(3);
  c.val_count.pop_back();
  cases.push_back({"short array", c, "val_count has 2 entries but there are 3 classes"});
  c = Classes(3);
  c.val_confusion.pop_back();
  cases.push_back({"confusion not n x n", c, "val_confusion has 8 entries but there are 3 classes (it must be n x n)"});
  c = ClassReport{};
  c.val_confusion = {1, 2, 3};
  cases.push_back({"confusion alone, not square", c, "val_confusion has 3 entries"});
  c = Classes(3);
  c.val_recall[1] = 1.5;
  cases.push_back({"recall above 1", c, "recalls must be finite, in [0, 1]"});
  c = Classes(3);
  c.train_recall[0] = NAN;
  cases.push_back({"NaN recall", c, "recalls must be finite"});
  c = Classes(3);
  c.val_recall[2] = -0.1;
  cases.push_back({"negative recall", c, "recalls must be finite, in [0, 1]"});
  c = Classes(3);
  c.train_count[0] = -5;
  cases.push_back({"negative count", c, "counts must be >= 0"});
  c = Classes(3);
  c.val_confusion[4] = -1;
  cases.push_back({"negative cell", c, "counts must be >= 0"});
  cases.push_back({"257 classes", Classes(257), "at most 256"});
  cases.push_back({"other number of classes than named", Classes(4),
                   "4 classes, but the trial's data report names 3"});
  for (const Bad& b : cases) {
    EXPECT_THAT(c_->CompleteTrial(a.trial.id, {{"test_accuracy", 0.5}}, b.classes),
                StatusIs(absl::StatusCode::kInvalidArgument, b.message))
        << b.what;
  }
  Trial t = c_->GetStudy(1)->trials[0];
  EXPECT_EQ(t.state, TrialState::kRunning);  // still running: the worker may complete it properly
  EXPECT_FALSE(t.classes.has_value());
  EXPECT_TRUE(t.final_metrics.empty());
  // Partial reports are fine: any array may be left out.
  c = Classes(3);
  c.train_count.clear();
  c.val_confusion.clear();
  ASSERT_THAT(c_->CompleteTrial(a.trial.id, {}, c), IsOk());
  EXPECT_TRUE(*c_->GetStudyWithDetails(1)->trials[0].classes == c);
  // Without names, any number of classes up to 256 goes.
  Assignment b = Ask();
  ASSERT_THAT(Report(b.trial.id, 1, 0.5), IsOk());
  ASSERT_THAT(c_->CompleteTrial(b.trial.id, {}, Classes(256)), IsOk());
}

TEST_F(CoordinatorTest, EnqueuedTrialsGoFirstAndPartialOnesAreCompleted) {
  ASSERT_THAT(c_->CreateStudy(R"({
    "name": "enq", "task": {"type": "external"}, "max_trials": 3,
    "parameters": [{"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]},
                   {"name": "momentum", "type": "float", "low": 0, "high": 0.9,
                    "condition": {"parent": "opt", "values": ["sgd"]}},
                   {"name": "x", "type": "int", "low": 1, "high": 5}]})"), IsOk());
  auto queued = c_->EnqueueTrial(1, R"({"opt": "sgd", "momentum": 0.5})");
  ASSERT_THAT(queued, IsOk());
  EXPECT_EQ(queued->state, TrialState::kWaiting);
  EXPECT_THAT(c_->EnqueueTrial(1, R"({"opt": "adam", "momentum": 0.5})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "\"momentum\" is inactive"));
  EXPECT_THAT(c_->EnqueueTrial(1, R"({"x": 9})"), StatusIs(absl::StatusCode::kInvalidArgument, "not one of its values"));
  EXPECT_THAT(c_->EnqueueTrial(1, R"({"y": 1})"), StatusIs(absl::StatusCode::kInvalidArgument, "\"y\" is not a parameter"));
  EXPECT_THAT(c_->EnqueueTrial(1, "[1]"), StatusIs(absl::StatusCode::kInvalidArgument, "JSON object"));
  auto a = c_->AskTrial("w", {"external"}, 0);
  ASSERT_TRUE(a.ok() && a->has_value());
  const Trial& t = (*a)->trial;
  EXPECT_EQ(t.number, 0);
  EXPECT_EQ(t.params.at("opt"), ParamValue(std::string("sgd")));
  EXPECT_EQ(t.params.at("momentum"), ParamValue(0.5));
  ASSERT_EQ(t.params.count("x"), 1u);  // sampled when handed out
  Reopen();  // the filled-in parameters were stored
  EXPECT_EQ(c_->GetStudy(1)->trials[0].params, t.params);
  ASSERT_THAT(c_->EnqueueTrial(1, R"({"opt": "adam"})"), IsOk());
  ASSERT_THAT(c_->EnqueueTrial(1, R"({"opt": "adam", "x": 2})"), IsOk());
  EXPECT_THAT(c_->EnqueueTrial(1, R"({"opt": "adam"})"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "already has its 3 trials"));
}

TEST_F(CoordinatorTest, AGridStudyEndsWhenEveryPointHasRun) {
  ASSERT_THAT(c_->CreateStudy(R"({
    "name": "grid", "task": {"type": "external"}, "max_trials": 100, "sampler": {"type": "grid"},
    "parameters": [{"name": "a", "type": "categorical", "choices": [1, 2, 3]}]})"), IsOk());
  std::set<std::string> seen;
  for (int i = 0; i < 3; ++i) {
    auto a = c_->AskTrial("w", {"external"}, 0);
    ASSERT_TRUE(a.ok() && a->has_value()) << i;
    seen.insert(ToString((*a)->trial.params.at("a")));
    ASSERT_THAT(Report((*a)->trial.id, 0, 1.0), IsOk());
    ASSERT_THAT(c_->CompleteTrial((*a)->trial.id, {}), IsOk());
  }
  EXPECT_EQ(seen.size(), 3u);
  auto none = c_->AskTrial("w", {"external"}, 0);
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(c_->GetStudy(1)->state, StudyState::kCompleted);
}

constexpr char kTimedSpec[] = R"({
  "name": "timed", "task": {"type": "external"}, "max_trials": 100, "max_minutes": 10,
  "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1}]})";

TEST_F(CoordinatorTest, ATimeBudgetStartsNoTrialAfterItAndEndsTheStudyWhenTheRunningOnesFinish) {
  ASSERT_THAT(c_->CreateStudy(kTimedSpec), IsOk());
  clock_.Advance(absl::Hours(2));  // the budget counts from the first trial's start, not the creation
  EXPECT_EQ(TimeBudgetEnd(c_->GetStudySummary(1)->study.spec, c_->GetStudySummary(1)->first_started),
            absl::InfiniteFuture());
  const absl::Time start = clock_.Now();
  auto ask = [&]() -> std::optional<Assignment> {
    auto a = c_->AskTrial("w", {"external"}, 0);
    EXPECT_THAT(a, IsOk());
    return a.ok() ? *a : std::nullopt;
  };
  std::optional<Assignment> a = ask();
  ASSERT_TRUE(a.has_value());
  clock_.Advance(absl::Minutes(9));
  std::optional<Assignment> b = ask();  // 9 minutes in: still starts
  ASSERT_TRUE(b.has_value());
  ASSERT_THAT(c_->EnqueueTrial(1, R"({"x": 0.5})"), IsOk());
  EXPECT_EQ(TimeBudgetEnd(c_->GetStudySummary(1)->study.spec, c_->GetStudySummary(1)->first_started),
            start + absl::Minutes(10));
  EXPECT_EQ(c_->EndTimeBudgets(), 0);
  EXPECT_EQ(c_->GetStudy(1)->trials[2].state, TrialState::kWaiting);

  clock_.Advance(absl::Minutes(1));  // exactly at the end: nothing starts, not even the queued trial
  EXPECT_FALSE(ask().has_value());
  EXPECT_THAT(c_->EnqueueTrial(1, R"({"x": 0.25})"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "ran out of its time budget (max_minutes 10)"));
  // Trials running at the end go on: they report, are judged and complete.
  ASSERT_THAT(Report(a->trial.id, 1, 0.7), IsOk());
  ASSERT_THAT(c_->CompleteTrial(a->trial.id, {}), IsOk());
  EXPECT_EQ(c_->EndTimeBudgets(), 0);  // b still runs
  Study s = *c_->GetStudy(1);
  EXPECT_EQ(s.state, StudyState::kRunning);
  EXPECT_EQ(s.trials[2].state, TrialState::kFailed);
  EXPECT_NE(s.trials[2].reason.find("not started: the study ran out of its time budget"), std::string::npos)
      << s.trials[2].reason;

  // A trial lost after the end is not handed out again; the study completes with it.
  ASSERT_THAT(Report(b->trial.id, 1, 0.8), IsOk());
  clock_.Advance(absl::Seconds(31));
  EXPECT_EQ(c_->ReapExpiredLeases(), 1);
  s = *c_->GetStudy(1);
  EXPECT_EQ(s.trials.size(), 3u);
  EXPECT_FALSE(s.trials[1].retried);
  EXPECT_EQ(s.state, StudyState::kCompleted);
  Reopen();  // stored so
  EXPECT_EQ(c_->GetStudy(1)->state, StudyState::kCompleted);
  EXPECT_EQ(c_->BestTrial(1)->number, 0);
}

TEST_F(CoordinatorTest, ATimeBudgetSurvivesARestartAndEndsAStudyWithNothingRunning) {
  ASSERT_THAT(c_->CreateStudy(kTimedSpec), IsOk());
  auto a = c_->AskTrial("w", {"external"}, 0);
  ASSERT_TRUE(a.ok() && a->has_value());
  ASSERT_THAT(Report((*a)->trial.id, 1, 0.5), IsOk());
  ASSERT_THAT(c_->CompleteTrial((*a)->trial.id, {}), IsOk());
  clock_.Advance(absl::Minutes(6));
  Reopen();  // the start of the budget is the first trial's stored start
  clock_.Advance(absl::Minutes(3));
  EXPECT_EQ(c_->EndTimeBudgets(), 0);
  EXPECT_EQ(c_->GetStudy(1)->state, StudyState::kRunning);
  clock_.Advance(absl::Minutes(2));
  EXPECT_FALSE(c_->AskTrial("w", {"external"}, 0)->has_value());
  // Nothing runs and nothing can start: the periodic pass completes it.
  EXPECT_EQ(c_->EndTimeBudgets(), 1);
  EXPECT_EQ(c_->GetStudy(1)->state, StudyState::kCompleted);
  EXPECT_EQ(c_->EndTimeBudgets(), 0);
  Reopen();
  EXPECT_EQ(c_->GetStudy(1)->state, StudyState::kCompleted);

  // A server that starts after a study's budget ran out, with nothing of it left running, completes it.
  ASSERT_THAT(c_->CreateStudy(kTimedSpec), IsOk());
  a = c_->AskTrial("w", {"external"}, 2);
  ASSERT_TRUE(a.ok() && a->has_value());
  ASSERT_THAT(c_->FailTrial((*a)->trial.id, "crashed", /*retry=*/false), IsOk());
  clock_.Advance(absl::Minutes(10));
  EXPECT_EQ(c_->GetStudy(2)->state, StudyState::kRunning);
  Reopen();
  EXPECT_EQ(c_->GetStudy(2)->state, StudyState::kCompleted);
}

// A storage that loads a retry_of cycle (trial 0 <-> trial 1, trial 1 RUNNING) as no SQLite
// storage would any longer: the coordinator must not trust it to walk the chain.
class CyclicStorage final : public Storage {
 public:
  explicit CyclicStorage(std::unique_ptr<Storage> inner) : inner_(std::move(inner)) {}
  absl::StatusOr<std::vector<Study>> LoadAll() override {
    auto studies = inner_->LoadAll();
    if (studies.ok() && !studies->empty() && studies->front().trials.size() >= 2) {
      studies->front().trials[0].retry_of = 1;
      studies->front().trials[1].retry_of = 0;
    }
    return studies;
  }
  absl::StatusOr<int64_t> CreateStudy(const Study& s) override { return inner_->CreateStudy(s); }
  absl::Status UpdateStudyState(int64_t id, StudyState st) override { return inner_->UpdateStudyState(id, st); }
  absl::Status DeleteStudy(int64_t id) override { return inner_->DeleteStudy(id); }
  absl::StatusOr<int64_t> CreateTrial(const Trial& t) override { return inner_->CreateTrial(t); }
  absl::Status UpdateTrial(const Trial& t, const Measurement* m) override { return inner_->UpdateTrial(t, m); }
  absl::Status Transaction(const std::function<absl::Status()>& body) override { return inner_->Transaction(body); }
  absl::StatusOr<std::vector<TrialDetails>> LoadTrialDetails(int64_t id, int first, int limit) override {
    return inner_->LoadTrialDetails(id, first, limit);
  }

 private:
  std::unique_ptr<Storage> inner_;
};

TEST_F(CoordinatorTest, TheLeaseReaperEndsEvenOnARetryOfCycle) {
  ASSERT_THAT(c_->CreateStudy(kSpec), IsOk());
  Assignment a = Ask();
  ASSERT_THAT(c_->FailTrial(a.trial.id, "crash", /*retry=*/true), IsOk());
  Assignment b = Ask();
  ASSERT_EQ(b.trial.number, 1);
  c_.reset();
  auto storage = OpenSqliteStorage(db_.string());
  ASSERT_THAT(storage, IsOk());
  auto c = Coordinator::Open(std::make_unique<CyclicStorage>(std::move(*storage)), &clock_, CoordinatorOptions{});
  ASSERT_THAT(c, IsOk());
  c_ = std::move(*c);
  clock_.Advance(absl::Minutes(5));
  // Before: RetryDepth followed 1 -> 0 -> 1 -> ... forever, holding the coordinator's lock.
  auto reaped = std::async(std::launch::async, [&] { return c_->ReapExpiredLeases(); });
  if (reaped.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    std::cerr << "ReapExpiredLeases is still running after 10 s: a retry_of cycle\n";
    std::_Exit(1);
  }
  EXPECT_EQ(reaped.get(), 1);
  EXPECT_EQ(c_->GetStudy(1)->trials[1].state, TrialState::kFailed);
}

}  // namespace
}  // namespace hpo::server
