#include "server/storage/sqlite_storage.h"

#include <sqlite3.h>

#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
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

ParamMap ParamsFromJson(const json& j) {
  ParamMap out;
  for (const auto& [k, v] : j.items()) {
    if (v.is_boolean()) out[k] = v.get<bool>();
    else if (v.is_number_integer()) out[k] = v.get<int64_t>();
    else if (v.is_number()) out[k] = v.get<double>();
    else out[k] = v.get<std::string>();
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

json DataToJson(const DataReport& d) {
  return {{"format", d.format},
          {"class_names", d.class_names},
          {"train_images", d.train_images},
          {"val_images", d.val_images},
          {"test_images", d.test_images},
          {"channels", d.channels},
          {"height", d.height},
          {"width", d.width},
          {"skipped_files", d.skipped_files},
          {"skipped_examples", d.skipped_examples}};
}

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

template <typename E>
E StateFromName(const std::string& name, std::initializer_list<E> all) {
  for (E e : all) {
    if (name == StateName(e)) return e;
  }
  return *all.begin();
}

// One prepared statement; finalized on destruction.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
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
    return absl::InternalError(absl::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db_)));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

class SqliteStorage final : public Storage {
 public:
  explicit SqliteStorage(sqlite3* db) : db_(db) {}
  ~SqliteStorage() override { sqlite3_close_v2(db_); }

