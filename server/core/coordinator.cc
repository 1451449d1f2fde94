#include "server/core/coordinator.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/status_macros.h"
#include "server/core/search_space.h"
#include "server/core/study_spec.h"
#include "server/core/study_summary.h"
#include "server/core/worker_reports.h"
#include "server/pruner/pruner_registry.h"
#include "server/sampler/sampler_registry.h"

namespace hpo::server {
namespace {

// Recomputes value/best_step from the measurements.
void UpdateBest(Trial& t, Direction d) {
  t.value.reset();
  t.best_step = -1;
  for (const Measurement& m : t.measurements) {
    if (!t.value || Better(d, m.value, *t.value)) {
      t.value = m.value;
      t.best_step = m.step;
    }
  }
}

std::string TrialName(const Trial& t) {
  return absl::StrCat("trial ", t.number, " of study ", t.study_id, " (id ", t.id, ")");
}

// Number of times this trial's parameters have already been handed out again. A retry always
// names an earlier trial (storage repairs rows that do not), so the walk only goes back; it is
// bounded all the same, so that a cycle can never hold the lock forever.
int RetryDepth(const Study& s, const Trial& t) {
  const int size = static_cast<int>(s.trials.size());
  int depth = 0;
  for (int n = t.retry_of; n >= 0 && n < size && depth <= size; n = s.trials[n].retry_of) {
    ++depth;
  }
  return depth;
}

// Why stored parameters cannot be a trial of `spec` (a parameter it does not have, or a value
// of the wrong type, which samplers and workers cannot use); empty when they can.
std::string MisfitParams(const StudySpec& spec, const ParamMap& params) {
  for (const auto& [key, v] : params) {
    const std::string& name = key;  // a structured binding cannot be captured before C++20 (clang)
    auto p = std::find_if(spec.params.begin(), spec.params.end(),
                          [&](const ParamSpec& ps) { return ps.name == name; });
    if (p == spec.params.end()) {
      return absl::StrCat("parameter \"", name.substr(0, 64), "\" is not in the study's spec");
    }
    bool fits = false;
    switch (p->type) {
      case ParamType::kFloat: fits = std::holds_alternative<double>(v) || std::holds_alternative<int64_t>(v); break;
      case ParamType::kInt: fits = std::holds_alternative<int64_t>(v); break;
      case ParamType::kCategorical: fits = std::find(p->choices.begin(), p->choices.end(), v) != p->choices.end(); break;
    }
    if (!fits) return absl::StrCat("parameter \"", name.substr(0, 64), "\" has a value that is not one of its values");
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Open(std::unique_ptr<Storage> storage,
                                                               const Clock* clock,
                                                               CoordinatorOptions options) {
  ASSIGN_OR_RETURN(std::vector<Study> studies, storage->LoadAll());
  std::unique_ptr<Coordinator> c(new Coordinator(std::move(storage), clock, options));
  absl::MutexLock lock(&c->mu_);
  const absl::Time now = clock->Now();
  for (Study& s : studies) {
    // Without its spec a study cannot be served at all: start-up is refused with the row and
    // what to do, rather than leaving the study out unseen.
    auto unreadable = [&](const absl::Status& why) {
      return absl::DataLossError(absl::StrCat(
          "table studies, id ", s.id, ": spec_json cannot be read by this hpo-server (", why.message(),
          "). Start the hpo-server version that created it, or repair or delete that row (and its trials, "
          "table trials with study_id ", s.id, ") with sqlite3, on a copy of the database"));
    };
    auto spec = ParseStudySpec(s.spec_json);
    if (!spec.ok()) return unreadable(spec.status());
    Entry e;
    e.spec = *spec;
    s.spec = *spec;
    auto sampler = MakeSampler(e.spec);
    if (!sampler.ok()) return unreadable(sampler.status());
    auto pruner = MakePruner(e.spec);
    if (!pruner.ok()) return unreadable(pruner.status());
    e.sampler = std::move(*sampler);
    e.pruner = std::move(*pruner);
    for (Trial& t : s.trials) {
      if (t.state != TrialState::kFailed) {
        if (std::string what = MisfitParams(e.spec, t.params); !what.empty()) {
          t.state = TrialState::kFailed;
          t.reason = absl::StrCat("corrupt row (table trials, id ", t.id, "): ", what,
                                  "; failed when hpo-server started");
          if (t.finished == absl::InfinitePast()) t.finished = now;
          if (options.warn) options.warn(absl::StrCat(TrialName(t), ": ", t.reason, "; never handed out"));
          // Not written (e.g. a full disk): failed in memory all the same, and again next start.
          if (absl::Status w = c->storage_->UpdateTrial(t, nullptr); !w.ok() && options.warn) {
            options.warn(absl::StrCat("could not store that: ", w.message()));
          }
        }
      }
      c->trial_index_[t.id] = {s.id, t.number};
      if (t.state == TrialState::kRunning) c->leases_[t.id] = now + options.lease_timeout;
    }
    e.study = std::move(s);
    const int64_t id = e.study.id;
    c->studies_.emplace(id, std::move(e));
    RETURN_IF_ERROR(c->FinishIfDone(c->studies_.at(id)));
  }
  return c;
}

absl::StatusOr<Study> Coordinator::CreateStudy(const std::string& spec_json) {
  ASSIGN_OR_RETURN(StudySpec spec, ParseStudySpec(spec_json));
  Entry e;
  ASSIGN_OR_RETURN(e.sampler, MakeSampler(spec));
  ASSIGN_OR_RETURN(e.pruner, MakePruner(spec));
  e.study.spec = spec;
  e.study.spec_json = spec_json;
  e.study.state = StudyState::kRunning;
  e.study.seed = spec.seed ? *spec.seed : std::random_device{}() * 0x100000001ULL;
  e.study.created = clock_->Now();
  e.spec = std::move(spec);
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(e.study.id, storage_->CreateStudy(e.study));
  Study copy = e.study;
  studies_.emplace(copy.id, std::move(e));
  return copy;
}

absl::StatusOr<Study> Coordinator::GetStudy(int64_t study_id) const {
  absl::MutexLock lock(&mu_);
  auto it = studies_.find(study_id);
  if (it == studies_.end()) {
    return absl::NotFoundError(absl::StrCat("no study with id ", study_id, " (hpoctl list shows them)"));
  }
  return it->second.study;
}

std::vector<Study> Coordinator::ListStudies() const {
  absl::MutexLock lock(&mu_);
  std::vector<Study> out;
  for (const auto& [id, e] : studies_) out.push_back(e.study);
  return out;
}

absl::StatusOr<Study> Coordinator::StopStudy(int64_t study_id) {
  absl::MutexLock lock(&mu_);
  auto it = studies_.find(study_id);
  if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
  Entry& e = it->second;
  if (e.study.state != StudyState::kRunning) return e.study;
  const absl::Time now = clock_->Now();
  std::vector<Trial> updated = e.study.trials;
  // The transaction's body runs now, under mu_; -Wthread-safety cannot see that through the lambda.
  Storage* const storage = storage_.get();
  RETURN_IF_ERROR(storage->Transaction([&]() -> absl::Status {
    for (Trial& t : updated) {
      if (t.state != TrialState::kRunning && t.state != TrialState::kWaiting) continue;
      t.state = TrialState::kFailed;
      t.reason = "study stopped by a user";
      t.finished = now;
      RETURN_IF_ERROR(storage->UpdateTrial(t, nullptr));
    }
    return storage->UpdateStudyState(study_id, StudyState::kStopped);
  }));
  for (const Trial& t : updated) leases_.erase(t.id);
  e.study.trials = std::move(updated);
  e.study.state = StudyState::kStopped;
  return e.study;
}

absl::StatusOr<Trial> Coordinator::BestTrial(int64_t study_id) const {
  absl::MutexLock lock(&mu_);
  auto it = studies_.find(study_id);
  if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
  const Trial* best = FindBestTrial(it->second.study);
  if (best == nullptr) {
    return absl::NotFoundError(absl::StrCat("study ", study_id, " has no completed trial yet"));
  }
  return *best;
}

absl::Status Coordinator::FillParams(Entry& e, Trial& t) {
  bool complete = true;
  for (const ParamSpec& p : e.spec.params) {
    if (IsActive(p, t.params) && !t.params.count(p.name)) complete = false;
  }
  if (complete) return absl::OkStatus();
  auto sampled = e.sampler->Sample(e.study, t.number, TrialSeed(e.study.seed, t.number));
  if (!sampled.ok() && sampled.status().code() != absl::StatusCode::kOutOfRange) return sampled.status();
  for (const ParamSpec& p : e.spec.params) {
    if (!IsActive(p, t.params) || t.params.count(p.name)) continue;
    auto it = sampled.ok() ? sampled->find(p.name) : ParamMap::const_iterator();
    if (sampled.ok() && it != sampled->end()) {
      t.params[p.name] = it->second;
    } else {
      t.params[p.name] = FromUnit(p, UnitFromBits(ParamSeed(TrialSeed(e.study.seed, t.number), p.name)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Finding>> Coordinator::Diagnose(int64_t study_id, int trial) const {
  absl::MutexLock lock(&mu_);
  auto it = studies_.find(study_id);
  if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
  if (trial >= static_cast<int>(it->second.study.trials.size())) {
    return absl::NotFoundError(absl::StrCat("study ", study_id, " has no trial ", trial));
  }
  return hpo::server::Diagnose(it->second.study, trial);
}

absl::StatusOr<Trial> Coordinator::EnqueueTrial(int64_t study_id, const std::string& params_json) {
  nlohmann::json j = nlohmann::json::parse(params_json, nullptr, false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError("the parameters must be a JSON object from parameter name to value");
  }
  absl::MutexLock lock(&mu_);
  auto it = studies_.find(study_id);
  if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
  Entry& e = it->second;
  if (e.study.state != StudyState::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("study ", study_id, " is ", StateName(e.study.state),
                                                      ": it takes no more trials"));
  }
  if (UsedSlots(e.study) >= e.spec.max_trials) {
    return absl::FailedPreconditionError(absl::StrCat("study ", study_id, " already has its ", e.spec.max_trials,
                                                      " trials (max_trials)"));
  }
  ParamMap params;
  for (const ParamSpec& p : e.spec.params) {
    if (!j.contains(p.name)) continue;
    const nlohmann::json& v = j.at(p.name);
    ParamValue value;
    if (p.type == ParamType::kFloat && v.is_number()) value = v.get<double>();
    else if (p.type == ParamType::kInt && v.is_number_integer()) value = v.get<int64_t>();
    else if (v.is_string()) value = v.get<std::string>();
    else if (v.is_boolean()) value = v.get<bool>();
    else if (v.is_number_integer()) value = v.get<int64_t>();
    else if (v.is_number()) value = v.get<double>();
    if (!Contains(p, value) || v.is_null() || v.is_object() || v.is_array()) {
      return absl::InvalidArgumentError(absl::StrCat("parameter \"", p.name, "\": ", v.dump(),
                                                     " is not one of its values"));
    }
    if (!IsActive(p, params)) {
      return absl::InvalidArgumentError(absl::StrCat("parameter \"", p.name, "\" is inactive unless \"",
                                                     p.parent, "\" takes one of its condition values"));
    }
    params[p.name] = value;
  }
  for (const auto& [name, v] : j.items()) {
    if (!params.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" is not a parameter of study ", study_id));
    }
  }
  Trial t;
  t.study_id = study_id;
  t.number = static_cast<int>(e.study.trials.size());
  t.params = std::move(params);
  t.state = TrialState::kWaiting;
  t.created = clock_->Now();
  ASSIGN_OR_RETURN(t.id, storage_->CreateTrial(t));
  trial_index_[t.id] = {study_id, t.number};
  e.study.trials.push_back(t);
  return t;
}

absl::Status Coordinator::StartTrial(Entry& e, Trial& t, const std::string& worker) {
  Trial updated = t;
  RETURN_IF_ERROR(FillParams(e, updated));
  updated.state = TrialState::kRunning;
  updated.worker = worker;
  updated.started = clock_->Now();
  RETURN_IF_ERROR(storage_->UpdateTrial(updated, nullptr));
  t = std::move(updated);
  leases_[t.id] = clock_->Now() + options_.lease_timeout;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Assignment>> Coordinator::AskTrial(
    const std::string& worker_id, const std::vector<std::string>& task_types, int64_t study_id) {
  absl::MutexLock lock(&mu_);
  if (study_id != 0) {
    auto it = studies_.find(study_id);
    if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
    const std::string& type = it->second.spec.task.type;
    if (std::find(task_types.begin(), task_types.end(), type) == task_types.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "study ", study_id, " has task type \"", type, "\", which this worker cannot run"));
    }
  }
  for (auto& [id, e] : studies_) {
    if (study_id != 0 && id != study_id) continue;
    if (e.study.state != StudyState::kRunning) continue;
    if (std::find(task_types.begin(), task_types.end(), e.spec.task.type) == task_types.end()) continue;
    Trial* chosen = nullptr;
    for (Trial& t : e.study.trials) {
      if (t.state == TrialState::kWaiting) {
        chosen = &t;
        break;
      }
    }
    if (chosen != nullptr) {
      RETURN_IF_ERROR(StartTrial(e, *chosen, worker_id));
    } else if (!e.exhausted && UsedSlots(e.study) < e.spec.max_trials) {
      Trial t;
      t.study_id = id;
      t.number = static_cast<int>(e.study.trials.size());
      auto params = e.sampler->Sample(e.study, t.number, TrialSeed(e.study.seed, t.number));
      if (params.status().code() == absl::StatusCode::kOutOfRange) {
        e.exhausted = true;  // e.g. every grid point has a trial: the study ends when they finish
        RETURN_IF_ERROR(FinishIfDone(e));
        continue;
      }
      if (!params.ok()) {
        return absl::Status(params.status().code(),
                            absl::StrCat("sampler of study ", id, ": ", params.status().message()));
      }
      t.params = std::move(*params);
      t.state = TrialState::kRunning;
      t.worker = worker_id;
      t.created = t.started = clock_->Now();
      ASSIGN_OR_RETURN(t.id, storage_->CreateTrial(t));
      trial_index_[t.id] = {id, t.number};
      leases_[t.id] = clock_->Now() + options_.lease_timeout;
      e.study.trials.push_back(std::move(t));
      chosen = &e.study.trials.back();
    } else {
      continue;
    }
    return std::optional<Assignment>(Assignment{*chosen, e.spec.task, e.spec.metric});
  }
  return std::optional<Assignment>();
}

absl::StatusOr<std::pair<Coordinator::Entry*, Trial*>> Coordinator::FindTrial(int64_t trial_id) {
  auto it = trial_index_.find(trial_id);
  if (it == trial_index_.end()) {
    return absl::NotFoundError(absl::StrCat("no trial with id ", trial_id));
  }
  Entry& e = studies_.at(it->second.first);
  return std::make_pair(&e, &e.study.trials.at(it->second.second));
}

std::string Coordinator::NotRunningMessage(const Trial& t) {
  std::string msg = absl::StrCat(TrialName(t), " is ", StateName(t.state));
  if (!t.reason.empty()) absl::StrAppend(&msg, " (", t.reason, ")");
  absl::StrAppend(&msg, "; it accepts no more reports: stop training it");
  return msg;
}

absl::StatusOr<Decision> Coordinator::Report(int64_t trial_id, Measurement m, std::optional<DataReport> data) {
  if (data) {
    if (absl::Status s = ValidateDataReport(*data); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("trial id ", trial_id, ": ", s.message()));
    }
  }
  if (!std::isfinite(m.value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "measurement value of trial id ", trial_id, " at step ", m.step, " is ", m.value,
        "; values must be finite (fail the trial instead)"));
  }
  if (m.step < 0) {
    return absl::InvalidArgumentError(absl::StrCat("step must be >= 0 (got ", m.step, ")"));
  }
  for (auto it = m.metrics.begin(); it != m.metrics.end();) {
    it = std::isfinite(it->second) ? std::next(it) : m.metrics.erase(it);  // JSON cannot hold them
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindTrial(trial_id));
  auto& [e, t] = found;
  const Measurement* last = t->measurements.empty() ? nullptr : &t->measurements.back();
  const bool resend = last != nullptr && last->step == m.step && last->value == m.value;
  if (t->state != TrialState::kRunning) {
    if (resend && t->state == TrialState::kPruned) return Decision{Action::kPrune, t->reason};
    return absl::FailedPreconditionError(NotRunningMessage(*t));
  }
  // The task's last step (max_steps of an external task, max_epochs of a cnn; 0: no limit).
  if (const int max = e->spec.task.max_epochs; max > 0 && m.step > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "step ", m.step, " is beyond the task's ", e->spec.task.type == "external" ? "max_steps" : "max_epochs",
        " (", max, ") for ", TrialName(*t)));
  }
  leases_[t->id] = clock_->Now() + options_.lease_timeout;
  if (resend) {
    // The first send was stored with whatever data it carried; store a resend's only if it differs.
    if (data && t->data != data) {
      Trial updated = *t;
      updated.data = std::move(data);
      RETURN_IF_ERROR(storage_->UpdateTrial(updated, nullptr));
      *t = std::move(updated);
    }
    return Decision{};
  }
  if (last != nullptr && m.step <= last->step) {
    return absl::InvalidArgumentError(absl::StrCat("steps must increase: step ", m.step,
                                                   " reported after step ", last->step, " for ",
                                                   TrialName(*t)));
  }
  m.time = clock_->Now();
  Trial updated = *t;
  updated.measurements.push_back(m);
  if (data) updated.data = std::move(data);
  UpdateBest(updated, e->spec.direction);
  // Decide on the study as it will be once this measurement is stored.
  std::swap(*t, updated);
  absl::StatusOr<PruneDecision> pd = e->pruner->Decide(e->study, *t);
  std::swap(*t, updated);
  if (!pd.ok()) return pd.status();
  if (pd->prune) {
    updated.state = TrialState::kPruned;
    updated.reason = pd->reason;
    updated.finished = m.time;
  }
  RETURN_IF_ERROR(storage_->UpdateTrial(updated, &updated.measurements.back()));
  *t = std::move(updated);
  if (!pd->prune) return Decision{};
  leases_.erase(trial_id);
  RETURN_IF_ERROR(FinishIfDone(*e));
  return Decision{Action::kPrune, pd->reason};
}

absl::StatusOr<HeartbeatResult> Coordinator::Heartbeat(int64_t trial_id, const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindTrial(trial_id));
  Trial* t = found.second;
  if (t->state != TrialState::kRunning) return HeartbeatResult{false, NotRunningMessage(*t)};
  leases_[trial_id] = clock_->Now() + options_.lease_timeout;
  return HeartbeatResult{};
}

