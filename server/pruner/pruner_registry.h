// The one place pruner names are switched on.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "server/model/types.h"
#include "server/pruner/pruner.h"

namespace hpo::server {

// Validates spec.pruner ({"type": ..., options}) and builds the pruner.
// kInvalidArgument, naming the problem, for an unknown type or a bad option.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Pruner>> MakePruner(const StudySpec& spec);

}  // namespace hpo::server
