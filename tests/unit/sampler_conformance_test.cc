// Every sampler, through the registry: values inside their ranges with their
// types, conditional parameters respected, reproducible for a seed; and the
// model-based samplers beat random search on a simple function.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "server/model/search_space.h"
#include "server/model/study_spec.h"
#include "server/sampler/sampler_registry.h"

namespace hpo::server {
namespace {

using nlohmann::json;

constexpr char kSpace[] = R"([
  {"name": "x", "type": "float", "low": -2, "high": 2},
  {"name": "lr", "type": "float", "low": 0.0001, "high": 1, "log": true},
  {"name": "k", "type": "int", "low": 1, "high": 9, "step": 2},
  {"name": "units", "type": "int", "low": 4, "high": 512, "log": true},
  {"name": "opt", "type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
  {"name": "momentum", "type": "float", "low": 0.0, "high": 0.9, "step": 0.1,
   "condition": {"parent": "opt", "values": ["sgd"]}}])";

Study MakeStudy(const json& sampler, const char* space = kSpace, const char* direction = "minimize") {
  json spec = {{"name", "t"}, {"task", {{"type", "external"}}}, {"max_trials", 1000},
               {"objective", {{"direction", direction}}}, {"parameters", json::parse(space)}, {"sampler", sampler}};
  auto parsed = ParseStudySpec(spec.dump());
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  Study s;
  s.spec = *parsed;
  s.seed = 11;
  return s;
}

// Asks `sampler` for trial `number` and appends it, completed with f(params).
template <typename F>
const Trial& Step(Sampler& sampler, Study& s, F f) {
  Trial t;
  t.number = static_cast<int>(s.trials.size());
  t.id = t.number + 1;
  auto p = sampler.Sample(s, t.number, TrialSeed(s.seed, t.number));
  EXPECT_TRUE(p.ok()) << p.status();
  t.params = *p;
  t.state = TrialState::kCompleted;
  t.value = f(t.params);
  t.measurements.push_back({0, *t.value, {}, {}});
  s.trials.push_back(t);
  return s.trials.back();
}

double Quadratic(const ParamMap& p) {
  const double x = std::get<double>(p.at("x"));
  const double lr = std::log10(std::get<double>(p.at("lr")));
  return (x - 0.7) * (x - 0.7) + 0.3 * (lr + 2) * (lr + 2) + (std::get<std::string>(p.at("opt")) == "sgd" ? 0 : 0.5);
}

class SamplerConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  json Config() const {
    json c = json::parse(GetParam());
    c["seed"] = 3;
    return c;
  }
};

TEST_P(SamplerConformanceTest, ValuesInsideTheirRangesAndConditionsRespected) {
  Study s = MakeStudy(Config());
  auto sampler = MakeSampler(s.spec);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  for (int i = 0; i < 60; ++i) {
    const Trial& t = Step(**sampler, s, Quadratic);
    for (const ParamSpec& p : s.spec.params) {
      const bool active = IsActive(p, t.params);
      ASSERT_EQ(t.params.count(p.name), active ? 1u : 0u) << p.name << " trial " << i;
      if (active) EXPECT_TRUE(Contains(p, t.params.at(p.name))) << p.name << "=" << ToString(t.params.at(p.name));
    }
  }
}

TEST_P(SamplerConformanceTest, TheSameSeedGivesTheSameTrials) {
  Study a = MakeStudy(Config()), b = MakeStudy(Config());
  auto sa = MakeSampler(a.spec), sb = MakeSampler(b.spec);
  ASSERT_TRUE(sa.ok() && sb.ok());
  for (int i = 0; i < 30; ++i) {
    EXPECT_EQ(Step(**sa, a, Quadratic).params, Step(**sb, b, Quadratic).params) << "trial " << i;
  }
}

