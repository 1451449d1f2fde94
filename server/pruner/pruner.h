// The pruner interface: decides, after each measurement, whether a trial stops early.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "server/model/types.h"

namespace hpo::server {

struct PruneDecision {
  bool prune = false;
  std::string reason;  // when prune: the rule, the step, the value compared and the cut-off
};

class Pruner {
 public:
  virtual ~Pruner() = default;
  // Decides for `trial`, whose last measurement is the one just reported, from
  // every trial of `study` (a read-only snapshot; `trial` is one of them).
  // Pure: the same snapshot gives the same decision. Called under the lock of `study` only
  // (other studies go on); may be called from several threads for different studies.
  [[nodiscard]] virtual absl::StatusOr<PruneDecision> Decide(const Study& study,
                                                             const Trial& trial) const = 0;
  // Told of every change to a trial of the study this pruner serves (`before` is null for a new
  // trial, or a trial loaded at start-up), in order, under the study's lock, once the change is
  // stored. Decide on a new measurement comes before that: the study it is given holds the
  // measurement, what was observed does not yet. A pruner may keep incremental state from these
  // (e.g. the values per step) so that Decide costs do not grow with the study; once told
  // anything, it may rely on having been told everything else. Decide must give the same decision
  // as it would from the study alone. Default: ignored.
  virtual void Observe(const Trial* before, const Trial& after) {}
};

}  // namespace hpo::server
