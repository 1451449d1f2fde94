// The coordinator shared by many studies and workers at once: a sampler that computes does not hold
// up anything but its own study's next sample; results that lost their trial are dropped; many
// threads asking, reporting and completing across studies leave consistent state. Also run under
// ThreadSanitizer in CI (label `concurrency`).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/core/coordinator.h"
#include "server/sampler/sampler_registry.h"
#include "server/storage/memory_storage.h"
#include "server/storage/sqlite_storage.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;

std::string Spec(const std::string& name, const std::string& sampler, int max_trials) {
  return absl::StrCat(R"({"name": ")", name, R"(", "task": {"type": "cnn", "dataset": "d", "max_epochs": 5},
    "parameters": [{"name": "learning_rate", "type": "float", "low": 0.001, "high": 0.1, "log": true},
                   {"name": "dense_units", "type": "int", "low": 8, "high": 64}],
    "sampler": {"type": ")", sampler, R"(", "seed": 3},
    "pruner": {"type": "median", "startup_trials": 2},
    "max_trials": )", max_trials, "}");
}

// A sampler that, for studies named "slow", blocks in Sample until the test releases it.
struct Gate {
  absl::Notification entered;
  absl::Notification release;
  std::atomic<int> calls{0};
  std::atomic<int> free_calls{0};  // this many first calls pass without blocking
};

class GatedSampler final : public Sampler {
 public:
  GatedSampler(std::unique_ptr<Sampler> inner, Gate* gate) : inner_(std::move(inner)), gate_(gate) {}
  absl::StatusOr<ParamMap> Sample(const Study& study, int number, uint64_t seed) override {
    if (gate_->calls++ < gate_->free_calls.load()) return inner_->Sample(study, number, seed);
    if (!gate_->entered.HasBeenNotified()) gate_->entered.Notify();
    gate_->release.WaitForNotification();
    return inner_->Sample(study, number, seed);
  }

 private:
  std::unique_ptr<Sampler> inner_;
  Gate* gate_;
};

class CoordinatorConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::filesystem::temp_directory_path() /
          absl::StrCat("hpo_conc_", ::getpid(), "_",
                       ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".db");
    Cleanup();
    CoordinatorOptions options;
    options.make_sampler = [this](const StudySpec& spec) -> absl::StatusOr<std::unique_ptr<Sampler>> {
      auto inner = MakeSampler(spec);
      if (!inner.ok() || spec.name != "slow") return inner;
      return std::unique_ptr<Sampler>(new GatedSampler(std::move(*inner), &gate_));
    };
    options.sampling_threads = 2;
    options.max_waiting_asks = 2;
    auto storage = OpenSqliteStorage(db_.string());
    ASSERT_THAT(storage, IsOk());
    auto c = Coordinator::Open(std::move(*storage), &clock_, options);
    ASSERT_THAT(c, IsOk());
    c_ = std::move(*c);
  }
  void TearDown() override {
    if (!gate_.release.HasBeenNotified()) gate_.release.Notify();
    c_.reset();
    Cleanup();
  }
  void Cleanup() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db_.string() + suffix);
  }
  int64_t Create(const std::string& name, const std::string& sampler = "random", int max_trials = 10) {
    auto s = c_->CreateStudy(Spec(name, sampler, max_trials));
    EXPECT_THAT(s, IsOk());
    return s.ok() ? s->id : 0;
  }
  // Runs `f` on another thread and waits for it at most `seconds`; false when it did not finish
  // (the test then releases the gate so that the thread can end).
  template <typename F>
  bool FinishesWhileSamplerBlocks(F f, double seconds = 10) {
    auto fut = std::async(std::launch::async, f);
    const bool done = fut.wait_for(std::chrono::duration<double>(seconds)) == std::future_status::ready;
    if (!done) gate_.release.Notify();
    fut.wait();
    return done;
  }

  hpo::testing::FakeClock clock_;
  Gate gate_;
  std::filesystem::path db_;
  std::unique_ptr<Coordinator> c_;
};

