#include "server/pruner/percentile_pruner.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

class PercentilePruner final : public Pruner {
 public:
  explicit PercentilePruner(const PercentilePrunerOptions& o) : o_(o) {}

  absl::StatusOr<PruneDecision> Decide(const Study& study, const Trial& trial) const override {
    if (trial.measurements.empty()) return PruneDecision{};
    const int step = trial.measurements.back().step;
    if (step <= o_.warmup_steps) return PruneDecision{};
    if ((step - o_.warmup_steps - 1) % o_.interval_steps != 0) return PruneDecision{};
    const Direction dir = study.spec.direction;
    int completed = 0;
    std::vector<double> at_step;
    for (const Trial& t : study.trials) {
      if (t.state != TrialState::kCompleted || t.id == trial.id) continue;
      ++completed;
      for (const Measurement& m : t.measurements) {
        if (m.step == step) at_step.push_back(m.value);
      }
    }
    if (completed < o_.startup_trials) return PruneDecision{};
    if (at_step.empty() || static_cast<int>(at_step.size()) < o_.min_trials_at_step) return PruneDecision{};
    double best = trial.measurements.front().value;
    for (const Measurement& m : trial.measurements) {
      if (Better(dir, m.value, best)) best = m.value;
    }
    std::sort(at_step.begin(), at_step.end());
    // The cut-off that keeps the best keep_top percent.
    const double cutoff =
        Percentile(at_step, dir == Direction::kMaximize ? 100.0 - o_.keep_top : o_.keep_top);
    if (!Better(dir, cutoff, best)) return PruneDecision{};
    const bool median = o_.keep_top == 50;
    return PruneDecision{
        true, absl::StrFormat("%s at step %d: best value so far %.4f is %s than the %s %.4f of %d completed "
                              "trials at step %d",
                              median ? "median rule" : absl::StrFormat("percentile rule (keep top %g%%)", o_.keep_top),
                              step, best, dir == Direction::kMaximize ? "lower" : "higher",
                              median ? "median" : "cut-off", cutoff, static_cast<int>(at_step.size()), step)};
  }

 private:
  PercentilePrunerOptions o_;
};

}  // namespace

std::unique_ptr<Pruner> NewPercentilePruner(const PercentilePrunerOptions& options) {
  return std::make_unique<PercentilePruner>(options);
}

}  // namespace hpo::server
