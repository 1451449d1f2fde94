#include "server/pruner/percentile_pruner.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>

#include "absl/strings/str_format.h"

namespace hpo::server {
namespace {

// Linear-interpolated percentile q (0..100) of sorted values (numpy's default).
double Percentile(const std::vector<double>& sorted, double q) {
  const double pos = q / 100.0 * (sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(sorted.size() - 1, lo + 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

// Linear-interpolated percentile q of the values in an order-statistics tree (same as Percentile).
template <typename Tree>
double TreePercentile(const Tree& sorted, double q) {
  const double pos = q / 100.0 * (sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(sorted.size() - 1, lo + 1);
  const double a = sorted.find_by_order(lo)->first, b = sorted.find_by_order(hi)->first;
  return a + (pos - lo) * (b - a);
}

class PercentilePruner final : public Pruner {
 public:
  explicit PercentilePruner(const PercentilePrunerOptions& o) : o_(o) {}

  // Keeps, per step, the completed trials' values in an order-statistics tree: a decision costs
  // O(log n) instead of a scan of the whole study.
  void Observe(const Trial* before, const Trial& after) override {
    observed_ = true;
    if (before != nullptr && before->state == TrialState::kCompleted) Count(*before, -1);
    if (after.state == TrialState::kCompleted) Count(after, +1);
  }

  absl::StatusOr<PruneDecision> Decide(const Study& study, const Trial& trial) const override {
    if (trial.measurements.empty()) return PruneDecision{};
    const int step = trial.measurements.back().step;
    if (step <= o_.warmup_steps) return PruneDecision{};
    if ((step - o_.warmup_steps - 1) % o_.interval_steps != 0) return PruneDecision{};
    const Direction dir = study.spec.direction;
    // The cut-off that keeps the best keep_top percent.
    const double q = dir == Direction::kMaximize ? 100.0 - o_.keep_top : o_.keep_top;
    int completed = 0;
    int judged = 0;
    double cutoff = 0;
    if (observed_ && trial.state != TrialState::kCompleted) {
      completed = completed_;
      auto it = by_step_.find(step);
      judged = it == by_step_.end() ? 0 : static_cast<int>(it->second.size());
      if (completed < o_.startup_trials || judged == 0 || judged < o_.min_trials_at_step) return PruneDecision{};
      cutoff = TreePercentile(it->second, q);
    } else {
      std::vector<double> at_step;
      for (const Trial& t : study.trials) {
        if (t.state != TrialState::kCompleted || t.id == trial.id) continue;
        ++completed;
        for (const Measurement& m : t.measurements) {
          if (m.step == step) at_step.push_back(m.value);
        }
      }
      judged = static_cast<int>(at_step.size());
      if (completed < o_.startup_trials || judged == 0 || judged < o_.min_trials_at_step) return PruneDecision{};
      std::sort(at_step.begin(), at_step.end());
      cutoff = Percentile(at_step, q);
    }
    double best = trial.measurements.front().value;
    for (const Measurement& m : trial.measurements) {
      if (Better(dir, m.value, best)) best = m.value;
    }
    if (!Better(dir, cutoff, best)) return PruneDecision{};
    const bool median = o_.keep_top == 50;
    return PruneDecision{
        true, absl::StrFormat("%s at step %d: best value so far %.4f is %s than the %s %.4f of %d completed "
                              "trials at step %d",
                              median ? "median rule" : absl::StrFormat("percentile rule (keep top %g%%)", o_.keep_top),
                              step, best, dir == Direction::kMaximize ? "lower" : "higher",
                              median ? "median" : "cut-off", cutoff, judged, step)};
  }

 private:
  // (value, trial id, measurement index): unique keys, ordered by value.
  using Key = std::pair<double, std::pair<int64_t, int>>;
  using Tree = __gnu_pbds::tree<Key, __gnu_pbds::null_type, std::less<Key>, __gnu_pbds::rb_tree_tag,
                                __gnu_pbds::tree_order_statistics_node_update>;

  void Count(const Trial& t, int sign) {
    completed_ += sign;
    for (size_t i = 0; i < t.measurements.size(); ++i) {
      const Key key{t.measurements[i].value, {t.id, static_cast<int>(i)}};
      Tree& tree = by_step_[t.measurements[i].step];
      if (sign > 0) tree.insert(key); else tree.erase(key);
    }
  }

  PercentilePrunerOptions o_;
  bool observed_ = false;
  int completed_ = 0;
  std::map<int, Tree> by_step_;
};

}  // namespace

std::unique_ptr<Pruner> NewPercentilePruner(const PercentilePrunerOptions& options) {
  return std::make_unique<PercentilePruner>(options);
}

}  // namespace hpo::server
