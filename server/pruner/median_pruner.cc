#include "server/pruner/median_pruner.h"

namespace hpo::server {

std::unique_ptr<Pruner> NewMedianPruner(const MedianPrunerOptions& options) {
  PercentilePrunerOptions p = options;
  p.keep_top = 50;
  return NewPercentilePruner(p);
}

}  // namespace hpo::server
