// Runs one assigned trial end to end: data, training, a measurement per
// epoch, the coordinator's decision, heartbeats, and the final report.
#pragma once

#include <atomic>
#include <string>

#include "hpo/v1/coordinator.pb.h"
#include "worker/coordinator_client.h"

namespace hpo::worker {

struct RunnerOptions {
  std::string data_root = "/usr/share/datasets";
  std::string cache_dir;  // decoded image folders ("": no cache)
  int threads = 1;        // image decoding threads
};

enum class TrialOutcome { kCompleted, kPruned, kFailed, kLost, kHandedBack };

// Runs the trial in `assignment`. `stop` is the process's shutdown flag: when
// it is set the trial is handed back (failed with retry) and kHandedBack returned.
TrialOutcome RunTrial(CoordinatorClient& client, const hpo::v1::AskTrialResponse& assignment,
                      const RunnerOptions& options, const std::atomic<bool>& stop);

}  // namespace hpo::worker
