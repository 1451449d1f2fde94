// The Storage contract (server/storage/storage.h), checked the same way for every
// implementation: SQLite on a file (closed and opened again where a test says Reopen), SQLite
// in ":memory:" and the in-memory store.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>

#include "proto/common/status_macros.h"
#include "server/storage/memory_storage.h"
#include "server/storage/sqlite_storage.h"
#include "tests/testing/faulty_storage.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::DumpStudies;
using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// --- The implementations -------------------------------------------------------------------

struct SqliteFile {
  static constexpr bool kPersistent = true;
  static absl::StatusOr<std::unique_ptr<Storage>> Open(const std::string& path) {
    return OpenSqliteStorage(path);
  }
};
struct SqliteInMemory {
  static constexpr bool kPersistent = false;
  static absl::StatusOr<std::unique_ptr<Storage>> Open(const std::string&) {
    return OpenSqliteStorage(":memory:");
  }
};
struct Memory {
  static constexpr bool kPersistent = false;
  static absl::StatusOr<std::unique_ptr<Storage>> Open(const std::string&) {
    return std::unique_ptr<Storage>(NewMemoryStorage());
  }
};

class Names {
 public:
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same_v<T, SqliteFile>) return "SqliteFile";
    if (std::is_same_v<T, SqliteInMemory>) return "SqliteInMemory";
    return "Memory";
  }
};

template <typename Impl>
class StorageConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hpo_conformance_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = Impl::Open((dir_ / "hpo.db").string());
    ASSERT_THAT(s, IsOk());
    storage_ = std::move(*s);
  }
  void TearDown() override {
    storage_.reset();
    std::filesystem::remove_all(dir_);
  }

  // The file closed and opened again; the other stores cannot be, and stay as they are.
  void Reopen() {
    if (!Impl::kPersistent) return;
    storage_.reset();
    auto s = Impl::Open((dir_ / "hpo.db").string());
    ASSERT_THAT(s, IsOk());
    storage_ = std::move(*s);
  }

  std::vector<Study> Load() {
    auto all = storage_->LoadAll();
    EXPECT_THAT(all, IsOk());
    return all.ok() ? *all : std::vector<Study>();
  }
  std::string Dump() { return DumpStudies(Load()); }

  static Study NewStudy(const std::string& name = "study") {
    Study s;
    s.spec.name = name;
    s.spec_json = R"({"name": ")" + name + R"("})";
    s.seed = 42;
    s.created = absl::FromUnixMillis(1'700'000'000'000);
    return s;
  }
  static Trial NewTrial(int64_t study_id, int number) {
    Trial t;
    t.study_id = study_id;
    t.number = number;
    t.state = TrialState::kRunning;
    t.params = {{"learning_rate", 0.01}};
    t.worker = "w";
    t.created = t.started = absl::FromUnixMillis(1'700'000'001'000 + number);
    return t;
  }
  // A stored study with `n` trials; their ids in `ids`.
  int64_t StudyWithTrials(int n, std::vector<int64_t>* ids = nullptr) {
    auto study = storage_->CreateStudy(NewStudy());
    EXPECT_THAT(study, IsOk());
    for (int i = 0; i < n; ++i) {
      auto id = storage_->CreateTrial(NewTrial(*study, i));
      EXPECT_THAT(id, IsOk());
      if (ids != nullptr) ids->push_back(*id);
    }
    return *study;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Storage> storage_;
};

using Implementations = ::testing::Types<SqliteFile, SqliteInMemory, Memory>;
TYPED_TEST_SUITE(StorageConformanceTest, Implementations, Names);

// --- Ids and order -------------------------------------------------------------------------

TYPED_TEST(StorageConformanceTest, ANewStoreIsEmpty) {
  EXPECT_TRUE(this->Load().empty());
  this->Reopen();
  EXPECT_TRUE(this->Load().empty());
}

TYPED_TEST(StorageConformanceTest, IdsCountFromOneInTheOrderRowsAreStored) {
  Storage& s = *this->storage_;
  EXPECT_EQ(*s.CreateStudy(this->NewStudy("a")), 1);
  EXPECT_EQ(*s.CreateStudy(this->NewStudy("b")), 2);
  // One sequence of trial ids across studies.
  EXPECT_EQ(*s.CreateTrial(this->NewTrial(2, 0)), 1);
  EXPECT_EQ(*s.CreateTrial(this->NewTrial(1, 0)), 2);
  EXPECT_EQ(*s.CreateTrial(this->NewTrial(2, 1)), 3);
  EXPECT_EQ(*s.CreateStudy(this->NewStudy("c")), 3);
  this->Reopen();
  EXPECT_EQ(*this->storage_->CreateTrial(this->NewTrial(1, 1)), 4);
  EXPECT_EQ(*this->storage_->CreateStudy(this->NewStudy("d")), 4);
}

