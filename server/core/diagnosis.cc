#include "server/core/diagnosis.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/core/importance.h"
#include "server/model/study_summary.h"

namespace hpo::server {
namespace {

double Metric(const Measurement& m, const char* name, double fallback) {
  auto it = m.metrics.find(name);
  return it == m.metrics.end() ? fallback : it->second;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double Number(const ParamValue& v) {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return NAN;
}

// The per-class arrays of a trial's ClassReport (empty when it reported none).
const ClassReport& Classes(const Trial& t) {
  static const ClassReport kNone;
  return t.classes ? *t.classes : kNone;
}

// The number of classes of a trial's task, from what its worker reported (0: unknown).
int NumClasses(const Trial& t) {
  const int n = Classes(t).NumClasses();
  return n > 0 ? n : t.data ? static_cast<int>(t.data->class_names.size()) : 0;
}

// "class \"shirt\"" or "class 6": how every finding names a class.
std::string Class(const Trial& t, int c) { return absl::StrCat("class ", ClassName(t, c)); }

}  // namespace

std::optional<Finding> CheckOverfitting(const Trial& t) {
  if (t.measurements.size() < 2) return std::nullopt;
  double best_val = -1;
  int best_epoch = 0;
  for (const Measurement& m : t.measurements) {
    const double v = Metric(m, "val_accuracy", m.value);
    if (v > best_val) {
      best_val = v;
      best_epoch = m.step;
    }
  }
  const Measurement& last = t.measurements.back();
  const double train = Metric(last, "train_accuracy", NAN);
  if (std::isnan(train) || train - best_val <= kOverfitGap || best_epoch == last.step) return std::nullopt;
  return Finding{"overfitting",
                 absl::StrFormat("trial %d: training accuracy %.3f at epoch %d vs best validation accuracy %.3f "
                                 "(epoch %d); the gap is %.3f and validation has not improved since epoch %d",
                                 t.number, train, last.step, best_val, best_epoch, train - best_val, best_epoch),
                 absl::StrFormat("add regularization (dropout, weight_decay, label_smoothing) or augmentation "
                                 "(aug_shift, aug_rotation), or stop at epoch %d (patience)",
                                 best_epoch),
                 2.0 + (train - best_val)};
}

std::optional<Finding> CheckUnderfitting(const Trial& t) {
  const auto& ms = t.measurements;
  if (ms.size() < 2) return std::nullopt;
  const double last = Metric(ms.back(), "train_accuracy", NAN);
  const double before = Metric(ms[ms.size() - 2], "train_accuracy", NAN);
  if (std::isnan(last) || std::isnan(before) || last >= kUnderfitTrain || last - before >= kUnderfitSlope) {
    return std::nullopt;
  }
  double best_val = 0;
  for (const Measurement& m : ms) best_val = std::max(best_val, Metric(m, "val_accuracy", m.value));
  if (last > best_val + kOverfitGap / 2) return std::nullopt;
  return Finding{"underfitting",
                 absl::StrFormat("trial %d: training accuracy only %.3f at epoch %d, %+.3f over the last epoch, "
                                 "and validation (best %.3f) as high: the model cannot even fit its training data",
                                 t.number, last, ms.back().step, last - before, best_val),
                 "more capacity (conv_blocks, filters, dense_units), less dropout, or a higher learning rate",
                 2.0 + (kUnderfitTrain - last)};
}

std::optional<Finding> CheckLossCurve(const Trial& t) {
  auto rate = t.params.find("learning_rate");
  const bool has_rate = rate != t.params.end();
  const std::string lr = has_rate ? absl::StrFormat(" (learning rate %.3g)", Number(rate->second)) : "";
  const std::string suggestion = absl::StrFormat(
      "lower the learning rate%s, add batch_norm, or use a larger batch_size; with sgd, lower the momentum",
      has_rate ? absl::StrFormat(" below this trial's %.3g", Number(rate->second)) : "");
  if (t.state == TrialState::kFailed && absl::StrContains(t.reason, "diverged")) {
    return Finding{"unstable training: non-finite loss", absl::StrCat("trial ", t.number, lr, " failed: ", t.reason),
                   suggestion, 2.7};
  }
  for (const Measurement& m : t.measurements) {
    const double f = Metric(m, "train_nonfinite_fraction", 0);
    if (f > 0) {
      return Finding{"unstable training: non-finite loss",
                     absl::StrFormat("trial %d%s: the training loss was NaN or infinite in %.0f%% of the batches of "
                                     "epoch %d",
                                     t.number, lr, 100 * f, m.step),
                     suggestion, 2.7};
    }
  }
  std::vector<std::pair<int, double>> loss;
  for (const Measurement& m : t.measurements) {
    const double v = Metric(m, "train_loss", NAN);
    if (std::isfinite(v)) loss.emplace_back(m.step, v);
  }
  if (loss.size() < 3) return std::nullopt;
  std::vector<std::string> series;
  for (const auto& [step, v] : loss) series.push_back(absl::StrFormat("%.3f", v));
  const std::string curve = absl::StrCat("training loss by epoch: ", absl::StrJoin(series, ", "));
  double low = loss[0].second;
  int low_step = loss[0].first;
  for (size_t i = 1; i < loss.size(); ++i) {
    if (loss[i].second > kDivergeFactor * low + kLossNoise) {
      return Finding{"unstable training: diverging loss",
                     absl::StrFormat("trial %d%s: the training loss rose from %.3f (epoch %d) to %.3f (epoch %d); %s",
                                     t.number, lr, low, low_step, loss[i].second, loss[i].first, curve),
                     suggestion, 2.6};
    }
    if (loss[i].second < low) low = loss[i].second, low_step = loss[i].first;
  }
  std::vector<int> rises;
  for (size_t i = 1; i < loss.size(); ++i) {
    if (loss[i].second > (1 + kLossRise) * loss[i - 1].second + kLossNoise) rises.push_back(loss[i].first);
  }
  if (static_cast<int>(rises.size()) < kOscillationRises) return std::nullopt;
  return Finding{"unstable training: oscillating loss",
                 absl::StrFormat("trial %d%s: the training loss rose by more than %.0f%% at epochs %s; %s", t.number,
                                 lr, 100 * kLossRise, absl::StrJoin(rises, ", "), curve),
                 suggestion, 2.2 + 0.1 * static_cast<double>(rises.size()) / loss.size()};
}

std::optional<Finding> CheckLearningRate(const Study& s) {
  std::vector<double> stuck_lr, other_lr;
  std::vector<std::string> stuck_names, unstable_names;
  int classes = 0, stuck = 0;
  for (const Trial& t : s.trials) classes = std::max(classes, NumClasses(t));
  const double chance = classes > 0 ? 1.0 / classes : 0.1;
  for (const Trial& t : s.trials) {
    auto lr = t.params.find("learning_rate");
    if (lr == t.params.end()) continue;
    const bool finished = (t.state == TrialState::kCompleted || t.state == TrialState::kPruned) &&
                          !t.measurements.empty();
    const auto unstable = CheckLossCurve(t);
    if (!finished && !unstable) continue;
    double best = 0;
    for (const Measurement& m : t.measurements) best = std::max(best, Metric(m, "val_accuracy", m.value));
    if (finished && best < chance + kChanceMargin) {
      ++stuck;
      stuck_lr.push_back(Number(lr->second));
      stuck_names.push_back(absl::StrFormat("%d (lr %.3g, best %.3f)", t.number, Number(lr->second), best));
    } else if (unstable) {
      stuck_lr.push_back(Number(lr->second));
      unstable_names.push_back(absl::StrFormat("%d (lr %.3g, %s)", t.number, Number(lr->second),
                                               unstable->cause.substr(unstable->cause.find(": ") + 2)));
    } else {
      other_lr.push_back(Number(lr->second));
    }
  }
  if (stuck_lr.size() < 2 || other_lr.empty()) return std::nullopt;
  const double ms = Median(stuck_lr), mo = Median(other_lr);
  const bool high = ms > 3 * mo, low = ms < mo / 3;
  if (!high && !low) return std::nullopt;
  std::vector<std::string> parts;
  if (stuck > 0) {
    parts.push_back(absl::StrFormat("%d trials never left chance level (%.2f): %s", stuck, chance,
                                    absl::StrJoin(stuck_names, ", ")));
  }
  if (!unstable_names.empty()) {
    parts.push_back(absl::StrFormat("%d trials had an unstable training loss: %s",
                                    static_cast<int>(unstable_names.size()), absl::StrJoin(unstable_names, ", ")));
  }
  return Finding{high ? "learning rate too high (divergence)" : "learning rate too low",
                 absl::StrFormat("%s; their median learning rate %.3g vs %.3g for the %d trials that learned",
                                 absl::StrJoin(parts, "; "), ms, mo, static_cast<int>(other_lr.size())),
                 high ? absl::StrFormat("lower the learning_rate range's upper end below about %.3g", std::sqrt(ms * mo))
                      : absl::StrFormat("raise the learning_rate range's lower end above about %.3g", std::sqrt(ms * mo)),
                 2.0 + static_cast<double>(stuck_lr.size()) / (stuck_lr.size() + other_lr.size())};
}

std::optional<Finding> CheckSlowLearning(const Study& s) {
  const Trial* best = FindBestTrial(s);
  if (best == nullptr || !best->value) return std::nullopt;
  const bool maximize = s.spec.direction == Direction::kMaximize;
  std::vector<double> slow_lr, other_lr;
  std::vector<std::string> names;
  for (const Trial& t : s.trials) {
    auto lr = t.params.find("learning_rate");
    if (lr == t.params.end() || t.state != TrialState::kCompleted || !t.value || t.measurements.size() < 2) continue;
    const auto& ms = t.measurements;
    const double gain = (ms.back().value - ms[ms.size() - 2].value) * (maximize ? 1 : -1);
    const double behind = (*best->value - *t.value) * (maximize ? 1 : -1);
    if (t.best_step == ms.back().step && gain > kSlowSlope && behind > kSlowGap) {
      slow_lr.push_back(Number(lr->second));
      names.push_back(absl::StrFormat("%d (lr %.3g: %+.3f over its last epoch, %.3f behind)", t.number,
                                      Number(lr->second), gain, behind));
    } else {
      other_lr.push_back(Number(lr->second));
    }
  }
  if (slow_lr.size() < 2 || other_lr.empty()) return std::nullopt;
  const double ms = Median(slow_lr), mo = Median(other_lr);
  if (ms >= mo / 3) return std::nullopt;
  return Finding{"learning rate too low (slow improvement)",
                 absl::StrFormat("%d trials were still improving by more than %.2f per epoch when they ended, yet "
                                 "finished more than %.2f behind the best trial %d (%.4f): %s; their median "
                                 "learning rate %.3g vs %.3g for the others",
                                 static_cast<int>(slow_lr.size()), kSlowSlope, kSlowGap, best->number, *best->value,
                                 absl::StrJoin(names, ", "), ms, mo),
                 absl::StrFormat("raise the learning_rate range's lower end above about %.3g, or give trials more "
                                 "max_epochs",
                                 std::sqrt(ms * mo)),
                 1.8 + static_cast<double>(slow_lr.size()) / (slow_lr.size() + other_lr.size())};
}

std::optional<Finding> CheckClassImbalance(const Study& s, const Trial& t) {
  const ClassReport& cr = Classes(t);
  const std::vector<double>& recalls = cr.val_recall;
  if (recalls.size() < 2) return std::nullopt;
  // Training class counts, when the worker reported them (validated to one per class).
  static const std::vector<int64_t> kUnknown;
  const std::vector<int64_t>& counts = cr.train_count.size() == recalls.size() ? cr.train_count : kUnknown;
  const double most = counts.empty() ? 0 : static_cast<double>(*std::max_element(counts.begin(), counts.end()));
  double mean = 0;
  for (double r : recalls) mean += r / recalls.size();
  std::vector<std::string> weak;
  double worst = 1;
  for (size_t c = 0; c < recalls.size(); ++c) {
    const double r = recalls[c];
    // A weak class counts only if it is also a minority in training (when the counts are known).
    const bool minority = counts.empty() || counts[c] < kMinorityRatio * most;
    if (r < kRecallRatio * mean && minority) {
      std::string text = absl::StrFormat("%s recall %.2f", Class(t, static_cast<int>(c)), r);
      if (!counts.empty()) absl::StrAppend(&text, absl::StrFormat(" (%d training images)", counts[c]));
      weak.push_back(std::move(text));
      worst = std::min(worst, r / std::max(mean, 1e-9));
    }
  }
  if (weak.empty()) return std::nullopt;
  if (!counts.empty()) absl::StrAppend(&weak.back(), absl::StrFormat(", against up to %.0f for others", most));
  std::string evidence = absl::StrFormat("trial %d: %s, against a mean recall of %.2f", t.number,
                                         absl::StrJoin(weak, ", "), mean);
  if (!s.spec.task.imbalance_classes.empty()) {
    std::vector<std::string> kept;
    for (int c : s.spec.task.imbalance_classes) kept.push_back(ClassName(t, c));
    absl::StrAppend(&evidence, absl::StrFormat("; the training split keeps only %.0f%% of classes %s",
                                               100 * s.spec.task.imbalance_keep, absl::StrJoin(kept, ", ")));
  }
  // Did trials that corrected for imbalance do better? Best and median of each group.
  std::vector<double> corrected, plain;
  const Trial *best_fix = nullptr, *best_plain = nullptr;
  for (const Trial& o : s.trials) {
    if (o.state != TrialState::kCompleted || !o.value) continue;
    auto w = o.params.find("class_weighting");
    auto smp = o.params.find("sampling");
    const bool fix = (w != o.params.end() && w->second != ParamValue(std::string("none"))) ||
                     (smp != o.params.end() && smp->second == ParamValue(std::string("balanced")));
    (fix ? corrected : plain).push_back(*o.value);
    const Trial*& best = fix ? best_fix : best_plain;
    if (best == nullptr || Better(s.spec.direction, *o.value, *best->value)) best = &o;
  }
  if (!corrected.empty() && !plain.empty()) {
    absl::StrAppend(&evidence, absl::StrFormat(
                                   "; with class weighting or balanced sampling the best %s is %.3f (trial %d; "
                                   "median %.3f over %d trials), without it %.3f (trial %d; median %.3f over %d)",
                                   s.spec.metric, *best_fix->value, best_fix->number, Median(corrected),
                                   static_cast<int>(corrected.size()), *best_plain->value, best_plain->number,
                                   Median(plain), static_cast<int>(plain.size())));
  }
  return Finding{"class imbalance", evidence,
                 "search class_weighting (inverse, sqrt_inverse) and sampling (balanced); optimize "
                 "val_balanced_accuracy or val_macro_f1 rather than val_accuracy",
                 2.0 + (1.0 - worst)};
}

std::vector<Finding> CheckRangeEdges(const Study& s, const Trial& best) {
  std::vector<Finding> out;
  for (const ParamSpec& p : s.spec.params) {
    if (p.type == ParamType::kCategorical) continue;
    auto it = best.params.find(p.name);
    if (it == best.params.end()) continue;
    const double v = Number(it->second);
    const auto tr = [&](double x) { return p.log ? std::log(x) : x; };
    const double u = (tr(v) - tr(p.low)) / (tr(p.high) - tr(p.low));
    // A lower end at 0 (dropout, shifts) or at 1 for an int (one block) cannot move down.
    const bool natural_floor = p.low <= 0 || (p.type == ParamType::kInt && p.low <= 1);
    const bool at_low = u <= kEdgeFraction && !natural_floor, at_high = u >= 1 - kEdgeFraction;
    if (!at_low && !at_high) continue;
    // An int range whose edge is the task's own limit cannot be widened: still worth saying.
    out.push_back(Finding{
        "search space edge",
        absl::StrFormat("trial %d has %s = %g, within %.0f%% of the %s end of [%g, %g]", best.number,
                        p.name, v, 100 * kEdgeFraction, at_low ? "lower" : "upper", p.low, p.high),
        absl::StrFormat("widen %s's range %s", p.name, at_low ? "downwards" : "upwards"), 1.0});
  }
  return out;
}

std::optional<Finding> ParameterImportance(const Study& s) {
  std::vector<const Trial*> done;
  for (const Trial& t : s.trials) {
    if (t.state == TrialState::kCompleted && t.value && std::isfinite(*t.value)) done.push_back(&t);
  }
  const int n = static_cast<int>(done.size());
  if (n < kMinTrialsForAnyImportance || s.spec.params.empty()) return std::nullopt;
  const ImportanceResult r = ComputeImportance(s.spec, done);
  if (r.varying_trees == 0) return std::nullopt;  // every value the same: nothing to explain
  std::vector<ParamImportance> ranked = r.params;
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const ParamImportance& a, const ParamImportance& b) { return a.effect.mean > b.effect.mean; });
  std::vector<std::string> parts;
  std::map<std::string, double> figures;
  double explained = 0;
  for (const ParamImportance& p : ranked) {
    if (parts.size() < kImportanceNamed) {
      parts.push_back(absl::StrFormat("%s %.2f \u00b1 %.2f", p.name, p.effect.mean, p.effect.std));
    } else if (parts.size() == kImportanceNamed) {
      parts.push_back(absl::StrFormat("%d more, each at most %.2f", static_cast<int>(ranked.size() - kImportanceNamed),
                                      p.effect.mean));
    }
    figures[absl::StrCat(kImportanceFigure, p.name)] = p.effect.mean;
    figures[absl::StrCat(kImportanceStdFigure, p.name)] = p.effect.std;
    explained += p.effect.mean;
  }
  figures["completed_trials"] = n;
  figures["trees"] = r.trees;
  const bool few = n < kMinTrialsForImportance;
  std::string evidence = absl::StrFormat(
      "%sfANOVA main effects (Hutter et al. 2014) over a random forest of %d trees on %d completed trials: each "
      "parameter's share of the variance of %s over the search space, mean \u00b1 standard deviation across the "
      "trees: %s; main effects explain %.2f in all, the rest is interactions",
      few ? absl::StrFormat("low confidence: only %d completed trials, too few (fewer than %d) to rank parameters "
                            "reliably; ",
                            n, kMinTrialsForImportance)
          : "",
      r.trees, n, s.spec.metric, absl::StrJoin(parts, ", "), explained);
  std::string suggestion =
      few ? absl::StrFormat("complete at least %d trials before narrowing the search space by importance",
                            kMinTrialsForImportance)
          : absl::StrFormat("narrow or fix the parameters that matter least; spend trials on %s", ranked.front().name);
  return Finding{"parameter importance", evidence, suggestion, few ? 0.1 : 0.5, figures};
}

