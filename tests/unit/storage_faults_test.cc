// Storage that fails loudly and recovers (issue 13): garbage and damaged files, corrupt rows,
// retry_of cycles, the database file or its WAL deleted or replaced while serving, a full disk.
// Real SQLite files in a temporary folder; the start-up cases also through a real hpo-server.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>
#include <thread>

#include "server/core/coordinator.h"
#include "server/storage/sqlite_storage.h"
#include "tests/testing/process.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using Level = SqliteStorageOptions::Level;

using hpo::testing::FakeClock;

constexpr char kSpec[] = R"({
  "name": "faults", "task": {"type": "cnn", "dataset": "d", "max_epochs": 10000},
  "parameters": [{"name": "learning_rate", "type": "float", "low": 0.001, "high": 0.1, "log": true}],
  "sampler": {"type": "random", "seed": 7}, "pruner": {"type": "none"},
  "max_trials": 20, "max_retries": 1})";

// Runs statements on a database file that no storage holds open.
void RawSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  const std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class StorageFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hpo_faults_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "hpo.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  SqliteStorageOptions Logging() {
    SqliteStorageOptions o;
    o.log = [this](Level level, const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back({level, line});
    };
    return o;
  }
  std::string LogText() {
    std::lock_guard<std::mutex> lock(log_mu_);
    std::string out;
    for (const auto& [level, line] : log_) out += line + "\n";
    return out;
  }
  int LogCount(Level level) {
    std::lock_guard<std::mutex> lock(log_mu_);
    int n = 0;
    for (const auto& entry : log_) n += entry.first == level;
    return n;
  }

  std::unique_ptr<Coordinator> OpenCoordinator(CoordinatorOptions options = {}) {
    auto storage = OpenSqliteStorage(path_, Logging());
    EXPECT_THAT(storage, IsOk());
    if (!storage.ok()) return nullptr;
    auto c = Coordinator::Open(std::move(*storage), &clock_, options);
    EXPECT_THAT(c, IsOk());
    return c.ok() ? std::move(*c) : nullptr;
  }

  // A study with `n` WAITING trials (queued with EnqueueTrial), stored and closed.
  void MakeStudyWithTrials(int n) {
    auto c = OpenCoordinator();
    ASSERT_NE(c, nullptr);
    ASSERT_THAT(c->CreateStudy(kSpec), IsOk());
    for (int i = 0; i < n; ++i) {
      ASSERT_THAT(c->EnqueueTrial(1, absl::StrCat(R"({"learning_rate": )", 0.01 + 0.001 * i, "}")), IsOk());
    }
  }

  FakeClock clock_;
  std::filesystem::path dir_;
  std::string path_;
  std::mutex log_mu_;
  std::vector<std::pair<Level, std::string>> log_;
};

// --- Opening -----------------------------------------------------------------------------

TEST_F(StorageFaultsTest, AGarbageFileIsNotASqliteFileNotALockedOne) {
  std::ofstream(path_) << "these are my notes, not a database\n" << std::string(5000, 'x');
  auto st = OpenSqliteStorage(path_);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition, "is not an hpo database: not a SQLite file"));
  EXPECT_THAT(std::string(st.status().message()), Not(HasSubstr("another hpo-server")));
  EXPECT_THAT(std::string(st.status().message()), HasSubstr(path_));
  // Short garbage too.
  std::ofstream(path_, std::ios::trunc) << "x";
  EXPECT_THAT(OpenSqliteStorage(path_), StatusIs(absl::StatusCode::kFailedPrecondition, "not a SQLite file"));
}

TEST_F(StorageFaultsTest, ASqliteFileOfAnotherProgramIsNotTakenOver) {
  RawSql(path_, "CREATE TABLE photos(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO photos VALUES(1, 'a');");
  EXPECT_THAT(OpenSqliteStorage(path_),
              StatusIs(absl::StatusCode::kFailedPrecondition, "is not an hpo database: a SQLite file of some other program"));
  // Nothing of hpo's was added to it.
  RawSql(path_, "SELECT count(*) FROM photos");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name='trials'", -1, &stmt, nullptr);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(StorageFaultsTest, OnlyAHeldLockIsReportedAsAnotherServer) {
  auto first = OpenSqliteStorage(path_);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(OpenSqliteStorage(path_), StatusIs(absl::StatusCode::kFailedPrecondition, "another hpo-server"));
}

