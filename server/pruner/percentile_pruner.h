#pragma once

#include <memory>

#include "server/pruner/pruner.h"

namespace hpo::server {

struct PercentilePrunerOptions {
  double keep_top = 50;        // percent of trials kept at each judged step (50: the median rule)
  int startup_trials = 5;      // no pruning until this many trials have COMPLETED
  int warmup_steps = 0;        // steps 1..warmup_steps of a trial are never judged
  int interval_steps = 1;      // judge every interval_steps steps after the warm-up
  int min_trials_at_step = 1;  // completed trials that reported this step needed to judge
};

// Prunes a trial whose best value so far is worse than the cut-off that keeps
// the top `keep_top` percent of the completed trials' values at the same step
// (Optuna's PercentilePruner/MedianPruner semantics; keep_top 50 is the median rule).
std::unique_ptr<Pruner> NewPercentilePruner(const PercentilePrunerOptions& options);

}  // namespace hpo::server