TYPED_TEST(StorageConformanceTest, StudiesLoadByIdAndTrialsInNumberOrder) {
  Storage& s = *this->storage_;
  ASSERT_THAT(s.CreateStudy(this->NewStudy("a")), IsOk());
  ASSERT_THAT(s.CreateStudy(this->NewStudy("b")), IsOk());
  // Interleaved, so that id order and number order differ within each study.
  for (int i = 0; i < 4; ++i) {
    ASSERT_THAT(s.CreateTrial(this->NewTrial(2, i)), IsOk());
    ASSERT_THAT(s.CreateTrial(this->NewTrial(1, i)), IsOk());
  }
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, 1);
  EXPECT_EQ(all[1].id, 2);
  for (const Study& st : all) {
    ASSERT_EQ(st.trials.size(), 4u);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(st.trials[i].number, i);
      EXPECT_EQ(st.trials[i].study_id, st.id);
      EXPECT_EQ(st.trials[i].id, st.id == 2 ? 2 * i + 1 : 2 * i + 2);
    }
  }
}

// --- Round trips ---------------------------------------------------------------------------

TYPED_TEST(StorageConformanceTest, AStudyReadsBackAsWritten) {
  Study in = this->NewStudy();
  in.spec_json = R"({"name": "über-studie ✓ 学习率", "note": ""})";
  in.seed = 0xFEEDFACECAFEBEEFULL;  // above INT64_MAX
  in.state = StudyState::kStopped;
  in.created = absl::FromUnixMillis(1'712'345'678'901);
  in.id = 77;                            // ignored
  in.trials.push_back(this->NewTrial(77, 0));  // ignored: CreateTrial stores trials
  auto id = this->storage_->CreateStudy(in);
  ASSERT_THAT(id, IsOk());
  Study empty;  // every field at its default
  ASSERT_THAT(this->storage_->CreateStudy(empty), IsOk());
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, *id);
  EXPECT_EQ(all[0].spec_json, in.spec_json);
  EXPECT_EQ(all[0].seed, in.seed);
  EXPECT_EQ(all[0].state, StudyState::kStopped);
  EXPECT_EQ(all[0].created, in.created);
  EXPECT_TRUE(all[0].trials.empty());
  EXPECT_EQ(all[1].spec_json, "");
  EXPECT_EQ(all[1].seed, 0u);
  EXPECT_EQ(all[1].state, StudyState::kRunning);
  EXPECT_EQ(all[1].created, absl::InfinitePast());
}

TYPED_TEST(StorageConformanceTest, UpdateStudyStateIsStored) {
  const int64_t a = *this->storage_->CreateStudy(this->NewStudy("a"));
  const int64_t b = *this->storage_->CreateStudy(this->NewStudy("b"));
  ASSERT_THAT(this->storage_->UpdateStudyState(b, StudyState::kCompleted), IsOk());
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, a);
  EXPECT_EQ(all[0].state, StudyState::kRunning);  // only the one named
  EXPECT_EQ(all[1].state, StudyState::kCompleted);
  ASSERT_THAT(this->storage_->UpdateStudyState(b, StudyState::kStopped), IsOk());
  EXPECT_EQ(this->Load()[1].state, StudyState::kStopped);
}

TYPED_TEST(StorageConformanceTest, CreateTrialStoresItsFieldsAndNothingElse) {
  const int64_t study = *this->storage_->CreateStudy(this->NewStudy());
  ASSERT_THAT(this->storage_->CreateTrial(this->NewTrial(study, 0)), IsOk());
  Trial in;
  in.study_id = study;
  in.number = 1;
  in.state = TrialState::kWaiting;
  in.params = {{"learning_rate", 0.00013413},
               {"huge", 1e300},
               {"negative", -2.5},
               {"whole", 3.0},  // a double that is a whole number stays a double
               {"filters", int64_t{32}},
               {"big_int", std::numeric_limits<int64_t>::max()},
               {"neg_int", int64_t{-7}},
               {"optimizer", std::string("adam")},
               {"empty", std::string("")},
               {"ünïcödé ✓", std::string("值 \"quoted\" \\ back")},
               {"batch_norm", true},
               {"flag_off", false}};
  in.retry_of = 0;
  in.worker = "host-1:4242 ✓";
  in.created = absl::FromUnixMillis(1'700'000'005'000);
  in.started = absl::InfinitePast();
  // Not CreateTrial's: UpdateTrial stores these.
  in.id = 99;
  in.value = 0.5;
  in.best_step = 3;
  in.final_metrics = {{"test_accuracy", 0.9}};
  in.reason = "ignored";
  in.retried = true;
  in.finished = absl::FromUnixMillis(1'700'000'009'000);
  in.data = DataReport{"idx", {"a"}, 1, 2, 3, 1, 28, 28, 0, {}};
  in.classes = ClassReport{{1}, {1}, {1.0}, {1.0}, {1}};
  in.measurements.push_back(Measurement{1, 0.5, {}, absl::FromUnixMillis(1'700'000'006'000)});
  auto id = this->storage_->CreateTrial(in);
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, 2);
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), 1u);
  ASSERT_EQ(all[0].trials.size(), 2u);
  const Trial& t = all[0].trials[1];
  EXPECT_EQ(t.id, *id);
  EXPECT_EQ(t.study_id, study);
  EXPECT_EQ(t.number, 1);
  EXPECT_EQ(t.state, TrialState::kWaiting);
  EXPECT_EQ(t.params, in.params);
  EXPECT_EQ(t.params.at("whole").index(), 0u);  // double
  EXPECT_EQ(t.params.at("filters").index(), 1u);  // int64
  EXPECT_EQ(t.retry_of, 0);
  EXPECT_EQ(t.worker, in.worker);
  EXPECT_EQ(t.created, in.created);
  EXPECT_EQ(t.started, absl::InfinitePast());
  EXPECT_FALSE(t.value.has_value());
  EXPECT_EQ(t.best_step, -1);
  EXPECT_TRUE(t.final_metrics.empty());
  EXPECT_EQ(t.reason, "");
  EXPECT_FALSE(t.retried);
  EXPECT_EQ(t.finished, absl::InfinitePast());
  EXPECT_FALSE(t.data.has_value());
  EXPECT_FALSE(t.classes.has_value());
  EXPECT_TRUE(t.measurements.empty());
}

