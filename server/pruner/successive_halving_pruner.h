#pragma once

#include <memory>

#include "server/pruner/pruner.h"

namespace hpo::server {

struct AshaOptions {
  int min_resource = 1;             // steps before the first rung
  int reduction_factor = 3;         // eta: keep the top 1/eta at each rung
  int min_early_stopping_rate = 0;  // s: rungs at min_resource * eta^(k + s)
  int bootstrap_count = 0;          // trials that must reach a rung before it prunes anyone
};

// Asynchronous successive halving (Li et al., MLSys 2020): when a trial reports
// the step of a rung, it goes on only if its value there is in the top 1/eta of
// all trials that have reached that rung so far. Never waits for a full bracket.
std::unique_ptr<Pruner> NewAshaPruner(const AshaOptions& options);

struct HyperbandOptions {
  int min_resource = 1;
  int max_resource = 0;       // the study's max_epochs when 0 (MakePruner resolves it)
  int reduction_factor = 3;
};

// Hyperband over ASHA brackets: bracket b (0..S, S = floor(log_eta(max/min)))
// is ASHA with min_early_stopping_rate b, holding about ceil((S+1)/(b+1)) * eta^(S-b)
// shares of the trials. A trial's bracket is a function of the study seed and
// its number only, so every worker and a restarted coordinator agree; trials
// compete only within their bracket. `study_seed` is the seed of the study it serves.
std::unique_ptr<Pruner> NewHyperbandPruner(const HyperbandOptions& options, uint64_t study_seed);

// The bracket of trial `number` (exposed for tests).
int HyperbandBracket(const HyperbandOptions& options, int max_resource, uint64_t study_seed, int number);

}  // namespace hpo::server
