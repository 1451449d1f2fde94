#include "server/sampler/sampler_registry.h"

#include <algorithm>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/model/option_reader.h"
#include "server/sampler/gp_sampler.h"
#include "server/sampler/grid_sampler.h"
#include "server/sampler/random_sampler.h"
#include "server/sampler/tpe_sampler.h"

namespace hpo::server {

absl::StatusOr<std::unique_ptr<Sampler>> MakeSampler(const StudySpec& spec) {
  const nlohmann::json& cfg = spec.sampler;
  const std::string type = cfg.at("type").get<std::string>();
  if (type == "random") {
    if (auto s = OptionReader(cfg, "sampler", type).Done(); !s.ok()) return s;
    return NewRandomSampler();
  }
  if (type == "tpe") {
    TpeOptions o;
    OptionReader opts(cfg, "sampler", type);
    opts.Read("n_startup_trials", &o.n_startup_trials, 0, 1e7)
        .Read("n_ei_candidates", &o.n_ei_candidates, 1, 10000)
        .Read("gamma", &o.gamma, 0.01, 0.99)
        .Read("max_good", &o.max_good, 1, 1e6)
        .Read("prior_weight", &o.prior_weight, 1e-6, 1e6)
        .Read("multivariate", &o.multivariate, 0, 1)
        .Read("constant_liar", &o.constant_liar, 0, 1)
        .Read("use_pruned", &o.use_pruned, 0, 1)
        .Read("rung_fit", &o.rung_fit, 0, 1)
        .Read("rung_min_trials", &o.rung_min_trials, 0, 1e6);
    if (auto s = opts.Done(); !s.ok()) return s;
    return NewTpeSampler(o);
  }
  if (type == "gp") {
    GpOptions o;
    OptionReader opts(cfg, "sampler", type);
    opts.Read("n_startup_trials", &o.n_startup_trials, 2, 1e7)
        .Read("n_candidates", &o.n_candidates, 10, 1e6)
        .Read("n_refine", &o.n_refine, 1, 100)
        .Read("max_fit_points", &o.max_fit_points, 10, 5000)
        .Read("kriging_believer", &o.kriging_believer, 0, 1)
        .Read("rung_fit", &o.rung_fit, 0, 1);
    if (auto s = opts.Done(); !s.ok()) return s;
    return NewGpSampler(o);
  }
  if (type == "grid") {
    if (auto s = OptionReader(cfg, "sampler", type).Done(); !s.ok()) return s;
    return NewGridSampler(spec);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("sampler.type \"", type, "\" is unknown; supported: random, grid, tpe, gp"));
}

}  // namespace hpo::server
