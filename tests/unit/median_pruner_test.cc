#include "server/pruner/median_pruner.h"

#include <gtest/gtest.h>

namespace hpo::server {
namespace {

// A study whose trials have the given per-step values; all but the last are COMPLETED.
Study MakeStudy(const std::vector<std::vector<double>>& curves, Direction dir = Direction::kMaximize) {
  Study s;
  s.spec.direction = dir;
  for (size_t i = 0; i < curves.size(); ++i) {
    Trial t;
    t.id = static_cast<int64_t>(i + 1);
    t.number = static_cast<int>(i);
    t.state = i + 1 == curves.size() ? TrialState::kRunning : TrialState::kCompleted;
    for (size_t k = 0; k < curves[i].size(); ++k) {
      t.measurements.push_back(Measurement{static_cast<int>(k + 1), curves[i][k], {}, {}});
    }
    s.trials.push_back(t);
  }
  return s;
}

PruneDecision Decide(const MedianPrunerOptions& o, const Study& s) {
  auto d = NewMedianPruner(o)->Decide(s, s.trials.back());
  EXPECT_TRUE(d.ok());
  return *d;
}

TEST(MedianPrunerTest, PrunesBelowTheMedianOfCompletedTrialsAtTheSameStep) {
  MedianPrunerOptions o;
  o.startup_trials = 3;
  Study s = MakeStudy({{0.5, 0.7}, {0.6, 0.8}, {0.7, 0.9}, {0.55, 0.75}});
  PruneDecision d = Decide(o, s);  // 0.75 at step 2 < median 0.8
  EXPECT_TRUE(d.prune);
  EXPECT_NE(d.reason.find("median 0.8000"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("step 2"), std::string::npos) << d.reason;
  EXPECT_FALSE(Decide(o, MakeStudy({{0.5, 0.7}, {0.6, 0.8}, {0.7, 0.9}, {0.55, 0.85}})).prune);
}

TEST(MedianPrunerTest, UsesTheBestValueSoFar) {
  MedianPrunerOptions o;
  o.startup_trials = 3;
  // Step 2 value 0.5 is below the median 0.8, but step 1 reached 0.85.
  EXPECT_FALSE(Decide(o, MakeStudy({{0.5, 0.7}, {0.6, 0.8}, {0.7, 0.9}, {0.85, 0.5}})).prune);
}

TEST(MedianPrunerTest, NoPruningBeforeStartupTrialsOrDuringWarmup) {
  MedianPrunerOptions o;
  o.startup_trials = 4;
  EXPECT_FALSE(Decide(o, MakeStudy({{0.5, 0.7}, {0.6, 0.8}, {0.7, 0.9}, {0.1, 0.1}})).prune);
  o.startup_trials = 3;
  o.warmup_steps = 2;
  EXPECT_FALSE(Decide(o, MakeStudy({{0.5, 0.7}, {0.6, 0.8}, {0.7, 0.9}, {0.1, 0.1}})).prune);
  o.warmup_steps = 1;
  EXPECT_TRUE(Decide(o, MakeStudy({{0.5, 0.7}, {0.6, 0.8}, {0.7, 0.9}, {0.1, 0.1}})).prune);
}

TEST(MedianPrunerTest, JudgesOnlyEveryIntervalSteps) {
  MedianPrunerOptions o;
  o.startup_trials = 1;
  o.interval_steps = 2;  // judged at steps 1, 3, 5...
  EXPECT_TRUE(Decide(o, MakeStudy({{0.9, 0.9, 0.9}, {0.1}})).prune);
  EXPECT_FALSE(Decide(o, MakeStudy({{0.9, 0.9, 0.9}, {0.1, 0.1}})).prune);
  EXPECT_TRUE(Decide(o, MakeStudy({{0.9, 0.9, 0.9}, {0.1, 0.1, 0.1}})).prune);
}

TEST(MedianPrunerTest, MinimizeFlipsTheComparison) {
  MedianPrunerOptions o;
  o.startup_trials = 3;
  const auto dir = Direction::kMinimize;
  EXPECT_TRUE(Decide(o, MakeStudy({{1.0, 0.5}, {1.0, 0.4}, {1.0, 0.3}, {1.0, 0.6}}, dir)).prune);
  EXPECT_FALSE(Decide(o, MakeStudy({{1.0, 0.5}, {1.0, 0.4}, {1.0, 0.3}, {1.0, 0.35}}, dir)).prune);
}

TEST(MedianPrunerTest, IgnoresPrunedAndRunningTrialsAndStepsNobodyReached) {
  MedianPrunerOptions o;
  o.startup_trials = 1;
  Study s = MakeStudy({{0.9}, {0.2, 0.2, 0.2}});
  s.trials[0].state = TrialState::kPruned;
  EXPECT_FALSE(Decide(o, s).prune);  // no completed trial
  s.trials[0].state = TrialState::kCompleted;
  EXPECT_FALSE(Decide(o, s).prune);  // nobody completed reported step 3
}

}  // namespace
}  // namespace hpo::server