std::optional<Finding> CheckNoise(const Study& s) {
  std::vector<const Trial*> done;
  for (const Trial& t : s.trials) {
    if (t.state == TrialState::kCompleted && t.value) done.push_back(&t);
  }
  if (done.size() < 2) return std::nullopt;
  std::sort(done.begin(), done.end(),
            [&](const Trial* a, const Trial* b) { return Better(s.spec.direction, *a->value, *b->value); });
  auto spread = [](const Trial* t) -> double {
    for (const Measurement& m : t->measurements) {
      if (m.step == t->best_step) return Metric(m, "val_accuracy_std", NAN);
    }
    return NAN;
  };
  const double sa = spread(done[0]), sb = spread(done[1]);
  if (std::isnan(sa) || std::isnan(sb)) return std::nullopt;
  const double diff = std::fabs(*done[0]->value - *done[1]->value), noise = std::max(sa, sb);
  if (diff >= noise) return std::nullopt;
  return Finding{"noise: the ranking is not significant",
                 absl::StrFormat("the best trials %d (%.4f) and %d (%.4f) differ by %.4f, less than the spread "
                                 "between seeds (%.4f) of executions_per_trial",
                                 done[0]->number, *done[0]->value, done[1]->number, *done[1]->value, diff, noise),
                 "raise executions_per_trial or val_examples before trusting the order of the top trials", 1.5};
}