TEST_F(StorageFaultsTest, ADamagedFileIsRefusedAtStartByQuickCheck) {
  MakeStudyWithTrials(1);
  RawSql(path_, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
                " INSERT INTO measurements SELECT 1, i, 0.5, '{}', 0 FROM n");
  // Overwrite the middle of the file (b-tree pages), leaving the header intact.
  const auto size = std::filesystem::file_size(path_);
  ASSERT_GT(size, 4u * 4096);
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2 * 4096);
    const std::string junk(2 * 4096, '\xA5');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto st = OpenSqliteStorage(path_);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kDataLoss, "is damaged (PRAGMA quick_check"));
  EXPECT_THAT(std::string(st.status().message()), HasSubstr(".recover"));
}

// --- Corrupt rows --------------------------------------------------------------------------

TEST_F(StorageFaultsTest, CorruptTrialRowsLoadFailedSayWhyAndAreNeverHandedOut) {
  MakeStudyWithTrials(6);
  // Trial ids are 1..6, numbers 0..5.
  RawSql(path_,
         "UPDATE trials SET params_json='[1, 2]' WHERE number=0;"
         "UPDATE trials SET params_json='{\"learning_rate\": null}' WHERE number=1;"  // type_error before
         "UPDATE trials SET state='BOGUS' WHERE number=2;"
         "UPDATE trials SET params_json='not json' WHERE number=3;"
         "UPDATE trials SET params_json='{\"learning_rate\": \"fast\"}' WHERE number=4;");  // spec misfit
  std::vector<std::string> warned;
  CoordinatorOptions options;
  options.warn = [&](const std::string& line) { warned.push_back(line); };
  auto c = OpenCoordinator(options);
  ASSERT_NE(c, nullptr);
  Study s = *c->GetStudy(1);
  ASSERT_EQ(s.trials.size(), 6u);
  for (int n = 0; n < 5; ++n) {
    EXPECT_EQ(s.trials[n].state, TrialState::kFailed) << n;
    EXPECT_THAT(s.trials[n].reason, HasSubstr(absl::StrCat("corrupt row (table trials, id ", n + 1, ")"))) << n;
  }
  EXPECT_THAT(s.trials[0].reason, HasSubstr("params_json is a JSON array, not an object"));
  EXPECT_THAT(s.trials[1].reason, HasSubstr("is a JSON null"));
  EXPECT_THAT(s.trials[2].reason, HasSubstr("state \"BOGUS\" is not a trial state"));
  EXPECT_THAT(s.trials[3].reason, HasSubstr("not valid JSON"));
  EXPECT_THAT(s.trials[4].reason, HasSubstr("not one of its values"));
  EXPECT_EQ(s.trials[5].state, TrialState::kWaiting);
  // Logged, each with its row.
  const std::string log = LogText();
  for (int id : {1, 2, 3, 4}) EXPECT_THAT(log, HasSubstr(absl::StrCat("table trials, id ", id, " "))) << log;
  ASSERT_EQ(warned.size(), 1u);
  EXPECT_THAT(warned[0], HasSubstr("table trials, id 5"));
  // Only the sound trial is handed out; then new ones.
  auto a = c->AskTrial("w", {"cnn"}, 0);
  ASSERT_THAT(a, IsOk());
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->trial.number, 5);
  auto b = c->AskTrial("w", {"cnn"}, 0);
  ASSERT_THAT(b, IsOk());
  ASSERT_TRUE(b->has_value());
  EXPECT_EQ((*b)->trial.number, 6);
  // Written back: the database itself says FAILED now.
  c.reset();
  log_.clear();
  c = OpenCoordinator();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->GetStudy(1)->trials[2].state, TrialState::kFailed);
  EXPECT_THAT(c->GetStudy(1)->trials[2].reason, HasSubstr("BOGUS"));
}

