#include "server/model/study_summary.h"

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
  for (const Trial& t : study.trials) n += t.retried ? 0 : 1;
  return n;
}

}  // namespace hpo::server
