#pragma once

#include <memory>

#include "server/pruner/percentile_pruner.h"

namespace hpo::server {

// The median pruner's options are the percentile pruner's; keep_top is ignored (always 50).
using MedianPrunerOptions = PercentilePrunerOptions;

// Median stopping rule (Optuna MedianPruner semantics): prune when the trial's
// best value so far is worse than the median of the completed trials' values
// at the same step. The percentile pruner with keep_top 50.
std::unique_ptr<Pruner> NewMedianPruner(const MedianPrunerOptions& options);

}  // namespace hpo::server