TEST_F(StorageFaultsTest, AStudyWithAnUnknownStateIsStoppedAndHandsOutNothing) {
  MakeStudyWithTrials(2);
  RawSql(path_, "UPDATE studies SET state='PAUSED??' WHERE id=1");
  auto c = OpenCoordinator();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->GetStudy(1)->state, StudyState::kStopped);
  EXPECT_THAT(LogText(), HasSubstr("table studies, id 1: state \"PAUSED??\" is not a study state"));
  auto a = c->AskTrial("w", {"cnn"}, 0);
  ASSERT_THAT(a, IsOk());
  EXPECT_FALSE(a->has_value());
}

TEST_F(StorageFaultsTest, AnUnreadableSpecRefusesStartUpNamingTheRowAndWhatToDo) {
  MakeStudyWithTrials(1);
  RawSql(path_, "UPDATE studies SET spec_json='{\"name\": 5' WHERE id=1");
  auto storage = OpenSqliteStorage(path_);
  ASSERT_THAT(storage, IsOk());
  auto c = Coordinator::Open(std::move(*storage), &clock_, {});
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kDataLoss, "table studies, id 1: spec_json cannot be read"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("sqlite3"));
}

TEST_F(StorageFaultsTest, ARetryOfCycleIsRepairedAtLoadAndTheReaperEnds) {
  {
    auto c = OpenCoordinator();
    ASSERT_NE(c, nullptr);
    ASSERT_THAT(c->CreateStudy(kSpec), IsOk());
    auto a = c->AskTrial("w", {"cnn"}, 0);  // trial 0
    ASSERT_TRUE(a.ok() && a->has_value());
    ASSERT_THAT(c->FailTrial((*a)->trial.id, "crash", /*retry=*/true), IsOk());  // trial 1 retries 0
    auto b = c->AskTrial("w", {"cnn"}, 0);
    ASSERT_TRUE(b.ok() && b->has_value());
    ASSERT_EQ((*b)->trial.number, 1);
  }
  // Trial 0 now claims to retry trial 1, which retries trial 0: a cycle. Trial 1 is RUNNING.
  RawSql(path_, "UPDATE trials SET retry_of=1 WHERE number=0");
  auto c = OpenCoordinator();
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(LogText(), HasSubstr("retry_of 1 does not name an earlier trial"));
  Study s = *c->GetStudy(1);
  EXPECT_EQ(s.trials[0].retry_of, -1);
  EXPECT_EQ(s.trials[0].state, TrialState::kFailed);  // a finished trial keeps its state
  EXPECT_EQ(s.trials[0].reason, "crash");
  clock_.Advance(absl::Minutes(5));
  // Before: the reaper walked the chain forever, holding the coordinator's lock.
  auto reaped = std::async(std::launch::async, [&] { return c->ReapExpiredLeases(); });
  if (reaped.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    std::cerr << "ReapExpiredLeases is still running after 10 s: a retry_of cycle\n";
    std::_Exit(1);
  }
  EXPECT_EQ(reaped.get(), 1);
}

// --- The files deleted or replaced while serving --------------------------------------------

TEST_F(StorageFaultsTest, TheDatabaseFileDeletedWhileServingStopsEveryWrite) {
  auto c = OpenCoordinator();
  ASSERT_NE(c, nullptr);
  ASSERT_THAT(c->CreateStudy(kSpec), IsOk());
  std::filesystem::remove(path_);
  auto a = c->AskTrial("w", {"cnn"}, 0);
  EXPECT_THAT(a, StatusIs(absl::StatusCode::kUnavailable, "the database file " + path_ + " was deleted"));
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("Restart hpo-server"));
  EXPECT_THAT(c->CreateStudy(kSpec), StatusIs(absl::StatusCode::kUnavailable, "was deleted"));
  EXPECT_EQ(LogCount(Level::kError), 1) << LogText();
  // Reads go on.
  EXPECT_THAT(c->GetStudy(1), IsOk());
  EXPECT_EQ(c->ListStudies().size(), 1u);
}

