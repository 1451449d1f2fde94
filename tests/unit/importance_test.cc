// fANOVA over a random forest (server/core/importance.h) on synthetic trials whose importances are known.
#include "server/core/importance.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "server/model/study_spec.h"

namespace hpo::server {
namespace {

using nlohmann::json;

StudySpec Spec(const json& params) {
  json spec = {{"name", "i"}, {"task", {{"type", "external"}}}, {"max_trials", 500},
               {"parameters", params}};
  auto s = ParseStudySpec(spec.dump());
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

// A deterministic uniform draw in [0, 1) (not the forest's generator).
struct Lcg {
  uint64_t s;
  double Next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) / 9007199254740992.0;
  }
  double Normal() {  // Box-Muller
    const double u = std::max(Next(), 1e-12), v = Next();
    return std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v);
  }
};

// n completed trials with parameters drawn by `draw` and values from `f`.
std::vector<Trial> Trials(int n, const std::function<ParamMap(Lcg&)>& draw,
                          const std::function<double(const ParamMap&, Lcg&)>& f, uint64_t seed = 7) {
  Lcg rng{seed};
  std::vector<Trial> out;
  for (int i = 0; i < n; ++i) {
    Trial t;
    t.number = i;
    t.state = TrialState::kCompleted;
    t.params = draw(rng);
    t.value = f(t.params, rng);
    out.push_back(t);
  }
  return out;
}

std::vector<const Trial*> Ptrs(const std::vector<Trial>& ts) {
  std::vector<const Trial*> out;
  for (const Trial& t : ts) out.push_back(&t);
  return out;
}

double D(const ParamMap& p, const char* k) { return std::get<double>(p.at(k)); }

const MainEffect& Of(const ImportanceResult& r, const std::string& name) {
  for (const auto& p : r.params) {
    if (p.name == name) return p.effect;
  }
  ADD_FAILURE() << "no parameter " << name;
  static MainEffect none;
  return none;
}

const json kXyz = json::parse(R"([{"name": "x", "type": "float", "low": 0, "high": 1},
                                  {"name": "y", "type": "float", "low": 0, "high": 1},
                                  {"name": "z", "type": "float", "low": 0, "high": 1}])");

ParamMap DrawXyz(Lcg& r) { return {{"x", r.Next()}, {"y", r.Next()}, {"z", r.Next()}}; }

TEST(ImportanceTest, OnlyTheParameterTheValueDependsOnMatters) {
  const auto trials = Trials(120, DrawXyz, [](const ParamMap& p, Lcg& r) {
    return std::sin(3 * D(p, "x")) + 0.05 * r.Normal();
  });
  const ImportanceResult imp = ComputeImportance(Spec(kXyz), Ptrs(trials));
  EXPECT_EQ(imp.trials, 120);
  EXPECT_EQ(imp.trees, 64);
  EXPECT_EQ(imp.varying_trees, 64);
  EXPECT_GT(Of(imp, "x").mean, 0.8);
  EXPECT_LT(Of(imp, "y").mean, 0.1);
  EXPECT_LT(Of(imp, "z").mean, 0.1);
  // The spread across the trees is reported, and is small next to so clear an effect.
  EXPECT_GT(Of(imp, "x").std, 0);
  EXPECT_LT(Of(imp, "x").std, 0.15);
  EXPECT_GT(Of(imp, "y").std, 0);
}

TEST(ImportanceTest, TwoAdditiveParametersGetTheirShareOfTheVariance) {
  // value = 2x + y, x and y uniform on [0, 1]: Var = 4/12 + 1/12, so x explains 0.8 and y 0.2.
  const auto trials = Trials(150, DrawXyz, [](const ParamMap& p, Lcg& r) {
    return 2 * D(p, "x") + D(p, "y") + 0.02 * r.Normal();
  });
  const ImportanceResult imp = ComputeImportance(Spec(kXyz), Ptrs(trials));
  const double x = Of(imp, "x").mean, y = Of(imp, "y").mean, z = Of(imp, "z").mean;
  EXPECT_GT(x, y);
  EXPECT_GT(y, z);
  EXPECT_NEAR(x, 0.8, 0.12);
  EXPECT_NEAR(y, 0.2, 0.1);
  EXPECT_LT(z, 0.05);
  EXPECT_LE(x + y + z, 1.0 + 1e-9);
}

