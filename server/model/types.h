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

// The study's task: what workers train.
struct TaskSpec {
  std::string type = "cnn";  // "cnn" (hpo-worker) or "external" (any client, e.g. the Python one)
  std::string dataset;
  int train_examples = 0;  // 0: all that remain after validation
  // 0: the worker's default (all of val/ in an image folder that has one, 10,000 for IDX/CIFAR,
  // 20% of an image folder's images otherwise). Not filled in here: only the worker knows the data.
  int val_examples = 0;
  int test_examples = 0;   // 0: the whole t10k set
  int max_epochs = 10;     // steps per trial; for "external", 0 means no limit
  int64_t data_seed = 0;
  int executions_per_trial = 1;
  std::vector<int> imbalance_classes;  // make the training split imbalanced on purpose
  double imbalance_keep = 1.0;
  // Image folders only; 0 / empty: the worker picks them from the data.
  int image_height = 0, image_width = 0;
  int channels = 0;     // 1 or 3
  std::string resize;   // "stretch", "pad" or "crop"
  // Epoch k (1-based) trains on partial_epochs[k-1] of the training images (a fresh random subset each
  // epoch); later epochs on all. Empty: every epoch on all. At most max_epochs entries, each in (0, 1].
  std::vector<double> partial_epochs;
  // Mixed into every trial's training seed (weights, dropout, shuffles, augmentation), which otherwise
  // follows the study id and the trial number: another value retrains the same configurations on new seeds.
  int64_t training_seed = 0;
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
  // A wall-clock budget: no trial starts later than this many minutes after the study's first trial
  // started (trials running then finish as usual). 0: none.
  double max_minutes = 0;
  std::optional<uint64_t> seed;  // sampler.seed, if given
};

struct Measurement {
  int step = 0;
  double value = 0;
  std::map<std::string, double> metrics;
  absl::Time time;
};

// What a worker found in a trial's data set (reported with the trial's first measurement).
struct DataReport {
  std::string format;                    // "image_folder", "idx", "cifar10"
  std::vector<std::string> class_names;  // by class label; may be empty (then classes go by number)
  int64_t train_images = 0, val_images = 0, test_images = 0;
  int channels = 0, height = 0, width = 0;  // as trained
  int64_t skipped_files = 0;                // files that are not usable images
  std::vector<std::string> skipped_examples;  // the first few, each "path: why"
};
// The report as a JSON object, as stored (SQLite) and served (/api): one spelling of its keys.
nlohmann::json ToJson(const DataReport& d);
bool operator==(const DataReport& a, const DataReport& b);
inline bool operator!=(const DataReport& a, const DataReport& b) { return !(a == b); }

// Per-class figures of a completed trial, each array indexed by class label (or empty: not reported).
struct ClassReport {
  std::vector<int64_t> train_count, val_count;
  std::vector<double> train_recall, val_recall;
  std::vector<int64_t> val_confusion;  // n x n, row-major: [true class][predicted class]

  // The number of classes n: the length of the per-class arrays (the square root of the
  // confusion matrix's when only that was reported); 0 when nothing was reported.
  int NumClasses() const;
  bool empty() const { return NumClasses() == 0; }
};
bool operator==(const ClassReport& a, const ClassReport& b);
inline bool operator!=(const ClassReport& a, const ClassReport& b) { return !(a == b); }

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
  absl::Time created = absl::InfinitePast(), started = absl::InfinitePast(),
             finished = absl::InfinitePast();  // absl::InfinitePast() when not yet
  std::optional<DataReport> data;     // unset until the worker's first report that carries it
  std::optional<ClassReport> classes;  // set on completion by tasks that report them
};

// How to name class `c` of trial `t` to a person: `"shirt"` (quoted, from its DataReport) when
// the worker reported class names, else the label number (`6`).
std::string ClassName(const Trial& t, int c);

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
