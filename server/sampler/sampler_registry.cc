#include "server/sampler/sampler_registry.h"

#include "absl/strings/str_cat.h"
#include "server/sampler/grid_sampler.h"
#include "server/sampler/random_sampler.h"

namespace hpo::server {

absl::StatusOr<std::unique_ptr<Sampler>> MakeSampler(const StudySpec& spec) {
  const nlohmann::json& cfg = spec.sampler;
  const std::string type = cfg.at("type").get<std::string>();
  if (type == "random") {
    for (const auto& [key, value] : cfg.items()) {
      if (key != "type" && key != "seed") {
        return absl::InvalidArgumentError(absl::StrCat(
            "sampler: unknown option \"", key, "\" for the random sampler; it takes only seed"));
      }
    }
    return NewRandomSampler();
  }
  if (type == "grid") {
    for (const auto& [key, value] : cfg.items()) {
      if (key != "type" && key != "seed") {
        return absl::InvalidArgumentError(absl::StrCat(
            "sampler: unknown option \"", key, "\" for the grid sampler; it takes only seed"));
      }
    }
    return NewGridSampler(spec);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("sampler.type \"", type, "\" is unknown; supported: random, grid, tpe, gp"));
}

}  // namespace hpo::server
