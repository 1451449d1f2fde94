#include "server/core/coordinator.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/json_limits.h"
#include "proto/common/status_macros.h"
#include "server/model/search_space.h"
#include "server/model/study_spec.h"
#include "server/model/study_summary.h"
#include "server/model/worker_reports.h"
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

// What a trial counts for in the study's counters (Put keeps them; EndsStudy looks ahead with them).
int Unfinished(const Trial& t) { return IsFinished(t.state) ? 0 : 1; }

// What a finished trial keeps in memory (see Coordinator::GetStudy): its details go.
void Compact(Trial& t) {
  for (Measurement& m : t.measurements) std::map<std::string, double>().swap(m.metrics);
  t.measurements.shrink_to_fit();
  std::map<std::string, double>().swap(t.final_metrics);
  t.classes.reset();
  t.data.reset();
}

// Trials per storage read in Coordinator::AddDetails.
constexpr int kDetailsPage = 500;

}  // namespace

Coordinator::Coordinator(std::unique_ptr<Storage> storage, const Clock* clock, CoordinatorOptions options)
    : clock_(clock), options_(std::move(options)), storage_(std::move(storage)) {
  pool_ = std::make_unique<WorkPool>(std::max(1, options_.sampling_threads),
                                     static_cast<size_t>(std::max(1, options_.max_waiting_asks)));
}

Coordinator::~Coordinator() { pool_.reset(); }

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Open(std::unique_ptr<Storage> storage,
                                                               const Clock* clock,
                                                               CoordinatorOptions options) {
  if (!options.make_sampler) options.make_sampler = MakeSampler;
  if (!options.make_pruner) options.make_pruner = MakePruner;
  ASSIGN_OR_RETURN(std::vector<Study> studies, storage->LoadAll());
  std::unique_ptr<Coordinator> c(new Coordinator(std::move(storage), clock, options));
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
    auto sampler = c->options_.make_sampler(*spec);
    if (!sampler.ok()) return unreadable(sampler.status());
    auto pruner = c->options_.make_pruner(*spec, s.seed);
    if (!pruner.ok()) return unreadable(pruner.status());
    s.spec = *spec;
    auto e = std::make_shared<Entry>(std::move(*spec), std::move(*sampler), std::move(*pruner));
    std::vector<Trial> trials = std::move(s.trials);
    absl::MutexLock lock(&e->mu);
    e->study = std::move(s);
    e->study.trials.clear();
    e->study.trials.reserve(trials.size());
    for (Trial& t : trials) {
      if (t.state != TrialState::kFailed) {
        if (std::string what = MisfitParams(e->spec, t.params); !what.empty()) {
          t.state = TrialState::kFailed;
          t.reason = absl::StrCat("corrupt row (table trials, id ", t.id, "): ", what,
                                  "; failed when hpo-server started");
          if (t.finished == absl::InfinitePast()) t.finished = now;
          if (options.warn) options.warn(absl::StrCat(TrialName(t), ": ", t.reason, "; never handed out"));
          // Not written (e.g. a full disk): failed in memory all the same, and again next start.
          absl::MutexLock slock(&c->storage_mu_);
          if (absl::Status w = c->storage_->UpdateTrial(t, nullptr); !w.ok() && options.warn) {
            options.warn(absl::StrCat("could not store that: ", w.message()));
          }
        }
      }
      if (t.state == TrialState::kRunning) e->leases[t.id] = Lease{now + options.lease_timeout, ""};
      c->IndexTrial(t);
      c->Put(*e, std::move(t));
    }
    const int64_t id = e->study.id;
    {
      absl::MutexLock mlock(&c->map_mu_);
      c->studies_.emplace(id, e);
      if (e->study.state == StudyState::kRunning) c->running_.insert(id);
    }
    RETURN_IF_ERROR(c->FinishIfDone(*e));
  }
  return c;
}

void Coordinator::Put(Entry& e, Trial t) {
  const int n = t.number;
  const bool was_waiting = n < static_cast<int>(e.study.trials.size()) &&
                           e.study.trials[n].state == TrialState::kWaiting;
  const bool was_running = n < static_cast<int>(e.study.trials.size()) &&
                           e.study.trials[n].state == TrialState::kRunning;
  leased_ += (t.state == TrialState::kRunning ? 1 : 0) - (was_running ? 1 : 0);
  if (t.state == TrialState::kWaiting && !was_waiting) e.waiting.push_back(n);
  e.pruner->Observe(n < static_cast<int>(e.study.trials.size()) ? &e.study.trials[n] : nullptr, t);
  CountTrial(e.figures, t, +1);
  bool was_best = false;
  if (n < static_cast<int>(e.study.trials.size())) {
    CountTrial(e.figures, e.study.trials[n], -1);
    was_best = e.figures.best && e.figures.best->number == n;
    e.study.trials[n] = std::move(t);
  } else {
    e.study.trials.push_back(std::move(t));
  }
  const Trial& stored = e.study.trials[n];
  if (was_best) {
    e.figures.best = Summarize(e.study).best;  // the best trial changed (never, in practice): a scan
  } else if (BetterBest(e.spec.direction, stored, e.figures.best)) {
    e.figures.best = StudySummary::Best{stored.number, *stored.value, stored.best_step};
  }
  if (IsFinished(stored.state)) Compact(e.study.trials[n]);
  e.changed.insert(n);
}

