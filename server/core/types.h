// Plain value types of the coordinator: no proto, no SQLite, no gRPC.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/time/time.h"

namespace hpo::server {

enum class Direction { kMaximize, kMinimize };
enum class ParamType { kFloat, kInt, kCategorical };
enum class StudyState { kRunning, kCompleted, kStopped };
enum class TrialState { kWaiting, kRunning, kCompleted, kPruned, kFailed };

// A parameter value: float, int, string or bool (categorical choices keep their JSON type).
using ParamValue = std::variant<double, int64_t, std::string, bool>;
using ParamMap = std::map<std::string, ParamValue>;

std::string ToString(const ParamValue& v);  // 0.001, 64, "adam" -> adam, true
nlohmann::json ToJson(const ParamValue& v);
const char* StateName(TrialState s);
const char* StateName(StudyState s);
bool IsFinished(TrialState s);

// One hyperparameter of the search space, validated by ParseStudySpec.
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::kFloat;
  double low = 0, high = 0;         // float and int
  bool log = false;                 // sample log-uniformly
  std::optional<double> step;       // grid spacing from low (float and int)
  std::vector<ParamValue> choices;  // categorical
  // Conditional parameter: active only when the categorical `parent` (defined
  // earlier in the space) takes one of `parent_values`. Empty parent: always active.
  std::string parent;
  std::vector<ParamValue> parent_values;
};

// Whether `p` is active given the values already chosen for the parameters before it.
bool IsActive(const ParamSpec& p, const ParamMap& chosen);

// The study's task: what workers train. Only "cnn" exists so far.
struct TaskSpec {
  std::string type = "cnn";  // "cnn" (hpo-worker) or "external" (any client, e.g. the Python one)
  std::string dataset;
  int train_examples = 0;  // 0: all that remain after validation
  int val_examples = 10000;
  int test_examples = 0;   // 0: the whole t10k set
  int max_epochs = 10;     // steps per trial; for "external", 0 means no limit
  int64_t data_seed = 0;
  int executions_per_trial = 1;
  std::vector<int> imbalance_classes;  // make the training split imbalanced on purpose
  double imbalance_keep = 1.0;
};

struct StudySpec {
  std::string name;
  std::string metric = "val_accuracy";
  Direction direction = Direction::kMaximize;
  TaskSpec task;
  std::vector<ParamSpec> params;
  nlohmann::json sampler;  // {"type": ..., options}; validated by the sampler registry
  nlohmann::json pruner;   // {"type": ..., options}; validated by the pruner registry
  int max_trials = 0;
  int max_retries = 1;     // times a trial whose worker was lost is handed out again
  std::optional<uint64_t> seed;  // sampler.seed, if given
};

struct Measurement {
  int step = 0;
  double value = 0;
  std::map<std::string, double> metrics;
  absl::Time time;
};

struct Trial {
  int64_t id = 0;
  int64_t study_id = 0;
  int number = 0;
  TrialState state = TrialState::kWaiting;
  ParamMap params;
  std::vector<Measurement> measurements;
  std::optional<double> value;  // best value over the measurements
  int best_step = -1;
  std::map<std::string, double> final_metrics;
  std::string reason;
  std::string worker;
  int retry_of = -1;
  bool retried = false;  // FAILED and handed out again as a new trial
  absl::Time created, started, finished;  // absl::InfinitePast() when not yet
};

struct Study {
  int64_t id = 0;
  StudySpec spec;
  std::string spec_json;  // canonical JSON of the spec, what is stored
  StudyState state = StudyState::kRunning;
  uint64_t seed = 0;
  absl::Time created;
  std::vector<Trial> trials;  // index == number
};

// True when `a` is a better objective value than `b` under `d`.
inline bool Better(Direction d, double a, double b) {
  return d == Direction::kMaximize ? a > b : a < b;
}

}  // namespace hpo::server