TEST_F(StorageFaultsTest, TheDatabaseFileReplacedWhileServingStopsEveryWrite) {
  auto c = OpenCoordinator();
  ASSERT_NE(c, nullptr);
  ASSERT_THAT(c->CreateStudy(kSpec), IsOk());
  const std::string other = (dir_ / "other.db").string();
  std::filesystem::copy_file(path_, other);
  std::filesystem::rename(other, path_);  // e.g. a backup restored over it
  EXPECT_THAT(c->AskTrial("w", {"cnn"}, 0), StatusIs(absl::StatusCode::kUnavailable, "was replaced by another file"));
}

// Before: the WAL's content was acknowledged and lost with the process.
TEST_F(StorageFaultsTest, TheWalDeletedWhileServingLosesNothingAcknowledgedEvenWithSigkill) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto storage = OpenSqliteStorage(path_);
    if (!storage.ok()) _exit(10);
    Study study;
    study.spec_json = kSpec;
    if (!(*storage)->CreateStudy(study).ok()) _exit(11);
    int acknowledged = 0;
    for (int i = 0; i < 500; ++i) {
      if (i == 300) std::filesystem::remove(path_ + "-wal");
      Trial t;
      t.study_id = 1;
      t.number = i;
      if (!(*storage)->CreateTrial(t).ok()) break;
      ++acknowledged;
    }
    std::ofstream(path_ + ".count") << acknowledged;
    kill(getpid(), SIGKILL);
    _exit(12);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit " << WEXITSTATUS(status);
  const int acknowledged = std::stoi(Slurp(path_ + ".count"));
  EXPECT_EQ(acknowledged, 300);  // none after the WAL was gone
  auto storage = OpenSqliteStorage(path_);
  ASSERT_THAT(storage, IsOk());
  auto studies = (*storage)->LoadAll();
  ASSERT_THAT(studies, IsOk());
  ASSERT_EQ(studies->size(), 1u);
  EXPECT_EQ(static_cast<int>(studies->front().trials.size()), acknowledged);
}

// Between writes too: a lost WAL is saved within the check interval, with no write to trigger it.
TEST_F(StorageFaultsTest, TheWalDeletedBetweenWritesIsSavedBeforeAnyWriteComes) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    SqliteStorageOptions options;
    options.check_interval = absl::Milliseconds(100);
    auto storage = OpenSqliteStorage(path_, options);
    if (!storage.ok()) _exit(10);
    Study study;
    study.spec_json = kSpec;
    if (!(*storage)->CreateStudy(study).ok()) _exit(11);
    for (int i = 0; i < 50; ++i) {
      Trial t;
      t.study_id = 1;
      t.number = i;
      if (!(*storage)->CreateTrial(t).ok()) _exit(12);
    }
    std::filesystem::remove(path_ + "-wal");
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    kill(getpid(), SIGKILL);
    _exit(13);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit " << WEXITSTATUS(status);
  auto storage = OpenSqliteStorage(path_);
  ASSERT_THAT(storage, IsOk());
  auto studies = (*storage)->LoadAll();
  ASSERT_THAT(studies, IsOk());
  ASSERT_EQ(studies->size(), 1u);
  EXPECT_EQ(studies->front().trials.size(), 50u);
}

