#include "server/pruner/rule_pruners.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace hpo::server {
namespace {

class PatiencePruner final : public Pruner {
 public:
  explicit PatiencePruner(const PatienceOptions& o) : o_(o) {}
  absl::StatusOr<PruneDecision> Decide(const Study& study, const Trial& trial) const override {
    const auto& ms = trial.measurements;
    const int n = static_cast<int>(ms.size());
    if (n <= o_.patience || ms.back().step <= o_.warmup_steps) return PruneDecision{};
    const Direction dir = study.spec.direction;
    // Best before the last `patience` steps, and best within them.
    double before = ms[0].value;
    for (int i = 1; i < n - o_.patience; ++i) {
      if (Better(dir, ms[i].value, before)) before = ms[i].value;
    }
    double recent = ms[n - o_.patience].value;
    for (int i = n - o_.patience; i < n; ++i) {
      if (Better(dir, ms[i].value, recent)) recent = ms[i].value;
    }
    const double gain = dir == Direction::kMaximize ? recent - before : before - recent;
    if (gain > o_.min_delta) return PruneDecision{};
    return PruneDecision{true, absl::StrFormat("patience at step %d: no improvement of more than %g over the "
                                               "best %.4f for %d steps (best since: %.4f)",
                                               ms.back().step, o_.min_delta, before, o_.patience, recent)};
  }

 private:
  PatienceOptions o_;
};

class ThresholdPruner final : public Pruner {
 public:
  explicit ThresholdPruner(const ThresholdOptions& o) : o_(o) {}
  absl::StatusOr<PruneDecision> Decide(const Study&, const Trial& trial) const override {
    if (trial.measurements.empty()) return PruneDecision{};
    const Measurement& m = trial.measurements.back();
    if (m.step <= o_.warmup_steps) return PruneDecision{};
    if (std::isnan(m.value)) return PruneDecision{true, absl::StrFormat("threshold at step %d: value is NaN", m.step)};
    if (m.value < o_.lower) {
      return PruneDecision{true, absl::StrFormat("threshold at step %d: value %.4f is below the floor %g", m.step,
                                                 m.value, o_.lower)};
    }
    if (m.value > o_.upper) {
      return PruneDecision{true, absl::StrFormat("threshold at step %d: value %.4f is above the ceiling %g", m.step,
                                                 m.value, o_.upper)};
    }
    return PruneDecision{};
  }

 private:
  ThresholdOptions o_;
};

class AnyPruner final : public Pruner {
 public:
  explicit AnyPruner(std::vector<std::unique_ptr<Pruner>> pruners) : pruners_(std::move(pruners)) {}
  absl::StatusOr<PruneDecision> Decide(const Study& study, const Trial& trial) const override {
    for (const auto& p : pruners_) {
      auto d = p->Decide(study, trial);
      if (!d.ok() || d->prune) return d;
    }
    return PruneDecision{};
  }
  void Observe(const Trial* before, const Trial& after) override {
    for (const auto& p : pruners_) p->Observe(before, after);
  }

 private:
  std::vector<std::unique_ptr<Pruner>> pruners_;
};

}  // namespace

std::unique_ptr<Pruner> NewPatiencePruner(const PatienceOptions& o) { return std::make_unique<PatiencePruner>(o); }
std::unique_ptr<Pruner> NewThresholdPruner(const ThresholdOptions& o) { return std::make_unique<ThresholdPruner>(o); }
std::unique_ptr<Pruner> NewAnyPruner(std::vector<std::unique_ptr<Pruner>> pruners) {
  return std::make_unique<AnyPruner>(std::move(pruners));
}

}  // namespace hpo::server
