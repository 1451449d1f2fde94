#pragma once

#include <memory>

#include "server/sampler/sampler.h"

namespace hpo::server {

struct GpOptions {
  int n_startup_trials = 10;   // random trials before the model is used
  int n_candidates = 1000;     // random candidates scored by log-EI before local refinement
  int n_refine = 5;            // best candidates refined by local search
  int max_fit_points = 300;    // hyperparameters are fitted on at most this many trials (best + newest)
  bool kriging_believer = true;  // RUNNING trials join the data at the model's mean
  // Pruned trials inform the model (as in BOHB): while fewer than parameters + 3 trials have completed,
  // the model is fitted on the best value up to the highest step that that many trials reached
  // (completed or pruned); trials stopped before that step, or pruned at all once enough trials
  // completed, join the data at the worst value being fitted. false: completed trials only.
  bool rung_fit = true;
};

// Gaussian-process Bayesian optimization: Matern-5/2 kernel with one length
// scale per dimension, hyperparameters fitted by maximizing the log marginal
// likelihood (log-normal length-scale prior growing with dimension, Hvarfner
// et al. 2024), log expected improvement maximized over random candidates and
// then refined locally. Floats and ints live in [0,1] (log-scaled where
// declared) and candidates are snapped to integers/steps before they are
// scored, so the model scores the point that will run; categoricals are
// one-hot dimensions whose candidates are always valid one-hot vectors.
std::unique_ptr<Sampler> NewGpSampler(const GpOptions& options);

}  // namespace hpo::server
