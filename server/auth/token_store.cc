#include "server/auth/token_store.h"

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include <map>
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace hpo::server {
namespace {

constexpr size_t kMaxNoteBytes = 256;
constexpr char kSecretPrefix[] = "hpo_";

std::string Hex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xF]);
  }
  return out;
}

// One prepared statement; finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status Prepared(const std::string& path) const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return Error(path, rc_);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  // true: a row; false: done.
  absl::StatusOr<bool> Step(const std::string& path) {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Error(path, rc);
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(stmt_, col)) : std::string();
  }

  absl::Status Error(const std::string& path, int rc) const {
    const int primary = rc & 0xff;
    std::string what = absl::StrCat("the token store ", path, ": ", sqlite3_errmsg(db_));
    if (primary == SQLITE_FULL) return absl::ResourceExhaustedError(absl::StrCat(what, " (the disk is full)"));
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return absl::UnavailableError(what);
    return absl::FailedPreconditionError(what);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

constexpr char kColumns[] = "id, role, study_id, note, created_unix_ms, revoked";

TokenRecord RowToRecord(const Stmt& s) {
  TokenRecord r;
  r.id = s.Int(0);
  // An unknown role string (a hand-edited row) reads as the least privileged one.
  r.role = ParseRole(s.Text(1)).value_or(Role::kReader);
  r.study_id = s.Int(2);
  r.note = s.Text(3);
  r.created_unix_ms = s.Int(4);
  r.revoked = s.Int(5) != 0;
  return r;
}

class SqliteTokenStore final : public TokenStore {
 public:
  SqliteTokenStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteTokenStore() override { sqlite3_close_v2(db_); }

  absl::Status Init() {
    for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                            "CREATE TABLE IF NOT EXISTS tokens ("
                            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                            " hash TEXT NOT NULL UNIQUE,"  // hex SHA-256 of the secret
                            " role TEXT NOT NULL,"
                            " study_id INTEGER NOT NULL DEFAULT 0,"
                            " note TEXT NOT NULL DEFAULT '',"
                            " created_unix_ms INTEGER NOT NULL,"
                            " revoked INTEGER NOT NULL DEFAULT 0)"}) {
      Stmt s(db_, sql);
      absl::Status st = s.Prepared(path_);
      if (st.ok()) st = s.Step(path_).status();
      if (!st.ok()) {
        if ((sqlite3_errcode(db_) & 0xff) == SQLITE_NOTADB) {
          return absl::FailedPreconditionError(absl::StrCat(
              path_, " is not a token store: not a SQLite file. Give --tokens_db the token file, or a path "
              "that does not exist yet"));
        }
        return st;
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<NewToken> Create(Role role, int64_t study_id, const std::string& note) override {
    if (study_id < 0) return absl::InvalidArgumentError("study_id must be positive (or 0: any study)");
    if (study_id != 0 && role != Role::kWorker) {
      return absl::InvalidArgumentError(absl::StrCat("only worker tokens are bound to a study; a ", RoleName(role),
                                                     " token takes no study"));
    }
    if (note.size() > kMaxNoteBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("the note is ", note.size(), " bytes; at most ", kMaxNoteBytes, " bytes are accepted"));
    }
    absl::StatusOr<std::string> secret = GenerateTokenSecret();
    if (!secret.ok()) return secret.status();
    NewToken t;
    t.secret = *secret;
    t.record.role = role;
    t.record.study_id = study_id;
    t.record.note = note;
    t.record.created_unix_ms = absl::ToUnixMillis(absl::Now());
    const std::string hash = HashToken(t.secret);
    std::lock_guard<std::mutex> lock(mu_);
    Stmt s(db_, "INSERT INTO tokens (hash, role, study_id, note, created_unix_ms) VALUES (?, ?, ?, ?, ?)");
    if (absl::Status st = s.Prepared(path_); !st.ok()) return st;
    s.Bind(1, hash);
    s.Bind(2, RoleName(role));
    s.Bind(3, study_id);
    s.Bind(4, note);
    s.Bind(5, t.record.created_unix_ms);
    if (absl::Status st = s.Step(path_).status(); !st.ok()) return st;
    t.record.id = sqlite3_last_insert_rowid(db_);
    cache_[hash] = t.record;
    return t;
  }

  absl::StatusOr<TokenRecord> Lookup(std::string_view secret) override {
    const std::string hash = HashToken(secret);
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = cache_.find(hash); it != cache_.end()) return it->second;
    // Not seen yet: perhaps made by `hpo-server --new_token` while this server runs.
    std::string query = absl::StrCat("SELECT ", kColumns, " FROM tokens WHERE hash = ?");
    Stmt s(db_, query.c_str());
    if (absl::Status st = s.Prepared(path_); !st.ok()) return st;
    s.Bind(1, hash);
    absl::StatusOr<bool> row = s.Step(path_);
    if (!row.ok()) return row.status();
    if (!*row) return absl::NotFoundError("no such token");
    TokenRecord r = RowToRecord(s);
    cache_[hash] = r;
    return r;
  }

  absl::StatusOr<std::vector<TokenRecord>> List() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::string query = absl::StrCat("SELECT ", kColumns, " FROM tokens ORDER BY id");
    Stmt s(db_, query.c_str());
    if (absl::Status st = s.Prepared(path_); !st.ok()) return st;
    std::vector<TokenRecord> out;
    for (;;) {
      absl::StatusOr<bool> row = s.Step(path_);
      if (!row.ok()) return row.status();
      if (!*row) break;
      out.push_back(RowToRecord(s));
    }
    return out;
  }

  absl::StatusOr<TokenRecord> Revoke(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    {
      Stmt s(db_, "UPDATE tokens SET revoked = 1 WHERE id = ?");
      if (absl::Status st = s.Prepared(path_); !st.ok()) return st;
      s.Bind(1, id);
      if (absl::Status st = s.Step(path_).status(); !st.ok()) return st;
    }
    std::string query = absl::StrCat("SELECT ", kColumns, ", hash FROM tokens WHERE id = ?");
    Stmt s(db_, query.c_str());
    if (absl::Status st = s.Prepared(path_); !st.ok()) return st;
    s.Bind(1, id);
    absl::StatusOr<bool> row = s.Step(path_);
    if (!row.ok()) return row.status();
    if (!*row) {
      return absl::NotFoundError(absl::StrCat("no token with id ", id, " (hpoctl token list shows them)"));
    }
    TokenRecord r = RowToRecord(s);
    cache_[s.Text(6)] = r;  // a revoked token is refused from the next call on
    return r;
  }

 private:
  sqlite3* db_;
  const std::string path_;
  std::mutex mu_;  // guards db_ (its statements) and cache_
  std::map<std::string, TokenRecord> cache_;  // by hash
};

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kAdmin: return "admin";
    case Role::kWorker: return "worker";
    case Role::kReader: return "reader";
  }
  return "reader";
}

absl::StatusOr<Role> ParseRole(std::string_view name) {
  if (name == "admin") return Role::kAdmin;
  if (name == "worker") return Role::kWorker;
  if (name == "reader") return Role::kReader;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown role \"", std::string(name.substr(0, 64)), "\": the roles are admin, worker and reader"));
}

std::string HashToken(std::string_view secret) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest);
  return Hex(digest, sizeof(digest));
}

absl::StatusOr<std::string> GenerateTokenSecret() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("cannot make a token: OpenSSL's random generator failed");
  }
  return absl::StrCat(kSecretPrefix, Hex(bytes, sizeof(bytes)));
}

std::string TokenDbPathFor(const std::string& db_path) {
  if (db_path.empty() || db_path == ":memory:") return ":memory:";
  return db_path + ".tokens";
}

absl::StatusOr<std::unique_ptr<TokenStore>> OpenSqliteTokenStore(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return absl::FailedPreconditionError(absl::StrCat("cannot open the token store ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 2000);
  auto store = std::make_unique<SqliteTokenStore>(db, path);
  if (absl::Status s = store->Init(); !s.ok()) return s;
  return std::unique_ptr<TokenStore>(std::move(store));
}

}  // namespace hpo::server