absl::StatusOr<Trial> Coordinator::CompleteTrial(int64_t trial_id,
                                                 std::map<std::string, double> final_metrics,
                                                 std::optional<ClassReport> classes) {
  for (const auto& [k, v] : final_metrics) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("final metric ", k, " is ", v, "; it must be finite"));
    }
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindTrial(trial_id));
  auto& [e, t] = found;
  if (t->state == TrialState::kCompleted) return *t;
  if (t->state != TrialState::kRunning) return absl::FailedPreconditionError(NotRunningMessage(*t));
  if (t->measurements.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        TrialName(*t), " has no measurement: report at least one step before completing it"));
  }
  if (classes && classes->empty()) classes.reset();  // an empty report says nothing
  if (classes) {
    if (absl::Status s = ValidateClassReport(*classes, t->data ? &*t->data : nullptr); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(TrialName(*t), ": ", s.message()));
    }
  }
  Trial updated = *t;
  updated.state = TrialState::kCompleted;
  updated.final_metrics = std::move(final_metrics);
  updated.classes = std::move(classes);
  updated.finished = clock_->Now();
  UpdateBest(updated, e->spec.direction);
  RETURN_IF_ERROR(storage_->UpdateTrial(updated, nullptr));
  *t = std::move(updated);
  leases_.erase(trial_id);
  Trial copy = *t;
  RETURN_IF_ERROR(FinishIfDone(*e));
  return copy;
}

