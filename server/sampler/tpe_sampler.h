#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "server/sampler/sampler.h"

namespace hpo::server {

struct TpeOptions {
  int n_startup_trials = 10;  // random trials before the model is used
  int n_ei_candidates = 24;   // candidates drawn from l(x), ranked by l(x)/g(x)
  double gamma = 0.1;         // good fraction: n_good = min(ceil(gamma * n), max_good)
  int max_good = 25;
  double prior_weight = 1.0;  // weight of the wide prior kernel in each estimator
  // Joint kernels over the unconditional parameters, with Scott's-rule bandwidths from the
  // good trials' own spread. On by default (Optuna's default is univariate): on Branin and
  // Hartmann6 it beats both univariate forms (bench/sampler_bench.py).
  bool multivariate = true;
  bool constant_liar = true;  // RUNNING trials count as bad observations
  bool use_pruned = true;     // pruned trials count, by their last value, below completed ones
  // BOHB (Falkner et al. 2018): while fewer than `rung_min_trials` trials have completed, split good
  // from bad at the highest step that at least that many trials reached (completed or pruned), by
  // their best value up to that step; trials that stopped earlier count as bad. 0: parameters + 3.
  bool rung_fit = true;
  int rung_min_trials = 0;
};

// Tree-structured Parzen Estimator (Bergstra et al. 2011), in the manner of
// Optuna 3.1 (magic-clip bandwidths, flat-then-ramped weights, a prior
// component), with an optional multivariate form and constant liar.
std::unique_ptr<Sampler> NewTpeSampler(const TpeOptions& options);

}  // namespace hpo::server
