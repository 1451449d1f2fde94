// The contract of what workers report about a trial's data and classes (DataReport,
// ClassReport): the limits the coordinator enforces before it stores anything, so that
// hpoctl, the report and the diagnosis can trust what they read.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "server/model/types.h"

namespace hpo::server {

inline constexpr int kMaxClasses = 256;
inline constexpr size_t kMaxClassNameBytes = 256;
inline constexpr size_t kMaxSkippedExamples = 10;
inline constexpr size_t kMaxSkippedExampleBytes = 1024;

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
bool IsValidUtf8(std::string_view s);

// kInvalidArgument, saying what is wrong, when: more than kMaxClasses class names; a class name
// that is empty, longer than kMaxClassNameBytes, not UTF-8 or holds a control character; a
// negative count or size; more than kMaxSkippedExamples skipped examples, or one longer than
// kMaxSkippedExampleBytes or not UTF-8.
[[nodiscard]] absl::Status ValidateDataReport(const DataReport& d);

// kInvalidArgument when: more than kMaxClasses classes; a non-empty per-class array whose length
// is not n (ClassReport::NumClasses) or a confusion matrix that is not n x n; a negative count;
// a recall that is not finite or outside [0, 1]; or, when `data` names its classes, n different
// from the number of names.
[[nodiscard]] absl::Status ValidateClassReport(const ClassReport& c, const DataReport* data);

}  // namespace hpo::server