TEST_F(StorageFaultsTest, TheDatabaseFileDeletedIsLoggedWithoutWaitingForAWrite) {
  SqliteStorageOptions options = Logging();
  options.check_interval = absl::Milliseconds(50);
  auto storage = OpenSqliteStorage(path_, options);
  ASSERT_THAT(storage, IsOk());
  std::filesystem::remove(path_);
  for (int i = 0; i < 100 && LogCount(Level::kError) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(LogText(), HasSubstr("was deleted while hpo-server was running"));
  Study study;
  study.spec_json = kSpec;
  EXPECT_THAT((*storage)->CreateStudy(study), StatusIs(absl::StatusCode::kUnavailable, "was deleted"));
  EXPECT_EQ(LogCount(Level::kError), 1);
}

// --- A full disk ---------------------------------------------------------------------------

// SQLite's PRAGMA max_page_count makes the database answer SQLITE_FULL exactly as a full disk
// does; raising it again is space coming back.
TEST_F(StorageFaultsTest, AFullDiskRefusesWritesLoudlyKeepsReadsAndResumesByItself) {
  auto storage = OpenSqliteStorage(path_, Logging());
  ASSERT_THAT(storage, IsOk());
  Storage* raw = storage->get();
  auto opened = Coordinator::Open(std::move(*storage), &clock_, {});
  ASSERT_THAT(opened, IsOk());
  auto& c = *opened;
  ASSERT_THAT(c->CreateStudy(kSpec), IsOk());
  auto a = c->AskTrial("w", {"cnn"}, 0);
  ASSERT_TRUE(a.ok() && a->has_value());
  const int64_t id = (*a)->trial.id;
  // Fill the database up to its current size.
  ASSERT_THAT(ExecSqlForTesting(*raw, "PRAGMA max_page_count=" + std::to_string(8)), IsOk());
  int step = 1;
  absl::Status refused;
  for (; step < 100000; ++step) {
    Measurement m{step, 0.5, {{std::string(200, 'm'), 1.0}}, {}};
    auto d = c->Report(id, m);
    if (!d.ok()) {
      refused = d.status();
      break;
    }
  }
  const int acknowledged = step - 1;
  ASSERT_GT(acknowledged, 0);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted, "the disk holding the database " + path_ + " is full"));
  // Refused again, logged once.
  Measurement again{step, 0.5, {{std::string(200, 'm'), 1.0}}, {}};
  EXPECT_THAT(c->Report(id, again), StatusIs(absl::StatusCode::kResourceExhausted, "is full"));
  EXPECT_EQ(LogCount(Level::kError), 1) << LogText();
  EXPECT_THAT(LogText(), HasSubstr("is full"));
  // Reads go on, and show nothing that was refused.
  auto s = c->GetStudy(1);
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(static_cast<int>(s->trials[0].measurements.size()), acknowledged);
  EXPECT_THAT(c->Heartbeat(id, "w"), IsOk());
  // Space comes back: the same report goes through, with nothing else to do.
  ASSERT_THAT(ExecSqlForTesting(*raw, "PRAGMA max_page_count=1000000"), IsOk());
  EXPECT_THAT(c->Report(id, again), IsOk());
  EXPECT_THAT(LogText(), HasSubstr("succeed again"));
  // Nothing acknowledged is lost.
  opened->reset();
  auto reopened = OpenSqliteStorage(path_);
  ASSERT_THAT(reopened, IsOk());
  auto studies = (*reopened)->LoadAll();
  ASSERT_THAT(studies, IsOk());
  EXPECT_EQ(static_cast<int>(studies->front().trials[0].measurements.size()), acknowledged + 1);
}

// --- Through a real hpo-server --------------------------------------------------------------

TEST_F(StorageFaultsTest, HpoServerSaysAGarbageFileIsNotADatabase) {
  std::ofstream(path_) << std::string(8192, '\x01');
  auto r = hpo::testing::Run({HPO_SERVER_BIN, "--db=" + path_, "--listen=127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out + r.err, HasSubstr("is not an hpo database: not a SQLite file"));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("another hpo-server")));
}

TEST_F(StorageFaultsTest, HpoServerStartsOnCorruptRowsAndLogsEach) {
  MakeStudyWithTrials(2);
  RawSql(path_, "UPDATE trials SET params_json='{\"learning_rate\": [0.1]}' WHERE number=0;"
                "UPDATE trials SET state='ZOMBIE' WHERE number=1;");
  const std::string port_file = (dir_ / "port").string(), log = (dir_ / "server.log").string();
  auto server = hpo::testing::Process::Start(
      {HPO_SERVER_BIN, "--db=" + path_, "--listen=127.0.0.1:0", "--port_file=" + port_file}, log);
  for (int i = 0; i < 200 && !std::filesystem::exists(port_file) && server.Running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(server.Running()) << Slurp(log);
  server.Signal(SIGTERM);
  server.Wait(std::chrono::seconds(20));
  const std::string text = Slurp(log);
  EXPECT_THAT(text, HasSubstr("table trials, id 1 (trial 0 of study 1): params_json: parameter \"learning_rate\" is a JSON array"));
  EXPECT_THAT(text, HasSubstr("table trials, id 2 (trial 1 of study 1): state \"ZOMBIE\""));
  EXPECT_THAT(text, HasSubstr("listening on port"));
}

}  // namespace
}  // namespace hpo::server