std::vector<StudySummary> Coordinator::ListStudySummaries(int64_t after_id, int limit) const {
  std::vector<EntryPtr> entries;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    for (auto it = studies_.upper_bound(after_id); it != studies_.end() && static_cast<int>(entries.size()) < limit;
         ++it) {
      entries.push_back(it->second);
    }
  }
  std::vector<StudySummary> out;
  out.reserve(entries.size());
  for (const EntryPtr& e : entries) {
    absl::MutexLock lock(&e->mu);
    out.push_back(SummaryOf(*e));
  }
  return out;
}

absl::StatusOr<StudySummary> Coordinator::GetStudySummary(int64_t study_id) const {
  EntryPtr e = FindStudy(study_id);
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat("no study with id ", study_id, " (hpoctl list shows them)"));
  }
  absl::MutexLock lock(&e->mu);
  return SummaryOf(*e);
}

StudySummary Coordinator::SummaryOf(const Entry& e) {
  StudySummary s = e.figures;
  s.study = StudyHeader(e.study);
  return s;
}

absl::Status Coordinator::Commit(const std::function<absl::Status(Storage&)>& body) {
  PendingWrite mine{&body};
  absl::MutexLock lock(&commit_mu_);
  commit_queue_.push_back(&mine);
  while (!mine.done) {
    if (committing_) {
      commit_cv_.Wait(&commit_mu_);
      continue;
    }
    // This thread commits every write queued now, its own among them.
    committing_ = true;
    std::vector<PendingWrite*> batch;
    batch.swap(commit_queue_);
    commit_mu_.Unlock();
    RunBatch(batch);  // throws nothing: an exception goes to the write that threw it
    commit_mu_.Lock();
    committing_ = false;
    for (PendingWrite* w : batch) w->done = true;
    commit_cv_.SignalAll();
  }
  if (mine.thrown) std::rethrow_exception(mine.thrown);  // on the thread whose write it was
  return mine.status;
}

void Coordinator::RunBatch(const std::vector<PendingWrite*>& batch) {
  absl::MutexLock slock(&storage_mu_);
  Storage& storage = *storage_;
  size_t current = 0;
  absl::Status all;
  try {
    all = storage.Transaction([&]() -> absl::Status {
      for (current = 0; current < batch.size(); ++current) {
        PendingWrite* w = batch[current];
        w->status = (*w->body)(storage);
        if (!w->status.ok()) return w->status;
      }
      return absl::OkStatus();
    });
  } catch (...) {
    // The store rolled the transaction back. The write that threw gets the exception (all of
    // them, when the commit itself threw); the others are tried again below.
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i == current || current >= batch.size()) batch[i]->thrown = std::current_exception();
    }
    all = absl::InternalError("a write of the batch threw");
  }
  if (all.ok()) return;
  if (batch.size() == 1 && !batch.front()->thrown) {
    batch.front()->status = all;
    return;
  }
  // Nothing of the batch is stored: each write again on its own, for its own status.
  for (PendingWrite* w : batch) {
    if (w->thrown) continue;
    try {
      w->status = storage.Transaction([&]() -> absl::Status { return (*w->body)(storage); });
    } catch (...) {
      w->thrown = std::current_exception();
    }
  }
}

absl::Status Coordinator::AddDetails(int64_t study_id, std::vector<Trial>& trials) const {
  for (size_t begin = 0; begin < trials.size();) {
    // The next page: finished trials, numbers within kDetailsPage of the first.
    while (begin < trials.size() && !IsFinished(trials[begin].state)) ++begin;
    if (begin == trials.size()) break;
    const int first = trials[begin].number;
    size_t end = begin;
    while (end < trials.size() && trials[end].number < first + kDetailsPage) ++end;
    std::vector<TrialDetails> details;
    {
      absl::MutexLock slock(&storage_mu_);
      ASSIGN_OR_RETURN(details, storage_->LoadTrialDetails(study_id, first, kDetailsPage));
    }
    size_t k = 0;  // both in number order
    for (size_t i = begin; i < end; ++i) {
      Trial& t = trials[i];
      while (k < details.size() && details[k].number < t.number) ++k;
      if (k == details.size()) break;
      if (details[k].number != t.number || !IsFinished(t.state)) continue;
      TrialDetails& d = details[k];
      t.final_metrics = std::move(d.final_metrics);
      t.classes = std::move(d.classes);
      t.data = std::move(d.data);
      size_t j = 0;  // both by step
      for (Measurement& m : t.measurements) {
        while (j < d.metrics.size() && d.metrics[j].first < m.step) ++j;
        if (j < d.metrics.size() && d.metrics[j].first == m.step) m.metrics = std::move(d.metrics[j].second);
      }
    }
    begin = end;
  }
  return absl::OkStatus();
}

bool Coordinator::OutOfTime(const Entry& e) const {
  return clock_->Now() >= TimeBudgetEnd(e.spec, e.figures.first_started);
}

bool Coordinator::NothingToHandOut(const Entry& e) const {
  return e.exhausted || e.figures.used_slots >= e.spec.max_trials || OutOfTime(e);
}

bool Coordinator::EndsStudy(const Entry& e, const Trial& updated) const {
  if (e.study.state != StudyState::kRunning) return false;
  const int n = updated.number;
  const Trial* old = n < static_cast<int>(e.study.trials.size()) ? &e.study.trials[n] : nullptr;
  const int used = e.figures.used_slots + UsesSlot(updated) - (old ? UsesSlot(*old) : 0);
  const int unfinished = UnfinishedTrials(e) + Unfinished(updated) - (old ? Unfinished(*old) : 0);
  return (e.exhausted || used >= e.spec.max_trials || OutOfTime(e)) && unfinished == 0;
}

