// What each task type accepts: its parameters (with the values that make
// sense for them), its objective metrics. The coordinator refuses a study
// whose search space names anything else.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/model/types.h"

namespace hpo::server {

// Names of the known task types, e.g. {"cnn"}.
std::vector<std::string> TaskTypes();

// kInvalidArgument when `type` is unknown or `metric` is not one of its metrics.
[[nodiscard]] absl::Status ValidateTaskMetric(const std::string& type, const std::string& metric);

// kInvalidArgument when `p` is not a parameter of the task, or can take a
// value the task cannot use (e.g. dropout 1.5, optimizer "lbfgs").
[[nodiscard]] absl::Status ValidateTaskParam(const std::string& type, const ParamSpec& p);

}  // namespace hpo::server