absl::StatusOr<Trial> Coordinator::FailTrial(int64_t trial_id, const std::string& reason, bool retry) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindTrial(trial_id));
  auto& [e, t] = found;
  if (t->state == TrialState::kFailed) return *t;
  if (t->state != TrialState::kRunning) return absl::FailedPreconditionError(NotRunningMessage(*t));
  const int number = t->number;
  RETURN_IF_ERROR(Fail(*e, *t, reason.empty() ? "failed (no reason given)" : reason, retry));
  return e->study.trials[number];
}

absl::Status Coordinator::Fail(Entry& e, Trial& t, const std::string& reason, bool retry) {
  Trial updated = t;
  updated.state = TrialState::kFailed;
  updated.reason = reason;
  updated.finished = clock_->Now();
  retry = retry && e.study.state == StudyState::kRunning &&
          RetryDepth(e.study, t) < e.spec.max_retries;
  Trial again;
  if (retry) {
    updated.retried = true;
    again.study_id = t.study_id;
    again.number = static_cast<int>(e.study.trials.size());
    again.params = t.params;
    again.retry_of = t.number;
    again.state = TrialState::kWaiting;
    again.created = updated.finished;
  }
  Storage* const storage = storage_.get();  // the body runs now, under mu_ (see StopStudy)
  RETURN_IF_ERROR(storage->Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(storage->UpdateTrial(updated, nullptr));
    if (retry) {
      ASSIGN_OR_RETURN(again.id, storage->CreateTrial(again));
    }
    return absl::OkStatus();
  }));
  leases_.erase(t.id);
  t = std::move(updated);  // `t` is not used after the push_back below
  if (retry) {
    trial_index_[again.id] = {again.study_id, again.number};
    e.study.trials.push_back(std::move(again));
  }
  return FinishIfDone(e);
}

