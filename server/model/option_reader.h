// Reads the typed options of a sampler or pruner section of a spec; unknown
// keys and bad values become kInvalidArgument naming the option.
#pragma once

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hpo::server {

class OptionReader {
 public:
  // `section` is "sampler" or "pruner", `type` its type name (for messages).
  OptionReader(const nlohmann::json& cfg, std::string section, std::string type)
      : cfg_(cfg), section_(std::move(section)), type_(std::move(type)) {}

  // Reads `key` into `out` when present; numbers must lie in [min, max].
  template <typename T>
  OptionReader& Read(const char* key, T* out, double min, double max) {
    known_.push_back(key);
    if (!status_.ok() || !cfg_.contains(key)) return *this;
    const nlohmann::json& v = cfg_.at(key);
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) {
        status_ = absl::InvalidArgumentError(absl::StrCat(section_, ".", key, " must be true or false"));
      } else {
        *out = v.get<bool>();
      }
    } else {
      const bool integral = std::is_integral_v<T>;
      if (!v.is_number() || (integral && !v.is_number_integer()) || v.get<double>() < min || v.get<double>() > max) {
        status_ = absl::InvalidArgumentError(absl::StrCat(section_, ".", key, " must be ",
                                                          integral ? "an integer" : "a number", " in [", min, ", ",
                                                          max, "] (got ", v.dump(), ")"));
      } else {
        *out = v.get<T>();
      }
    }
    return *this;
  }

  // The first error, or an unknown key.
  absl::Status Done() {
    if (!status_.ok()) return status_;
    known_.push_back("type");
    if (section_ == "sampler") known_.push_back("seed");
    for (const auto& [key, value] : cfg_.items()) {
      if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(section_, ": unknown option \"", key, "\" for the ", type_, " ",
                                                       section_, "; it takes ", absl::StrJoin(known_, ", ")));
      }
    }
    return absl::OkStatus();
  }

 private:
  const nlohmann::json& cfg_;
  std::string section_, type_;
  std::vector<std::string> known_;
  absl::Status status_;
};

}  // namespace hpo::server