TYPED_TEST(StorageConformanceTest, UpdateTrialStoresEveryMutableFieldAndOnlyThose) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(2, &ids);
  Trial t = this->NewTrial(study, 1);
  t.id = ids[1];
  t.state = TrialState::kCompleted;
  t.params = {{"learning_rate", 0.02}, {"optimizer", std::string("sgd ✓")}, {"depth", int64_t{4}},
              {"bn", false}};
  t.value = 0.9375;
  t.best_step = 7;
  t.final_metrics = {{"test_accuracy", 0.91}, {"test_loss", 0.25}, {"größe ✓", -1e-9}};
  t.reason = "done: «all» epochs ✓";
  t.worker = "worker-β";
  t.retried = true;
  t.started = absl::FromUnixMillis(1'700'000'100'000);
  t.finished = absl::FromUnixMillis(1'700'000'200'123);
  t.data = DataReport{"image_folder", {"bag", "shirt ✓", "t-shirt", ""}, 1680, 400, 0, 3, 40, 40, 2,
                      {"train/README.txt: not in a class folder", "val/.DS_Store: not an image"}};
  t.classes = ClassReport{{400, 80, 400, 400}, {80, 80, 80, 80}, {1.0, 0.75, 0.875, 0.5},
                          {0.9875, 0.7625, 1.0, 0.25}, {80, 0, 0, 0, 2, 61, 1, 16, 0, 0, 80, 0, 1, 8, 0, 71}};
  // Not UpdateTrial's to change.
  Trial sent = t;
  sent.study_id = study + 5;
  sent.number = 9;
  sent.retry_of = 0;
  sent.created = absl::FromUnixMillis(1);
  sent.measurements.push_back(Measurement{1, 0.5, {}, absl::FromUnixMillis(1'700'000'150'000)});
  ASSERT_THAT(this->storage_->UpdateTrial(sent, nullptr), IsOk());
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), 1u);
  ASSERT_EQ(all[0].trials.size(), 2u);
  const Trial& got = all[0].trials[1];
  EXPECT_EQ(got.id, ids[1]);
  EXPECT_EQ(got.study_id, study);
  EXPECT_EQ(got.number, 1);
  EXPECT_EQ(got.retry_of, -1);
  EXPECT_EQ(got.created, this->NewTrial(study, 1).created);
  EXPECT_TRUE(got.measurements.empty());
  EXPECT_EQ(got.state, t.state);
  EXPECT_EQ(got.params, t.params);
  EXPECT_EQ(got.value, t.value);
  EXPECT_EQ(got.best_step, t.best_step);
  EXPECT_EQ(got.final_metrics, t.final_metrics);
  EXPECT_EQ(got.reason, t.reason);
  EXPECT_EQ(got.worker, t.worker);
  EXPECT_EQ(got.retried, t.retried);
  EXPECT_EQ(got.started, t.started);
  EXPECT_EQ(got.finished, t.finished);
  ASSERT_TRUE(got.data.has_value());
  EXPECT_EQ(*got.data, *t.data);
  ASSERT_TRUE(got.classes.has_value());
  EXPECT_EQ(*got.classes, *t.classes);
  // The other trial is untouched.
  EXPECT_EQ(all[0].trials[0].state, TrialState::kRunning);
  EXPECT_FALSE(all[0].trials[0].value.has_value());

  // Optional fields cleared again read back cleared; empty reports stay reports.
  Trial cleared = got;
  cleared.state = TrialState::kFailed;
  cleared.params.clear();
  cleared.value.reset();
  cleared.best_step = -1;
  cleared.final_metrics.clear();
  cleared.reason = "";
  cleared.worker = "";
  cleared.retried = false;
  cleared.started = absl::InfinitePast();
  cleared.finished = absl::InfinitePast();
  cleared.data = DataReport{};
  cleared.classes.reset();
  ASSERT_THAT(this->storage_->UpdateTrial(cleared, nullptr), IsOk());
  this->Reopen();
  const Trial again = this->Load()[0].trials[1];
  EXPECT_EQ(again.state, TrialState::kFailed);
  EXPECT_TRUE(again.params.empty());
  EXPECT_FALSE(again.value.has_value());
  EXPECT_EQ(again.best_step, -1);
  EXPECT_TRUE(again.final_metrics.empty());
  EXPECT_EQ(again.reason, "");
  EXPECT_EQ(again.worker, "");
  EXPECT_FALSE(again.retried);
  EXPECT_EQ(again.started, absl::InfinitePast());
  EXPECT_EQ(again.finished, absl::InfinitePast());
  ASSERT_TRUE(again.data.has_value());
  EXPECT_EQ(*again.data, DataReport{});
  EXPECT_FALSE(again.classes.has_value());
}

