#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "server/sampler/sampler.h"

namespace hpo::server {

// Every combination of the space's values (categoricals, ints, stepped floats;
// conditional parameters only under their parent's values), each once, in an
// order shuffled by the study seed. kInvalidArgument when the space is not
// finite or has more than 1,000,000 points; Sample returns kOutOfRange once
// every point has a trial.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Sampler>> NewGridSampler(const StudySpec& spec);

}  // namespace hpo::server
