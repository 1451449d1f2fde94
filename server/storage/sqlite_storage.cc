#include "server/storage/sqlite_storage.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/common/status_macros.h"

namespace hpo::server {
namespace {

using nlohmann::json;

// Schema migrations, applied in order; PRAGMA user_version = number applied.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE studies(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  state TEXT NOT NULL,
  seed INTEGER NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE TABLE trials(
  id INTEGER PRIMARY KEY,
  study_id INTEGER NOT NULL REFERENCES studies(id),
  number INTEGER NOT NULL,
  state TEXT NOT NULL,
  params_json TEXT NOT NULL,
  value REAL,
  best_step INTEGER NOT NULL DEFAULT -1,
  final_metrics_json TEXT NOT NULL DEFAULT '{}',
  reason TEXT NOT NULL DEFAULT '',
  worker TEXT NOT NULL DEFAULT '',
  retry_of INTEGER NOT NULL DEFAULT -1,
  retried INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER,
  finished_ms INTEGER,
  UNIQUE(study_id, number));
CREATE TABLE measurements(
  trial_id INTEGER NOT NULL REFERENCES trials(id),
  step INTEGER NOT NULL,
  value REAL NOT NULL,
  metrics_json TEXT NOT NULL DEFAULT '{}',
  time_ms INTEGER NOT NULL,
  PRIMARY KEY(trial_id, step));
)sql",
    // 2: what the worker found in the data set (DataReport) and the per-class figures of a
    // completed trial (ClassReport), as JSON objects; NULL when not reported.
    R"sql(
ALTER TABLE trials ADD COLUMN data_json TEXT;
ALTER TABLE trials ADD COLUMN classes_json TEXT;
)sql",
};

int64_t ToMs(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixMillis(t); }
absl::Time FromMs(int64_t ms) { return ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(ms); }

json ParamsToJson(const ParamMap& params) {
  json j = json::object();
  for (const auto& [k, v] : params) j[k] = ToJson(v);
  return j;
}

// The stored parameters: a JSON object of numbers, booleans and strings. Anything else is a
// corrupt row: `problem` says what is wrong and the result is empty.
ParamMap ParamsFromJson(const std::string& text, std::string* problem) {
  ParamMap out;
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    *problem = "params_json is not valid JSON";
    return out;
  }
  if (!j.is_object()) {
    *problem = absl::StrCat("params_json is a JSON ", j.type_name(), ", not an object");
    return out;
  }
  for (const auto& [k, v] : j.items()) {
    if (v.is_boolean()) out[k] = v.get<bool>();
    else if (v.is_number_integer() && !v.is_number_unsigned()) out[k] = v.get<int64_t>();
    else if (v.is_number_unsigned() && v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) out[k] = v.get<int64_t>();
    else if (v.is_number_float()) out[k] = v.get<double>();
    else if (v.is_string()) out[k] = v.get<std::string>();
    else {
      *problem = absl::StrCat("params_json: parameter \"", k.substr(0, 64), "\" is a JSON ", v.type_name(),
                              ", not a number, boolean or string");
      return ParamMap();
    }
  }
  return out;
}

json MetricsToJson(const std::map<std::string, double>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

std::map<std::string, double> MetricsFromJson(const std::string& text) {
  std::map<std::string, double> out;
  json j = json::parse(text, nullptr, false);
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (v.is_number()) out[k] = v.get<double>();
    }
  }
  return out;
}

// Text for a JSON column. Strings in reports are validated UTF-8, but a stored row must never
// make the write throw, so anything else is replaced rather than refused here.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json ClassesToJson(const ClassReport& c) {
  return {{"train_count", c.train_count},
          {"val_count", c.val_count},
          {"train_recall", c.train_recall},
          {"val_recall", c.val_recall},
          {"val_confusion", c.val_confusion}};
}

// Reads j[key] into `out` when it has the expected JSON type; leaves `out` alone otherwise.
template <typename T>
void Read(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end()) return;
  try {
    out = it->template get<T>();
  } catch (const json::exception&) {
  }
}

std::optional<DataReport> DataFromJson(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  DataReport d;
  Read(j, "format", d.format);
  Read(j, "class_names", d.class_names);
  Read(j, "train_images", d.train_images);
  Read(j, "val_images", d.val_images);
  Read(j, "test_images", d.test_images);
  Read(j, "channels", d.channels);
  Read(j, "height", d.height);
  Read(j, "width", d.width);
  Read(j, "skipped_files", d.skipped_files);
  Read(j, "skipped_examples", d.skipped_examples);
  return d;
}

