#include "server/pruner/successive_halving_pruner.h"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>

#include "absl/strings/str_format.h"
#include "server/model/search_space.h"

namespace hpo::server {
namespace {

// The value a trial reported at `step`, if it did.
const Measurement* At(const Trial& t, int step) {
  for (const Measurement& m : t.measurements) {
    if (m.step == step) return &m;
  }
  return nullptr;
}

// Which rung `step` is: k when step == min_resource * eta^(k + s) for some k >= 0, else -1.
int RungOf(const AshaOptions& o, int step) {
  for (int i = 0;; ++i) {
    const double rung = o.min_resource * std::pow(o.reduction_factor, i + o.min_early_stopping_rate);
    if (rung > step) return -1;
    if (static_cast<int>(rung) == step) return i;
  }
}

// ASHA's rule, given the number of trials that reached the rung (this one included) and the
// promote-th best value among them.
PruneDecision Judge(const AshaOptions& o, Direction dir, int k, int step, double value, int reached,
                    const std::function<double(int)>& nth_best, const std::string& label) {
  if (reached < std::max(1, o.bootstrap_count)) return PruneDecision{};
  // The top n/eta go on; while fewer than eta trials have reached the rung, only the best so far.
  const int promote = std::max(1, reached / o.reduction_factor);
  const double cutoff = nth_best(promote);
  if (!Better(dir, cutoff, value)) return PruneDecision{};
  return PruneDecision{true, absl::StrFormat("%s rung %d (step %d): value %.4f is not in the top 1/%d of the %d "
                                             "trials that reached this rung (cut-off %.4f)",
                                             label, k, step, value, o.reduction_factor, reached, cutoff)};
}

// ASHA's rule for `trial` among the trials accepted by `competes`, from a scan of the study;
// `label` names the bracket in the reason.
PruneDecision Asha(const AshaOptions& o, const Study& study, const Trial& trial,
                   const std::function<bool(const Trial&)>& competes, const std::string& label) {
  if (trial.measurements.empty()) return PruneDecision{};
  const int step = trial.measurements.back().step;
  const int k = RungOf(o, step);
  if (k < 0) return PruneDecision{};
  const Direction dir = study.spec.direction;
  const double value = trial.measurements.back().value;
  std::vector<double> values = {value};
  for (const Trial& t : study.trials) {
    if (t.id == trial.id || !competes(t)) continue;
    if (const Measurement* m = At(t, step)) values.push_back(m->value);
  }
  std::sort(values.begin(), values.end(), [&](double a, double b) { return Better(dir, a, b); });
  return Judge(o, dir, k, step, value, static_cast<int>(values.size()),
               [&](int n) { return values[n - 1]; }, label);
}

using Key = std::pair<double, int64_t>;  // (value, trial id): unique, ordered by value
using Tree = __gnu_pbds::tree<Key, __gnu_pbds::null_type, std::less<Key>, __gnu_pbds::rb_tree_tag,
                              __gnu_pbds::tree_order_statistics_node_update>;

// ASHA's rule for `trial`, whose last step is rung `k`, from `tree`: the values every trial
// reported at that step (with or without `trial`'s own). The coordinator decides on a
// measurement before it is stored (and observed): `trial`'s value is counted from `trial`,
// whether or not the tree holds it already.
PruneDecision FromTree(const AshaOptions& o, Direction dir, const Trial& trial, int k, const Tree& tree,
                       const std::string& label) {
  const int step = trial.measurements.back().step;
  const double value = trial.measurements.back().value;
  const bool self = tree.find({value, trial.id}) != tree.end();
  const int others = static_cast<int>(tree.size()) - (self ? 1 : 0);
  // Trials strictly better than `value`: the top `promote` of all are those when there are
  // that many, and then the cut-off is the promote-th best of the tree.
  const int better = dir == Direction::kMaximize
                         ? static_cast<int>(tree.size() - tree.order_of_key({value, INT64_MAX}))
                         : static_cast<int>(tree.order_of_key({value, INT64_MIN}));
  return Judge(o, dir, k, step, value, others + 1,
               [&](int nth) {
                 if (better < nth) return value;  // not strictly beaten: goes on
                 return tree.find_by_order(dir == Direction::kMaximize ? tree.size() - nth : nth - 1)->first;
               },
               label);
}

// The tree of rung `step` in `rungs` (an empty one when no trial has reported there yet).
const Tree& TreeAt(const std::map<int, Tree>& rungs, int step) {
  static const Tree kEmpty;
  auto it = rungs.find(step);
  return it == rungs.end() ? kEmpty : it->second;
}

// Adds or removes the values `t` reported at the steps `is_rung` accepts, in trees by step.
void CountRungs(const Trial& t, bool add, const std::function<bool(int)>& is_rung, std::map<int, Tree>* trees) {
  for (const Measurement& m : t.measurements) {
    if (!is_rung(m.step)) continue;
    Tree& tree = (*trees)[m.step];
    if (add) tree.insert({m.value, t.id}); else tree.erase({m.value, t.id});
  }  // a trial's steps are unique (Coordinator::Report, the measurements table's key)
}

class AshaPruner final : public Pruner {
 public:
  explicit AshaPruner(const AshaOptions& o) : o_(o) {}