absl::Status Coordinator::WriteTrial(Entry& e, const Trial& updated, const Measurement* m, bool* ends) {
  const bool end = *ends = EndsStudy(e, updated);
  // The trial and the study's completion commit together, or neither does.
  return Commit([&](Storage& storage) -> absl::Status {
    RETURN_IF_ERROR(storage.UpdateTrial(updated, m));
    if (end) RETURN_IF_ERROR(storage.UpdateStudyState(updated.study_id, StudyState::kCompleted));
    return absl::OkStatus();
  });
}

void Coordinator::IndexTrial(const Trial& t) {
  absl::MutexLock lock(&map_mu_);
  trial_index_[t.id] = {t.study_id, t.number};
}

Coordinator::EntryPtr Coordinator::FindStudy(int64_t study_id) const {
  absl::ReaderMutexLock lock(&map_mu_);
  auto it = studies_.find(study_id);
  return it == studies_.end() ? nullptr : it->second;
}

absl::StatusOr<Coordinator::TrialRef> Coordinator::FindTrial(int64_t trial_id) const {
  absl::ReaderMutexLock lock(&map_mu_);
  auto it = trial_index_.find(trial_id);
  if (it == trial_index_.end()) return absl::NotFoundError(absl::StrCat("no trial with id ", trial_id));
  auto study = studies_.find(it->second.first);
  if (study == studies_.end()) return absl::NotFoundError(absl::StrCat("no trial with id ", trial_id));
  return TrialRef{study->second, it->second.second};
}

absl::StatusOr<Study> Coordinator::CreateStudy(const std::string& spec_json) {
  {
    absl::ReaderMutexLock lock(&map_mu_);
    if (static_cast<int>(studies_.size()) >= options_.max_studies) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "hpo-server already holds ", studies_.size(), " studies, its limit (--max_studies=", options_.max_studies,
          "); delete finished ones (hpoctl delete) or raise the limit"));
    }
  }
  ASSIGN_OR_RETURN(StudySpec spec, ParseStudySpec(spec_json));
  ASSIGN_OR_RETURN(std::unique_ptr<Sampler> sampler, options_.make_sampler(spec));
  Study study;
  study.seed = spec.seed ? *spec.seed : std::random_device{}() * 0x100000001ULL;
  ASSIGN_OR_RETURN(std::unique_ptr<Pruner> pruner, options_.make_pruner(spec, study.seed));
  study.spec = spec;
  study.spec_json = spec_json;
  study.state = StudyState::kRunning;
  study.created = clock_->Now();
  {
    absl::MutexLock lock(&storage_mu_);
    ASSIGN_OR_RETURN(study.id, storage_->CreateStudy(study));
  }
  auto e = std::make_shared<Entry>(std::move(spec), std::move(sampler), std::move(pruner));
  {
    absl::MutexLock lock(&e->mu);
    e->study = study;
  }
  absl::MutexLock lock(&map_mu_);
  studies_.emplace(study.id, std::move(e));
  running_.insert(study.id);
  return study;
}

absl::StatusOr<Study> Coordinator::GetStudy(int64_t study_id) const {
  EntryPtr e = FindStudy(study_id);
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat("no study with id ", study_id, " (hpoctl list shows them)"));
  }
  absl::MutexLock lock(&e->mu);
  return e->study;
}

absl::StatusOr<Study> Coordinator::GetStudyWithDetails(int64_t study_id) const {
  ASSIGN_OR_RETURN(Study s, GetStudy(study_id));  // copied under the study's lock, read off it
  RETURN_IF_ERROR(AddDetails(s.id, s.trials));
  return s;
}

std::vector<Study> Coordinator::ListStudies() const {
  std::vector<EntryPtr> entries;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    for (const auto& [id, e] : studies_) entries.push_back(e);
  }
  std::vector<Study> out;
  out.reserve(entries.size());
  for (const EntryPtr& e : entries) {
    absl::MutexLock lock(&e->mu);
    out.push_back(e->study);
  }
  return out;
}

absl::StatusOr<TrialPage> Coordinator::ListTrials(int64_t study_id, int first_number, int limit) const {
  EntryPtr e = FindStudy(study_id);
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat("no study with id ", study_id, " (hpoctl list shows them)"));
  }
  TrialPage page;
  {
    absl::MutexLock lock(&e->mu);
    const int total = static_cast<int>(e->study.trials.size());
    page.total = total;
    const int first = std::clamp(first_number, 0, total);
    const int end = limit <= 0 ? first : static_cast<int>(std::min<int64_t>(total, int64_t{first} + limit));
    page.trials.assign(e->study.trials.begin() + first, e->study.trials.begin() + end);
  }
  RETURN_IF_ERROR(AddDetails(study_id, page.trials));
  return page;
}