std::optional<ClassReport> ClassesFromJson(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  ClassReport c;
  Read(j, "train_count", c.train_count);
  Read(j, "val_count", c.val_count);
  Read(j, "train_recall", c.train_recall);
  Read(j, "val_recall", c.val_recall);
  Read(j, "val_confusion", c.val_confusion);
  return c;
}

// nullopt for a name that is none of `all` (a corrupt row).
template <typename E>
std::optional<E> StateFromName(const std::string& name, std::initializer_list<E> all) {
  for (E e : all) {
    if (name == StateName(e)) return e;
  }
  return std::nullopt;
}

// A stored text quoted for a message: at most 64 bytes, control bytes escaped.
std::string Quote(const std::string& text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < 64; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    else out.push_back(static_cast<char>(c));
  }
  if (text.size() > 64) absl::StrAppend(&out, "...");
  return out + "\"";
}

// The status for a failed SQLite call. A full disk is kResourceExhausted, an I/O error
// kUnavailable, a damaged file kDataLoss; everything else kInternal.
absl::Status SqlError(int rc, const std::string& message) {
  switch (rc & 0xff) {
    case SQLITE_FULL: return absl::ResourceExhaustedError(message);
    case SQLITE_IOERR: return absl::UnavailableError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return absl::DataLossError(message);
    default: return absl::InternalError(message);
  }
}

// One prepared statement. Its own (finalized on destruction), or one of the connection's cache
// (SqliteStorage::Cached: reset and its bindings cleared on destruction, so that it holds no
// read lock, keeps no text bound and is ready for the next use).
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  // A cached statement (`rc` != SQLITE_OK: its preparation failed, and `stmt` is null).
  Stmt(sqlite3* db, sqlite3_stmt* stmt, int rc) : db_(db), stmt_(stmt), rc_(rc), cached_(true) {}
  ~Stmt() {
    if (!cached_) {
      sqlite3_finalize(stmt_);
    } else if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Stmt(Stmt&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), rc_(other.rc_), cached_(other.cached_) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status prepared() const { return Check(rc_, "prepare"); }
  Stmt& Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); return *this; }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindText(int i, const std::optional<std::string>& v) {
    if (v) return Bind(i, *v);
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  Stmt& BindDouble(int i, std::optional<double> v) {
    if (v) sqlite3_bind_double(stmt_, i, *v); else sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // SQLITE_ROW -> true, SQLITE_DONE -> false, else error.
  absl::StatusOr<bool> Step() {
    RETURN_IF_ERROR(prepared());
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Check(rc, "step");
  }
  absl::Status Run() {
    ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }
  int64_t Int(int c) const { return sqlite3_column_int64(stmt_, c); }
  double Double(int c) const { return sqlite3_column_double(stmt_, c); }
  bool IsNull(int c) const { return sqlite3_column_type(stmt_, c) == SQLITE_NULL; }
  std::string Text(int c) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, c));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, c)) : std::string();
  }

 private:
  absl::Status Check(int rc, const char* what) const {
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return absl::OkStatus();
    return SqlError(rc, absl::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db_)));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  bool cached_ = false;
};

// Which file a path names now: device and inode, or why it cannot be told.
struct FileId {
  bool present = false;
  dev_t dev = 0;
  ino_t ino = 0;
  int error = 0;  // errno of a failed stat
};

FileId IdOf(const std::string& path) {
  FileId id;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    id.error = errno;
    return id;
  }
  id.present = true;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  return id;
}

// What became of a file that was `was` when it was opened; empty when it is still there.
std::string WhatBecameOf(const std::string& path, const FileId& was) {
  const FileId now = IdOf(path);
  if (!now.present) {
    if (now.error == ENOENT) return absl::StrCat(path, " was deleted");
    return absl::StrCat(path, " can no longer be examined (", std::strerror(now.error), ")");
  }
  if (now.dev != was.dev || now.ino != was.ino) {
    return absl::StrCat(path, " was replaced by another file");
  }
  return "";
}

class SqliteStorage final : public Storage {
 public:
  using Level = SqliteStorageOptions::Level;

