// Parsing and validation of a study spec (JSON text) into a StudySpec.
// Every error is kInvalidArgument with a message that names the field and says what to fix.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "server/model/types.h"

namespace hpo::server {

// Parses `json_text` and validates it completely except for the sampler and
// pruner sections' options, which their registries validate.
[[nodiscard]] absl::StatusOr<StudySpec> ParseStudySpec(const std::string& json_text);

// Validates one parameter definition on its own (types, bounds, log, step, choices).
[[nodiscard]] absl::Status ValidateParamSpec(const ParamSpec& p);

}  // namespace hpo::server
