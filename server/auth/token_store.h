// Bearer tokens: who may call the coordinator, and as what (README "Security").
//
// A token's secret is "hpo_" followed by 64 hex digits (256 random bits from OpenSSL). Only its
// SHA-256 is stored, so the database does not reveal any token; the secret is shown once, when
// it is made.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hpo::server {

enum class Role { kAdmin, kWorker, kReader };

// "admin", "worker", "reader".
const char* RoleName(Role role);
// The inverse of RoleName; kInvalidArgument naming the three roles otherwise.
[[nodiscard]] absl::StatusOr<Role> ParseRole(std::string_view name);

struct TokenRecord {
  int64_t id = 0;
  Role role = Role::kReader;
  int64_t study_id = 0;  // worker tokens: the only study they may work on (0: any)
  std::string note;
  int64_t created_unix_ms = 0;
  bool revoked = false;
};

struct NewToken {
  std::string secret;  // give this to the client; it is not stored
  TokenRecord record;
};

// The hex SHA-256 of a token's secret: the form in which tokens are stored and looked up.
std::string HashToken(std::string_view secret);
// A fresh secret: "hpo_" + 64 hex digits from OpenSSL's RAND_bytes. kInternal if it has no entropy.
[[nodiscard]] absl::StatusOr<std::string> GenerateTokenSecret();

// Where tokens live. Thread-safe: the gRPC handlers call it from many threads.
class TokenStore {
 public:
  virtual ~TokenStore() = default;
  // Makes and stores a token. kInvalidArgument: a study_id on a non-worker token, a note over
  // 256 bytes. kUnavailable / kInternal: the store could not be written.
  [[nodiscard]] virtual absl::StatusOr<NewToken> Create(Role role, int64_t study_id, const std::string& note) = 0;
  // The token whose secret is `secret` (revoked ones too: the caller says why it refuses).
  // kNotFound when there is none.
  [[nodiscard]] virtual absl::StatusOr<TokenRecord> Lookup(std::string_view secret) = 0;
  // Every token, by id.
  [[nodiscard]] virtual absl::StatusOr<std::vector<TokenRecord>> List() = 0;
  // Marks a token revoked (idempotent) and returns it. kNotFound: no token with that id.
  [[nodiscard]] virtual absl::StatusOr<TokenRecord> Revoke(int64_t id) = 0;
};

// The token file that goes with the coordinator's database: `db_path` + ".tokens" (":memory:"
// stays in memory). A file of its own because hpo-server holds its database locked exclusively;
// this one is shared, so `hpo-server --new_token` works while a server runs on the same --db.
std::string TokenDbPathFor(const std::string& db_path);

// Opens (creating if missing) the SQLite token store at `path`. kFailedPrecondition with the path
// when the file is not SQLite or cannot be opened or written.
[[nodiscard]] absl::StatusOr<std::unique_ptr<TokenStore>> OpenSqliteTokenStore(const std::string& path);

}  // namespace hpo::server
