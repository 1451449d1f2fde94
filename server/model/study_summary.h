// Derived figures of a study: counts by state, best trial, how many slots of max_trials are used.
#pragma once

#include <optional>

#include "server/model/types.h"

namespace hpo::server {

struct TrialCounts {
  int waiting = 0, running = 0, completed = 0, pruned = 0, failed = 0;
};

TrialCounts CountTrials(const Study& study);
// The best COMPLETED trial by the study's direction (ties: the lower number), or null.
const Trial* FindBestTrial(const Study& study);
// Whether a trial uses one of max_trials: every trial except FAILED ones handed out again.
inline int UsesSlot(const Trial& t) { return t.state == TrialState::kFailed && t.retried ? 0 : 1; }
// The trials that use one of max_trials.
int UsedSlots(const Study& study);

// A study without its trials, with the figures derived from them: what lists of studies, the
// dashboard's list and the metrics page show.
struct StudySummary {
  Study study;  // its trials left out
  TrialCounts counts;
  int trials = 0;       // all of them
  int used_slots = 0;   // UsedSlots
  int started = 0;      // trials ever handed to a worker
  int retried = 0;      // FAILED trials handed out again
  int leases_lost = 0;  // FAILED because their worker went silent
  absl::Time first_started = absl::InfiniteFuture();  // the earliest start of any trial (none yet: future)
  struct Best {
    int number = 0;
    double value = 0;
    int step = -1;
  };
  std::optional<Best> best;  // the best COMPLETED trial (FindBestTrial)
};

// When no trial may start any more by a study's time budget: `spec.max_minutes` after its first trial
// started (`first_started`, as StudySummary keeps it); absl::InfiniteFuture() without a budget or
// before any trial started.
absl::Time TimeBudgetEnd(const StudySpec& spec, absl::Time first_started);

// The study's own fields, without its trials.
Study StudyHeader(const Study& study);
// By a scan of the study's trials.
StudySummary Summarize(const Study& study);
// Adds (sign +1) or takes out (-1) what trial `t` counts for, except `best` (see BetterBest).
void CountTrial(StudySummary& s, const Trial& t, int sign);
// Whether COMPLETED trial `t` is a better best than `best` (ties: the lower number).
bool BetterBest(Direction d, const Trial& t, const std::optional<StudySummary::Best>& best);

}  // namespace hpo::server