absl::Status Coordinator::DeleteStudy(int64_t study_id) {
  EntryPtr ep = FindStudy(study_id);
  if (ep == nullptr) return absl::NotFoundError(absl::StrCat("no study with id ", study_id, " (hpoctl list shows them)"));
  Entry& e = *ep;
  // An ask sampling this study finishes first (its result then finds the study gone: dropped).
  absl::MutexLock sampling(&e.sample_mu);
  absl::MutexLock lock(&e.mu);
  {
    absl::MutexLock slock(&storage_mu_);
    RETURN_IF_ERROR(storage_->DeleteStudy(study_id));
  }
  e.study.state = StudyState::kStopped;  // anything still holding the entry sees a finished study
  e.leases.clear();
  e.waiting.clear();
  for (const Trial& t : e.study.trials) {
    if (t.state == TrialState::kRunning) --leased_;
  }
  absl::MutexLock mlock(&map_mu_);
  for (const Trial& t : e.study.trials) trial_index_.erase(t.id);
  studies_.erase(study_id);
  running_.erase(study_id);
  return absl::OkStatus();
}

absl::StatusOr<Study> Coordinator::StopStudy(int64_t study_id) {
  EntryPtr ep = FindStudy(study_id);
  if (ep == nullptr) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
  Entry& e = *ep;
  absl::MutexLock lock(&e.mu);
  if (e.study.state != StudyState::kRunning) return e.study;
  const absl::Time now = clock_->Now();
  std::vector<Trial> updated;
  for (const Trial& t : e.study.trials) {
    if (t.state != TrialState::kRunning && t.state != TrialState::kWaiting) continue;
    updated.push_back(t);
    updated.back().state = TrialState::kFailed;
    updated.back().reason = "study stopped by a user";
    updated.back().finished = now;
  }
  {
    absl::MutexLock slock(&storage_mu_);
    // The transaction's body runs now, under storage_mu_; -Wthread-safety cannot see that through
    // the lambda.
    Storage* const storage = storage_.get();
    RETURN_IF_ERROR(storage->Transaction([&]() -> absl::Status {
      for (const Trial& t : updated) RETURN_IF_ERROR(storage->UpdateTrial(t, nullptr));
      return storage->UpdateStudyState(study_id, StudyState::kStopped);
    }));
  }
  for (Trial& t : updated) {
    e.leases.erase(t.id);
    Put(e, std::move(t));
  }
  SetState(e, StudyState::kStopped);
  return e.study;
}

absl::StatusOr<Trial> Coordinator::BestTrial(int64_t study_id) const {
  EntryPtr e = FindStudy(study_id);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
  std::vector<Trial> best;
  {
    absl::MutexLock lock(&e->mu);
    if (!e->figures.best) {
      return absl::NotFoundError(absl::StrCat("study ", study_id, " has no completed trial yet"));
    }
    best.push_back(e->study.trials[e->figures.best->number]);
  }
  RETURN_IF_ERROR(AddDetails(study_id, best));
  return std::move(best.front());
}

absl::StatusOr<std::vector<Finding>> Coordinator::Diagnose(int64_t study_id, int trial) const {
  EntryPtr e = FindStudy(study_id);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
  Study copy;
  {
    absl::MutexLock lock(&e->mu);
    if (trial >= static_cast<int>(e->study.trials.size())) {
      return absl::NotFoundError(absl::StrCat("study ", study_id, " has no trial ", trial));
    }
    copy = e->study;  // diagnosis is slow on a large study: judged off the lock
  }
  RETURN_IF_ERROR(AddDetails(study_id, copy.trials));
  return hpo::server::Diagnose(copy, trial);
}

absl::StatusOr<Trial> Coordinator::EnqueueTrial(int64_t study_id, const std::string& params_json) {
  // Deeper than kMaxJsonDepth: refused before parsing (the message below dumps the value, which recurses).
  nlohmann::json j = CheckJsonDepth(params_json, "params_json").ok() ? nlohmann::json::parse(params_json, nullptr, false)
                                                                   : nlohmann::json();
  if (!j.is_object()) {
    return absl::InvalidArgumentError("the parameters must be a JSON object from parameter name to value");
  }
  EntryPtr ep = FindStudy(study_id);
  if (ep == nullptr) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
  Entry& e = *ep;
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
  absl::MutexLock lock(&e.mu);
  if (e.study.state != StudyState::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("study ", study_id, " is ", StateName(e.study.state),
                                                      ": it takes no more trials"));
  }
  if (e.figures.used_slots >= e.spec.max_trials) {
    return absl::FailedPreconditionError(absl::StrCat("study ", study_id, " already has its ", e.spec.max_trials,
                                                      " trials (max_trials)"));
  }
  if (OutOfTime(e)) {
    return absl::FailedPreconditionError(absl::StrCat("study ", study_id, " ", TimeBudgetText(e),
                                                      ": it starts no more trials"));
  }
  Trial t;
  t.study_id = study_id;
  t.number = static_cast<int>(e.study.trials.size());
  t.params = std::move(params);
  t.state = TrialState::kWaiting;
  t.created = clock_->Now();
  RETURN_IF_ERROR(Commit([&](Storage& storage) -> absl::Status {
    ASSIGN_OR_RETURN(t.id, storage.CreateTrial(t));
    return absl::OkStatus();
  }));
  IndexTrial(t);
  Put(e, t);
  return t;
}

absl::Status Coordinator::Start(Entry& e, Trial t, const std::string& worker, const std::string& holder) {
  t.state = TrialState::kRunning;
  t.worker = worker;
  t.started = clock_->Now();
  RETURN_IF_ERROR(Commit([&](Storage& storage) { return storage.UpdateTrial(t, nullptr); }));
  e.leases[t.id] = Lease{clock_->Now() + options_.lease_timeout, holder};
  Put(e, std::move(t));
  return absl::OkStatus();
}