std::optional<Finding> CheckPrunedSlowStarters(const Study& s) {
  const Trial* best = FindBestTrial(s);
  if (best == nullptr) return std::nullopt;
  const Direction dir = s.spec.direction;
  for (const Trial& p : s.trials) {
    if (p.state != TrialState::kPruned || p.measurements.empty()) continue;
    const Measurement& stop = p.measurements.back();
    for (const Measurement& m : best->measurements) {
      if (m.step != stop.step || !Better(dir, stop.value, m.value)) continue;
      return Finding{"pruning may stop slow starters",
                     absl::StrFormat("trial %d was pruned at step %d with %.4f, ahead of the eventual best trial %d, "
                                     "which had %.4f at that step and ended at %.4f: curves cross",
                                     p.number, stop.step, stop.value, best->number, m.value, *best->value),
                     "give the pruner more warmup_steps or startup_trials, or use hyperband, whose brackets "
                     "hedge against crossing curves",
                     1.2};
    }
  }
  return std::nullopt;
}

std::optional<Finding> CheckSplitMismatch(const Trial& t) {
  const ClassReport& cr = Classes(t);
  std::vector<std::string> parts;
  double tvd = 0;
  // Class frequencies: needs both splits' counts for the same classes.
  if (!cr.train_count.empty() && cr.train_count.size() == cr.val_count.size()) {
    double nt = 0, nv = 0;
    for (size_t c = 0; c < cr.train_count.size(); ++c) nt += cr.train_count[c], nv += cr.val_count[c];
    double worst = 0;
    size_t worst_class = 0;
    if (nt > 0 && nv > 0) {
      for (size_t c = 0; c < cr.val_count.size(); ++c) {
        const double d = std::fabs(cr.train_count[c] / nt - cr.val_count[c] / nv);
        tvd += 0.5 * d;
        if (d > worst) worst = d, worst_class = c;
      }
    }
    if (tvd > kMismatchTvd) {
      parts.push_back(absl::StrFormat("class frequencies differ between the splits (total variation %.2f; %s "
                                      "is %.1f%% of training but %.1f%% of validation)",
                                      tvd, Class(t, static_cast<int>(worst_class)),
                                      100 * cr.train_count[worst_class] / nt, 100 * cr.val_count[worst_class] / nv));
    }
  }
  // Classes whose recall collapses on validation only.
  std::vector<std::string> collapsed;
  for (size_t c = 0; c < cr.train_recall.size() && c < cr.val_recall.size(); ++c) {
    if (cr.train_recall[c] - cr.val_recall[c] > kRecallCollapse) {
      collapsed.push_back(absl::StrFormat("%s (recall %.2f in training, %.2f in validation)",
                                          Class(t, static_cast<int>(c)), cr.train_recall[c], cr.val_recall[c]));
    }
  }
  if (!collapsed.empty()) {
    parts.push_back(absl::StrCat("recall collapses on validation only for ", absl::StrJoin(collapsed, ", ")));
  }
  auto pt = t.final_metrics.find("train_pixel_mean"), pv = t.final_metrics.find("val_pixel_mean");
  if (pt != t.final_metrics.end() && pv != t.final_metrics.end() &&
      std::fabs(pt->second - pv->second) > kMismatchPixel) {
    parts.push_back(absl::StrFormat("mean pixel value %.3f in training vs %.3f in validation", pt->second, pv->second));
  }
  if (parts.empty()) return std::nullopt;
  return Finding{"train/validation mismatch", absl::StrCat("trial ", t.number, ": ", absl::StrJoin(parts, "; ")),
                 "make the validation split representative of what the model will see, or the training split "
                 "representative of validation (rebalance, reweight, or collect data)",
                 1.9 + tvd};
}

