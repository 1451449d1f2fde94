#include "server/sampler/random_sampler.h"

#include <random>

#include "server/model/search_space.h"

namespace hpo::server {
namespace {

class RandomSampler final : public Sampler {
 public:
  bool UsesHistory() const override { return false; }
  absl::StatusOr<ParamMap> Sample(const Study& study, int number, uint64_t trial_seed) override {
    ParamMap out;
    for (const ParamSpec& p : study.spec.params) {
      if (!IsActive(p, out)) continue;  // a conditional parameter whose parent took another value
      std::mt19937_64 rng(ParamSeed(trial_seed, p.name));
      out[p.name] = FromUnit(p, UnitFromBits(rng()));
    }
    return out;
  }
};

}  // namespace

std::unique_ptr<Sampler> NewRandomSampler() { return std::make_unique<RandomSampler>(); }

}  // namespace hpo::server
