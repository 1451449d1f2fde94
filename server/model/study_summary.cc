#include "server/model/study_summary.h"

#include "absl/strings/match.h"

namespace hpo::server {

TrialCounts CountTrials(const Study& study) {
  TrialCounts c;
  for (const Trial& t : study.trials) {
    switch (t.state) {
      case TrialState::kWaiting: ++c.waiting; break;
      case TrialState::kRunning: ++c.running; break;
      case TrialState::kCompleted: ++c.completed; break;
      case TrialState::kPruned: ++c.pruned; break;
      case TrialState::kFailed: ++c.failed; break;
    }
  }
  return c;
}

const Trial* FindBestTrial(const Study& study) {
  const Trial* best = nullptr;
  for (const Trial& t : study.trials) {
    if (t.state != TrialState::kCompleted || !t.value) continue;
    if (best == nullptr || Better(study.spec.direction, *t.value, *best->value)) best = &t;
  }
  return best;
}

int UsedSlots(const Study& study) {
  int n = 0;
  for (const Trial& t : study.trials) n += UsesSlot(t);
  return n;
}

void CountTrial(StudySummary& s, const Trial& t, int sign) {
  int* by_state = nullptr;
  switch (t.state) {
    case TrialState::kWaiting: by_state = &s.counts.waiting; break;
    case TrialState::kRunning: by_state = &s.counts.running; break;
    case TrialState::kCompleted: by_state = &s.counts.completed; break;
    case TrialState::kPruned: by_state = &s.counts.pruned; break;
    case TrialState::kFailed: by_state = &s.counts.failed; break;
  }
  if (by_state != nullptr) *by_state += sign;
  s.trials += sign;
  s.used_slots += UsesSlot(t) * sign;
  s.started += t.started != absl::InfinitePast() ? sign : 0;
  s.retried += t.retried ? sign : 0;
  // A trial's start never changes once set, and trials leave only with their study: a minimum.
  if (sign > 0 && t.started != absl::InfinitePast() && t.started < s.first_started) s.first_started = t.started;
  s.leases_lost += t.state == TrialState::kFailed && absl::StartsWith(t.reason, "lease lost") ? sign : 0;
}

absl::Time TimeBudgetEnd(const StudySpec& spec, absl::Time first_started) {
  if (spec.max_minutes <= 0 || first_started == absl::InfiniteFuture()) return absl::InfiniteFuture();
  return first_started + absl::Minutes(spec.max_minutes);
}

bool BetterBest(Direction d, const Trial& t, const std::optional<StudySummary::Best>& best) {
  if (t.state != TrialState::kCompleted || !t.value) return false;
  if (!best) return true;
  return Better(d, *t.value, best->value) || (*t.value == best->value && t.number < best->number);
}

Study StudyHeader(const Study& study) {
  Study h;
  h.id = study.id;
  h.spec = study.spec;
  h.spec_json = study.spec_json;
  h.state = study.state;
  h.seed = study.seed;
  h.created = study.created;
  return h;
}

StudySummary Summarize(const Study& study) {
  StudySummary s;
  s.study = StudyHeader(study);
  for (const Trial& t : study.trials) {
    CountTrial(s, t, +1);
    if (BetterBest(study.spec.direction, t, s.best)) s.best = StudySummary::Best{t.number, *t.value, t.best_step};
  }
  return s;
}

}  // namespace hpo::server