// On a coordinator with one lock, the report below waits for the blocked sampler (forever here).
TEST_F(CoordinatorConcurrencyTest, ASamplerThatComputesHoldsUpNoOtherStudy) {
  const int64_t fast = Create("fast");
  const int64_t slow = Create("slow");
  auto a = c_->AskTrial("w1", {"cnn"}, fast);
  ASSERT_THAT(a, IsOk());
  ASSERT_TRUE(a->has_value());
  const int64_t trial = (*a)->trial.id;

  // A worker asks the slow study; its sampler blocks.
  auto slow_ask = std::async(std::launch::async, [&] { return c_->AskTrial("w2", {"cnn"}, slow); });
  ASSERT_TRUE(gate_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));

  // Meanwhile, everything of the other study goes on.
  EXPECT_TRUE(FinishesWhileSamplerBlocks([&] {
    EXPECT_THAT(c_->Report(trial, Measurement{1, 0.5, {}, {}}), IsOk());
    EXPECT_THAT(c_->Heartbeat(trial, "w1"), IsOk());
    EXPECT_THAT(c_->Report(trial, Measurement{2, 0.6, {}, {}}), IsOk());
    EXPECT_THAT(c_->CompleteTrial(trial, {{"test_accuracy", 0.6}}), IsOk());
    auto next = c_->AskTrial("w3", {"cnn"}, fast);
    EXPECT_THAT(next, IsOk());
    EXPECT_TRUE(next.ok() && next->has_value());
    EXPECT_THAT(c_->GetStudy(slow), IsOk());
    EXPECT_EQ(c_->ListStudies().size(), 2u);
    EXPECT_EQ(c_->ReapExpiredLeases(), 0);
  })) << "another study's calls waited for the slow study's sampler";

  gate_.release.Notify();
  auto got = slow_ask.get();
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->trial.number, 0);
}

TEST_F(CoordinatorConcurrencyTest, ReportsOfTheSampledStudyItselfGoOnWhileItSamples) {
  const int64_t slow = Create("slow");
  gate_.free_calls = 1;  // the first ask passes
  auto first = c_->AskTrial("w1", {"cnn"}, slow);
  ASSERT_TRUE(first.ok() && first->has_value());
  const int64_t trial = (*first)->trial.id;

  auto second = std::async(std::launch::async, [&] { return c_->AskTrial("w2", {"cnn"}, slow); });
  ASSERT_TRUE(gate_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE(FinishesWhileSamplerBlocks([&] {
    EXPECT_THAT(c_->Report(trial, Measurement{1, 0.5, {}, {}}), IsOk());
    EXPECT_THAT(c_->CompleteTrial(trial, {}), IsOk());
  }));
  gate_.release.Notify();
  auto got = second.get();
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->trial.number, 1);
}

