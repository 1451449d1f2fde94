#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/storage/storage.h"

namespace hpo::server {

struct SqliteStorageOptions {
  enum class Level { kInfo, kWarning, kError };
  // Where the storage reports what a person must hear about: rows repaired at start-up, a full
  // disk (once, when it starts refusing writes) and its end, the file deleted or replaced.
  // Unset: nothing is reported (the statuses still say everything).
  std::function<void(Level, const std::string&)> log;
  // How often a background thread checks that the database file and its -wal are still the
  // ones open, between writes too (a lost WAL is checkpointed at once). 0: only at writes.
  absl::Duration check_interval = absl::Seconds(1);
};

// SQLite on disk (or ":memory:"): one connection guarded by a mutex, WAL,
// synchronous=NORMAL (every committed write survives a SIGKILL of the
// process), foreign keys on, schema versioned with PRAGMA user_version.
// The file is locked exclusively: a second process opening it gets
// kFailedPrecondition. Thread-safe.
//
// Failing loudly (README "What happens when things go wrong"):
// - Opening: a file that is not SQLite, or SQLite but not hpo's, is refused as such (not as
//   "locked"); PRAGMA quick_check runs, and a damaged file is refused with kDataLoss.
// - Loading: a trial row that cannot be read (unknown state, params_json not an object of
//   scalars, retry_of not an earlier trial) is loaded FAILED with a reason saying why, written
//   back and reported; a study row with an unknown state is loaded STOPPED the same way.
// - Writing: the path and its -wal are checked (device and inode) before and after every
//   write, and every `check_interval` in between; once either was deleted or replaced, every write is refused with kUnavailable
//   (committed data still in the WAL is first checkpointed into the database file). A full
//   disk (SQLITE_FULL) refuses the write with kResourceExhausted naming the path, changes
//   nothing, and the next write tries again.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Storage>> OpenSqliteStorage(
    const std::string& path, SqliteStorageOptions options = {});

// Tests only: runs `sql` on the storage's connection (e.g. PRAGMA max_page_count, which makes
// SQLite answer SQLITE_FULL as a full disk would). `storage` must come from OpenSqliteStorage.
[[nodiscard]] absl::Status ExecSqlForTesting(Storage& storage, const std::string& sql);

}  // namespace hpo::server