  absl::Status Init(const std::string& path) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    absl::Status locked = Exec("PRAGMA locking_mode=EXCLUSIVE");
    if (locked.ok()) locked = Exec("PRAGMA journal_mode=WAL");
    if (locked.ok()) locked = Exec("PRAGMA synchronous=NORMAL");
    if (locked.ok()) locked = Exec("PRAGMA foreign_keys=ON");
    if (locked.ok()) locked = Exec("BEGIN IMMEDIATE");
    if (!locked.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot lock the database ", path, " (", locked.message(),
          "): is another hpo-server using it? Only one coordinator may open a database file"));
    }
    Stmt version(db_, "PRAGMA user_version");
    ASSIGN_OR_RETURN(bool row, version.Step());
    int64_t applied = row ? version.Int(0) : 0;
    const int64_t known = sizeof(kMigrations) / sizeof(kMigrations[0]);
    if (applied > known) {
      (void)Exec("ROLLBACK");
      return absl::FailedPreconditionError(absl::StrCat(
          "the database ", path, " has schema version ", applied, " but this hpo-server knows only up to ",
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
    return Exec("COMMIT");
  }

  absl::StatusOr<std::vector<Study>> LoadAll() override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    std::vector<Study> studies;
    std::map<int64_t, size_t> study_index;
    {
      Stmt s(db_, "SELECT id, spec_json, state, seed, created_ms FROM studies ORDER BY id");
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        Study st;
        st.id = s.Int(0);
        st.spec_json = s.Text(1);
        st.state = StateFromName(s.Text(2), {StudyState::kRunning, StudyState::kCompleted,
                                             StudyState::kStopped});
        st.seed = static_cast<uint64_t>(s.Int(3));
        st.created = FromMs(s.Int(4));
        study_index[st.id] = studies.size();
        studies.push_back(std::move(st));
      }
    }
    std::map<int64_t, std::pair<size_t, size_t>> trial_index;  // id -> (study, number)
    {
      Stmt s(db_,
             "SELECT id, study_id, number, state, params_json, value, best_step, final_metrics_json,"
             " reason, worker, retry_of, retried, created_ms, started_ms, finished_ms, data_json, classes_json"
             " FROM trials ORDER BY study_id, number");
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        Trial t;
        t.id = s.Int(0);
        t.study_id = s.Int(1);
        t.number = static_cast<int>(s.Int(2));
        t.state = StateFromName(s.Text(3), {TrialState::kWaiting, TrialState::kRunning,
                                            TrialState::kCompleted, TrialState::kPruned,
                                            TrialState::kFailed});
        t.params = ParamsFromJson(json::parse(s.Text(4), nullptr, false));
        if (!s.IsNull(5)) t.value = s.Double(5);
        t.best_step = static_cast<int>(s.Int(6));
        t.final_metrics = MetricsFromJson(s.Text(7));
        t.reason = s.Text(8);
        t.worker = s.Text(9);
        t.retry_of = static_cast<int>(s.Int(10));
        t.retried = s.Int(11) != 0;
        t.created = FromMs(s.Int(12));
        t.started = FromMs(s.IsNull(13) ? 0 : s.Int(13));
        t.finished = FromMs(s.IsNull(14) ? 0 : s.Int(14));
        if (!s.IsNull(15)) t.data = DataFromJson(s.Text(15));
        if (!s.IsNull(16)) t.classes = ClassesFromJson(s.Text(16));
        auto it = study_index.find(t.study_id);
        if (it == study_index.end()) continue;
        auto& trials = studies[it->second].trials;
        if (t.number != static_cast<int>(trials.size())) {
          return absl::DataLossError(absl::StrCat("study ", t.study_id, " is missing trial number ",
                                                  trials.size()));
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
    return studies;
  }

  absl::StatusOr<int64_t> CreateStudy(const Study& study) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Stmt s(db_, "INSERT INTO studies(name, spec_json, state, seed, created_ms) VALUES(?,?,?,?,?)");
    s.Bind(1, study.spec.name).Bind(2, study.spec_json).Bind(3, std::string(StateName(study.state)))
        .Bind(4, static_cast<int64_t>(study.seed)).Bind(5, ToMs(study.created));
    RETURN_IF_ERROR(s.Run());
    return sqlite3_last_insert_rowid(db_);
  }

  absl::Status UpdateStudyState(int64_t study_id, StudyState state) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Stmt s(db_, "UPDATE studies SET state=? WHERE id=?");
    s.Bind(1, std::string(StateName(state))).Bind(2, study_id);
    return s.Run();
  }

  absl::StatusOr<int64_t> CreateTrial(const Trial& t) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Stmt s(db_,
           "INSERT INTO trials(study_id, number, state, params_json, retry_of, worker, created_ms,"
           " started_ms) VALUES(?,?,?,?,?,?,?,?)");
    s.Bind(1, t.study_id).Bind(2, t.number).Bind(3, std::string(StateName(t.state)))
        .Bind(4, ParamsToJson(t.params).dump()).Bind(5, t.retry_of).Bind(6, t.worker)
        .Bind(7, ToMs(t.created)).Bind(8, ToMs(t.started));
    RETURN_IF_ERROR(s.Run());
    return sqlite3_last_insert_rowid(db_);
  }

  absl::Status UpdateTrial(const Trial& t, const Measurement* m) override {
    return Transaction([&]() -> absl::Status {
      if (m != nullptr) {
        Stmt s(db_, "INSERT INTO measurements(trial_id, step, value, metrics_json, time_ms)"
                    " VALUES(?,?,?,?,?)");
        s.Bind(1, t.id).Bind(2, m->step).BindDouble(3, m->value)
            .Bind(4, MetricsToJson(m->metrics).dump()).Bind(5, ToMs(m->time));
        RETURN_IF_ERROR(s.Run());
      }
      Stmt s(db_,
             "UPDATE trials SET state=?, value=?, best_step=?, final_metrics_json=?, reason=?,"
             " worker=?, retried=?, started_ms=?, finished_ms=?, params_json=?, data_json=?, classes_json=?"
             " WHERE id=?");
      s.Bind(1, std::string(StateName(t.state))).BindDouble(2, t.value).Bind(3, t.best_step)
          .Bind(4, MetricsToJson(t.final_metrics).dump()).Bind(5, t.reason).Bind(6, t.worker)
          .Bind(7, t.retried ? 1 : 0).Bind(8, ToMs(t.started)).Bind(9, ToMs(t.finished))
          .Bind(10, ParamsToJson(t.params).dump())
          .BindText(11, t.data ? std::optional<std::string>(Dump(DataToJson(*t.data))) : std::nullopt)
          .BindText(12, t.classes ? std::optional<std::string>(Dump(ClassesToJson(*t.classes))) : std::nullopt)
          .Bind(13, t.id);
      RETURN_IF_ERROR(s.Run());
      if (sqlite3_changes(db_) != 1) {
        return absl::NotFoundError(absl::StrCat("no stored trial with id ", t.id));
      }
      return absl::OkStatus();
    });
  }

  absl::Status Transaction(const std::function<absl::Status()>& body) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (in_transaction_) return body();
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    in_transaction_ = true;
    absl::Status s = body();
    in_transaction_ = false;
    if (!s.ok()) {
      (void)Exec("ROLLBACK");
      return s;
    }
    s = Exec("COMMIT");
    if (!s.ok()) (void)Exec("ROLLBACK");
    return s;
  }

 private:
  absl::Status Exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      return absl::InternalError(absl::StrCat("sqlite: ", msg));
    }
    return absl::OkStatus();
  }

  std::recursive_mutex mu_;
  sqlite3* db_;
  bool in_transaction_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> OpenSqliteStorage(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return absl::FailedPreconditionError(absl::StrCat("cannot open database ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 2000);
  auto storage = std::make_unique<SqliteStorage>(db);
  RETURN_IF_ERROR(storage->Init(path));
  return std::unique_ptr<Storage>(std::move(storage));
}

}  // namespace hpo::server
