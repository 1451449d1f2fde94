#include "server/pruner/pruner_registry.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/pruner/median_pruner.h"

namespace hpo::server {
namespace {

class NopPruner final : public Pruner {
 public:
  absl::StatusOr<PruneDecision> Decide(const Study&, const Trial&) const override {
    return PruneDecision{};
  }
};

// Reads the integer options of `cfg` into `fields`; refuses unknown keys and bad values.
absl::Status ReadIntOptions(const nlohmann::json& cfg, const std::string& type,
                            const std::map<std::string, std::pair<int*, int>>& fields) {
  std::vector<std::string> known;
  for (const auto& [name, f] : fields) known.push_back(name);
  for (const auto& [key, value] : cfg.items()) {
    if (key == "type") continue;
    auto it = fields.find(key);
    if (it == fields.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pruner: unknown option \"", key, "\" for the ", type, " pruner; it takes ",
                       known.empty() ? "no options" : absl::StrJoin(known, ", ")));
    }
    if (!value.is_number_integer() || value.get<int64_t>() < it->second.second ||
        value.get<int64_t>() > 1'000'000) {
      return absl::InvalidArgumentError(absl::StrCat("pruner.", key, " must be an integer >= ",
                                                     it->second.second, " (got ", value.dump(), ")"));
    }
    *it->second.first = value.get<int>();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pruner>> MakePruner(const StudySpec& spec) {
  const nlohmann::json& cfg = spec.pruner;
  const std::string type = cfg.at("type").get<std::string>();
  if (type == "none") {
    if (auto s = ReadIntOptions(cfg, type, {}); !s.ok()) return s;
    return std::unique_ptr<Pruner>(std::make_unique<NopPruner>());
  }
  if (type == "median") {
    MedianPrunerOptions o;
    if (auto s = ReadIntOptions(cfg, type,
                                {{"startup_trials", {&o.startup_trials, 0}},
                                 {"warmup_steps", {&o.warmup_steps, 0}},
                                 {"interval_steps", {&o.interval_steps, 1}},
                                 {"min_trials_at_step", {&o.min_trials_at_step, 1}}});
        !s.ok()) {
      return s;
    }
    return NewMedianPruner(o);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("pruner.type \"", type, "\" is unknown; supported: none, median"));
}

}  // namespace hpo::server