TEST(ImportanceTest, ACategoricalThatDrivesTheValueIsFound) {
  const json params = json::parse(R"([{"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd", "rmsprop", "adamw"]},
                                      {"name": "x", "type": "float", "low": 0, "high": 1},
                                      {"name": "lr", "type": "float", "low": 0.0001, "high": 0.1, "log": true}])");
  const char* names[] = {"adam", "sgd", "rmsprop", "adamw"};
  const double effect[] = {0.9, 0.3, 0.6, 0.1};
  const auto trials = Trials(
      60,
      [&](Lcg& r) {
        return ParamMap{{"optimizer", std::string(names[static_cast<int>(r.Next() * 4)])},
                        {"x", r.Next()},
                        {"lr", std::exp(std::log(0.0001) + r.Next() * std::log(1000.0))}};
      },
      [&](const ParamMap& p, Lcg& r) {
        const std::string& o = std::get<std::string>(p.at("optimizer"));
        int k = 0;
        while (names[k] != o) ++k;
        return effect[k] + 0.03 * D(p, "x") + 0.01 * r.Normal();
      });
  const ImportanceResult imp = ComputeImportance(Spec(params), Ptrs(trials));
  EXPECT_GT(Of(imp, "optimizer").mean, 0.8);
  EXPECT_LT(Of(imp, "x").mean, 0.1);
  EXPECT_LT(Of(imp, "lr").mean, 0.1);
}

TEST(ImportanceTest, LogScaleIsTheDomainOfALogParameter) {
  // The value steps up at lr = 0.01: a third of the log range [1e-4, 1] but 1% of the linear one.
  // On the log scale the step splits the space 2/3 : 1/3, so the tree's variance is all lr's.
  const json params = json::parse(R"([{"name": "lr", "type": "float", "low": 0.0001, "high": 1, "log": true},
                                      {"name": "y", "type": "float", "low": 0, "high": 1}])");
  const auto trials = Trials(
      80, [](Lcg& r) { return ParamMap{{"lr", std::pow(10.0, -4 + 4 * r.Next())}, {"y", r.Next()}}; },
      [](const ParamMap& p, Lcg&) { return D(p, "lr") > 0.01 ? 1.0 : 0.0; });
  const ImportanceResult imp = ComputeImportance(Spec(params), Ptrs(trials));
  EXPECT_GT(Of(imp, "lr").mean, 0.99);
  EXPECT_LT(Of(imp, "y").mean, 0.01);
}

TEST(ImportanceTest, DeterministicForTheSameTrials) {
  const auto trials = Trials(40, DrawXyz, [](const ParamMap& p, Lcg& r) {
    return D(p, "x") * D(p, "y") + 0.1 * r.Normal();
  });
  const StudySpec spec = Spec(kXyz);
  const ImportanceResult a = ComputeImportance(spec, Ptrs(trials)), b = ComputeImportance(spec, Ptrs(trials));
  ASSERT_EQ(a.params.size(), 3u);
  for (size_t i = 0; i < a.params.size(); ++i) {
    EXPECT_EQ(a.params[i].effect.mean, b.params[i].effect.mean);
    EXPECT_EQ(a.params[i].effect.std, b.params[i].effect.std);
  }
  ForestOptions other;
  other.seed = 12345;
  const ImportanceResult c = ComputeImportance(spec, Ptrs(trials), other);
  EXPECT_NE(a.params[0].effect.mean, c.params[0].effect.mean);  // the seed is what varies it
}

