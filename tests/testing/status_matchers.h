// gmock matchers for absl::Status / StatusOr (Debian's abseil has none).
#pragma once

#include <gmock/gmock.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hpo::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) { return s.status(); }

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status " << s;
  return s.ok();
}

MATCHER_P2(StatusIs, code, substring, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status " << s;
  return s.code() == code && std::string(s.message()).find(substring) != std::string::npos;
}

}  // namespace hpo::testing
