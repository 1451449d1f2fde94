#include "server/sampler/sampler_registry.h"

#include <algorithm>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/sampler/gp_sampler.h"
#include "server/sampler/grid_sampler.h"
#include "server/sampler/random_sampler.h"
#include "server/sampler/tpe_sampler.h"

namespace hpo::server {
namespace {

// Typed options of a sampler section: unknown keys and bad values are refused with the reason.
class Options {
 public:
  Options(const nlohmann::json& cfg, std::string type) : cfg_(cfg), type_(std::move(type)) {}

  template <typename T>
  Options& Read(const char* key, T* out, double min, double max) {
    known_.push_back(key);
    if (!status_.ok() || !cfg_.contains(key)) return *this;
    const nlohmann::json& v = cfg_.at(key);
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) {
        status_ = absl::InvalidArgumentError(absl::StrCat("sampler.", key, " must be true or false"));
      } else {
        *out = v.get<bool>();
      }
    } else {
      const bool integral = std::is_integral_v<T>;
      if (!v.is_number() || (integral && !v.is_number_integer()) || v.get<double>() < min || v.get<double>() > max) {
        status_ = absl::InvalidArgumentError(absl::StrCat("sampler.", key, " must be ", integral ? "an integer" : "a number",
                                                          " in [", min, ", ", max, "] (got ", v.dump(), ")"));
      } else {
        *out = v.get<T>();
      }
    }
    return *this;
  }

  absl::Status Done() {
    if (!status_.ok()) return status_;
    known_.push_back("type");
    known_.push_back("seed");
    for (const auto& [key, value] : cfg_.items()) {
      if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
        return absl::InvalidArgumentError(absl::StrCat("sampler: unknown option \"", key, "\" for the ", type_,
                                                       " sampler; it takes ", absl::StrJoin(known_, ", ")));
      }
    }
    return absl::OkStatus();
  }

 private:
  const nlohmann::json& cfg_;
  std::string type_;
  std::vector<std::string> known_;
  absl::Status status_;
};

}  // namespace

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
  if (type == "tpe") {
    TpeOptions o;
    Options opts(cfg, type);
    opts.Read("n_startup_trials", &o.n_startup_trials, 0, 1e7)
        .Read("n_ei_candidates", &o.n_ei_candidates, 1, 10000)
        .Read("gamma", &o.gamma, 0.01, 0.99)
        .Read("max_good", &o.max_good, 1, 1e6)
        .Read("prior_weight", &o.prior_weight, 1e-6, 1e6)
        .Read("multivariate", &o.multivariate, 0, 1)
        .Read("constant_liar", &o.constant_liar, 0, 1)
        .Read("use_pruned", &o.use_pruned, 0, 1);
    if (auto s = opts.Done(); !s.ok()) return s;
    return NewTpeSampler(o);
  }
  if (type == "gp") {
    GpOptions o;
    Options opts(cfg, type);
    opts.Read("n_startup_trials", &o.n_startup_trials, 2, 1e7)
        .Read("n_candidates", &o.n_candidates, 10, 1e6)
        .Read("n_refine", &o.n_refine, 1, 100)
        .Read("max_fit_points", &o.max_fit_points, 10, 5000)
        .Read("kriging_believer", &o.kriging_believer, 0, 1);
    if (auto s = opts.Done(); !s.ok()) return s;
    return NewGpSampler(o);
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