std::vector<Finding> Diagnose(const Study& s, int trial) {
  const Trial* t = nullptr;
  if (trial >= 0 && trial < static_cast<int>(s.trials.size())) t = &s.trials[trial];
  if (t == nullptr) t = FindBestTrial(s);
  std::vector<Finding> out;
  if (t != nullptr) {
    for (auto f : {CheckOverfitting(*t), CheckUnderfitting(*t), CheckClassImbalance(s, *t), CheckSplitMismatch(*t),
                   CheckLossCurve(*t)}) {
      if (f) out.push_back(*f);
    }
    for (const Finding& f : CheckRangeEdges(s, *t)) out.push_back(f);
  }
  if (auto f = CheckLearningRate(s)) out.push_back(*f);
  if (auto f = CheckSlowLearning(s)) out.push_back(*f);
  if (auto f = CheckNoise(s)) out.push_back(*f);
  if (auto f = CheckPrunedSlowStarters(s)) out.push_back(*f);
  std::stable_sort(out.begin(), out.end(), [](const Finding& a, const Finding& b) { return a.severity > b.severity; });
  if (out.empty()) {
    out.push_back(Finding{"nothing stands out",
                          t == nullptr ? "no trial has completed yet"
                                       : absl::StrFormat("trial %d shows no overfitting, underfitting or weak class, "
                                                         "and no group of trials is stuck at chance",
                                                         t->number),
                          "run more trials, or widen the search space", 0});
  }
  if (auto f = ParameterImportance(s)) out.push_back(*f);
  return out;
}

}  // namespace hpo::server