TYPED_TEST(StorageConformanceTest, MeasurementsAppendInStepOrderWithTheirMetrics) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(2, &ids);
  Trial a = this->NewTrial(study, 0);
  a.id = ids[0];
  Trial b = this->NewTrial(study, 1);
  b.id = ids[1];
  const absl::Time t0 = absl::FromUnixMillis(1'700'000'300'000);
  std::vector<Measurement> ms = {
      {1, 0.5, {{"val_loss", 0.7}, {"train_accuracy", 0.55}, {"lr", 1e-4}}, t0},
      {2, 0.625, {}, t0 + absl::Milliseconds(1)},
      {3, -0.25, {{"métrique ✓", 3.0}}, t0 + absl::Seconds(90)},
      {10, 1.0, {{"epoch_seconds", 12.345}}, absl::InfinitePast()},
  };
  for (size_t i = 0; i < ms.size(); ++i) {
    a.value = ms[i].value;
    ASSERT_THAT(this->storage_->UpdateTrial(a, &ms[i]), IsOk());
    // Another trial's measurement in between.
    Measurement other{static_cast<int>(i), 0.1 * i, {{"k", 1.0 * i}}, t0};
    ASSERT_THAT(this->storage_->UpdateTrial(b, &other), IsOk());
  }
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), 1u);
  const Trial& got = all[0].trials[0];
  ASSERT_EQ(got.measurements.size(), ms.size());
  for (size_t i = 0; i < ms.size(); ++i) {
    EXPECT_EQ(got.measurements[i].step, ms[i].step);
    EXPECT_EQ(got.measurements[i].value, ms[i].value);
    EXPECT_EQ(got.measurements[i].metrics, ms[i].metrics);
    EXPECT_EQ(got.measurements[i].time, ms[i].time);
  }
  EXPECT_EQ(got.value, 1.0);  // the trial's fields went in with each measurement
  ASSERT_EQ(all[0].trials[1].measurements.size(), ms.size());
  EXPECT_EQ(all[0].trials[1].measurements[3].metrics, (std::map<std::string, double>{{"k", 3.0}}));
}

