#include "server/pruner/median_pruner.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_format.h"

namespace hpo::server {
namespace {

class MedianPruner final : public Pruner {
 public:
  explicit MedianPruner(const MedianPrunerOptions& o) : o_(o) {}

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
    if (static_cast<int>(at_step.size()) < o_.min_trials_at_step || at_step.empty()) {
      return PruneDecision{};
    }
    double best = trial.measurements.front().value;
    for (const Measurement& m : trial.measurements) {
      if (Better(dir, m.value, best)) best = m.value;
    }
    std::sort(at_step.begin(), at_step.end());
    const size_t n = at_step.size();
    const double median = n % 2 ? at_step[n / 2] : 0.5 * (at_step[n / 2 - 1] + at_step[n / 2]);
    if (Better(dir, median, best)) {
      return PruneDecision{
          true, absl::StrFormat("median rule at step %d: best value so far %.4f is %s than the "
                                "median %.4f of %d completed trials at step %d",
                                step, best, dir == Direction::kMaximize ? "lower" : "higher",
                                median, static_cast<int>(n), step)};
    }
    return PruneDecision{};
  }

 private:
  MedianPrunerOptions o_;
};

}  // namespace

std::unique_ptr<Pruner> NewMedianPruner(const MedianPrunerOptions& options) {
  return std::make_unique<MedianPruner>(options);
}

}  // namespace hpo::server
