#include "server/pruner/pruner_registry.h"

#include "absl/strings/str_cat.h"
#include "server/model/option_reader.h"
#include "server/pruner/percentile_pruner.h"
#include "server/pruner/rule_pruners.h"
#include "server/pruner/successive_halving_pruner.h"

namespace hpo::server {
namespace {

class NopPruner final : public Pruner {
 public:
  absl::StatusOr<PruneDecision> Decide(const Study&, const Trial&) const override { return PruneDecision{}; }
};

absl::StatusOr<std::unique_ptr<Pruner>> MakeOne(const nlohmann::json& cfg, const StudySpec& spec,
                                                const uint64_t study_seed) {
  if (!cfg.is_object() || !cfg.contains("type") || !cfg.at("type").is_string()) {
    return absl::InvalidArgumentError("each pruner must be an object with a string \"type\", e.g. {\"type\": \"asha\"}");
  }
  const std::string type = cfg.at("type").get<std::string>();
  OptionReader r(cfg, "pruner", type);
  if (type == "none") {
    if (auto s = r.Done(); !s.ok()) return s;
    return std::unique_ptr<Pruner>(std::make_unique<NopPruner>());
  }
  if (type == "median" || type == "percentile") {
    PercentilePrunerOptions o;
    if (type == "percentile") r.Read("keep_top", &o.keep_top, 1e-9, 100);
    r.Read("startup_trials", &o.startup_trials, 0, 1e6)
        .Read("warmup_steps", &o.warmup_steps, 0, 1e6)
        .Read("interval_steps", &o.interval_steps, 1, 1e6)
        .Read("min_trials_at_step", &o.min_trials_at_step, 1, 1e6);
    if (auto s = r.Done(); !s.ok()) return s;
    return NewPercentilePruner(o);
  }
  if (type == "asha") {
    AshaOptions o;
    r.Read("min_resource", &o.min_resource, 1, 1e6)
        .Read("reduction_factor", &o.reduction_factor, 2, 100)
        .Read("min_early_stopping_rate", &o.min_early_stopping_rate, 0, 100)
        .Read("bootstrap_count", &o.bootstrap_count, 0, 1e6);
    if (auto s = r.Done(); !s.ok()) return s;
    return NewAshaPruner(o);
  }
  if (type == "hyperband") {
    HyperbandOptions o;
    r.Read("min_resource", &o.min_resource, 1, 1e6)
        .Read("max_resource", &o.max_resource, 0, 1e6)
        .Read("reduction_factor", &o.reduction_factor, 2, 100);
    if (auto s = r.Done(); !s.ok()) return s;
    if (o.max_resource == 0 && spec.task.max_epochs == 0) {
      return absl::InvalidArgumentError("pruner.max_resource is required when the task has no max_steps");
    }
    if (o.max_resource == 0) o.max_resource = spec.task.max_epochs;
    return NewHyperbandPruner(o, study_seed);
  }
  if (type == "patience") {
    PatienceOptions o;
    r.Read("patience", &o.patience, 1, 1e6).Read("min_delta", &o.min_delta, 0, 1e300).Read("warmup_steps", &o.warmup_steps, 0, 1e6);
    if (auto s = r.Done(); !s.ok()) return s;
    return NewPatiencePruner(o);
  }
  if (type == "threshold") {
    ThresholdOptions o;
    r.Read("lower", &o.lower, -1e300, 1e300).Read("upper", &o.upper, -1e300, 1e300).Read("warmup_steps", &o.warmup_steps, 0, 1e6);
    if (auto s = r.Done(); !s.ok()) return s;
    if (!cfg.contains("lower") && !cfg.contains("upper")) {
      return absl::InvalidArgumentError("the threshold pruner needs \"lower\" or \"upper\" (or both)");
    }
    return NewThresholdPruner(o);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "pruner.type \"", type, "\" is unknown; supported: none, median, percentile, asha, hyperband, patience, threshold"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pruner>> MakePruner(const StudySpec& spec, uint64_t study_seed) {
  if (!spec.pruner.is_array()) return MakeOne(spec.pruner, spec, study_seed);
  if (spec.pruner.empty()) return absl::InvalidArgumentError("pruner: a list of pruners must not be empty");
  std::vector<std::unique_ptr<Pruner>> all;
  for (const auto& cfg : spec.pruner) {
    auto p = MakeOne(cfg, spec, study_seed);
    if (!p.ok()) return p.status();
    all.push_back(std::move(*p));
  }
  return NewAnyPruner(std::move(all));
}

}  // namespace hpo::server