// A restarted coordinator builds fresh samplers: given the same history, a fresh one must suggest what
// one that has run from the start suggests (README: the same seed gives the same parameters for the same
// trial number across server restarts). Checked at every trial, with pruned and running trials in the
// history too.
TEST_P(SamplerConformanceTest, AFreshSamplerGivenTheSameHistoryAgreesWithOneThatRanFromTheStart) {
  Study s = MakeStudy(Config());
  auto running = MakeSampler(s.spec);
  ASSERT_TRUE(running.ok());
  for (int i = 0; i < 36; ++i) {
    const uint64_t seed = TrialSeed(s.seed, i);
    auto fresh = MakeSampler(s.spec);
    ASSERT_TRUE(fresh.ok());
    auto a = (*running)->Sample(s, i, seed);
    auto b = (*fresh)->Sample(s, i, seed);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(*a, *b) << "trial " << i;
    Trial t;
    t.number = i;
    t.id = i + 1;
    t.params = *a;
    if (i % 7 == 3) {
      t.state = TrialState::kRunning;  // still running on another worker
    } else {
      t.state = i % 5 == 1 ? TrialState::kPruned : TrialState::kCompleted;
      t.value = Quadratic(t.params);
      t.measurements.push_back({0, *t.value, {}, {}});
    }
    s.trials.push_back(t);
  }
}

INSTANTIATE_TEST_SUITE_P(AllSamplers, SamplerConformanceTest,
                         ::testing::Values(R"({"type": "random"})", R"({"type": "tpe"})",
                                           R"({"type": "tpe", "multivariate": true})",
                                           R"({"type": "tpe", "n_startup_trials": 3})",
                                           R"({"type": "gp", "n_startup_trials": 5, "n_candidates": 200})"));

// Median over seeds of the best value after `n` trials.
double MedianBest(const json& sampler_cfg, int n, int seeds) {
  std::vector<double> bests;
  for (int seed = 0; seed < seeds; ++seed) {
    json c = sampler_cfg;
    c["seed"] = seed;
    Study s = MakeStudy(c);
    s.seed = static_cast<uint64_t>(seed);
    auto sampler = MakeSampler(s.spec);
    double best = 1e9;
    for (int i = 0; i < n; ++i) best = std::min(best, *Step(**sampler, s, Quadratic).value);
    bests.push_back(best);
  }
  std::sort(bests.begin(), bests.end());
  return bests[bests.size() / 2];
}

TEST(TpeSamplerTest, FindsBetterValuesThanRandomSearchAtEqualTrials) {
  const double random = MedianBest({{"type", "random"}}, 60, 7);
  const double tpe = MedianBest({{"type", "tpe"}}, 60, 7);
  const double joint = MedianBest({{"type", "tpe"}, {"multivariate", true}}, 60, 7);
  EXPECT_LT(tpe, random * 0.7) << "tpe " << tpe << " random " << random;
  EXPECT_LT(joint, random * 0.7) << "multivariate tpe " << joint << " random " << random;
  const double gp = MedianBest({{"type", "gp"}, {"n_candidates", 300}}, 40, 5);
  EXPECT_LT(gp, random * 0.5) << "gp " << gp << " random " << random;
}

TEST(TpeSamplerTest, ConstantLiarKeepsParallelAsksApart) {
  Study s = MakeStudy({{"type", "tpe"}, {"n_startup_trials", 5}, {"seed", 1}},
                      R"([{"name": "x", "type": "float", "low": 0, "high": 1}])");
  auto sampler = MakeSampler(s.spec);
  for (int i = 0; i < 20; ++i) Step(**sampler, s, [](const ParamMap& p) { return std::fabs(std::get<double>(p.at("x")) - 0.5); });
  // Ten workers ask at once: each asked trial is RUNNING when the next ask comes.
  std::set<double> xs;
  for (int i = 0; i < 10; ++i) {
    Trial t;
    t.number = static_cast<int>(s.trials.size());
    t.id = t.number + 1;
    t.params = *(*sampler)->Sample(s, t.number, TrialSeed(s.seed, t.number));
    t.state = TrialState::kRunning;
    xs.insert(std::round(std::get<double>(t.params.at("x")) * 1000));
    s.trials.push_back(t);
  }
  EXPECT_GE(xs.size(), 9u);  // no near-duplicates (to 1e-3)
}