namespace {
// The active parameters `params` lacks (an enqueued trial may be partial).
bool Complete(const StudySpec& spec, const ParamMap& params) {
  for (const ParamSpec& p : spec.params) {
    if (IsActive(p, params) && !params.count(p.name)) return false;
  }
  return true;
}
}  // namespace

absl::StatusOr<Coordinator::Outcome> Coordinator::TryStudy(const EntryPtr& ep, const std::string& worker,
                                                           const std::string& holder, bool wait,
                                                           std::optional<Assignment>* out) {
  Entry& e = *ep;
  auto assign = [&](int number) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e.mu) {
    *out = Assignment{e.study.trials[number], e.spec.task, e.spec.metric};
    return Outcome::kAssigned;
  };
  // 1. A WAITING trial with every parameter given: no sampler needed.
  {
    absl::MutexLock lock(&e.mu);
    if (e.study.state != StudyState::kRunning || OutOfTime(e)) return Outcome::kNothing;
    while (!e.waiting.empty()) {
      const int n = e.waiting.front();
      const Trial& t = e.study.trials[n];
      if (t.state != TrialState::kWaiting) {
        e.waiting.pop_front();  // stale: started or stopped since
        continue;
      }
      if (!Complete(e.spec, t.params)) break;  // sampled below
      RETURN_IF_ERROR(Start(e, t, worker, holder));
      e.waiting.pop_front();
      return assign(n);
    }
    if (e.waiting.empty() && NothingToHandOut(e)) return Outcome::kNothing;
  }
  // 2. Sample, with only this study's sampling lock held while the sampler computes.
  if (wait) {
    e.sample_mu.Lock();
  } else if (!e.sample_mu.TryLock()) {
    return Outcome::kBusy;  // another ask samples this study now; the caller tries other studies first
  }
  absl::StatusOr<Outcome> r = SampleAndStart(e, worker, holder, out);
  e.sample_mu.Unlock();
  return r;
}

absl::StatusOr<Coordinator::Outcome> Coordinator::SampleAndStart(Entry& e, const std::string& worker,
                                                                 const std::string& holder,
                                                                 std::optional<Assignment>* out) {
  const bool history = e.sampler->UsesHistory();
  // A result is dropped when the study changed in a way that takes its trial away (another trial
  // took the number, the study stopped or filled up); then the sampler runs again on the new state.
  for (int attempt = 0; attempt < 8; ++attempt) {
    int number = -1;
    bool fill = false;  // number is a WAITING trial with parameters left out
    uint64_t seed = 0;
    {
      absl::MutexLock lock(&e.mu);
      if (e.study.state != StudyState::kRunning || OutOfTime(e)) return Outcome::kNothing;
      while (!e.waiting.empty() && e.study.trials[e.waiting.front()].state != TrialState::kWaiting) {
        e.waiting.pop_front();
      }
      if (!e.waiting.empty()) {
        number = e.waiting.front();
        if (Complete(e.spec, e.study.trials[number].params)) {  // filled by another ask meanwhile
          RETURN_IF_ERROR(Start(e, e.study.trials[number], worker, holder));
          e.waiting.pop_front();
          *out = Assignment{e.study.trials[number], e.spec.task, e.spec.metric};
          return Outcome::kAssigned;
        }
        fill = true;
      } else {
        if (NothingToHandOut(e)) return Outcome::kNothing;
        number = static_cast<int>(e.study.trials.size());
      }
      seed = e.study.seed;
      // Bring the snapshot up to date: the trials changed since the last sample, and new ones.
      Study& snap = e.snapshot;
      if (snap.id == 0) {
        snap.id = e.study.id;
        snap.spec = e.study.spec;
        snap.spec_json = e.study.spec_json;
        snap.seed = e.study.seed;
        snap.created = e.study.created;
      }
      snap.state = e.study.state;
      if (history) {
        const size_t old = snap.trials.size();
        snap.trials.resize(e.study.trials.size());
        for (int n : e.changed) {
          if (static_cast<size_t>(n) < old) snap.trials[n] = e.study.trials[n];
        }
        for (size_t n = old; n < e.study.trials.size(); ++n) snap.trials[n] = e.study.trials[n];
      }
      e.changed.clear();
    }
    // No lock but this study's sampling lock: reports, heartbeats and other studies go on.
    absl::StatusOr<ParamMap> sampled = e.sampler->Sample(e.snapshot, number, TrialSeed(seed, number));

    absl::MutexLock lock(&e.mu);
    if (e.study.state != StudyState::kRunning || OutOfTime(e)) return Outcome::kNothing;
    if (!fill && sampled.status().code() == absl::StatusCode::kOutOfRange) {
      e.exhausted = true;  // e.g. every grid point has a trial: the study ends when they finish
      RETURN_IF_ERROR(FinishIfDone(e));
      return Outcome::kNothing;
    }
    if (!sampled.ok() && !(fill && sampled.status().code() == absl::StatusCode::kOutOfRange)) {
      return absl::Status(sampled.status().code(),
                          absl::StrCat("sampler of study ", e.study.id, ": ", sampled.status().message()));
    }
    if (fill) {
      if (number >= static_cast<int>(e.study.trials.size()) ||
          e.study.trials[number].state != TrialState::kWaiting) {
        continue;  // started by another ask, or stopped, meanwhile
      }
      Trial t = e.study.trials[number];
      for (const ParamSpec& p : e.spec.params) {
        if (!IsActive(p, t.params) || t.params.count(p.name)) continue;
        auto it = sampled.ok() ? sampled->find(p.name) : ParamMap::const_iterator();
        if (sampled.ok() && it != sampled->end()) {
          t.params[p.name] = it->second;
        } else {
          t.params[p.name] = FromUnit(p, UnitFromBits(ParamSeed(TrialSeed(seed, number), p.name)));
        }
      }
      RETURN_IF_ERROR(Start(e, std::move(t), worker, holder));
      *out = Assignment{e.study.trials[number], e.spec.task, e.spec.metric};
      return Outcome::kAssigned;
    }
    if (number != static_cast<int>(e.study.trials.size()) || e.figures.used_slots >= e.spec.max_trials ||
        !e.waiting.empty()) {
      continue;  // a trial was enqueued or retried meanwhile: it goes first, or took the number
    }
    Trial t;
    t.study_id = e.study.id;
    t.number = number;
    t.params = std::move(*sampled);
    t.state = TrialState::kRunning;
    t.worker = worker;
    t.created = t.started = clock_->Now();
    RETURN_IF_ERROR(Commit([&](Storage& storage) -> absl::Status {
      ASSIGN_OR_RETURN(t.id, storage.CreateTrial(t));
      return absl::OkStatus();
    }));
    e.leases[t.id] = Lease{clock_->Now() + options_.lease_timeout, holder};
    IndexTrial(t);
    Put(e, std::move(t));
    *out = Assignment{e.study.trials[number], e.spec.task, e.spec.metric};
    return Outcome::kAssigned;
  }
  return Outcome::kNothing;  // the study kept changing under the sampler: the worker asks again
}