// The coordinator drops a finished trial's metrics from memory and reads them back from here.
TYPED_TEST(StorageConformanceTest, TrialDetailsReadBackWhatLoadAllDoesForARangeOfTrials) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(5, &ids);
  const int64_t other = this->StudyWithTrials(2);  // its trials must not show up
  for (int n = 0; n < 5; ++n) {
    Trial t = this->NewTrial(study, n);
    t.id = ids[n];
    for (int step = 1; step <= n; ++step) {
      Measurement m;
      m.step = step;
      m.value = 0.1 * step + n;
      m.metrics = {{"train_loss", 1.0 / step}, {"val_loss", 2.0 * n + step}};
      m.time = absl::FromUnixMillis(1'700'000'002'000 + step);
      ASSERT_THAT(this->storage_->UpdateTrial(t, &m), IsOk());
    }
    if (n % 2 == 1) {
      t.state = TrialState::kCompleted;
      t.final_metrics = {{"test_accuracy", 0.5 + n / 100.0}};
      ClassReport c;
      c.val_count = {3, 4};
      c.val_recall = {0.5, 0.25};
      c.val_confusion = {2, 1, 3, 1};
      t.classes = c;
      DataReport data;
      data.format = "image_folder";
      data.class_names = {"cat", "dog"};
      data.train_images = 7;
      t.data = data;
      ASSERT_THAT(this->storage_->UpdateTrial(t, nullptr), IsOk());
    }
  }
  this->Reopen();
  const Study loaded = this->Load()[0];
  auto details = this->storage_->LoadTrialDetails(study, 1, 3);
  ASSERT_THAT(details, IsOk());
  ASSERT_EQ(details->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const TrialDetails& d = (*details)[i];
    const Trial& t = loaded.trials[i + 1];
    EXPECT_EQ(d.number, i + 1);
    EXPECT_EQ(d.final_metrics, t.final_metrics);
    EXPECT_EQ(d.classes.has_value(), t.classes.has_value());
    if (d.classes && t.classes) EXPECT_TRUE(*d.classes == *t.classes);
    EXPECT_EQ(d.data.has_value(), t.data.has_value());
    if (d.data && t.data) EXPECT_TRUE(*d.data == *t.data);
    ASSERT_EQ(d.metrics.size(), t.measurements.size());
    for (size_t k = 0; k < d.metrics.size(); ++k) {
      EXPECT_EQ(d.metrics[k].first, t.measurements[k].step);
      EXPECT_EQ(d.metrics[k].second, t.measurements[k].metrics);
    }
  }
  EXPECT_THAT((*details)[2].metrics[1].second, ElementsAre(Pair("train_loss", 0.5), Pair("val_loss", 8.0)));
  EXPECT_THAT((*details)[0].final_metrics, ElementsAre(Pair("test_accuracy", 0.51)));
  ASSERT_TRUE((*details)[0].data.has_value());
  EXPECT_EQ((*details)[0].data->class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_FALSE((*details)[1].data.has_value());
  // The end of the study, a range past it, an unknown study, and no room: what there is, or nothing.
  auto tail = this->storage_->LoadTrialDetails(study, 4, 100);
  ASSERT_THAT(tail, IsOk());
  ASSERT_EQ(tail->size(), 1u);
  EXPECT_EQ((*tail)[0].number, 4);
  EXPECT_EQ((*tail)[0].metrics.size(), 4u);
  auto past = this->storage_->LoadTrialDetails(study, 5, 10);
  ASSERT_THAT(past, IsOk());
  EXPECT_TRUE(past->empty());
  auto unknown = this->storage_->LoadTrialDetails(other + 100, 0, 10);
  ASSERT_THAT(unknown, IsOk());
  EXPECT_TRUE(unknown->empty());
  auto none = this->storage_->LoadTrialDetails(study, 0, 0);
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->empty());
  auto others = this->storage_->LoadTrialDetails(other, 0, 10);
  ASSERT_THAT(others, IsOk());
  ASSERT_EQ(others->size(), 2u);
  EXPECT_TRUE((*others)[0].metrics.empty());
}

