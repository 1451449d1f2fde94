// Hyperparameter importance by fANOVA (Hutter, Hoos and Leyton-Brown, "An Efficient Approach for
// Assessing Hyperparameter Importance", ICML 2014): fit a random forest regressor on the completed
// trials (parameters -> objective value), then, for each tree, decompose the variance of its prediction
// over the whole search space (a product of one measure per parameter) into the main effect of each
// parameter. A tree is piecewise constant on its leaves' axis-aligned boxes, so the integrals are exact
// sums over leaves. Only main effects are computed: the importances sum to at most 1 and the rest of the
// variance is interactions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "server/model/types.h"

namespace hpo::server {

// The measure of one encoded parameter over which the variance is taken: uniform on [0, 1] (numeric
// parameters, on the log scale where declared) or `categories` atoms at 0, 1, ... of equal mass
// (categorical parameters, by choice index), plus an atom of mass `inactive_mass` at kInactive for a
// conditional parameter's trials where it was inactive.
struct FanovaDim {
  int categories = 0;  // 0: continuous on [0, 1]
  double inactive_mass = 0;
  double Cdf(double x) const;  // mass of (-inf, x]
};
inline constexpr double kInactive = -1.0;

struct ForestOptions {
  int trees = 64;
  int max_depth = 16;
  int min_samples_leaf = 2;
  // Share of the parameters tried at each split (rounded up; the others only when none of those can split).
  // Below 1, fewer than 5 parameters are all tried; lower values cost accuracy on few trials.
  double max_features = 0.8;
  uint64_t seed = 0x5eedfa11;
};

struct MainEffect {
  double mean = 0;  // mean over the trees of (variance of the marginal over the parameter) / (tree's variance)
  double std = 0;   // standard deviation of that share across the trees
};

struct FanovaResult {
  std::vector<MainEffect> effects;  // one per dimension
  int trees = 0;                    // trees fitted
  int varying_trees = 0;            // trees whose prediction varies (the others carry no information)
};

// The forest and the decomposition on encoded rows x (each of dims.size() values, as FanovaDim says)
// with targets y. Deterministic for the same inputs and options.
FanovaResult Fanova(const std::vector<FanovaDim>& dims, const std::vector<std::vector<double>>& x,
                    const std::vector<double>& y, const ForestOptions& options = {});

// Importance of each parameter of `spec` over the completed trials with a finite value, in the order of
// spec.params. Numeric parameters are scaled to [0, 1] (log where declared; ints as continuous),
// categoricals are encoded by choice index, and an inactive (or missing) value is kInactive with the
// mass of its share of the trials: a conditional parameter therefore carries part of its parent's effect.
struct ParamImportance {
  std::string name;
  MainEffect effect;
};
struct ImportanceResult {
  std::vector<ParamImportance> params;
  int trials = 0;  // completed trials used
  int trees = 0;
  int varying_trees = 0;
};
ImportanceResult ComputeImportance(const StudySpec& spec, const std::vector<const Trial*>& completed,
                                   const ForestOptions& options = {});

}  // namespace hpo::server