absl::StatusOr<std::optional<Assignment>> Coordinator::AskTrial(const std::string& worker_id,
                                                                const std::vector<std::string>& task_types,
                                                                int64_t study_id, const std::string& holder_in) {
  const std::string& holder = holder_in.empty() ? worker_id : holder_in;
  if (leased_.load() >= options_.max_running_trials) {
    return absl::ResourceExhaustedError(absl::StrCat(
        leased_.load(), " trials are running, hpo-server's limit (--max_running_trials=", options_.max_running_trials,
        "); ask again when some have finished"));
  }
  auto runs = [&](const Entry& e) {
    return std::find(task_types.begin(), task_types.end(), e.spec.task.type) != task_types.end();
  };
  std::vector<EntryPtr> candidates;
  if (study_id != 0) {
    EntryPtr e = FindStudy(study_id);
    if (e == nullptr) return absl::NotFoundError(absl::StrCat("no study with id ", study_id));
    if (!runs(*e)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "study ", study_id, " has task type \"", e->spec.task.type, "\", which this worker cannot run"));
    }
    candidates.push_back(std::move(e));
  } else {
    absl::ReaderMutexLock lock(&map_mu_);
    for (int64_t id : running_) {
      const EntryPtr& e = studies_.at(id);
      if (runs(*e)) candidates.push_back(e);
    }
  }
  std::optional<Assignment> out;
  std::vector<EntryPtr> busy;
  for (const EntryPtr& e : candidates) {
    ASSIGN_OR_RETURN(Outcome o, TryStudy(e, worker_id, holder, /*wait=*/candidates.size() == 1, &out));
    if (o == Outcome::kAssigned) return out;
    if (o == Outcome::kBusy) busy.push_back(e);
  }
  // Every other study is idle: wait for those another ask was sampling.
  for (const EntryPtr& e : busy) {
    ASSIGN_OR_RETURN(Outcome o, TryStudy(e, worker_id, holder, /*wait=*/true, &out));
    if (o == Outcome::kAssigned) return out;
  }
  return std::optional<Assignment>();
}

void Coordinator::AskTrialAsync(std::string worker_id, std::vector<std::string> task_types, int64_t study_id,
                                std::string holder,
                                absl::AnyInvocable<void(absl::StatusOr<std::optional<Assignment>>) &&> done) {
  auto shared_done = std::make_shared<decltype(done)>(std::move(done));
  const bool queued = pool_->TrySubmit([this, worker_id = std::move(worker_id), task_types = std::move(task_types),
                                        study_id, holder = std::move(holder), shared_done]() mutable {
    std::move (*shared_done)(AskTrial(worker_id, task_types, study_id, holder));
  });
  if (!queued) {
    std::move (*shared_done)(absl::ResourceExhaustedError(absl::StrCat(
        "hpo-server has ", pool_->capacity(), " asks for trials waiting for a sampler already "
        "(--max_waiting_asks); ask again shortly")));
  }
}

std::string Coordinator::NotRunningMessage(const Trial& t) {
  std::string msg = absl::StrCat(TrialName(t), " is ", StateName(t.state));
  if (!t.reason.empty()) absl::StrAppend(&msg, " (", t.reason, ")");
  absl::StrAppend(&msg, "; it accepts no more reports: stop training it");
  return msg;
}

absl::Status Coordinator::CheckHolder(Entry& e, const Trial& t, const std::string& holder) {
  if (holder.empty()) return absl::OkStatus();
  auto it = e.leases.find(t.id);
  if (it == e.leases.end()) return absl::OkStatus();  // not RUNNING: the caller says why
  if (it->second.holder.empty()) {
    it->second.holder = holder;  // loaded at start-up: the first to come back takes it
    return absl::OkStatus();
  }
  if (it->second.holder == holder) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      TrialName(t), " is leased to another worker (", t.worker.substr(0, 64),
      "); only the holder of its lease may report, heartbeat, complete or fail it"));
}

