#include "server/storage/sqlite_storage.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

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

DataReport SomeData() {
  DataReport d;
  d.format = "image_folder";
  d.class_names = {"cat", "dog", "T-shirt/top", "\u00e9t\u00e9"};  // any UTF-8 name
  d.train_images = 800;
  d.val_images = 200;
  d.channels = 3;
  d.height = 64;
  d.width = 48;
  d.skipped_files = 2;
  d.skipped_examples = {"cat/notes.txt: not an image", "dog/x.jpg: truncated JPEG"};
  return d;
}

ClassReport SomeClasses() {
  ClassReport c;
  c.train_count = {200, 200, 300, 100};
  c.val_count = {50, 50, 75, 25};
  c.train_recall = {0.9, 0.8, 1.0, 0.25};
  c.val_recall = {0.88, 0.7, 0.96, 0.0};
  c.val_confusion = {44, 6, 0, 0, 15, 35, 0, 0, 3, 0, 72, 0, 25, 0, 0, 0};
  return c;
}

TEST_F(SqliteStorageTest, DataAndClassReportsAreReadBackAfterReopen) {
  {
    auto st = OpenSqliteStorage(path_);
    ASSERT_THAT(st, IsOk());
    auto& storage = **st;
    ASSERT_THAT(storage.CreateStudy(NewStudy()), IsOk());
    for (int n = 0; n < 2; ++n) {
      Trial t;
      t.study_id = 1;
      t.number = n;
      t.state = TrialState::kRunning;
      t.created = absl::FromUnixMillis(1700000001000);
      auto id = storage.CreateTrial(t);
      ASSERT_THAT(id, IsOk());
      t.id = *id;
      if (n == 1) continue;  // trial 1 never reports: no data, no classes
      Measurement m{1, 0.5, {}, absl::FromUnixMillis(1700000002000)};
      t.measurements.push_back(m);
      t.data = SomeData();
      t.data->skipped_files = 99;  // replaced below
      ASSERT_THAT(storage.UpdateTrial(t, &m), IsOk());
      t.data = SomeData();
      t.state = TrialState::kCompleted;
      t.classes = SomeClasses();
      ASSERT_THAT(storage.UpdateTrial(t, nullptr), IsOk());
    }
  }
  auto st = OpenSqliteStorage(path_);
  ASSERT_THAT(st, IsOk());
  auto studies = (*st)->LoadAll();
  ASSERT_THAT(studies, IsOk());
  ASSERT_EQ(studies->at(0).trials.size(), 2u);
  const Trial& t = studies->at(0).trials[0];
  ASSERT_TRUE(t.data.has_value());
  EXPECT_TRUE(*t.data == SomeData());
  EXPECT_EQ(t.data->class_names[3], "\u00e9t\u00e9");
  EXPECT_EQ(t.data->skipped_files, 2);
  ASSERT_TRUE(t.classes.has_value());
  EXPECT_TRUE(*t.classes == SomeClasses());
  EXPECT_EQ(t.classes->val_recall[1], 0.7);
  EXPECT_EQ(t.classes->val_confusion[4], 15);
  EXPECT_FALSE(studies->at(0).trials[1].data.has_value());
  EXPECT_FALSE(studies->at(0).trials[1].classes.has_value());
}

// The schema as hpo-server wrote it before data and class reports existed (user_version 1).
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE studies(id INTEGER PRIMARY KEY, name TEXT NOT NULL, spec_json TEXT NOT NULL, state TEXT NOT NULL,
  seed INTEGER NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE trials(id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies(id),
  number INTEGER NOT NULL, state TEXT NOT NULL, params_json TEXT NOT NULL, value REAL,
  best_step INTEGER NOT NULL DEFAULT -1, final_metrics_json TEXT NOT NULL DEFAULT '{}',
  reason TEXT NOT NULL DEFAULT '', worker TEXT NOT NULL DEFAULT '', retry_of INTEGER NOT NULL DEFAULT -1,
  retried INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, started_ms INTEGER, finished_ms INTEGER,
  UNIQUE(study_id, number));
CREATE TABLE measurements(trial_id INTEGER NOT NULL REFERENCES trials(id), step INTEGER NOT NULL,
  value REAL NOT NULL, metrics_json TEXT NOT NULL DEFAULT '{}', time_ms INTEGER NOT NULL,
  PRIMARY KEY(trial_id, step));
INSERT INTO studies VALUES(1, 'old', '{"name": "old"}', 'COMPLETED', 5, 1700000000000);
INSERT INTO trials(id, study_id, number, state, params_json, value, best_step, final_metrics_json, created_ms,
  started_ms, finished_ms) VALUES(1, 1, 0, 'COMPLETED', '{"x": 1}', 0.9, 1, '{"test_accuracy": 0.88}',
  1700000000000, 1700000000000, 1700000001000);
INSERT INTO measurements VALUES(1, 1, 0.9, '{}', 1700000001000);
PRAGMA user_version=1;
)sql";

int64_t UserVersion(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr);
  int64_t v = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return v;
}

TEST_F(SqliteStorageTest, ADatabaseOfTheOldSchemaIsMigratedAndKeepsItsTrials) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, kSchemaV1, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_close(db);
  }
  ASSERT_EQ(UserVersion(path_), 1);
  {
    auto st = OpenSqliteStorage(path_);
    ASSERT_THAT(st, IsOk());
    auto studies = (*st)->LoadAll();
    ASSERT_THAT(studies, IsOk());
    ASSERT_EQ(studies->size(), 1u);
    ASSERT_EQ(studies->at(0).trials.size(), 1u);
    Trial t = studies->at(0).trials[0];
    EXPECT_EQ(t.final_metrics.at("test_accuracy"), 0.88);
    EXPECT_EQ(t.measurements.size(), 1u);
    EXPECT_FALSE(t.data.has_value());  // the old rows have none
    EXPECT_FALSE(t.classes.has_value());
    t.data = SomeData();  // and the new columns take them
    t.classes = SomeClasses();
    ASSERT_THAT((*st)->UpdateTrial(t, nullptr), IsOk());
  }
  EXPECT_EQ(UserVersion(path_), 2);
  auto st = OpenSqliteStorage(path_);
  ASSERT_THAT(st, IsOk());
  const Trial t = (*st)->LoadAll()->at(0).trials[0];
  ASSERT_TRUE(t.data.has_value() && t.classes.has_value());
  EXPECT_TRUE(*t.data == SomeData());
  EXPECT_TRUE(*t.classes == SomeClasses());
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
