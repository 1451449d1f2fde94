// Pruners that judge a trial by its own curve, and the composition of pruners.
#pragma once

#include <memory>
#include <vector>

#include "server/pruner/pruner.h"

namespace hpo::server {

struct PatienceOptions {
  int patience = 3;        // steps without an improvement of more than min_delta
  double min_delta = 0.0;
  int warmup_steps = 0;    // steps 1..warmup_steps are never judged
};
// Stops a trial whose value has not improved on its best by more than min_delta for `patience` steps.
std::unique_ptr<Pruner> NewPatiencePruner(const PatienceOptions& options);

struct ThresholdOptions {
  double lower = -1e300;   // prune a value below this
  double upper = 1e300;    // prune a value above this
  int warmup_steps = 0;    // steps 1..warmup_steps are never judged
};
// Stops a trial whose latest value is below the floor or above the ceiling.
std::unique_ptr<Pruner> NewThresholdPruner(const ThresholdOptions& options);

// Prunes when any of `pruners` says so (the first one's reason is kept).
std::unique_ptr<Pruner> NewAnyPruner(std::vector<std::unique_ptr<Pruner>> pruners);

}  // namespace hpo::server
