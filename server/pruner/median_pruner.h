#pragma once

#include <memory>

#include "server/pruner/pruner.h"

namespace hpo::server {

struct MedianPrunerOptions {
  int startup_trials = 5;      // no pruning until this many trials have COMPLETED
  int warmup_steps = 0;        // steps 1..warmup_steps of a trial are never judged
  int interval_steps = 1;      // judge every interval_steps steps after the warm-up
  int min_trials_at_step = 1;  // completed trials that reported this step needed to judge
};

// Median stopping rule (Optuna MedianPruner semantics): prune when the trial's
// best value so far is worse than the median of the completed trials' values
// at the same step.
std::unique_ptr<Pruner> NewMedianPruner(const MedianPrunerOptions& options);

}  // namespace hpo::server