absl::StatusOr<Decision> Coordinator::Report(int64_t trial_id, Measurement m, std::optional<DataReport> data,
                                             const std::string& holder) {
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
  ASSIGN_OR_RETURN(TrialRef ref, FindTrial(trial_id));
  Entry& e = *ref.entry;
  absl::MutexLock lock(&e.mu);
  const Trial* t = &e.study.trials[ref.number];
  RETURN_IF_ERROR(CheckHolder(e, *t, holder));
  const Measurement* last = t->measurements.empty() ? nullptr : &t->measurements.back();
  const bool resend = last != nullptr && last->step == m.step && last->value == m.value;
  if (t->state != TrialState::kRunning) {
    if (resend && t->state == TrialState::kPruned) return Decision{Action::kPrune, t->reason};
    return absl::FailedPreconditionError(NotRunningMessage(*t));
  }
  // The task's last step (max_steps of an external task, max_epochs of a cnn; 0: no limit).
  if (const int max = e.spec.task.max_epochs; max > 0 && m.step > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "step ", m.step, " is beyond the task's ", e.spec.task.type == "external" ? "max_steps" : "max_epochs",
        " (", max, ") for ", TrialName(*t)));
  }
  e.leases[t->id].deadline = clock_->Now() + options_.lease_timeout;
  if (resend) {
    // The first send was stored with whatever data it carried; store a resend's only if it differs.
    if (data && t->data != data) {
      Trial updated = *t;
      updated.data = std::move(data);
      {
        absl::MutexLock slock(&storage_mu_);
        RETURN_IF_ERROR(storage_->UpdateTrial(updated, nullptr));
      }
      Put(e, std::move(updated));
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
  UpdateBest(updated, e.spec.direction);
  // Decide on the study as it will be once this measurement is stored.
  Trial& slot = e.study.trials[ref.number];
  std::swap(slot, updated);
  absl::StatusOr<PruneDecision> pd = e.pruner->Decide(e.study, slot);
  std::swap(slot, updated);
  if (!pd.ok()) return pd.status();
  if (pd->prune) {
    updated.state = TrialState::kPruned;
    updated.reason = pd->reason;
    updated.finished = m.time;
  }
  bool ends = false;
  RETURN_IF_ERROR(WriteTrial(e, updated, &updated.measurements.back(), &ends));
  Put(e, std::move(updated));
  if (ends) SetState(e, StudyState::kCompleted);
  if (!pd->prune) return Decision{};
  e.leases.erase(trial_id);
  return Decision{Action::kPrune, pd->reason};
}

absl::StatusOr<HeartbeatResult> Coordinator::Heartbeat(int64_t trial_id, const std::string& worker_id,
                                                       const std::string& holder) {
  ASSIGN_OR_RETURN(TrialRef ref, FindTrial(trial_id));
  Entry& e = *ref.entry;
  absl::MutexLock lock(&e.mu);
  const Trial& t = e.study.trials[ref.number];
  RETURN_IF_ERROR(CheckHolder(e, t, holder));
  if (t.state != TrialState::kRunning) return HeartbeatResult{false, NotRunningMessage(t)};
  e.leases[trial_id].deadline = clock_->Now() + options_.lease_timeout;
  return HeartbeatResult{};
}

absl::StatusOr<Trial> Coordinator::CompleteTrial(int64_t trial_id, std::map<std::string, double> final_metrics,
                                                 std::optional<ClassReport> classes, const std::string& holder) {
  for (const auto& [k, v] : final_metrics) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("final metric ", k, " is ", v, "; it must be finite"));
    }
  }
  ASSIGN_OR_RETURN(TrialRef ref, FindTrial(trial_id));
  Entry& e = *ref.entry;
  absl::MutexLock lock(&e.mu);
  const Trial& t = e.study.trials[ref.number];
  RETURN_IF_ERROR(CheckHolder(e, t, holder));
  if (t.state == TrialState::kCompleted) {
    std::vector<Trial> done = {t};
    RETURN_IF_ERROR(AddDetails(t.study_id, done));
    return std::move(done.front());
  }
  if (t.state != TrialState::kRunning) return absl::FailedPreconditionError(NotRunningMessage(t));
  if (t.measurements.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        TrialName(t), " has no measurement: report at least one step before completing it"));
  }
  if (classes && classes->empty()) classes.reset();  // an empty report says nothing
  if (classes) {
    if (absl::Status s = ValidateClassReport(*classes, t.data ? &*t.data : nullptr); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(TrialName(t), ": ", s.message()));
    }
  }
  Trial updated = t;
  updated.state = TrialState::kCompleted;
  updated.final_metrics = std::move(final_metrics);
  updated.classes = std::move(classes);
  updated.finished = clock_->Now();
  UpdateBest(updated, e.spec.direction);
  bool ends = false;
  RETURN_IF_ERROR(WriteTrial(e, updated, nullptr, &ends));
  Trial copy = updated;
  Put(e, std::move(updated));
  e.leases.erase(trial_id);
  if (ends) SetState(e, StudyState::kCompleted);
  return copy;
}

