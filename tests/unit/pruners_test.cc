// The pruners behind the registry: percentile, ASHA, Hyperband, patience, threshold, and lists.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "server/model/study_spec.h"
#include "server/pruner/pruner_registry.h"
#include "server/pruner/successive_halving_pruner.h"

namespace hpo::server {
namespace {

using nlohmann::json;

// A study with `pruner`, max_epochs 27, and trials with the given curves (steps 1..n);
// all but the last are COMPLETED unless `running` says otherwise.
Study MakeStudy(const json& pruner, const std::vector<std::vector<double>>& curves, bool others_running = false) {
  json spec = {{"name", "p"}, {"task", {{"type", "cnn"}, {"dataset", "d"}, {"max_epochs", 27}}}, {"max_trials", 100},
               {"parameters", json::parse(R"([{"name": "dropout", "type": "float", "low": 0, "high": 0.5}])")},
               {"pruner", pruner}};
  auto parsed = ParseStudySpec(spec.dump());
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  Study s;
  s.spec = *parsed;
  s.seed = 5;
  for (size_t i = 0; i < curves.size(); ++i) {
    Trial t;
    t.id = static_cast<int64_t>(i + 1);
    t.number = static_cast<int>(i);
    t.state = i + 1 == curves.size() || others_running ? TrialState::kRunning : TrialState::kCompleted;
    for (size_t k = 0; k < curves[i].size(); ++k) t.measurements.push_back({static_cast<int>(k + 1), curves[i][k], {}, {}});
    s.trials.push_back(t);
  }
  return s;
}

PruneDecision Decide(const json& pruner, const std::vector<std::vector<double>>& curves, bool others_running = false) {
  Study s = MakeStudy(pruner, curves, others_running);
  auto p = MakePruner(s.spec, s.seed);
  EXPECT_TRUE(p.ok()) << p.status();
  auto d = (*p)->Decide(s, s.trials.back());
  EXPECT_TRUE(d.ok());
  return *d;
}

TEST(PercentilePrunerTest, KeepsTheTopPercent) {
  const json keep25 = {{"type", "percentile"}, {"keep_top", 25}, {"startup_trials", 1}};
  const std::vector<std::vector<double>> others = {{0.1}, {0.2}, {0.3}, {0.4}, {0.5}};
  auto with = [&](double v) {
    auto curves = others;
    curves.push_back({v});
    return Decide(keep25, curves);
  };
  EXPECT_TRUE(with(0.35).prune);   // cut-off: 75th percentile of 0.1..0.5 = 0.4
  EXPECT_FALSE(with(0.45).prune);
  EXPECT_NE(with(0.35).reason.find("keep top 25%"), std::string::npos) << with(0.35).reason;
}

// The coordinator tells a pruner of every trial change (Observe); the percentile, ASHA and Hyperband
// pruners then decide from per-step order-statistics trees (Hyperband's per bracket). Their decisions
// must equal those from scanning the study, with the measurement judged not yet observed (as the coordinator decides).
TEST(PercentilePrunerTest, IncrementalDecisionsEqualTheScanOfTheStudy) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(0, 1);
  for (const json& pruner : {json{{"type", "median"}, {"startup_trials", 3}},
                             json{{"type", "percentile"}, {"keep_top", 30}, {"startup_trials", 2},
                                  {"warmup_steps", 1}, {"min_trials_at_step", 4}},
                             json{{"type", "asha"}, {"min_resource", 1}, {"reduction_factor", 3}},
                             json{{"type", "asha"}, {"min_resource", 2}, {"reduction_factor", 2},
                                  {"bootstrap_count", 3}},
                             json{{"type", "hyperband"}, {"min_resource", 1}, {"reduction_factor", 3}},
                             json{{"type", "hyperband"}, {"min_resource", 1}, {"max_resource", 8},
                                  {"reduction_factor", 2}}}) {
    SCOPED_TRACE(pruner.dump());
    Study s = MakeStudy(pruner, {});
    auto incremental = MakePruner(s.spec, s.seed);
    ASSERT_TRUE(incremental.ok());
    int decided = 0, pruned = 0;
    for (int n = 0; n < 120; ++n) {
      Trial t;
      t.id = n + 1;
      t.number = n;
      t.state = TrialState::kRunning;
      (*incremental)->Observe(nullptr, t);
      s.trials.push_back(t);
      const int steps = 1 + static_cast<int>(u(rng) * 8);
      const double level = u(rng);
      for (int step = 1; step <= steps; ++step) {
        Trial before = s.trials.back();
        s.trials.back().measurements.push_back({step, level + 0.05 * step + 0.1 * u(rng), {}, {}});
        auto scan = MakePruner(s.spec, s.seed);
        auto a = (*scan)->Decide(s, s.trials.back());
        auto b = (*incremental)->Decide(s, s.trials.back());
        ASSERT_TRUE(a.ok() && b.ok());
        ASSERT_EQ(a->prune, b->prune) << "trial " << n << " step " << step;
        ASSERT_EQ(a->reason, b->reason);
        ++decided;
        pruned += a->prune;
        (*incremental)->Observe(&before, s.trials.back());
      }
      Trial before = s.trials.back();
      s.trials.back().state = u(rng) < 0.8 ? TrialState::kCompleted : TrialState::kPruned;
      (*incremental)->Observe(&before, s.trials.back());
    }
    EXPECT_GT(pruned, 20);
    EXPECT_LT(pruned, decided);
  }
}

TEST(AshaPrunerTest, KeepsTheTopThirdAtEachRungWithoutWaiting) {
  const json asha = {{"type", "asha"}, {"min_resource", 1}, {"reduction_factor", 3}};
  // Rungs at steps 1, 3, 9. First trial at a rung: nobody to compare with, it goes on.
  EXPECT_FALSE(Decide(asha, {{0.1}}).prune);
  // Third trial at rung 0 (step 1): top floor(3/3)=1 goes on; 0.5 is beaten by 0.9.
  PruneDecision d = Decide(asha, {{0.9}, {0.4}, {0.5}}, /*others_running=*/true);
  EXPECT_TRUE(d.prune);
  EXPECT_NE(d.reason.find("asha rung 0 (step 1)"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("cut-off 0.9000"), std::string::npos) << d.reason;
  EXPECT_FALSE(Decide(asha, {{0.4}, {0.5}, {0.9}}, true).prune);
  // Step 2 is not a rung: never judged there.
  EXPECT_FALSE(Decide(asha, {{0.9, 0.9}, {0.8, 0.9}, {0.5, 0.1}}, true).prune);
  // Rung 1 (step 3) compares only trials that reached step 3.
  EXPECT_FALSE(Decide(asha, {{0.9}, {0.9}, {0.5, 0.6, 0.7}}, true).prune);
  EXPECT_TRUE(Decide(asha, {{0.9, 0.9, 0.9}, {0.9, 0.9, 0.8}, {0.9, 0.9, 0.85}, {0.5, 0.6, 0.7}}, true).prune);
}

TEST(HyperbandPrunerTest, BracketsAreDeterministicAndWeighted) {
  HyperbandOptions o;
  o.min_resource = 1;
  o.reduction_factor = 3;
  std::map<int, int> counts;
  for (int n = 0; n < 3000; ++n) {
    const int b = HyperbandBracket(o, 27, 42, n);
    EXPECT_EQ(b, HyperbandBracket(o, 27, 42, n));  // same seed and number, same bracket, in any process
    ++counts[b];
  }
  // S = 3; weights ceil(4/(b+1)) * 3^(3-b) = 108, 18, 6, 1.
  ASSERT_EQ(counts.size(), 4u);
  EXPECT_NEAR(counts[0] / 3000.0, 108.0 / 133, 0.03);
  EXPECT_NEAR(counts[1] / 3000.0, 18.0 / 133, 0.03);
  EXPECT_GT(counts[3], 0);
  int differ = 0;
  for (int n = 0; n < 100; ++n) differ += HyperbandBracket(o, 27, 42, n) != HyperbandBracket(o, 27, 43, n);
  EXPECT_GT(differ, 0);  // another study seed, another assignment
}

TEST(PatiencePrunerTest, StopsAFlatCurve) {
  const json patience = {{"type", "patience"}, {"patience", 2}, {"min_delta", 0.01}};
  EXPECT_FALSE(Decide(patience, {{0.5, 0.6, 0.7}}).prune);
  PruneDecision d = Decide(patience, {{0.5, 0.7, 0.705, 0.69}});
  EXPECT_TRUE(d.prune);
  EXPECT_NE(d.reason.find("no improvement of more than 0.01"), std::string::npos) << d.reason;
}

TEST(ThresholdPrunerTest, FloorCeilingAndWarmup) {
  const json floor = {{"type", "threshold"}, {"lower", 0.3}, {"warmup_steps", 1}};
  EXPECT_FALSE(Decide(floor, {{0.1}}).prune);  // warm-up
  EXPECT_TRUE(Decide(floor, {{0.1, 0.2}}).prune);
  EXPECT_FALSE(Decide(floor, {{0.1, 0.4}}).prune);
  EXPECT_TRUE(Decide({{"type", "threshold"}, {"upper", 2.0}}, {{2.5}}).prune);
}

TEST(PrunerListTest, PrunesWhenAnyMemberDoes) {
  const json both = json::array({{{"type", "patience"}, {"patience", 2}}, {{"type", "threshold"}, {"lower", 0.3}}});
  EXPECT_TRUE(Decide(both, {{0.2}}).prune);                   // threshold
  EXPECT_TRUE(Decide(both, {{0.5, 0.5, 0.5}}).prune);         // patience
  EXPECT_FALSE(Decide(both, {{0.4, 0.5, 0.6}}).prune);
}

TEST(PrunerRegistryTest, RefusesBadOptions) {
  for (const char* bad : {R"({"type": "asha", "reduction_factor": 1})", R"({"type": "percentile", "keep_top": 0})",
                          R"({"type": "threshold"})", R"([])", R"([{"type": "asha"}, {"type": "nope"}])",
                          R"({"type": "patience", "patience": 0})"}) {
    Study s = MakeStudy(json{{"type", "none"}}, {});
    s.spec.pruner = json::parse(bad);
    EXPECT_EQ(MakePruner(s.spec, s.seed).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace hpo::server
