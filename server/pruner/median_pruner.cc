#include "server/pruner/median_pruner.h"

#include "server/pruner/percentile_pruner.h"

namespace hpo::server {

std::unique_ptr<Pruner> NewMedianPruner(const MedianPrunerOptions& options) {
  PercentilePrunerOptions p;
  p.keep_top = 50;
  p.startup_trials = options.startup_trials;
  p.warmup_steps = options.warmup_steps;
  p.interval_steps = options.interval_steps;
  p.min_trials_at_step = options.min_trials_at_step;
  return NewPercentilePruner(p);
}

}  // namespace hpo::server