TEST_F(CoordinatorConcurrencyTest, ASampleIsDroppedWhenTheStudyStopsMeanwhile) {
  const int64_t slow = Create("slow");
  auto ask = std::async(std::launch::async, [&] { return c_->AskTrial("w1", {"cnn"}, slow); });
  ASSERT_TRUE(gate_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_THAT(c_->StopStudy(slow), IsOk());
  gate_.release.Notify();
  auto got = ask.get();
  ASSERT_THAT(got, IsOk());
  EXPECT_FALSE(got->has_value());
  EXPECT_TRUE(c_->GetStudy(slow)->trials.empty());
}

TEST_F(CoordinatorConcurrencyTest, ASampleIsDroppedWhenAnEnqueuedTrialTakesTheLastSlot) {
  const int64_t slow = Create("slow", "random", /*max_trials=*/1);
  auto ask = std::async(std::launch::async, [&] { return c_->AskTrial("w1", {"cnn"}, slow); });
  ASSERT_TRUE(gate_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  auto queued = c_->EnqueueTrial(slow, R"({"learning_rate": 0.01, "dense_units": 16})");
  ASSERT_THAT(queued, IsOk());
  gate_.release.Notify();
  auto got = ask.get();
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  // The worker gets the enqueued trial; the sampled parameters were dropped, not a second trial.
  EXPECT_EQ((*got)->trial.id, queued->id);
  EXPECT_EQ(std::get<int64_t>((*got)->trial.params.at("dense_units")), 16);
  EXPECT_EQ(c_->GetStudy(slow)->trials.size(), 1u);
}

TEST_F(CoordinatorConcurrencyTest, AsksBeyondThePoolsQueueAreRefusedNotQueuedWithoutBound) {
  const int64_t slow = Create("slow");
  std::atomic<int> answered{0}, exhausted{0};
  auto ask = [&] {
    c_->AskTrialAsync("w", {"cnn"}, slow, "", [&](absl::StatusOr<std::optional<Assignment>> r) {
      if (r.status().code() == absl::StatusCode::kResourceExhausted) {
        EXPECT_NE(r.status().message().find("ask again"), std::string::npos);
        exhausted++;
      }
      answered++;
    });
  };
  // 2 threads (one samples and blocks, one waits for the study's sampling lock), 2 waiting: the
  // 5th and 6th asks are refused at once.
  for (int i = 0; i < 6; ++i) {
    ask();
    if (i == 0) ASSERT_TRUE(gate_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
    if (i == 1) absl::SleepFor(absl::Milliseconds(200));  // let the second start waiting on the lock
  }
  EXPECT_EQ(exhausted.load(), 2);
  gate_.release.Notify();
  for (int i = 0; i < 500 && answered.load() < 6; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(answered.load(), 6);
  EXPECT_EQ(c_->GetStudy(slow)->trials.size(), 4u);
}

// Many threads on several studies at once: no trial is handed out twice, every acknowledged
// measurement is kept, and the counts add up.
TEST_F(CoordinatorConcurrencyTest, ManyWorkersOnManyStudiesLeaveConsistentState) {
  gate_.release.Notify();
  std::vector<int64_t> studies;
  for (int i = 0; i < 4; ++i) studies.push_back(Create(absl::StrCat("s", i), i % 2 ? "tpe" : "random", 40));
  std::mutex mu;
  std::set<int64_t> handed_out;
  std::map<int64_t, int> acked;  // trial id -> measurements acknowledged
  std::atomic<int> duplicates{0};
  auto worker = [&](int w) {
    for (;;) {
      auto a = c_->AskTrial(absl::StrCat("w", w), {"cnn"}, w % 3 == 0 ? 0 : studies[w % 4]);
      ASSERT_THAT(a, IsOk());
      if (!a->has_value()) {
        if (w % 3 == 0) return;
        auto s = c_->GetStudy(studies[w % 4]);
        if (s->state != StudyState::kRunning) return;
        std::this_thread::yield();
        continue;
      }
      const Trial& t = (*a)->trial;
      {
        std::lock_guard<std::mutex> l(mu);
        if (!handed_out.insert(t.id).second) duplicates++;
      }
      int steps = 0;
      for (int step = 1; step <= 5; ++step) {
        auto d = c_->Report(t.id, Measurement{step, 0.1 * step + 0.01 * (t.number % 7), {}, {}});
        ASSERT_THAT(d, IsOk());
        ++steps;
        if (d->action == Action::kPrune) break;
      }
      {
        std::lock_guard<std::mutex> l(mu);
        acked[t.id] = steps;
      }
      auto done = c_->CompleteTrial(t.id, {});
      if (!done.ok()) {
        ASSERT_EQ(done.status().code(), absl::StatusCode::kFailedPrecondition);  // pruned
      }
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < 8; ++w) threads.emplace_back(worker, w);
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(duplicates.load(), 0);
  int trials = 0;
  for (int64_t id : studies) {
    auto s = c_->GetStudy(id);
    ASSERT_THAT(s, IsOk());
    EXPECT_EQ(s->state, StudyState::kCompleted);
    EXPECT_EQ(s->trials.size(), 40u);
    // The figures kept as trials changed agree with a scan of the trials.
    auto kept = c_->GetStudySummary(id);
    ASSERT_THAT(kept, IsOk());
    const StudySummary scan = Summarize(*s);
    EXPECT_EQ(kept->trials, 40);
    EXPECT_EQ(kept->counts.completed, scan.counts.completed);
    EXPECT_EQ(kept->counts.pruned, scan.counts.pruned);
    EXPECT_EQ(kept->counts.running + kept->counts.waiting + kept->counts.failed, 0);
    EXPECT_EQ(kept->used_slots, scan.used_slots);
    EXPECT_EQ(kept->started, 40);
    ASSERT_EQ(kept->best.has_value(), scan.best.has_value());
    if (kept->best) {
      EXPECT_EQ(kept->best->number, scan.best->number);
      EXPECT_EQ(kept->best->value, scan.best->value);
    }
    for (const Trial& t : s->trials) {
      EXPECT_TRUE(t.state == TrialState::kCompleted || t.state == TrialState::kPruned);
      EXPECT_EQ(static_cast<int>(t.measurements.size()), acked.at(t.id)) << "trial " << t.id;
      ++trials;
    }
  }
  EXPECT_EQ(trials, 160);
  EXPECT_EQ(handed_out.size(), 160u);
  std::vector<StudySummary> page = c_->ListStudySummaries(studies[0], 2);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].study.id, studies[1]);
  EXPECT_EQ(page[1].study.id, studies[2]);
  EXPECT_TRUE(page[0].study.trials.empty());
}


// A store whose every commit takes 3 ms (as an fsync would), counting commits and measurements, and
// refusing one chosen measurement.
class SlowCommitStorage final : public Storage {
 public:
  explicit SlowCommitStorage(std::unique_ptr<Storage> inner) : inner_(std::move(inner)) {}
  std::atomic<int> commits{0};
  std::atomic<int64_t> refuse_trial{0};  // this trial's measurement at step 3 is refused
  Storage& inner() { return *inner_; }

  absl::StatusOr<std::vector<Study>> LoadAll() override { return inner_->LoadAll(); }
  absl::StatusOr<int64_t> CreateStudy(const Study& s) override {
    return Write([&] { return inner_->CreateStudy(s); });
  }
  absl::Status UpdateStudyState(int64_t id, StudyState st) override {
    return Write([&] { return inner_->UpdateStudyState(id, st); });
  }
  absl::Status DeleteStudy(int64_t id) override {
    return Write([&] { return inner_->DeleteStudy(id); });
  }
  absl::StatusOr<int64_t> CreateTrial(const Trial& t) override {
    return Write([&] { return inner_->CreateTrial(t); });
  }
  absl::Status UpdateTrial(const Trial& t, const Measurement* m) override {
    if (m != nullptr && m->step == 3 && t.id == refuse_trial.load()) {
      return absl::ResourceExhaustedError("disk full");
    }
    return Write([&] { return inner_->UpdateTrial(t, m); });
  }
  absl::Status Transaction(const std::function<absl::Status()>& body) override {
    return Write([&] { return inner_->Transaction(body); });
  }
  absl::StatusOr<std::vector<TrialDetails>> LoadTrialDetails(int64_t id, int first, int limit) override {
    return inner_->LoadTrialDetails(id, first, limit);
  }

 private:
  // Calls come one at a time (the coordinator's storage lock); the outermost one commits.
  template <typename F>
  auto Write(F f) -> decltype(f()) {
    ++depth_;
    auto result = f();
    if (--depth_ == 0) {
      ++commits;
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    return result;
  }
  std::unique_ptr<Storage> inner_;
  int depth_ = 0;
};

std::string LongSpec(const std::string& name) {
  return absl::StrCat(R"({"name": ")", name, R"(", "task": {"type": "external", "max_steps": 100},
    "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1}],
    "sampler": {"type": "random", "seed": 1}, "pruner": {"type": "none"}, "max_trials": 1})");
}

// Reports of 8 workers at once: their writes share commits (group commit), and every
// acknowledged measurement is stored; a refused write fails its own report only.
TEST(GroupCommitTest, ConcurrentWritesShareCommitsAndARefusedOneFailsOnlyItself) {
  auto owned = std::make_unique<SlowCommitStorage>(NewMemoryStorage());
  SlowCommitStorage* storage = owned.get();
  hpo::testing::FakeClock clock;
  auto c = Coordinator::Open(std::move(owned), &clock, CoordinatorOptions{});
  ASSERT_THAT(c, IsOk());
  constexpr int kWorkers = 8, kSteps = 25;
  std::vector<int64_t> trials;
  for (int w = 0; w < kWorkers; ++w) {
    auto s = (*c)->CreateStudy(LongSpec(absl::StrCat("s", w)));
    ASSERT_THAT(s, IsOk());
    auto a = (*c)->AskTrial("w", {"external"}, s->id);
    ASSERT_THAT(a, IsOk());
    ASSERT_TRUE(a->has_value());
    trials.push_back((*a)->trial.id);
  }
  storage->refuse_trial = trials[5];
  const int before = storage->commits.load();
  std::atomic<int> acked{0}, refused{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      for (int step = 1; step <= kSteps; ++step) {
        auto d = (*c)->Report(trials[w], Measurement{step, 0.01 * step, {{"loss", 1.0 / step}}, {}});
        if (d.ok()) {
          ++acked;
        } else {
          EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted) << d.status();
          EXPECT_EQ(w, 5);
          EXPECT_EQ(step, 3);
          ++refused;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const int commits = storage->commits.load() - before;
  EXPECT_EQ(refused.load(), 1);
  EXPECT_EQ(acked.load(), kWorkers * kSteps - 1);
  // One commit per write would be 200 (plus the reruns of batches with the refused write).
  EXPECT_LT(commits, kWorkers * kSteps * 6 / 10) << commits << " commits for " << acked.load() << " writes";
  int stored = 0;
  auto all = storage->inner().LoadAll();
  ASSERT_THAT(all, IsOk());
  for (const Study& s : *all) {
    for (const Trial& t : s.trials) {
      stored += static_cast<int>(t.measurements.size());
      for (const Measurement& m : t.measurements) EXPECT_FALSE(t.id == trials[5] && m.step == 3);
    }
  }
  EXPECT_EQ(stored, acked.load());
}

}  // namespace
}  // namespace hpo::server
