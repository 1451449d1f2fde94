// --log_format=json for hpo-server and hpo-worker: one JSON object per line, for log shippers
// (Loki, Elasticsearch, Cloud Logging). Every line has "time", "level", "process" and "msg"; a line that
// names a study, a trial or a worker also has "study", "trial" and "worker" as fields of their own.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace hpo {

// The fields a log message names, found in its text ("trial 3 of study 2", "study 2", "worker w1").
struct LogFields {
  long long study = -1, trial = -1;  // -1: not named
  std::string worker;
};
LogFields FieldsOfLogLine(std::string_view message);

// One log line as JSON (no trailing newline). `worker` (non-empty) is this process's worker id,
// which every line of a worker carries.
std::string JsonLogLine(std::string_view time, std::string_view level, std::string_view process,
                        std::string_view worker, std::string_view message);

// Sets spdlog's default logger to `format`: "text" (the default pattern given) or "json".
// kInvalidArgument for any other format.
[[nodiscard]] absl::Status SetLogFormat(const std::string& format, const std::string& text_pattern,
                                        const std::string& process, const std::string& worker = "");

}  // namespace hpo
