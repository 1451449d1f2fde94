// An in-memory Storage: the reference implementation of the contract in storage.h, and the
// store unit tests of the coordinator run on. Nothing survives the object.
#pragma once

#include <memory>

#include "server/storage/storage.h"

namespace hpo::server {

// A new, empty store. It behaves as OpenSqliteStorage's does, as storage_conformance_test
// checks: ids from 1, increasing; what reads back is what SQLite reads back (times to the
// millisecond, non-finite metrics dropped, ...; see storage.h); Transaction all-or-nothing,
// with calls nested in its body joining it; unknown ids refused with kNotFound. Thread-safe:
// one lock, held for each call and for the whole of a Transaction (calls from inside the body
// re-enter it).
[[nodiscard]] std::unique_ptr<Storage> NewMemoryStorage();

}  // namespace hpo::server
