// The one place pruner names are switched on.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "server/model/types.h"
#include "server/pruner/pruner.h"

namespace hpo::server {

// Validates spec.pruner ({"type": ..., options}) and builds the pruner of the study whose seed is
// `study_seed` (Hyperband assigns brackets from it; validation alone may pass any).
// kInvalidArgument, naming the problem, for an unknown type or a bad option.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Pruner>> MakePruner(const StudySpec& spec, uint64_t study_seed);

}  // namespace hpo::server