TEST(ImportanceTest, ExactDecompositionOfATreeOverTheSpace) {
  // y = [x0 > 0.5] xor [x1 > 0.5] on the four corners (0.25 / 0.75): every tree that varies is the
  // xor itself, thresholds at 0.5, whose variance is all interaction: no main effect at all.
  std::vector<FanovaDim> dims(2);
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  for (int i = 0; i < 40; ++i) {
    const double a = i % 2 ? 0.75 : 0.25, b = (i / 2) % 2 ? 0.75 : 0.25;
    x.push_back({a, b});
    y.push_back((a > 0.5) != (b > 0.5) ? 1.0 : 0.0);
  }
  ForestOptions o;
  o.min_samples_leaf = 1;
  o.max_features = 1.0;
  FanovaResult r = Fanova(dims, x, y, o);
  ASSERT_GT(r.varying_trees, 0);
  EXPECT_NEAR(r.effects[0].mean, 0, 1e-9);
  EXPECT_NEAR(r.effects[1].mean, 0, 1e-9);
  // y = [x0 > 0.5]: a function of x0 alone, all of whose variance is x0's main effect.
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i][0] > 0.5 ? 1.0 : 0.0;
  r = Fanova(dims, x, y, o);
  EXPECT_NEAR(r.effects[0].mean, 1, 1e-9);
  EXPECT_NEAR(r.effects[0].std, 0, 1e-9);
  EXPECT_NEAR(r.effects[1].mean, 0, 1e-9);
  // A categorical dimension's mass sits on its choices: 3 categories, y = [c == 2], threshold 1.5.
  dims[0] = FanovaDim{3, 0};
  for (size_t i = 0; i < x.size(); ++i) {
    x[i][0] = static_cast<double>(i % 3);
    y[i] = i % 3 == 2 ? 1.0 : 0.0;
  }
  r = Fanova(dims, x, y, o);
  EXPECT_NEAR(r.effects[0].mean, 1, 1e-9);
  EXPECT_DOUBLE_EQ(dims[0].Cdf(1.5), 2.0 / 3);
  EXPECT_DOUBLE_EQ(dims[0].Cdf(-0.5), 0);
  EXPECT_DOUBLE_EQ(FanovaDim({0, 0.25}).Cdf(0.5), 0.25 + 0.75 * 0.5);
}

TEST(ImportanceTest, ConditionalParametersAndConstantValues) {
  // momentum is active only with sgd; sgd trials are better. The inactive value is a value of its own,
  // so momentum shares the optimizer's effect; nothing breaks and the shares stay in [0, 1].
  const json params = json::parse(R"([{"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
                                      {"name": "momentum", "type": "float", "low": 0.5, "high": 0.99,
                                       "condition": {"parent": "optimizer", "values": ["sgd"]}},
                                      {"name": "y", "type": "float", "low": 0, "high": 1}])");
  const auto trials = Trials(
      50,
      [](Lcg& r) {
        ParamMap p{{"optimizer", std::string(r.Next() < 0.5 ? "adam" : "sgd")}, {"y", r.Next()}};
        if (std::get<std::string>(p["optimizer"]) == "sgd") p["momentum"] = 0.5 + 0.49 * r.Next();
        return p;
      },
      [](const ParamMap& p, Lcg& r) {
        return (std::get<std::string>(p.at("optimizer")) == "sgd" ? 0.8 : 0.6) + 0.01 * r.Normal();
      });
  const ImportanceResult imp = ComputeImportance(Spec(params), Ptrs(trials));
  double sum = 0;
  for (const auto& p : imp.params) {
    EXPECT_GE(p.effect.mean, 0);
    EXPECT_LE(p.effect.mean, 1);
    sum += p.effect.mean;
  }
  EXPECT_LE(sum, 1 + 1e-9);
  EXPECT_GT(Of(imp, "optimizer").mean + Of(imp, "momentum").mean, 0.8);
  EXPECT_LT(Of(imp, "y").mean, 0.1);
  // Every value the same: no tree varies and nothing is important.
  auto flat = trials;
  for (Trial& t : flat) t.value = 0.5;
  const ImportanceResult none = ComputeImportance(Spec(params), Ptrs(flat));
  EXPECT_EQ(none.varying_trees, 0);
  for (const auto& p : none.params) EXPECT_EQ(p.effect.mean, 0);
}

}  // namespace
}  // namespace hpo::server
