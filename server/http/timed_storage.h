// A Storage that times every write transaction of the one it wraps (for the
// hpo_storage_commit_seconds histogram), without touching the SQLite code.
#pragma once

#include <memory>
#include <string_view>

#include "absl/time/time.h"
#include "server/storage/storage.h"

namespace hpo::server {

class StorageTimer {
 public:
  virtual ~StorageTimer() = default;
  // One outermost write call (a committed or rolled-back transaction): which, how long, whether ok.
  virtual void StorageWrite(std::string_view op, absl::Duration latency, bool ok) = 0;
};

// Wraps `inner`; `timer` must outlive the result. Calls nested inside Transaction() are part of
// its transaction and are not timed on their own.
std::unique_ptr<Storage> NewTimedStorage(std::unique_ptr<Storage> inner, StorageTimer* timer);

}  // namespace hpo::server