TYPED_TEST(StorageConformanceTest, ValuesReadBackAsTheSqliteColumnsSpellThem) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(1, &ids);
  Trial t = this->NewTrial(study, 0);
  t.id = ids[0];
  const double inf = std::numeric_limits<double>::infinity();
  t.value = std::nan("");  // no value
  t.final_metrics = {{"finite", 1.5}, {"nan", std::nan("")}, {"inf", inf}, {"-inf", -inf}};
  t.started = absl::FromUnixMillis(1'700'000'000'000) + absl::Microseconds(999);  // to the millisecond
  t.finished = absl::UnixEpoch();  // 0 ms: "not yet"
  Measurement m{1, inf, {{"ok", 2.0}, {"nan", std::nan("")}}, absl::FromUnixMillis(-5'000)};
  ASSERT_THAT(this->storage_->UpdateTrial(t, &m), IsOk());
  this->Reopen();
  const Trial got = this->Load()[0].trials[0];
  EXPECT_FALSE(got.value.has_value());
  EXPECT_THAT(got.final_metrics, ElementsAre(Pair("finite", 1.5)));
  EXPECT_EQ(got.started, absl::FromUnixMillis(1'700'000'000'000));
  EXPECT_EQ(got.finished, absl::InfinitePast());
  ASSERT_EQ(got.measurements.size(), 1u);
  EXPECT_EQ(got.measurements[0].value, inf);
  EXPECT_THAT(got.measurements[0].metrics, ElementsAre(Pair("ok", 2.0)));
  EXPECT_EQ(got.measurements[0].time, absl::FromUnixMillis(-5'000));  // before the epoch is a time
}

// --- Refusals ------------------------------------------------------------------------------

TYPED_TEST(StorageConformanceTest, UnknownIdsAreRefusedAsNotFoundAndChangeNothing) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(1, &ids);
  const std::string before = this->Dump();
  Storage& s = *this->storage_;
  EXPECT_THAT(s.UpdateStudyState(study + 1, StudyState::kStopped),
              StatusIs(absl::StatusCode::kNotFound, "no stored study with id 2"));
  EXPECT_THAT(s.CreateTrial(this->NewTrial(study + 1, 0)),
              StatusIs(absl::StatusCode::kNotFound, "no stored study with id 2"));
  Trial ghost = this->NewTrial(study, 0);
  ghost.id = ids[0] + 100;
  ghost.state = TrialState::kCompleted;
  EXPECT_THAT(s.UpdateTrial(ghost, nullptr), StatusIs(absl::StatusCode::kNotFound, "no stored trial with id 101"));
  Measurement m{1, 0.5, {}, absl::FromUnixMillis(1'700'000'000'000)};
  EXPECT_THAT(s.UpdateTrial(ghost, &m), StatusIs(absl::StatusCode::kNotFound, "no stored trial with id 101"));
  EXPECT_EQ(this->Dump(), before);
  // Still writable, and the ids go on from where they were.
  EXPECT_EQ(*s.CreateTrial(this->NewTrial(study, 1)), ids[0] + 1);
}

TYPED_TEST(StorageConformanceTest, TakenNumbersAndStepsAreRefusedAndChangeNothing) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(2, &ids);
  Trial t = this->NewTrial(study, 0);
  t.id = ids[0];
  Measurement m{3, 0.5, {}, absl::FromUnixMillis(1'700'000'000'000)};
  ASSERT_THAT(this->storage_->UpdateTrial(t, &m), IsOk());
  const std::string before = this->Dump();
  EXPECT_THAT(this->storage_->CreateTrial(this->NewTrial(study, 1)),
              StatusIs(absl::StatusCode::kAlreadyExists, "trial number 1"));
  EXPECT_THAT(this->storage_->CreateTrial(this->NewTrial(study, 5)),
              StatusIs(absl::StatusCode::kInvalidArgument, "next trial of that study is number 2"));
  EXPECT_THAT(this->storage_->CreateTrial(this->NewTrial(study, -1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "number 2"));
  // The same step again: refused, and the trial's fields sent with it are not stored either.
  t.state = TrialState::kCompleted;
  t.reason = "must not be stored";
  Measurement again{3, 0.75, {}, absl::FromUnixMillis(1'700'000'001'000)};
  EXPECT_THAT(this->storage_->UpdateTrial(t, &again), StatusIs(absl::StatusCode::kAlreadyExists, "step 3"));
  Measurement nan{4, std::nan(""), {}, absl::FromUnixMillis(1'700'000'001'000)};
  EXPECT_THAT(this->storage_->UpdateTrial(t, &nan), StatusIs(absl::StatusCode::kInvalidArgument, "NaN"));
  EXPECT_EQ(this->Dump(), before);
}

// --- Transactions --------------------------------------------------------------------------

TYPED_TEST(StorageConformanceTest, DeleteStudyRemovesItsTrialsAndMeasurementsOnly) {
  std::vector<int64_t> ids;
  const int64_t doomed = this->StudyWithTrials(2, &ids);
  const int64_t kept = this->StudyWithTrials(1);
  Trial t = this->NewTrial(doomed, 0);
  t.id = ids[0];
  Measurement m{1, 0.5, {{"val_loss", 0.7}}, absl::FromUnixMillis(1'700'000'002'000)};
  ASSERT_THAT(this->storage_->UpdateTrial(t, &m), IsOk());
  ASSERT_THAT(this->storage_->DeleteStudy(doomed), IsOk());
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id, kept);
  EXPECT_EQ(all[0].trials.size(), 1u);
  const std::string before = this->Dump();
  EXPECT_THAT(this->storage_->DeleteStudy(doomed), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_THAT(this->storage_->UpdateTrial(t, nullptr), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_EQ(this->Dump(), before);
  // A deletion inside a failed transaction is undone.
  EXPECT_THAT(this->storage_->Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(this->storage_->DeleteStudy(kept));
    return absl::AbortedError("changed my mind");
  }), StatusIs(absl::StatusCode::kAborted, ""));
  EXPECT_EQ(this->Dump(), before);
}

TYPED_TEST(StorageConformanceTest, ATransactionCommitsEverythingItWrote) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(1, &ids);
  Storage& s = *this->storage_;
  int64_t new_study = 0, new_trial = 0;
  ASSERT_THAT(s.Transaction([&]() -> absl::Status {
    Trial t = this->NewTrial(study, 0);
    t.id = ids[0];
    t.state = TrialState::kFailed;
    t.retried = true;
    Measurement m{1, 0.25, {}, absl::FromUnixMillis(1'700'000'000'000)};
    RETURN_IF_ERROR(s.UpdateTrial(t, &m));
    Trial retry = this->NewTrial(study, 1);
    retry.retry_of = 0;
    retry.state = TrialState::kWaiting;
    ASSIGN_OR_RETURN(new_trial, s.CreateTrial(retry));
    ASSIGN_OR_RETURN(new_study, s.CreateStudy(this->NewStudy("second")));
    return s.UpdateStudyState(study, StudyState::kStopped);
  }), IsOk());
  EXPECT_EQ(new_trial, 2);
  EXPECT_EQ(new_study, 2);
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].state, StudyState::kStopped);
  ASSERT_EQ(all[0].trials.size(), 2u);
  EXPECT_EQ(all[0].trials[0].state, TrialState::kFailed);
  EXPECT_TRUE(all[0].trials[0].retried);
  EXPECT_EQ(all[0].trials[0].measurements.size(), 1u);
  EXPECT_EQ(all[0].trials[1].retry_of, 0);
  EXPECT_EQ(all[0].trials[1].state, TrialState::kWaiting);
}

