#include "server/pruner/successive_halving_pruner.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

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

// ASHA's rule for `trial` among the trials accepted by `competes`; `label` names the bracket in the reason.
PruneDecision Asha(const AshaOptions& o, const Study& study, const Trial& trial,
                   const std::function<bool(const Trial&)>& competes, const std::string& label) {
  if (trial.measurements.empty()) return PruneDecision{};
  const int step = trial.measurements.back().step;
  // Is `step` a rung: min_resource * eta^(k + s) for some k >= 0?
  int k = -1;
  for (int i = 0;; ++i) {
    const double rung = o.min_resource * std::pow(o.reduction_factor, i + o.min_early_stopping_rate);
    if (rung > step) break;
    if (static_cast<int>(rung) == step) {
      k = i;
      break;
    }
  }
  if (k < 0) return PruneDecision{};
  const Direction dir = study.spec.direction;
  const double value = trial.measurements.back().value;
  std::vector<double> values = {value};
  for (const Trial& t : study.trials) {
    if (t.id == trial.id || !competes(t)) continue;
    if (const Measurement* m = At(t, step)) values.push_back(m->value);
  }
  if (static_cast<int>(values.size()) < std::max(1, o.bootstrap_count)) return PruneDecision{};
  std::sort(values.begin(), values.end(), [&](double a, double b) { return Better(dir, a, b); });
  // The top n/eta go on; while fewer than eta trials have reached the rung, only the best so far.
  const int promote = std::max(1, static_cast<int>(values.size()) / o.reduction_factor);
  const double cutoff = values[promote - 1];
  if (!Better(dir, cutoff, value)) return PruneDecision{};
  return PruneDecision{true, absl::StrFormat("%s rung %d (step %d): value %.4f is not in the top 1/%d of the %d "
                                             "trials that reached this rung (cut-off %.4f)",
                                             label, k, step, value, o.reduction_factor,
                                             static_cast<int>(values.size()), cutoff)};
}

class AshaPruner final : public Pruner {
 public:
  explicit AshaPruner(const AshaOptions& o) : o_(o) {}
  absl::StatusOr<PruneDecision> Decide(const Study& study, const Trial& trial) const override {
    return Asha(o_, study, trial, [](const Trial&) { return true; }, "asha");
  }

 private:
  AshaOptions o_;
};

int MaxResource(const HyperbandOptions& o, const Study& study) {
  return o.max_resource > 0 ? o.max_resource : study.spec.task.max_epochs;
}

class HyperbandPruner final : public Pruner {
 public:
  explicit HyperbandPruner(const HyperbandOptions& o) : o_(o) {}
  absl::StatusOr<PruneDecision> Decide(const Study& study, const Trial& trial) const override {
    const int max_resource = MaxResource(o_, study);
    const int bracket = HyperbandBracket(o_, max_resource, study.seed, trial.number);
    AshaOptions a;
    a.min_resource = o_.min_resource;
    a.reduction_factor = o_.reduction_factor;
    a.min_early_stopping_rate = bracket;
    return Asha(a, study, trial,
                [&](const Trial& t) { return HyperbandBracket(o_, max_resource, study.seed, t.number) == bracket; },
                absl::StrFormat("hyperband bracket %d,", bracket));
  }

 private:
  HyperbandOptions o_;
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
std::unique_ptr<Pruner> NewHyperbandPruner(const HyperbandOptions& options) {
  return std::make_unique<HyperbandPruner>(options);
}

}  // namespace hpo::server
