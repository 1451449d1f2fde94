// The sampler interface: decides the parameters of a new trial.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "server/core/types.h"

namespace hpo::server {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Parameters for trial `number` of `study`. `study.trials` holds every earlier
  // trial (finished or running) as a read-only snapshot; `trial_seed` is
  // TrialSeed(study seed, number), so a sampler is reproducible for a seed.
  // Called under the coordinator's lock: must not block on I/O.
  // Errors: kOutOfRange when the space is exhausted; kInternal on a bug.
  [[nodiscard]] virtual absl::StatusOr<ParamMap> Sample(const Study& study, int number,
                                                        uint64_t trial_seed) = 0;
};

}  // namespace hpo::server
