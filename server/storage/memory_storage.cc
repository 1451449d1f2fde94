#include "server/storage/memory_storage.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace hpo::server {
namespace {

// What SQLite reads back of a time: milliseconds since the epoch, 0 (and the infinite past)
// meaning "not yet".
absl::Time AsStored(absl::Time t) {
  if (t == absl::InfinitePast()) return t;
  const int64_t ms = absl::ToUnixMillis(t);
  return ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(ms);
}

// JSON has no spelling for NaN and the infinities: SQLite's metrics columns drop them.
std::map<std::string, double> FiniteOnly(const std::map<std::string, double>& m) {
  std::map<std::string, double> out;
  for (const auto& [k, v] : m) {
    if (std::isfinite(v)) out.emplace(k, v);
  }
  return out;
}

class MemoryStorage final : public Storage {
 public:
  absl::StatusOr<std::vector<Study>> LoadAll() override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    std::vector<Study> out;
    out.reserve(studies_.size());
    for (const auto& [id, s] : studies_) out.push_back(s);
    return out;
  }

  absl::StatusOr<int64_t> CreateStudy(const Study& study) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Study s;
    s.id = next_study_id_;
    s.spec_json = study.spec_json;
    s.state = study.state;
    s.seed = study.seed;
    s.created = AsStored(study.created);
    studies_.emplace(s.id, std::move(s));
    const int64_t id = next_study_id_++;
    OnRollback([this, id] {
      studies_.erase(id);
      next_study_id_ = id;
    });
    return id;
  }

  absl::Status UpdateStudyState(int64_t study_id, StudyState state) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    auto it = studies_.find(study_id);
    if (it == studies_.end()) return NoStudy(study_id);
    const StudyState old = it->second.state;
    it->second.state = state;
    OnRollback([this, study_id, old] { studies_.at(study_id).state = old; });
    return absl::OkStatus();
  }

  absl::Status DeleteStudy(int64_t study_id) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    auto it = studies_.find(study_id);
    if (it == studies_.end()) return NoStudy(study_id);
    Study old = std::move(it->second);
    studies_.erase(it);
    for (const Trial& t : old.trials) trial_index_.erase(t.id);
    OnRollback([this, study_id, old = std::move(old)]() mutable {
      for (const Trial& t : old.trials) trial_index_[t.id] = {study_id, t.number};
      studies_.emplace(study_id, std::move(old));
    });
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> CreateTrial(const Trial& trial) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    auto it = studies_.find(trial.study_id);
    if (it == studies_.end()) return NoStudy(trial.study_id);
    std::vector<Trial>& trials = it->second.trials;
    if (trial.number >= 0 && trial.number < static_cast<int>(trials.size())) {
      return absl::AlreadyExistsError(
          absl::StrCat("study ", trial.study_id, " already has a stored trial number ", trial.number));
    }
    if (trial.number != static_cast<int>(trials.size())) {
      return absl::InvalidArgumentError(absl::StrCat("trial number ", trial.number, " of study ", trial.study_id,
                                                     ": the next trial of that study is number ",
                                                     trials.size()));
    }
    Trial t;
    t.id = next_trial_id_;
    t.study_id = trial.study_id;
    t.number = trial.number;
    t.state = trial.state;
    t.params = trial.params;
    t.retry_of = trial.retry_of;
    t.worker = trial.worker;
    t.created = AsStored(trial.created);
    t.started = AsStored(trial.started);
    t.finished = absl::InfinitePast();  // a default absl::Time is the epoch, which reads back as this
    trials.push_back(std::move(t));
    trial_index_[next_trial_id_] = {trial.study_id, trial.number};
    const int64_t id = next_trial_id_++;
    const int64_t study_id = trial.study_id;
    OnRollback([this, id, study_id] {
      studies_.at(study_id).trials.pop_back();
      trial_index_.erase(id);
      next_trial_id_ = id;
    });
    return id;
  }

  absl::Status UpdateTrial(const Trial& trial, const Measurement* m) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    auto found = trial_index_.find(trial.id);
    if (found == trial_index_.end()) {
      return absl::NotFoundError(absl::StrCat("no stored trial with id ", trial.id));
    }
    Trial& t = studies_.at(found->second.first).trials.at(found->second.second);
    // Everything is checked before anything changes: a refused call leaves no trace.
    std::vector<Measurement>::iterator at = t.measurements.end();
    if (m != nullptr) {
      if (std::isnan(m->value)) {
        return absl::InvalidArgumentError(absl::StrCat("trial id ", trial.id, ": measurement value at step ",
                                                       m->step, " is NaN"));
      }
      at = std::lower_bound(t.measurements.begin(), t.measurements.end(), m->step,
                            [](const Measurement& x, int step) { return x.step < step; });
      if (at != t.measurements.end() && at->step == m->step) {
        return absl::AlreadyExistsError(
            absl::StrCat("trial id ", trial.id, " already has a stored measurement at step ", m->step));
      }
    }
    if (in_transaction_) {
      Trial old = t;  // measurements included: the undo must not depend on positions
      const std::pair<int64_t, int> where = found->second;
      OnRollback([this, where, old = std::move(old)] {
        studies_.at(where.first).trials.at(where.second) = old;
      });
    }
    if (m != nullptr) {
      Measurement stored;
      stored.step = m->step;
      stored.value = m->value;
      stored.metrics = FiniteOnly(m->metrics);
      stored.time = AsStored(m->time);
      t.measurements.insert(at, std::move(stored));
    }
    t.state = trial.state;
    t.params = trial.params;
    t.value = trial.value && !std::isnan(*trial.value) ? trial.value : std::nullopt;
    t.best_step = trial.best_step;
    t.final_metrics = FiniteOnly(trial.final_metrics);
    t.reason = trial.reason;
    t.worker = trial.worker;
    t.retried = trial.retried;
    t.started = AsStored(trial.started);
    t.finished = AsStored(trial.finished);
    t.data = trial.data;
    t.classes = trial.classes;
    return absl::OkStatus();
  }

  absl::Status Transaction(const std::function<absl::Status()>& body) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (in_transaction_) return body();  // joins the transaction it is called in, as SQLite's does
    in_transaction_ = true;
    absl::Status s;
    try {
      s = body();
    } catch (...) {
      Rollback();
      throw;
    }
    if (!s.ok()) {
      Rollback();
      return s;
    }
    in_transaction_ = false;
    undo_.clear();
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<TrialDetails>> LoadTrialDetails(int64_t study_id, int first_number,
                                                             int limit) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    std::vector<TrialDetails> out;
    auto it = studies_.find(study_id);
    if (it == studies_.end() || limit <= 0) return out;
    const std::vector<Trial>& trials = it->second.trials;
    const int64_t first = std::max(0, first_number);
    const int64_t end = std::min<int64_t>(static_cast<int64_t>(trials.size()), first + limit);
    for (int64_t n = first; n < end; ++n) {
      const Trial& t = trials[n];
      TrialDetails d;
      d.number = t.number;
      d.final_metrics = t.final_metrics;
      d.classes = t.classes;
      d.data = t.data;
      for (const Measurement& m : t.measurements) d.metrics.emplace_back(m.step, m.metrics);
      out.push_back(std::move(d));
    }
    return out;
  }

 private:
  static absl::Status NoStudy(int64_t id) {
    return absl::NotFoundError(absl::StrCat("no stored study with id ", id));
  }

  // Remembers how to take back a change just made, when it is part of a transaction.
  void OnRollback(std::function<void()> undo) {
    if (in_transaction_) undo_.push_back(std::move(undo));
  }

  void Rollback() {
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) (*it)();
    undo_.clear();
    in_transaction_ = false;
  }

  std::recursive_mutex mu_;
  std::map<int64_t, Study> studies_;                           // by id; trials index == number
  std::map<int64_t, std::pair<int64_t, int>> trial_index_;     // trial id -> study id, number
  int64_t next_study_id_ = 1;
  int64_t next_trial_id_ = 1;
  bool in_transaction_ = false;
  std::vector<std::function<void()>> undo_;  // of the open transaction, oldest first
};

}  // namespace

std::unique_ptr<Storage> NewMemoryStorage() { return std::make_unique<MemoryStorage>(); }

}  // namespace hpo::server