  SqliteStorage(sqlite3* db, std::string path, SqliteStorageOptions options)
      : db_(db), path_(std::move(path)), options_(std::move(options)) {}
  ~SqliteStorage() override {
    if (watcher_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(watch_mu_);
        stopping_ = true;
      }
      watch_cv_.notify_all();
      watcher_.join();
    }
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  absl::Status Init() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    int rc = SQLITE_OK;
    absl::Status locked = Exec("PRAGMA locking_mode=EXCLUSIVE", &rc);
    if (locked.ok()) locked = Exec("PRAGMA journal_mode=WAL", &rc);
    if (locked.ok()) locked = Exec("PRAGMA synchronous=NORMAL", &rc);
    if (locked.ok()) locked = Exec("PRAGMA foreign_keys=ON", &rc);
    if (locked.ok()) locked = Exec("BEGIN IMMEDIATE", &rc);
    if (!locked.ok()) {
      const int primary = rc & 0xff;
      if (primary == SQLITE_NOTADB) return NotHpo("not a SQLite file");
      if (primary == SQLITE_CORRUPT) return Damaged(std::string(locked.message()));
      if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot lock the database ", path_, " (", locked.message(),
            "): is another hpo-server using it? Only one coordinator may open a database file"));
      }
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open the database ", path_, ": ", locked.message()));
    }
    // A file that is damaged is refused now, not found out halfway through a study.
    {
      Stmt check(db_, "PRAGMA quick_check(5)");
      std::vector<std::string> lines;
      for (;;) {
        absl::StatusOr<bool> row = check.Step();
        if (!row.ok()) {
          (void)Exec("ROLLBACK");
          return Damaged(std::string(row.status().message()));
        }
        if (!*row) break;
        lines.push_back(check.Text(0));
      }
      if (lines.size() != 1 || lines[0] != "ok") {
        (void)Exec("ROLLBACK");
        return Damaged(absl::StrJoin(lines, "; "));
      }
    }
    Stmt version(db_, "PRAGMA user_version");
    ASSIGN_OR_RETURN(bool row, version.Step());
    int64_t applied = row ? version.Int(0) : 0;
    const int64_t known = sizeof(kMigrations) / sizeof(kMigrations[0]);
    if (applied == 0) {
      // A SQLite file of some other program: adding hpo's tables to it would be wrong.
      Stmt tables(db_, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name LIMIT 5");
      std::vector<std::string> names;
      for (;;) {
        ASSIGN_OR_RETURN(bool more, tables.Step());
        if (!more) break;
        names.push_back(Quote(tables.Text(0)));
      }
      if (!names.empty()) {
        (void)Exec("ROLLBACK");
        return NotHpo(absl::StrCat("a SQLite file of some other program (tables ", absl::StrJoin(names, ", "),
                                   ", and no hpo schema version)"));
      }
    }
    if (applied > known) {
      (void)Exec("ROLLBACK");
      return absl::FailedPreconditionError(absl::StrCat(
          "the database ", path_, " has schema version ", applied, " but this hpo-server knows only up to ",
          known, ": use a newer hpo-server"));
    }
    for (int64_t i = applied; i < known; ++i) {
      absl::Status s = Exec(kMigrations[i]);
      if (!s.ok()) {
        (void)Exec("ROLLBACK");
        return s;
      }
    }
    RETURN_IF_ERROR(Exec(absl::StrCat("PRAGMA user_version=", known)));
    RETURN_IF_ERROR(Exec("COMMIT"));
    // The files this connection writes to, to notice when they are deleted or replaced.
    memory_ = path_.empty() || path_ == ":memory:" || path_.rfind("file:", 0) == 0;
    if (!memory_) {
      db_id_ = IdOf(path_);
      wal_id_ = IdOf(WalPath());
      if (!db_id_.present) {
        return absl::FailedPreconditionError(absl::StrCat("cannot examine the database ", path_, ": ",
                                                          std::strerror(db_id_.error)));
      }
      if (options_.check_interval > absl::ZeroDuration()) {
        watcher_ = std::thread([this] { Watch(); });
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Study>> LoadAll() override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    std::vector<Study> studies;
    std::map<int64_t, size_t> study_index;
    std::vector<int64_t> repaired_studies;
    {
      Stmt s(db_, "SELECT id, spec_json, state, seed, created_ms FROM studies ORDER BY id");
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        Study st;
        st.id = s.Int(0);
        st.spec_json = s.Text(1);
        auto state = StateFromName(s.Text(2), {StudyState::kRunning, StudyState::kCompleted,
                                               StudyState::kStopped});
        if (state) {
          st.state = *state;
        } else {
          // It hands out nothing more; its trials are kept.
          st.state = StudyState::kStopped;
          repaired_studies.push_back(st.id);
          Log(Level::kWarning,
              absl::StrCat("corrupt row in ", path_, ": table studies, id ", st.id, ": state ", Quote(s.Text(2)),
                           " is not a study state (RUNNING, COMPLETED, STOPPED); the study is now STOPPED"));
        }
        st.seed = static_cast<uint64_t>(s.Int(3));
        st.created = FromMs(s.Int(4));
        study_index[st.id] = studies.size();
        studies.push_back(std::move(st));
      }
    }
    std::map<int64_t, std::pair<size_t, size_t>> trial_index;  // id -> (study, number)
    std::vector<Trial> repaired_trials;
    {
      Stmt s(db_,
             "SELECT id, study_id, number, state, params_json, value, best_step, final_metrics_json,"
             " reason, worker, retry_of, retried, created_ms, started_ms, finished_ms, data_json, classes_json"
             " FROM trials ORDER BY study_id, number");
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        Trial t;
        std::vector<std::string> problems;
        t.id = s.Int(0);
        t.study_id = s.Int(1);
        const int64_t number = s.Int(2);
        t.number = static_cast<int>(number);
        auto state = StateFromName(s.Text(3), {TrialState::kWaiting, TrialState::kRunning,
                                               TrialState::kCompleted, TrialState::kPruned,
                                               TrialState::kFailed});
        if (!state) problems.push_back(absl::StrCat("state ", Quote(s.Text(3)), " is not a trial state"));
        t.state = state.value_or(TrialState::kFailed);
        std::string params_problem;
        t.params = ParamsFromJson(s.Text(4), &params_problem);
        if (!params_problem.empty()) problems.push_back(params_problem);
        if (!s.IsNull(5)) t.value = s.Double(5);
        t.best_step = static_cast<int>(s.Int(6));
        t.final_metrics = MetricsFromJson(s.Text(7));
        t.reason = s.Text(8);
        t.worker = s.Text(9);
        // A retry is always made after the trial it repeats: anything else (a cycle among
        // them) is corrupt, and would make every walk along the chain endless.
        const int64_t retry_of = s.Int(10);
        t.retry_of = static_cast<int>(retry_of);
        bool bad_retry = false;
        if (retry_of < -1 || (retry_of >= 0 && retry_of >= number)) {
          problems.push_back(absl::StrCat("retry_of ", retry_of, " does not name an earlier trial of the study"));
          t.retry_of = -1;
          bad_retry = true;
        }
        t.retried = s.Int(11) != 0;
        t.created = FromMs(s.Int(12));
        t.started = FromMs(s.IsNull(13) ? 0 : s.Int(13));
        t.finished = FromMs(s.IsNull(14) ? 0 : s.Int(14));
        if (!s.IsNull(15)) t.data = DataFromJson(s.Text(15));
        if (!s.IsNull(16)) t.classes = ClassesFromJson(s.Text(16));
        auto it = study_index.find(t.study_id);
        if (it == study_index.end()) {
          Log(Level::kWarning, absl::StrCat("corrupt row in ", path_, ": table trials, id ", t.id, ": study ",
                                            t.study_id, " does not exist; the row is ignored"));
          continue;
        }
        auto& trials = studies[it->second].trials;
        if (number != static_cast<int64_t>(trials.size())) {
          return absl::DataLossError(absl::StrCat(
              "corrupt database ", path_, ": table trials, id ", t.id, ": study ", t.study_id,
              " has trial number ", number, " where number ", trials.size(),
              " should be (each study's trials are numbered 0, 1, 2, ...). Restore the database from a "
              "backup, or renumber that study's trials with sqlite3 (on a copy)"));
        }
        if (!problems.empty()) {
          // Only a bad retry_of, on a finished trial: its result stands, the link is dropped.
          const bool keep_state = problems.size() == 1 && bad_retry && IsFinished(t.state);
          std::string what = absl::StrJoin(problems, "; ");
          // A row already FAILED keeps its own reason; an unknown state is never FAILED yet.
          if (!keep_state && (!state || t.state != TrialState::kFailed)) {
            t.state = TrialState::kFailed;
            t.reason = absl::StrCat("corrupt row (table trials, id ", t.id, "): ", what,
                                    "; failed when hpo-server started");
            if (t.finished == absl::InfinitePast()) t.finished = absl::Now();
          }
          Log(Level::kWarning,
              absl::StrCat("corrupt row in ", path_, ": table trials, id ", t.id, " (trial ", t.number,
                           " of study ", t.study_id, "): ", what, "; the trial is ", StateName(t.state),
                           keep_state ? " (kept)" : " and is never handed out"));
          repaired_trials.push_back(t);
        }
        trial_index[t.id] = {it->second, trials.size()};
        trials.push_back(std::move(t));
      }
    }
    {
      Stmt s(db_, "SELECT trial_id, step, value, metrics_json, time_ms FROM measurements"
                  " ORDER BY trial_id, step");
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        auto it = trial_index.find(s.Int(0));
        if (it == trial_index.end()) continue;
        Measurement m;
        m.step = static_cast<int>(s.Int(1));
        m.value = s.Double(2);
        m.metrics = MetricsFromJson(s.Text(3));
        m.time = FromMs(s.Int(4));
        studies[it->second.first].trials[it->second.second].measurements.push_back(std::move(m));
      }
    }
    if (!repaired_studies.empty() || !repaired_trials.empty()) {
      // Written back so that the database says what the coordinator acts on. The original
      // params_json is kept for whoever looks into it. A failure here is not fatal: the repair
      // is made again at the next start.
      absl::Status s = Transaction([&]() -> absl::Status {
        for (int64_t id : repaired_studies) {
          Stmt u(db_, "UPDATE studies SET state=? WHERE id=?");
          u.Bind(1, std::string(StateName(StudyState::kStopped))).Bind(2, id);
          RETURN_IF_ERROR(u.Run());
        }
        for (const Trial& t : repaired_trials) {
          Stmt u(db_, "UPDATE trials SET state=?, reason=?, retry_of=?, finished_ms=? WHERE id=?");
          u.Bind(1, std::string(StateName(t.state))).Bind(2, t.reason).Bind(3, t.retry_of)
              .Bind(4, ToMs(t.finished)).Bind(5, t.id);
          RETURN_IF_ERROR(u.Run());
        }
        return absl::OkStatus();
      });
      if (!s.ok()) {
        Log(Level::kWarning, absl::StrCat("could not write the repaired rows back to ", path_, ": ", s.message()));
      }
    }
    return studies;
  }

  absl::StatusOr<std::vector<TrialDetails>> LoadTrialDetails(int64_t study_id, int first_number,
                                                             int limit) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    std::vector<TrialDetails> out;
    if (limit <= 0) return out;
    std::map<int64_t, size_t> index;  // trial id -> position in out
    {
      Stmt s = Cached("SELECT id, number, final_metrics_json, classes_json, data_json FROM trials"
                      " WHERE study_id=? AND number>=? ORDER BY number LIMIT ?");
      s.Bind(1, study_id).Bind(2, first_number).Bind(3, limit);
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        TrialDetails d;
        d.number = static_cast<int>(s.Int(1));
        d.final_metrics = MetricsFromJson(s.Text(2));
        if (!s.IsNull(3)) d.classes = ClassesFromJson(s.Text(3));
        if (!s.IsNull(4)) d.data = DataFromJson(s.Text(4));
        index[s.Int(0)] = out.size();
        out.push_back(std::move(d));
      }
    }
    if (out.empty()) return out;
    Stmt s = Cached("SELECT trial_id, step, metrics_json FROM measurements WHERE trial_id IN"
                    " (SELECT id FROM trials WHERE study_id=? AND number>=? AND number<=?) ORDER BY trial_id, step");
    s.Bind(1, study_id).Bind(2, first_number).Bind(3, out.back().number);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      auto it = index.find(s.Int(0));
      if (it == index.end()) continue;
      out[it->second].metrics.emplace_back(static_cast<int>(s.Int(1)), MetricsFromJson(s.Text(2)));
    }
    return out;
  }

  absl::StatusOr<int64_t> CreateStudy(const Study& study) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    int64_t id = 0;
    RETURN_IF_ERROR(Write([&]() -> absl::Status {
      Stmt s = Cached("INSERT INTO studies(name, spec_json, state, seed, created_ms) VALUES(?,?,?,?,?)");
      s.Bind(1, study.spec.name).Bind(2, study.spec_json).Bind(3, std::string(StateName(study.state)))
          .Bind(4, static_cast<int64_t>(study.seed)).Bind(5, ToMs(study.created));
      RETURN_IF_ERROR(s.Run());
      id = sqlite3_last_insert_rowid(db_);
      return absl::OkStatus();
    }));
    return id;
  }

  absl::Status UpdateStudyState(int64_t study_id, StudyState state) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return Write([&]() -> absl::Status {
      Stmt s = Cached("UPDATE studies SET state=? WHERE id=?");
      s.Bind(1, std::string(StateName(state))).Bind(2, study_id);
      RETURN_IF_ERROR(s.Run());
      if (sqlite3_changes(db_) != 1) return NoStudy(study_id);
      return absl::OkStatus();
    });
  }

  absl::Status DeleteStudy(int64_t study_id) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return Write([&]() -> absl::Status {
      Stmt m = Cached("DELETE FROM measurements WHERE trial_id IN (SELECT id FROM trials WHERE study_id=?)");
      m.Bind(1, study_id);
      RETURN_IF_ERROR(m.Run());
      Stmt t = Cached("DELETE FROM trials WHERE study_id=?");
      t.Bind(1, study_id);
      RETURN_IF_ERROR(t.Run());
      Stmt s = Cached("DELETE FROM studies WHERE id=?");
      s.Bind(1, study_id);
      RETURN_IF_ERROR(s.Run());
      if (sqlite3_changes(db_) != 1) return NoStudy(study_id);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<int64_t> CreateTrial(const Trial& t) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    int64_t id = 0;
    RETURN_IF_ERROR(Write([&]() -> absl::Status {
      {
        // The study must exist and `t` must be its next trial (numbers 0, 1, 2, ...): said
        // here as such, not as the schema's constraint failure.
        Stmt q = Cached("SELECT EXISTS(SELECT 1 FROM studies WHERE id=?1),"
                        " (SELECT MAX(number) FROM trials WHERE study_id=?1)");
        q.Bind(1, t.study_id);
        ASSIGN_OR_RETURN(bool row, q.Step());
        if (!row || q.Int(0) == 0) return NoStudy(t.study_id);
        const int64_t next = q.IsNull(1) ? 0 : q.Int(1) + 1;
        if (t.number >= 0 && t.number < next) {
          return absl::AlreadyExistsError(
              absl::StrCat("study ", t.study_id, " already has a stored trial number ", t.number));
        }
        if (t.number != next) {
          return absl::InvalidArgumentError(absl::StrCat("trial number ", t.number, " of study ", t.study_id,
                                                         ": the next trial of that study is number ", next));
        }
      }
      Stmt s = Cached(
          "INSERT INTO trials(study_id, number, state, params_json, retry_of, worker, created_ms,"
          " started_ms) VALUES(?,?,?,?,?,?,?,?)");
      s.Bind(1, t.study_id).Bind(2, t.number).Bind(3, std::string(StateName(t.state)))
          .Bind(4, Dump(ParamsToJson(t.params))).Bind(5, t.retry_of).Bind(6, t.worker)
          .Bind(7, ToMs(t.created)).Bind(8, ToMs(t.started));
      RETURN_IF_ERROR(s.Run());
      id = sqlite3_last_insert_rowid(db_);
      return absl::OkStatus();
    }));
    return id;
  }

  absl::Status UpdateTrial(const Trial& t, const Measurement* m) override {
    if (m != nullptr && std::isnan(m->value)) {
      // SQLite would store NULL, which the schema refuses; said as what it is.
      return absl::InvalidArgumentError(
          absl::StrCat("trial id ", t.id, ": measurement value at step ", m->step, " is NaN"));
    }
    return Transaction([&]() -> absl::Status {
      {
        Stmt s = Cached(
            "UPDATE trials SET state=?, value=?, best_step=?, final_metrics_json=?, reason=?,"
            " worker=?, retried=?, started_ms=?, finished_ms=?, params_json=?, data_json=?, classes_json=?"
            " WHERE id=?");
        s.Bind(1, std::string(StateName(t.state))).BindDouble(2, t.value).Bind(3, t.best_step)
            .Bind(4, Dump(MetricsToJson(t.final_metrics))).Bind(5, t.reason).Bind(6, t.worker)
            .Bind(7, t.retried ? 1 : 0).Bind(8, ToMs(t.started)).Bind(9, ToMs(t.finished))
            .Bind(10, Dump(ParamsToJson(t.params)))
            .BindText(11, t.data ? std::optional<std::string>(Dump(ToJson(*t.data))) : std::nullopt)
            .BindText(12, t.classes ? std::optional<std::string>(Dump(ClassesToJson(*t.classes))) : std::nullopt)
            .Bind(13, t.id);
        RETURN_IF_ERROR(s.Run());
        if (sqlite3_changes(db_) != 1) {
          return absl::NotFoundError(absl::StrCat("no stored trial with id ", t.id));
        }
      }
      if (m != nullptr) {
        Stmt s = Cached("INSERT OR IGNORE INTO measurements(trial_id, step, value, metrics_json, time_ms)"
                        " VALUES(?,?,?,?,?)");
        s.Bind(1, t.id).Bind(2, m->step).BindDouble(3, m->value)
            .Bind(4, Dump(MetricsToJson(m->metrics))).Bind(5, ToMs(m->time));
        RETURN_IF_ERROR(s.Run());
        if (sqlite3_changes(db_) != 1) {
          return absl::AlreadyExistsError(
              absl::StrCat("trial id ", t.id, " already has a stored measurement at step ", m->step));
        }
      }
      return absl::OkStatus();
    });
  }

  absl::Status Transaction(const std::function<absl::Status()>& body) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (in_transaction_) return body();
    return Write([&]() -> absl::Status {
      RETURN_IF_ERROR(ExecCached("BEGIN IMMEDIATE"));
      in_transaction_ = true;
      absl::Status s;
      try {
        s = body();
      } catch (...) {
        // Nothing half-done stays behind a body that throws (it should not: our APIs do not).
        in_transaction_ = false;
        (void)ExecCached("ROLLBACK");
        throw;
      }
      in_transaction_ = false;
      if (!s.ok()) {
        (void)ExecCached("ROLLBACK");
        return s;
      }
      s = ExecCached("COMMIT");
      if (!s.ok()) (void)ExecCached("ROLLBACK");
      return s;
    });
  }

  absl::Status ExecForTesting(const std::string& sql) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return Exec(sql);
  }

 private:
  std::string WalPath() const { return path_ + "-wal"; }

  static absl::Status NoStudy(int64_t id) {
    return absl::NotFoundError(absl::StrCat("no stored study with id ", id));
  }

  // The connection's statement for `sql` (a string literal: the cache is keyed by its text),
  // prepared once (SQLITE_PREPARE_PERSISTENT) and reset when the returned Stmt goes. Call with
  // mu_ held, and let the Stmt go before mu_ is released.
  Stmt Cached(const char* sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return Stmt(db_, it->second, SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return Stmt(db_, nullptr, rc);
    }
    cache_.emplace(sql, stmt);
    return Stmt(db_, stmt, SQLITE_OK);
  }

  // One statement without results (BEGIN, COMMIT, ROLLBACK) through the cache; its error says
  // what Exec's would.
  absl::Status ExecCached(const char* sql) {
    Stmt s = Cached(sql);
    absl::Status st = s.Run();
    if (st.ok()) return st;
    return absl::Status(st.code(), absl::StrCat("sqlite: ", sqlite3_errmsg(db_)));
  }

  void Log(Level level, const std::string& line) {
    if (options_.log) options_.log(level, line);
  }

  absl::Status NotHpo(const std::string& what) const {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, " is not an hpo database: ", what, ". Give --db the hpo database, or a path that does "
        "not exist yet to start a new one"));
  }

  absl::Status Damaged(const std::string& what) const {
    return absl::DataLossError(absl::StrCat(
        "the database ", path_, " is damaged (PRAGMA quick_check: ", what, "). Restore it from a backup, or "
        "salvage what is left with `sqlite3 ", path_, " .recover | sqlite3 NEW.db` and start on NEW.db"));
  }

  // One write outside any transaction of ours (a single statement, or a whole transaction),
  // acknowledged only when the files it went to are still the database's: checked before, so
  // that nothing is written into a deleted file, and after, so that nothing is acknowledged
  // that went into one.
  absl::Status Write(const std::function<absl::Status()>& body) {
    if (in_transaction_) return body();
    RETURN_IF_ERROR(CheckFiles());
    absl::Status s = body();
    if (s.ok()) s = CheckFiles();
    if (s.code() == absl::StatusCode::kResourceExhausted) {
      ++refused_while_full_;
      if (!full_) {
        full_ = true;
        Log(Level::kError, absl::StrCat("the disk holding the database ", path_, " is full (", s.message(),
                                        "): writes are refused with RESOURCE_EXHAUSTED until space is "
                                        "freed; reads go on; nothing acknowledged is lost"));
      }
      return absl::ResourceExhaustedError(absl::StrCat(
          "the disk holding the database ", path_, " is full (", s.message(), "): nothing was stored; "
          "free space there and try again (the coordinator resumes writing by itself)"));
    }
    if (s.ok() && full_) {
      full_ = false;
      Log(Level::kInfo, absl::StrCat("writes to ", path_, " succeed again (", refused_while_full_,
                                     " refused while the disk was full)"));
      refused_while_full_ = 0;
    }
    return s;
  }

  // OK while the path and its -wal still name the files this connection has open. Once not,
  // every later write gets the same kUnavailable.
  absl::Status CheckFiles() {
    if (!broken_.ok() || memory_) return broken_;
    std::string what = WhatBecameOf(path_, db_id_);
    int moved = 0;
    if (what.empty() && sqlite3_file_control(db_, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
        moved != 0) {
      what = absl::StrCat(path_, " was deleted or replaced");
    }
    const bool wal_only = what.empty();
    if (what.empty() && wal_id_.present) what = WhatBecameOf(WalPath(), wal_id_);
    if (what.empty()) return absl::OkStatus();
    std::string saved;
    if (wal_only) {
      // The database file is intact: move what was committed out of the lost WAL into it, so
      // that nothing acknowledged is lost even if this process is killed.
      absl::Status s = Exec("PRAGMA wal_checkpoint(TRUNCATE)");
      saved = s.ok() ? absl::StrCat("; everything acknowledged until now was saved into ", path_)
                     : absl::StrCat("; saving what was acknowledged into ", path_, " failed: ", s.message());
    }
    broken_ = absl::UnavailableError(absl::StrCat(
        "the database file ", what, " while hpo-server was running; it refuses every write from now on",
        saved, ". Restart hpo-server (on the restored file, or a new one)"));
    Log(Level::kError, std::string(broken_.message()));
    return broken_;
  }

  // Between writes: notices a deleted or replaced file (and saves a lost WAL's content) even
  // while nothing is written, until the first finding.
  void Watch() {
    std::unique_lock<std::mutex> lock(watch_mu_);
    while (!watch_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.check_interval),
                               [&] { return stopping_; })) {
      std::lock_guard<std::recursive_mutex> db_lock(mu_);  // never inside a write: those hold mu_
      if (!CheckFiles().ok()) return;
    }
  }

  absl::Status Exec(const std::string& sql, int* rc_out = nullptr) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc_out != nullptr) *rc_out = rc;
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      return SqlError(rc, absl::StrCat("sqlite: ", msg));
    }
    return absl::OkStatus();
  }

  std::recursive_mutex mu_;
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;  // Cached(): SQL text -> statement
  const std::string path_;
  const SqliteStorageOptions options_;
  bool in_transaction_ = false;
  bool memory_ = true;
  FileId db_id_, wal_id_;
  absl::Status broken_;  // set once the files were deleted or replaced
  bool full_ = false;    // the last write failed for a full disk
  int64_t refused_while_full_ = 0;
  // The background check (Watch).
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool stopping_ = false;
  std::thread watcher_;
};

// A non-empty file that does not start as every SQLite database does.
bool NotSqlite(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;  // missing (created) or unreadable (SQLite says why)
  char header[16] = {};
  in.read(header, sizeof(header));
  const std::streamsize n = in.gcount();
  if (n == 0) return false;  // empty: SQLite makes it a database
  return n < 16 || std::memcmp(header, "SQLite format 3\0", 16) != 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> OpenSqliteStorage(const std::string& path, SqliteStorageOptions options) {
  if (NotSqlite(path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " is not an hpo database: not a SQLite file. Give --db the hpo database, or a path that does "
        "not exist yet to start a new one"));
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return absl::FailedPreconditionError(absl::StrCat("cannot open database ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 2000);
  auto storage = std::make_unique<SqliteStorage>(db, path, std::move(options));
  RETURN_IF_ERROR(storage->Init());
  return std::unique_ptr<Storage>(std::move(storage));
}

absl::Status ExecSqlForTesting(Storage& storage, const std::string& sql) {
  auto* s = dynamic_cast<SqliteStorage*>(&storage);
  if (s == nullptr) return absl::InvalidArgumentError("not a SQLite storage");
  return s->ExecForTesting(sql);
}

}  // namespace hpo::server