// BOHB-style fitting: with one completed trial (a mediocre one, at x = 0.9) and many trials pruned at
// step 3, the model is fitted on step 3, where the trials near x = 0.1 were clearly ahead.
class RungFitTest : public ::testing::TestWithParam<const char*> {};

TEST_P(RungFitTest, LearnsFromPrunedTrialsWhenFewCompleted) {
  auto run = [](bool rung_fit) {
    json options = json::parse(GetParam());
    options["n_startup_trials"] = 5;
    options["seed"] = 1;
    options["rung_fit"] = rung_fit;
    Study s = MakeStudy(options,
                        R"([{"name": "x", "type": "float", "low": 0, "high": 1}])", "maximize");
    auto add = [&](double x, int steps, double top, TrialState state) {
      Trial t;
      t.number = static_cast<int>(s.trials.size());
      t.id = t.number + 1;
      t.params["x"] = x;
      t.state = state;
      for (int k = 1; k <= steps; ++k) t.measurements.push_back({k, top * k / steps, {}, {}});
      if (state == TrialState::kCompleted) t.value = top, t.best_step = steps;
      s.trials.push_back(t);
    };
    add(0.9, 10, 0.80, TrialState::kCompleted);
    for (int i = 0; i < 6; ++i) add(0.08 + 0.01 * i, 3, 0.70 + 0.01 * i, TrialState::kPruned);  // ahead at step 3
    for (int i = 0; i < 6; ++i) add(0.85 + 0.02 * i, 3, 0.30 + 0.01 * i, TrialState::kPruned);
    for (int i = 0; i < 6; ++i) add(0.4 + 0.03 * i, 1, 0.10, TrialState::kPruned);
    auto sampler = MakeSampler(s.spec);
    EXPECT_TRUE(sampler.ok());
    int near = 0;
    for (int n = 0; n < 40; ++n) {
      auto p = (*sampler)->Sample(s, 100 + n, TrialSeed(s.seed, 100 + n));
      EXPECT_TRUE(p.ok());
      near += std::get<double>(p->at("x")) < 0.3;
    }
    return near;
  };
  const int with = run(true), without = run(false);
  EXPECT_GE(with, 28) << "of 40 samples near the trials ahead at step 3 (without rung fitting: " << without << ")";
  EXPECT_GT(with, without + 8);
}

INSTANTIATE_TEST_SUITE_P(ModelBasedSamplers, RungFitTest,
                         ::testing::Values(R"({"type": "tpe"})", R"({"type": "gp", "n_candidates": 200})"));

TEST(TpeSamplerTest, OptionsAreValidated) {
  for (const char* bad : {R"({"type": "tpe", "gamma": 2})", R"({"type": "tpe", "n_startup": 3})",
                          R"({"type": "tpe", "multivariate": "yes"})", R"({"type": "tpe", "rung_min_trials": -1})"}) {
    Study s = MakeStudy(json::parse(bad));
    EXPECT_EQ(MakeSampler(s.spec).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(GridSamplerTest, VisitsEveryPointOnceThenSaysExhausted) {
  Study s = MakeStudy({{"type", "grid"}}, R"([
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]},
    {"name": "momentum", "type": "float", "low": 0.0, "high": 0.5, "step": 0.25,
     "condition": {"parent": "opt", "values": ["sgd"]}},
    {"name": "k", "type": "int", "low": 1, "high": 2}])");
  auto sampler = MakeSampler(s.spec);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  std::set<ParamMap> seen;
  for (int i = 0; i < 8; ++i) seen.insert(Step(**sampler, s, [](const ParamMap&) { return 0.0; }).params);  // adam x2 + sgd x3 x2
  EXPECT_EQ(seen.size(), 8u);
  EXPECT_EQ((*sampler)->Sample(s, 8, 0).status().code(), absl::StatusCode::kOutOfRange);
  Study continuous = MakeStudy({{"type", "grid"}}, R"([{"name": "x", "type": "float", "low": 0, "high": 1}])");
  auto refused = MakeSampler(continuous.spec);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(refused.status().message()).find("not finite"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace hpo::server