absl::Status Coordinator::FinishIfDone(Entry& e) {
  if (e.study.state != StudyState::kRunning) return absl::OkStatus();
  if (!e.exhausted && UsedSlots(e.study) < e.spec.max_trials) return absl::OkStatus();
  for (const Trial& t : e.study.trials) {
    if (!IsFinished(t.state)) return absl::OkStatus();
  }
  RETURN_IF_ERROR(storage_->UpdateStudyState(e.study.id, StudyState::kCompleted));
  e.study.state = StudyState::kCompleted;
  return absl::OkStatus();
}

int Coordinator::ReapExpiredLeases() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  std::vector<int64_t> expired;
  for (const auto& [id, deadline] : leases_) {
    if (deadline <= now) expired.push_back(id);
  }
  int reaped = 0;
  for (int64_t id : expired) {
    auto found = FindTrial(id);
    if (!found.ok()) continue;
    auto& [e, t] = *found;
    if (t->state != TrialState::kRunning) {
      leases_.erase(id);
      continue;
    }
    const std::string reason = absl::StrFormat(
        "lease lost: worker %s sent no heartbeat for %s", t->worker.empty() ? "?" : t->worker,
        absl::FormatDuration(options_.lease_timeout));
    if (Fail(*e, *t, reason, /*retry=*/true).ok()) ++reaped;
  }
  return reaped;
}

}  // namespace hpo::server
