// Why is validation accuracy not improving? Rules over a study's stored
// curves and results. Each rule is a small pure function with a documented
// threshold and returns a finding only with the figures behind it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "server/model/types.h"

namespace hpo::server {

struct Finding {
  std::string cause;       // e.g. "overfitting"
  std::string evidence;    // trials, epochs and figures that support it
  std::string suggestion;  // what to try next
  double severity = 0;     // for ordering: larger first
  std::map<std::string, double> figures;  // named figures (e.g. importance per parameter)
};

// Overfitting: the trial's training accuracy at its last epoch exceeds its
// best validation accuracy by more than kOverfitGap (0.08) and validation
// stopped improving (its best epoch is before the last).
std::optional<Finding> CheckOverfitting(const Trial& t);
inline constexpr double kOverfitGap = 0.08;

// Underfitting: training accuracy at the last epoch below kUnderfitTrain (0.75),
// improving by less than kUnderfitSlope (0.05) over the last epoch, and no higher
// than the best validation accuracy plus kOverfitGap / 2: the model does not even
// fit its training data, and it is not a generalization gap.
std::optional<Finding> CheckUnderfitting(const Trial& t);
inline constexpr double kUnderfitTrain = 0.75;
inline constexpr double kUnderfitSlope = 0.05;

// Unstable training loss within one trial, from its per-epoch training loss:
//  - non-finite: an epoch in which some batch's loss was NaN or infinite
//    ("train_nonfinite_fraction" > 0), or a trial that failed because training diverged;
//  - divergence: the training loss rose above kDivergeFactor (1.5) times its lowest earlier value;
//  - oscillation: at least kOscillationRises (2) epochs whose training loss rose by more than
//    kLossRise (3%) over the epoch before. Every learning-rate schedule here is non-increasing,
//    so a healthy run's mean training loss falls from epoch to epoch.
// Both rises must also exceed kLossNoise (0.02) in absolute terms: a memorizing network's loss
// near zero bounces by large factors that mean nothing.
std::optional<Finding> CheckLossCurve(const Trial& t);
inline constexpr double kDivergeFactor = 1.5;
inline constexpr double kLossRise = 0.03;
inline constexpr double kLossNoise = 0.02;
inline constexpr int kOscillationRises = 2;

// Learning rate too high or too low: trials are "troubled" when their best validation accuracy
// stayed within kChanceMargin (0.05) of chance (1 / classes), or when CheckLossCurve fires on them;
// when at least two trials are troubled and their median learning rate is more than 3x (or less
// than 1/3 of) the median of the others, the rate is named as the cause.
std::optional<Finding> CheckLearningRate(const Study& s);
inline constexpr double kChanceMargin = 0.05;

// Improvement so slow the rate is too low: trials whose last epoch was their best and still gained
// more than kSlowSlope (0.01) of the metric over the epoch before, yet ended more than kSlowGap (0.03)
// behind the study's best. When at least two trials are slow and their median learning rate is
// below a third of the others', the rate is named; they were cut off while still learning.
std::optional<Finding> CheckSlowLearning(const Study& s);
inline constexpr double kSlowSlope = 0.01;
inline constexpr double kSlowGap = 0.03;

// Class imbalance: a class whose validation recall (best epoch, from the trial's ClassReport) is
// below kRecallRatio (0.6) of the mean recall; compares trials with and without
// class_weighting / balanced sampling when the study searched them. Classes are named by the
// names in the trial's DataReport when the worker sent them, by label otherwise.
std::optional<Finding> CheckClassImbalance(const Study& s, const Trial& t);
inline constexpr double kRecallRatio = 0.6;
// ... and, when the training class counts are known, a minority: fewer than half the largest class's images.
inline constexpr double kMinorityRatio = 0.5;

// Search space: a numeric parameter of the best trial within kEdgeFraction (5%)
// of an end of its range (log scale where declared): widen the range.
std::vector<Finding> CheckRangeEdges(const Study& s, const Trial& best);
inline constexpr double kEdgeFraction = 0.05;

// Importance: fANOVA (Hutter et al. 2014, server/core/importance.h) over a random forest fitted on the
// completed trials: each parameter's main effect, the share of the variance of the objective over the
// search space that the parameter alone explains, as the mean across the forest's trees with its standard
// deviation. figures: kImportanceFigure + name (mean), kImportanceStdFigure + name (spread),
// "completed_trials" and "trees"; every parameter is in the figures. From kMinTrialsForAnyImportance (3) completed trials; under
// kMinTrialsForImportance (8) the finding says the trials are too few and ranks low.
std::optional<Finding> ParameterImportance(const Study& s);
inline constexpr int kMinTrialsForImportance = 8;
inline constexpr int kMinTrialsForAnyImportance = 3;
inline constexpr size_t kImportanceNamed = 6;  // the evidence names the top 6, then says how many more
inline constexpr char kImportanceFigure[] = "importance/";
inline constexpr char kImportanceStdFigure[] = "importance_std/";

// Noise: the two best completed trials differ by less than the larger spread
// (val_accuracy_std over executions_per_trial) at their best epochs: the ranking is not significant.
std::optional<Finding> CheckNoise(const Study& s);

// Pruning: a completed trial that ended best was, at some step, behind a trial that the
// pruner stopped at that step: curves cross, and the pruner may be stopping slow starters.
std::optional<Finding> CheckPrunedSlowStarters(const Study& s);

// Train/validation mismatch: the class frequencies of the two splits (train_count and val_count
// of the trial's ClassReport) differ by a total-variation distance above kMismatchTvd (0.1),
// naming the class whose share differs most, or their mean pixel values (on [0, 1];
// train_pixel_mean and val_pixel_mean in its final metrics) by more than kMismatchPixel (0.03).
std::optional<Finding> CheckSplitMismatch(const Trial& t);
inline constexpr double kMismatchTvd = 0.1;
inline constexpr double kMismatchPixel = 0.03;
// ... or a class's recall is higher in training than in validation by more than kRecallCollapse (0.3);
// each such class is named.
inline constexpr double kRecallCollapse = 0.3;

// Every rule, strongest first; "nothing stands out" when none fires.
// `trial`: judge that trial instead of the best one (-1: the best).
std::vector<Finding> Diagnose(const Study& s, int trial);

}  // namespace hpo::server
