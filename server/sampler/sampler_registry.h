// The one place sampler names are switched on.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "server/model/types.h"
#include "server/sampler/sampler.h"

namespace hpo::server {

// Validates spec.sampler ({"type": ..., options}) and builds the sampler.
// kInvalidArgument, naming the problem, for an unknown type or a bad option.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Sampler>> MakeSampler(const StudySpec& spec);

}  // namespace hpo::server
