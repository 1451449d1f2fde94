#include "server/sampler/random_sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "server/model/search_space.h"
#include "server/model/study_spec.h"

namespace hpo::server {
namespace {

Study MakeStudy() {
  auto spec = ParseStudySpec(R"({
    "name": "s", "task": {"type": "cnn", "dataset": "d"}, "max_trials": 10,
    "parameters": [
      {"name": "learning_rate", "type": "float", "low": 0.0001, "high": 0.1, "log": true},
      {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
      {"name": "filters", "type": "int", "low": 8, "high": 64, "step": 8},
      {"name": "dense_units", "type": "int", "low": 16, "high": 512, "log": true},
      {"name": "conv_blocks", "type": "int", "low": 1, "high": 3},
      {"name": "optimizer", "type": "categorical", "choices": ["adam", "rmsprop", "sgd"]},
      {"name": "batch_size", "type": "categorical", "choices": [32, 64, 128]}]})");
  EXPECT_TRUE(spec.ok()) << spec.status();
  Study s;
  s.spec = *spec;
  s.seed = 42;
  return s;
}

TEST(RandomSamplerTest, ValuesStayInsideTheirRangesWithTheirTypes) {
  Study study = MakeStudy();
  auto sampler = NewRandomSampler();
  for (int n = 0; n < 500; ++n) {
    auto params = sampler->Sample(study, n, TrialSeed(study.seed, n));
    ASSERT_TRUE(params.ok());
    ASSERT_EQ(params->size(), study.spec.params.size());
    for (const ParamSpec& p : study.spec.params) {
      EXPECT_TRUE(Contains(p, params->at(p.name))) << p.name << " = " << ToString(params->at(p.name));
    }
    EXPECT_EQ(std::get<int64_t>(params->at("filters")) % 8, 0);
  }
}

TEST(RandomSamplerTest, SameSeedAndNumberGiveTheSameParameters) {
  Study study = MakeStudy();
  auto a = NewRandomSampler(), b = NewRandomSampler();
  std::set<std::string> distinct;
  for (int n = 0; n < 20; ++n) {
    auto pa = a->Sample(study, n, TrialSeed(study.seed, n));
    auto pb = b->Sample(study, n, TrialSeed(study.seed, n));
    ASSERT_TRUE(pa.ok() && pb.ok());
    EXPECT_EQ(*pa, *pb);
    distinct.insert(ToString(pa->at("learning_rate")));
  }
  EXPECT_EQ(distinct.size(), 20u);  // different trial numbers, different draws
  Study other = study;
  other.seed = 43;
  EXPECT_NE(*a->Sample(study, 0, TrialSeed(study.seed, 0)), *a->Sample(other, 0, TrialSeed(other.seed, 0)));
}

TEST(RandomSamplerTest, LogScaleIsUniformInLogSpaceAndChoicesAreCovered) {
  Study study = MakeStudy();
  auto sampler = NewRandomSampler();
  int below_geometric_mean = 0;
  std::map<std::string, int> optimizers;
  std::set<int64_t> blocks;
  const int n = 3000;
  for (int i = 0; i < n; ++i) {
    auto p = *sampler->Sample(study, i, TrialSeed(study.seed, i));
    if (std::get<double>(p.at("learning_rate")) < std::sqrt(0.0001 * 0.1)) ++below_geometric_mean;
    ++optimizers[std::get<std::string>(p.at("optimizer"))];
    blocks.insert(std::get<int64_t>(p.at("conv_blocks")));
  }
  EXPECT_NEAR(below_geometric_mean / double(n), 0.5, 0.04);
  ASSERT_EQ(optimizers.size(), 3u);
  for (const auto& [name, count] : optimizers) EXPECT_NEAR(count / double(n), 1 / 3.0, 0.04) << name;
  EXPECT_EQ(blocks, (std::set<int64_t>{1, 2, 3}));
}

TEST(SearchSpaceTest, FromUnitReachesBothEndsOfEveryRange) {
  Study study = MakeStudy();
  for (const ParamSpec& p : study.spec.params) {
    EXPECT_TRUE(Contains(p, FromUnit(p, 0.0))) << p.name;
    EXPECT_TRUE(Contains(p, FromUnit(p, 0.9999999999))) << p.name;
  }
  const ParamSpec& filters = study.spec.params[2];
  EXPECT_EQ(FromUnit(filters, 0.0), ParamValue(int64_t{8}));
  EXPECT_EQ(FromUnit(filters, 0.9999999), ParamValue(int64_t{64}));
}

}  // namespace
}  // namespace hpo::server
