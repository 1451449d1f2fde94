#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/storage/storage.h"

namespace hpo::server {

// SQLite on disk (or ":memory:"): one connection guarded by a mutex, WAL,
// synchronous=NORMAL (every committed write survives a SIGKILL of the
// process), foreign keys on, schema versioned with PRAGMA user_version.
// The file is locked exclusively: a second process opening it gets
// kFailedPrecondition. Thread-safe.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Storage>> OpenSqliteStorage(const std::string& path);

}  // namespace hpo::server
