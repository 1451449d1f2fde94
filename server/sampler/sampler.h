// The sampler interface: decides the parameters of a new trial.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "server/model/types.h"

namespace hpo::server {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Parameters for trial `number` of `study`. `study.trials` holds every earlier
  // trial (finished or running) as a read-only snapshot taken for this call (empty when
  // UsesHistory() is false); `trial_seed` is TrialSeed(study seed, number), so a sampler is
  // reproducible for a seed.
  //
  // Thread-safety contract: the coordinator calls Sample with no lock held that any other RPC
  // needs (reports, heartbeats and asks of other studies go on meanwhile), on its sampling pool,
  // and never calls one sampler from two threads at once (each study's samples are serialized by
  // that study's sampling lock). A sampler may keep state between calls (e.g. a warm start), but
  // the result must depend only on (snapshot, number, trial_seed): a fresh sampler given the same
  // history returns the same parameters (sampler_conformance_test). Must not block on I/O.
  // Errors: kOutOfRange when the space is exhausted; kInternal on a bug.
  [[nodiscard]] virtual absl::StatusOr<ParamMap> Sample(const Study& study, int number,
                                                        uint64_t trial_seed) = 0;
  // False when Sample never reads `study.trials` (e.g. random search): the coordinator then
  // skips keeping a snapshot of the study's history for it.
  virtual bool UsesHistory() const { return true; }
};

}  // namespace hpo::server