TYPED_TEST(StorageConformanceTest, ABodyThatFailsLeavesNothingBehind) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(2, &ids);
  Storage& s = *this->storage_;
  const std::string before = this->Dump();
  absl::Status st = s.Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(int64_t other, s.CreateStudy(this->NewStudy("rolled back")));
    RETURN_IF_ERROR(s.CreateTrial(this->NewTrial(other, 0)).status());
    RETURN_IF_ERROR(s.CreateTrial(this->NewTrial(study, 2)).status());
    for (int i = 0; i < 2; ++i) {
      Trial t = this->NewTrial(study, i);
      t.id = ids[i];
      t.state = TrialState::kPruned;
      t.data = DataReport{"idx", {}, 1, 1, 1, 1, 1, 1, 0, {}};
      Measurement m{1, 0.5, {{"x", 1.0}}, absl::FromUnixMillis(1'700'000'000'000)};
      RETURN_IF_ERROR(s.UpdateTrial(t, &m));
      RETURN_IF_ERROR(s.UpdateTrial(t, nullptr));  // the same trial twice in one transaction
    }
    RETURN_IF_ERROR(s.UpdateStudyState(study, StudyState::kCompleted));
    // What the body wrote is visible inside it.
    ASSIGN_OR_RETURN(std::vector<Study> inside, s.LoadAll());
    if (inside.size() != 2 || inside[0].trials.size() != 3) return absl::InternalError("not visible inside");
    return absl::AbortedError("changed my mind");
  });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kAborted, "changed my mind"));
  EXPECT_EQ(this->Dump(), before);
  this->Reopen();
  EXPECT_EQ(this->Dump(), before);
  // The store goes on, ids after the last stored one.
  EXPECT_EQ(*this->storage_->CreateStudy(this->NewStudy()), study + 1);
  EXPECT_EQ(*this->storage_->CreateTrial(this->NewTrial(study, 2)), ids[1] + 1);
}

TYPED_TEST(StorageConformanceTest, AFailedWriteInsideTheBodyRollsBackTheWritesBeforeIt) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(1, &ids);
  Storage& s = *this->storage_;
  const std::string before = this->Dump();
  absl::Status st = s.Transaction([&]() -> absl::Status {
    Trial t = this->NewTrial(study, 0);
    t.id = ids[0];
    t.state = TrialState::kFailed;
    RETURN_IF_ERROR(s.UpdateTrial(t, nullptr));
    RETURN_IF_ERROR(s.CreateTrial(this->NewTrial(study, 1)).status());
    return s.CreateTrial(this->NewTrial(study + 7, 0)).status();  // an unknown study
  });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kNotFound, "no stored study"));
  EXPECT_EQ(this->Dump(), before);
  this->Reopen();
  EXPECT_EQ(this->Dump(), before);
}

TYPED_TEST(StorageConformanceTest, AnInjectedFailureInsideTheBodyRollsBackTheWritesBeforeIt) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(1, &ids);
  ::hpo::testing::FaultyStorage s(this->storage_.get());
  const std::string before = this->Dump();
  s.FailNthWrite(3, absl::ResourceExhaustedError("disk full"));
  absl::Status st = s.Transaction([&]() -> absl::Status {
    Trial t = this->NewTrial(study, 0);
    t.id = ids[0];
    t.state = TrialState::kFailed;
    RETURN_IF_ERROR(s.UpdateTrial(t, nullptr));
    RETURN_IF_ERROR(s.CreateTrial(this->NewTrial(study, 1)).status());
    return s.UpdateStudyState(study, StudyState::kStopped);  // the third write: fails
  });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_EQ(s.failed(), 1);
  EXPECT_EQ(this->Dump(), before);
  // A failed commit rolls back too.
  s.FailEvery(::hpo::testing::WriteKind::kCommit, absl::UnavailableError("commit lost"));
  st = s.Transaction([&]() -> absl::Status { return s.CreateStudy(this->NewStudy()).status(); });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable, "commit lost"));
  EXPECT_EQ(this->Dump(), before);
  s.Clear();
  EXPECT_THAT(s.Transaction([&]() -> absl::Status { return s.CreateStudy(this->NewStudy()).status(); }), IsOk());
  EXPECT_EQ(this->Load().size(), 2u);
}

TYPED_TEST(StorageConformanceTest, NestedTransactionsJoinTheOuterOne) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(1, &ids);
  Storage& s = *this->storage_;
  Trial t = this->NewTrial(study, 0);
  t.id = ids[0];
  Measurement m1{1, 0.5, {}, absl::FromUnixMillis(1'700'000'000'000)};
  Measurement m2{2, 0.6, {}, absl::FromUnixMillis(1'700'000'001'000)};
  // UpdateTrial is itself a transaction; so is the inner Transaction. The outer one failing
  // takes back what both of them did, though each succeeded.
  const std::string before = this->Dump();
  absl::Status st = s.Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(s.UpdateTrial(t, &m1));
    RETURN_IF_ERROR(s.Transaction([&]() -> absl::Status { return s.UpdateTrial(t, &m2); }));
    return absl::CancelledError("outer fails");
  });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kCancelled, "outer fails"));
  EXPECT_EQ(this->Dump(), before);
  // An inner failure passed on rolls back everything.
  st = s.Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(s.UpdateTrial(t, &m1));
    return s.Transaction([&]() -> absl::Status {
      RETURN_IF_ERROR(s.UpdateTrial(t, &m2));
      return absl::FailedPreconditionError("inner fails");
    });
  });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition, "inner fails"));
  EXPECT_EQ(this->Dump(), before);
  // And both commit together.
  ASSERT_THAT(s.Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(s.UpdateTrial(t, &m1));
    return s.Transaction([&]() -> absl::Status { return s.UpdateTrial(t, &m2); });
  }), IsOk());
  this->Reopen();
  EXPECT_EQ(this->Load()[0].trials[0].measurements.size(), 2u);
}