absl::StatusOr<Trial> Coordinator::FailTrial(int64_t trial_id, const std::string& reason, bool retry,
                                             const std::string& holder) {
  ASSIGN_OR_RETURN(TrialRef ref, FindTrial(trial_id));
  Entry& e = *ref.entry;
  absl::MutexLock lock(&e.mu);
  const Trial& t = e.study.trials[ref.number];
  RETURN_IF_ERROR(CheckHolder(e, t, holder));
  std::vector<Trial> out;
  if (t.state == TrialState::kFailed) {
    out.push_back(t);
  } else {
    if (t.state != TrialState::kRunning) return absl::FailedPreconditionError(NotRunningMessage(t));
    RETURN_IF_ERROR(Fail(e, t, reason.empty() ? "failed (no reason given)" : reason, retry));
    out.push_back(e.study.trials[ref.number]);
  }
  RETURN_IF_ERROR(AddDetails(out.front().study_id, out));
  return std::move(out.front());
}

absl::Status Coordinator::Fail(Entry& e, const Trial& t, const std::string& reason, bool retry) {
  Trial updated = t;
  updated.state = TrialState::kFailed;
  updated.reason = reason;
  updated.finished = clock_->Now();
  retry = retry && e.study.state == StudyState::kRunning && !OutOfTime(e) &&
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
  const bool ends = !retry && EndsStudy(e, updated);  // a retry is a new unfinished trial
  RETURN_IF_ERROR(Commit([&](Storage& storage) -> absl::Status {
    RETURN_IF_ERROR(storage.UpdateTrial(updated, nullptr));
    if (retry) {
      ASSIGN_OR_RETURN(again.id, storage.CreateTrial(again));
    }
    if (ends) RETURN_IF_ERROR(storage.UpdateStudyState(updated.study_id, StudyState::kCompleted));
    return absl::OkStatus();
  }));
  e.leases.erase(t.id);
  Put(e, std::move(updated));  // `t` is not used after this
  if (retry) {
    IndexTrial(again);
    Put(e, std::move(again));
  }
  if (ends) SetState(e, StudyState::kCompleted);
  return absl::OkStatus();
}

absl::Status Coordinator::FinishIfDone(Entry& e) {
  if (e.study.state != StudyState::kRunning) return absl::OkStatus();
  if (!NothingToHandOut(e)) return absl::OkStatus();
  if (UnfinishedTrials(e) > 0) return absl::OkStatus();
  {
    absl::MutexLock slock(&storage_mu_);
    RETURN_IF_ERROR(storage_->UpdateStudyState(e.study.id, StudyState::kCompleted));
  }
  SetState(e, StudyState::kCompleted);
  return absl::OkStatus();
}

void Coordinator::SetState(Entry& e, StudyState state) {
  e.study.state = state;
  absl::MutexLock lock(&map_mu_);
  if (state == StudyState::kRunning) {
    running_.insert(e.study.id);
  } else {
    running_.erase(e.study.id);
  }
}

std::string Coordinator::TimeBudgetText(const Entry& e) {
  return absl::StrCat("ran out of its time budget (max_minutes ", e.spec.max_minutes, ") at ",
                      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", TimeBudgetEnd(e.spec, e.figures.first_started),
                                       absl::UTCTimeZone()));
}

int Coordinator::EndTimeBudgets() {
  std::vector<EntryPtr> entries;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    for (int64_t id : running_) {
      if (auto it = studies_.find(id); it != studies_.end()) entries.push_back(it->second);
    }
  }
  int ended = 0;
  for (const EntryPtr& ep : entries) {
    Entry& e = *ep;
    absl::MutexLock lock(&e.mu);
    if (e.study.state != StudyState::kRunning || !OutOfTime(e)) continue;
    // Queued trials (enqueued, or retries) will never start now. A copy: Fail changes e.waiting's trials.
    const std::vector<int> waiting(e.waiting.begin(), e.waiting.end());
    const std::string reason = absl::StrCat("not started: the study ", TimeBudgetText(e));
    bool failed = true;
    for (int n : waiting) {
      if (e.study.trials[n].state != TrialState::kWaiting) continue;
      failed = Fail(e, e.study.trials[n], reason, /*retry=*/false).ok() && failed;
    }
    // Ends a study whose last trials finished before its time ran out (and one that Fail ended).
    if (failed && FinishIfDone(e).ok() && e.study.state != StudyState::kRunning) ++ended;
  }
  return ended;
}

int Coordinator::ReapExpiredLeases() {
  std::vector<EntryPtr> entries;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    for (const auto& [id, e] : studies_) entries.push_back(e);
  }
  const absl::Time now = clock_->Now();
  int reaped = 0;
  for (const EntryPtr& ep : entries) {
    Entry& e = *ep;
    absl::MutexLock lock(&e.mu);
    std::vector<int64_t> expired;
    for (const auto& [id, lease] : e.leases) {
      if (lease.deadline <= now) expired.push_back(id);
    }
    for (int64_t id : expired) {
      auto ref = FindTrial(id);
      if (!ref.ok() || ref->entry != ep) {
        e.leases.erase(id);
        continue;
      }
      const Trial& t = e.study.trials[ref->number];
      if (t.state != TrialState::kRunning) {
        e.leases.erase(id);
        continue;
      }
      const std::string reason = absl::StrFormat(
          "lease lost: worker %s sent no heartbeat for %s", t.worker.empty() ? "?" : t.worker,
          absl::FormatDuration(options_.lease_timeout));
      if (Fail(e, t, reason, /*retry=*/true).ok()) ++reaped;
    }
  }
  return reaped;
}

}  // namespace hpo::server
