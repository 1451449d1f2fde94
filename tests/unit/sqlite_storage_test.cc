#include "server/storage/sqlite_storage.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;

class SqliteStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hpo_sqlite_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "hpo.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static Study NewStudy() {
    Study s;
    s.spec.name = "study-a";
    s.spec_json = R"({"name": "study-a"})";
    s.seed = 0xFEEDFACECAFEBEEFULL;  // above INT64_MAX: must survive the signed column
    s.created = absl::FromUnixMillis(1700000000000);
    return s;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(SqliteStorageTest, EverythingWrittenIsReadBackAfterReopen) {
  int64_t study_id = 0, trial_id = 0;
  {
    auto st = OpenSqliteStorage(path_);
    ASSERT_THAT(st, IsOk());
    auto& storage = **st;
    ASSERT_THAT(storage.CreateStudy(NewStudy()), IsOk());
    study_id = 1;
    Trial t;
    t.study_id = study_id;
    t.number = 0;
    t.state = TrialState::kRunning;
    t.params = {{"learning_rate", 0.001}, {"filters", int64_t{32}}, {"optimizer", std::string("adam")},
                {"batch_norm", true}, {"weight_decay", 0.0}};
    t.worker = "host:1";
    t.created = t.started = absl::FromUnixMillis(1700000001000);
    auto id = storage.CreateTrial(t);
    ASSERT_THAT(id, IsOk());
    trial_id = t.id = *id;
    Measurement m{1, 0.75, {{"val_loss", 0.6}, {"train_accuracy", 0.8}}, absl::FromUnixMillis(1700000002000)};
    t.measurements.push_back(m);
    t.value = 0.75;
    t.best_step = 1;
    ASSERT_THAT(storage.UpdateTrial(t, &m), IsOk());
    Measurement m2{2, 0.8, {}, absl::FromUnixMillis(1700000003000)};
    t.state = TrialState::kPruned;
    t.reason = "median rule";
    t.value = 0.8;
    t.best_step = 2;
    t.finished = m2.time;
    ASSERT_THAT(storage.UpdateTrial(t, &m2), IsOk());
    ASSERT_THAT(storage.UpdateStudyState(study_id, StudyState::kCompleted), IsOk());
  }
  auto st = OpenSqliteStorage(path_);
  ASSERT_THAT(st, IsOk());
  auto studies = (*st)->LoadAll();
  ASSERT_THAT(studies, IsOk());
  ASSERT_EQ(studies->size(), 1u);
  const Study& s = studies->front();
  EXPECT_EQ(s.id, study_id);
  EXPECT_EQ(s.seed, 0xFEEDFACECAFEBEEFULL);
  EXPECT_EQ(s.state, StudyState::kCompleted);
  EXPECT_EQ(s.spec_json, R"({"name": "study-a"})");
  ASSERT_EQ(s.trials.size(), 1u);
  const Trial& t = s.trials[0];
  EXPECT_EQ(t.id, trial_id);
  EXPECT_EQ(t.state, TrialState::kPruned);
  EXPECT_EQ(t.reason, "median rule");
  EXPECT_EQ(t.params.at("learning_rate"), ParamValue(0.001));
  EXPECT_EQ(t.params.at("filters"), ParamValue(int64_t{32}));
  EXPECT_EQ(t.params.at("optimizer"), ParamValue(std::string("adam")));
  EXPECT_EQ(t.params.at("batch_norm"), ParamValue(true));
  EXPECT_EQ(t.params.at("weight_decay"), ParamValue(0.0));  // stays a float
  ASSERT_EQ(t.measurements.size(), 2u);
  EXPECT_EQ(t.measurements[0].metrics.at("val_loss"), 0.6);
  EXPECT_EQ(t.measurements[1].value, 0.8);
  EXPECT_EQ(*t.value, 0.8);
  EXPECT_EQ(t.best_step, 2);
  EXPECT_EQ(t.worker, "host:1");
  EXPECT_EQ(t.finished, absl::FromUnixMillis(1700000003000));
}

TEST_F(SqliteStorageTest, AFailedTransactionLeavesNothingBehind) {
  auto st = OpenSqliteStorage(path_);
  ASSERT_THAT(st, IsOk());
  auto& storage = **st;
  ASSERT_THAT(storage.CreateStudy(NewStudy()), IsOk());
  absl::Status s = storage.Transaction([&]() -> absl::Status {
    Trial t;
    t.study_id = 1;
    if (auto id = storage.CreateTrial(t); !id.ok()) return id.status();
    return absl::AbortedError("changed my mind");
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted, "changed my mind"));
  EXPECT_TRUE((*storage.LoadAll())[0].trials.empty());
  // A duplicate (study, number) is refused by the schema, not silently kept.
  Trial t;
  t.study_id = 1;
  ASSERT_THAT(storage.CreateTrial(t), IsOk());
  EXPECT_FALSE(storage.CreateTrial(t).ok());
}

TEST_F(SqliteStorageTest, ASecondProcessCannotOpenTheSameFile) {
  auto first = OpenSqliteStorage(path_);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(OpenSqliteStorage(path_), StatusIs(absl::StatusCode::kFailedPrecondition, "another hpo-server"));
}

TEST_F(SqliteStorageTest, WorksInMemory) {
  auto st = OpenSqliteStorage(":memory:");
  ASSERT_THAT(st, IsOk());
  ASSERT_THAT((*st)->CreateStudy(NewStudy()), IsOk());
  EXPECT_EQ((*st)->LoadAll()->size(), 1u);
}

}  // namespace
}  // namespace hpo::server
