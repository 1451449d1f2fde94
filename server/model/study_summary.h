// Derived figures of a study: counts by state, best trial, how many slots of max_trials are used.
#pragma once

#include "server/model/types.h"

namespace hpo::server {

struct TrialCounts {
  int waiting = 0, running = 0, completed = 0, pruned = 0, failed = 0;
};

TrialCounts CountTrials(const Study& study);
// The best COMPLETED trial by the study's direction (ties: the lower number), or null.
const Trial* FindBestTrial(const Study& study);
// Trials that use one of max_trials: every trial except FAILED ones handed out again.
int UsedSlots(const Study& study);

}  // namespace hpo::server