TYPED_TEST(StorageConformanceTest, ALoadedSnapshotDoesNotChangeWithLaterWrites) {
  std::vector<int64_t> ids;
  const int64_t study = this->StudyWithTrials(1, &ids);
  std::vector<Study> snapshot = this->Load();
  const std::string text = DumpStudies(snapshot);
  Trial t = this->NewTrial(study, 0);
  t.id = ids[0];
  Measurement m{1, 0.5, {}, absl::FromUnixMillis(1'700'000'000'000)};
  ASSERT_THAT(this->storage_->UpdateTrial(t, &m), IsOk());
  ASSERT_THAT(this->storage_->UpdateStudyState(study, StudyState::kStopped), IsOk());
  EXPECT_EQ(DumpStudies(snapshot), text);
  EXPECT_NE(this->Dump(), text);
}

// --- Threads -------------------------------------------------------------------------------

TYPED_TEST(StorageConformanceTest, ConcurrentWritersLoseNothingAndReadersSeeWholeTransactions) {
  constexpr int kThreads = 6, kSteps = 40;
  Storage& s = *this->storage_;
  std::vector<int64_t> studies;
  std::vector<int64_t> trials;
  for (int i = 0; i < kThreads; ++i) {
    studies.push_back(this->StudyWithTrials(2, &trials));  // trials[2i], trials[2i+1]
  }
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, reads{0};
  // A reader: every transaction writes the same step to both trials of a study, so a snapshot
  // that has one without the other saw half a transaction.
  std::thread reader([&] {
    while (!done.load()) {
      auto all = s.LoadAll();
      if (!all.ok()) {
        ++torn;
        continue;
      }
      ++reads;
      for (const Study& st : *all) {
        if (st.trials.size() >= 2 && st.trials[0].measurements.size() != st.trials[1].measurements.size()) ++torn;
      }
    }
  });
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int w = 0; w < kThreads; ++w) {
    writers.emplace_back([&, w] {
      Trial a = this->NewTrial(studies[w], 0), b = this->NewTrial(studies[w], 1);
      a.id = trials[2 * w];
      b.id = trials[2 * w + 1];
      for (int step = 1; step <= kSteps; ++step) {
        Measurement m{step, 0.01 * step, {{"writer", 1.0 * w}}, absl::FromUnixMillis(1'700'000'000'000 + step)};
        absl::Status st = s.Transaction([&]() -> absl::Status {
          a.value = m.value;
          RETURN_IF_ERROR(s.UpdateTrial(a, &m));
          return s.UpdateTrial(b, &m);
        });
        if (!st.ok()) ++failures;
        // And trials created concurrently, each study its own numbers.
        if (step % 10 == 0 && !s.CreateTrial(this->NewTrial(studies[w], 1 + step / 10)).ok()) ++failures;
      }
    });
  }
  for (auto& t : writers) t.join();
  done = true;
  reader.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(reads.load(), 0);
  this->Reopen();
  std::vector<Study> all = this->Load();
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads));
  std::set<int64_t> trial_ids;
  for (int w = 0; w < kThreads; ++w) {
    const Study& st = all[w];
    ASSERT_EQ(st.trials.size(), 2u + kSteps / 10);
    for (const Trial& t : st.trials) trial_ids.insert(t.id);
    for (int i = 0; i < 2; ++i) {
      const Trial& t = st.trials[i];
      ASSERT_EQ(t.measurements.size(), static_cast<size_t>(kSteps));
      for (int step = 1; step <= kSteps; ++step) {
        EXPECT_EQ(t.measurements[step - 1].step, step);
        EXPECT_EQ(t.measurements[step - 1].metrics.at("writer"), 1.0 * w);
      }
    }
    EXPECT_EQ(st.trials[0].value, 0.01 * kSteps);
  }
  // Every trial id distinct and 1..n.
  EXPECT_EQ(trial_ids.size(), static_cast<size_t>(kThreads * (2 + kSteps / 10)));
  EXPECT_EQ(*trial_ids.begin(), 1);
  EXPECT_EQ(*trial_ids.rbegin(), static_cast<int64_t>(trial_ids.size()));
}

}  // namespace
}  // namespace hpo::server