  // Keeps each rung's values (every trial that reported at that step, in any state) in an
  // order-statistics tree, so that a decision costs O(log n), not a scan of the study.
  void Observe(const Trial* before, const Trial& after) override {
    observed_ = true;
    auto is_rung = [&](int step) { return RungOf(o_, step) >= 0; };
    if (before != nullptr) CountRungs(*before, false, is_rung, &rungs_);
    CountRungs(after, true, is_rung, &rungs_);
  }

  absl::StatusOr<PruneDecision> Decide(const Study& study, const Trial& trial) const override {
    if (!observed_) return Asha(o_, study, trial, [](const Trial&) { return true; }, "asha");
    if (trial.measurements.empty()) return PruneDecision{};
    const int k = RungOf(o_, trial.measurements.back().step);
    if (k < 0) return PruneDecision{};
    return FromTree(o_, study.spec.direction, trial, k, TreeAt(rungs_, trial.measurements.back().step), "asha");
  }

 private:
  AshaOptions o_;
  bool observed_ = false;
  std::map<int, Tree> rungs_;  // rung step -> values
};

class HyperbandPruner final : public Pruner {
 public:
  HyperbandPruner(const HyperbandOptions& o, uint64_t study_seed) : o_(o), seed_(study_seed) {}

  // Keeps, per bracket, each rung's values in an order-statistics tree, as ASHA does.
  void Observe(const Trial* before, const Trial& after) override {
    observed_ = true;
    if (before != nullptr) Count(*before, false);
    Count(after, true);
  }

  absl::StatusOr<PruneDecision> Decide(const Study& study, const Trial& trial) const override {
    const int bracket = BracketOf(trial);
    const AshaOptions a = Bracket(bracket);
    const std::string label = absl::StrFormat("hyperband bracket %d,", bracket);
    if (!observed_) {
      return Asha(a, study, trial, [&](const Trial& t) { return BracketOf(t) == bracket; }, label);
    }
    if (trial.measurements.empty()) return PruneDecision{};
    const int step = trial.measurements.back().step;
    const int k = RungOf(a, step);
    if (k < 0) return PruneDecision{};
    static const std::map<int, Tree> kNoRungs;
    auto rungs = brackets_.find(bracket);
    const Tree& tree = TreeAt(rungs == brackets_.end() ? kNoRungs : rungs->second, step);
    return FromTree(a, study.spec.direction, trial, k, tree, label);
  }

 private:
  int BracketOf(const Trial& t) const { return HyperbandBracket(o_, o_.max_resource, seed_, t.number); }

  AshaOptions Bracket(int bracket) const {
    AshaOptions a;
    a.min_resource = o_.min_resource;
    a.reduction_factor = o_.reduction_factor;
    a.min_early_stopping_rate = bracket;
    return a;
  }

  void Count(const Trial& t, bool add) {
    const int bracket = BracketOf(t);
    const AshaOptions a = Bracket(bracket);
    CountRungs(t, add, [&](int step) { return RungOf(a, step) >= 0; }, &brackets_[bracket]);
  }

  HyperbandOptions o_;  // max_resource resolved by the registry
  uint64_t seed_;
  bool observed_ = false;
  std::map<int, std::map<int, Tree>> brackets_;  // bracket -> rung step -> values
};

}  // namespace

int HyperbandBracket(const HyperbandOptions& o, int max_resource, uint64_t study_seed, int number) {
  const double ratio = std::max(1.0, static_cast<double>(max_resource) / std::max(1, o.min_resource));
  const int s_max = static_cast<int>(std::floor(std::log(ratio) / std::log(o.reduction_factor) + 1e-9));
  std::vector<double> weights;
  double total = 0;
  for (int b = 0; b <= s_max; ++b) {
    weights.push_back(std::ceil((s_max + 1.0) / (b + 1.0)) * std::pow(o.reduction_factor, s_max - b));
    total += weights.back();
  }
  double u = UnitFromBits(Mix64(Mix64(study_seed ^ 0x6879706572626e64ULL) + static_cast<uint64_t>(number))) * total;
  for (int b = 0; b <= s_max; ++b) {
    if ((u -= weights[b]) < 0) return b;
  }
  return s_max;
}

std::unique_ptr<Pruner> NewAshaPruner(const AshaOptions& options) { return std::make_unique<AshaPruner>(options); }
std::unique_ptr<Pruner> NewHyperbandPruner(const HyperbandOptions& options, uint64_t study_seed) {
  return std::make_unique<HyperbandPruner>(options, study_seed);
}

}  // namespace hpo::server
