#include "server/model/study_spec.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/common/json_limits.h"
#include "proto/common/status_macros.h"
#include "server/model/task_catalog.h"

namespace hpo::server {
namespace {

using nlohmann::json;

// Documented limits (README "Limits"). A spec is read once, at creation, but stored and sent
// back with every ListStudies, so its size and the names in it are bounded.
constexpr size_t kMaxSpecBytes = 1 << 20;
constexpr size_t kMaxStudyNameBytes = 256;
constexpr double kMaxStudyMinutes = 525'600;  // a year
constexpr size_t kMaxParamNameBytes = 128;  // also objective.metric
constexpr size_t kMaxTypeNameBytes = 64;    // task.type
constexpr size_t kMaxParameters = 1000;
constexpr size_t kMaxChoices = 10'000;      // per parameter, and per condition
constexpr size_t kMaxChoiceStringBytes = 1024;
// Ints are sampled through doubles, and high - low + 1 must not overflow: within +-2^53 both hold.
constexpr int64_t kMaxIntMagnitude = int64_t{1} << 53;

absl::Status Invalid(const std::string& msg) { return absl::InvalidArgumentError(msg); }

// A client's string inside a message: quoted, escaped, and only its beginning.
std::string Quoted(absl::string_view s) { return absl::StrCat("\"", ClientTextPrefix(s), "\""); }
// A client's JSON value inside a message: only the beginning of its text. The value has passed
// the depth check, so dump() cannot recurse deeply.
std::string Shown(const json& v) { return ClientTextPrefix(v.dump()); }

absl::Status CheckLength(absl::string_view s, size_t max_bytes, const std::string& what) {
  if (s.size() <= max_bytes) return absl::OkStatus();
  return Invalid(absl::StrCat(what, " is ", s.size(), " bytes; at most ", max_bytes, " bytes are accepted"));
}

// Whether an integer JSON number lies within [-limit, limit], judged on the integer itself
// (converting to double first would round 2^53 + 1 down to 2^53).
bool IntWithin(const json& v, int64_t limit) {
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= static_cast<uint64_t>(limit);
  const int64_t i = v.get<int64_t>();
  return i >= -limit && i <= limit;
}

const char* TypeName(const json& j) {
  if (j.is_boolean()) return "a boolean";
  if (j.is_number()) return "a number";
  if (j.is_string()) return "a string";
  if (j.is_array()) return "an array";
  if (j.is_object()) return "an object";
  return "null";
}

absl::Status CheckKeys(const json& obj, const std::string& where, const std::set<std::string>& allowed) {
  for (const auto& [key, value] : obj.items()) {
    if (!allowed.count(key)) {
      return Invalid(absl::StrCat(where, ": unknown key ", Quoted(key), "; expected one of: ",
                                  absl::StrJoin(allowed, ", ")));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetString(const json& obj, const std::string& key, const std::string& where,
                                      std::optional<std::string> def = std::nullopt) {
  if (!obj.contains(key)) {
    if (def) return *def;
    return Invalid(absl::StrCat(where, ": \"", key, "\" is required"));
  }
  const json& v = obj.at(key);
  if (!v.is_string()) {
    return Invalid(absl::StrCat(where, ".", key, " must be a string, not ", TypeName(v)));
  }
  return v.get<std::string>();
}

absl::StatusOr<double> GetNumber(const json& obj, const std::string& key, const std::string& where) {
  if (!obj.contains(key)) return Invalid(absl::StrCat(where, ": \"", key, "\" is required"));
  const json& v = obj.at(key);
  if (!v.is_number()) {
    return Invalid(absl::StrCat(where, ".", key, " must be a number, not ", TypeName(v)));
  }
  return v.get<double>();
}

absl::StatusOr<int64_t> GetInt(const json& obj, const std::string& key, const std::string& where,
                               std::optional<int64_t> def = std::nullopt) {
  if (!obj.contains(key)) {
    if (def) return *def;
    return Invalid(absl::StrCat(where, ": \"", key, "\" is required"));
  }
  const json& v = obj.at(key);
  if (!v.is_number_integer()) {
    return Invalid(absl::StrCat(where, ".", key, " must be an integer, not ", Shown(v)));
  }
  return v.get<int64_t>();
}

absl::StatusOr<ParamValue> ChoiceValue(const json& v, const std::string& where) {
  if (v.is_string()) {
    // EnqueueTrial accepts string values up to this size too, so every choice can be enqueued.
    RETURN_IF_ERROR(CheckLength(v.get_ref<const std::string&>(), kMaxChoiceStringBytes, where + ": a string choice"));
    return ParamValue(v.get<std::string>());
  }
  if (v.is_boolean()) return ParamValue(v.get<bool>());
  if (v.is_number_integer()) return ParamValue(v.get<int64_t>());
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d)) return Invalid(absl::StrCat(where, ": choices must be finite"));
    return ParamValue(d);
  }
  return Invalid(absl::StrCat(where, ": a choice must be a string, number or boolean, not ",
                              TypeName(v)));
}

absl::StatusOr<ParamSpec> ParseParam(const json& j, size_t index) {
  std::string where = absl::StrCat("parameters[", index, "]");
  if (!j.is_object()) return Invalid(absl::StrCat(where, " must be an object, not ", TypeName(j)));
  ParamSpec p;
  ASSIGN_OR_RETURN(p.name, GetString(j, "name", where));
  if (p.name.empty()) return Invalid(absl::StrCat(where, ".name must not be empty"));
  RETURN_IF_ERROR(CheckLength(p.name, kMaxParamNameBytes, where + ".name"));
  where = absl::StrCat(where, " (\"", p.name, "\")");
  ASSIGN_OR_RETURN(std::string type, GetString(j, "type", where));
  if (type == "float") {
    p.type = ParamType::kFloat;
  } else if (type == "int") {
    p.type = ParamType::kInt;
  } else if (type == "categorical") {
    p.type = ParamType::kCategorical;
  } else {
    return Invalid(absl::StrCat(where, ": unknown type ", Quoted(type), "; expected float, int or categorical"));
  }
  if (j.contains("condition")) {
    const json& c = j.at("condition");
    if (!c.is_object() || !c.contains("parent") || !c.at("parent").is_string() || !c.contains("values") ||
        !c.at("values").is_array() || c.at("values").empty()) {
      return Invalid(absl::StrCat(where, ": condition must be {\"parent\": NAME, \"values\": [...]}"));
    }
    RETURN_IF_ERROR(CheckKeys(c, where + ".condition", {"parent", "values"}));
    if (c.at("values").size() > kMaxChoices) {
      return Invalid(absl::StrCat(where, ".condition: at most ", kMaxChoices, " values are accepted"));
    }
    p.parent = c.at("parent").get<std::string>();
    RETURN_IF_ERROR(CheckLength(p.parent, kMaxParamNameBytes, where + ".condition.parent"));
    for (const auto& v : c.at("values")) {
      ASSIGN_OR_RETURN(ParamValue pv, ChoiceValue(v, where + ".condition"));
      p.parent_values.push_back(std::move(pv));
    }
  }
  if (p.type == ParamType::kCategorical) {
    RETURN_IF_ERROR(CheckKeys(j, where, {"name", "type", "choices", "condition"}));
    if (!j.contains("choices") || !j.at("choices").is_array()) {
      return Invalid(absl::StrCat(where, ": categorical parameters need a \"choices\" array"));
    }
    if (j.at("choices").size() > kMaxChoices) {
      return Invalid(absl::StrCat(where, ": ", j.at("choices").size(), " choices; at most ", kMaxChoices,
                                  " choices per parameter are accepted (use an int or float range)"));
    }
    for (const auto& c : j.at("choices")) {
      ASSIGN_OR_RETURN(ParamValue v, ChoiceValue(c, where));
      p.choices.push_back(std::move(v));
    }
  } else {
    RETURN_IF_ERROR(CheckKeys(j, where, {"name", "type", "low", "high", "log", "step", "condition"}));
    ASSIGN_OR_RETURN(p.low, GetNumber(j, "low", where));
    ASSIGN_OR_RETURN(p.high, GetNumber(j, "high", where));
    if (j.contains("log")) {
      if (!j.at("log").is_boolean()) return Invalid(absl::StrCat(where, ".log must be true or false"));
      p.log = j.at("log").get<bool>();
    }
    if (j.contains("step")) {
      ASSIGN_OR_RETURN(double step, GetNumber(j, "step", where));
      p.step = step;
    }
    if (p.type == ParamType::kInt) {
      if (!j.at("low").is_number_integer() || !j.at("high").is_number_integer()) {
        return Invalid(absl::StrCat(where, ": an int parameter needs integer low and high"));
      }
      if (j.contains("step") && !j.at("step").is_number_integer()) {
        return Invalid(absl::StrCat(where, ": an int parameter needs an integer step"));
      }
      for (const char* key : {"low", "high", "step"}) {
        if (j.contains(key) && !IntWithin(j.at(key), kMaxIntMagnitude)) {
          return Invalid(absl::StrCat(where, ": ", key, " ", Shown(j.at(key)), " is too large; int parameters ",
                                      "must lie within +-2^53 (+-", kMaxIntMagnitude, ")"));
        }
      }
    }
  }
  if (auto s = ValidateParamSpec(p); !s.ok()) {
    return Invalid(absl::StrCat(where, ": ", s.message()));
  }
  return p;
}

// A data set is a directory directly under the worker's --data_root: refuse any name that
// could resolve elsewhere (the worker also refuses symlinks that lead out of it).
absl::Status CheckDatasetName(const std::string& name) {
  const std::string what = absl::StrCat("task.dataset ", Quoted(name));
  if (name.empty()) {
    return Invalid("task.dataset must not be empty: name a directory under the worker's --data_root, "
                   "e.g. \"fashion-mnist\"");
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return Invalid("task.dataset must not contain control characters");
  }
  if (name.front() == '/') {
    return Invalid(absl::StrCat(what, " is an absolute path; give the name of a directory under the "
                                "worker's --data_root"));
  }
  if (name.find('/') != std::string::npos) {
    return Invalid(absl::StrCat(what, " contains '/'; give the name of one directory directly under the "
                                "worker's --data_root"));
  }
  if (name == "." || name == "..") {
    return Invalid(absl::StrCat(what, " would be --data_root itself or the folder above it; give the name "
                                "of a directory under the worker's --data_root"));
  }
  if (name.size() > 255) return Invalid("task.dataset is longer than a directory name may be (255 bytes)");
  return absl::OkStatus();
}

// image_size, channels and resize: how a worker shapes the images of an image folder (IDX and
// CIFAR data keep theirs). Absent: 0 / "", the worker decides from the data.
absl::Status ParseImageOptions(const json& j, TaskSpec* task) {
  if (j.contains("image_size")) {
    const json& size = j.at("image_size");
    auto dim_ok = [](const json& v) {
      return v.is_number_integer() && v.get<int64_t>() >= 8 && v.get<int64_t>() <= 1024;
    };
    if (!size.is_array() || size.size() != 2 || !dim_ok(size[0]) || !dim_ok(size[1])) {
      return Invalid(absl::StrCat("task.image_size must be [height, width] with integers in [8, 1024], not ",
                                  Shown(size)));
    }
    task->image_height = size[0].get<int>();
    task->image_width = size[1].get<int>();
  }
  if (j.contains("channels")) {
    const json& ch = j.at("channels");
    if (!ch.is_number_integer() || (ch.get<int64_t>() != 1 && ch.get<int64_t>() != 3)) {
      return Invalid(absl::StrCat("task.channels must be 1 (grayscale) or 3 (RGB), not ", Shown(ch)));
    }
    task->channels = ch.get<int>();
  }
  if (j.contains("resize")) {
    const json& r = j.at("resize");
    if (!r.is_string() || (r != "stretch" && r != "pad" && r != "crop")) {
      return Invalid(absl::StrCat("task.resize must be \"stretch\", \"pad\" or \"crop\", not ", Shown(r)));
    }
    task->resize = r.get<std::string>();
  }
  return absl::OkStatus();
}

// task.partial_epochs: epoch k (1-based) trains on partial_epochs[k-1] of the training images, later epochs
// on all of them. Cheaper first rungs for a pruner (successive halving over data size as well as epochs).
absl::Status ParsePartialEpochs(const json& j, TaskSpec* task) {
  if (!j.contains("partial_epochs")) return absl::OkStatus();
  const json& p = j.at("partial_epochs");
  const std::string usage =
      absl::StrCat("task.partial_epochs must be a list of at most max_epochs (", task->max_epochs,
                   ") fractions in (0, 1], e.g. [0.33]: epoch 1 trains on a third of the training images");
  if (!p.is_array() || p.size() > static_cast<size_t>(task->max_epochs)) {
    return Invalid(
        absl::StrCat(usage, "; got ", p.is_array() ? absl::StrCat(p.size(), " entries") : TypeName(p)));
  }
  for (size_t i = 0; i < p.size(); ++i) {
    if (!p[i].is_number() || !(p[i].get<double>() > 0 && p[i].get<double>() <= 1)) {
      return Invalid(absl::StrCat(usage, "; entry ", i, " is ", Shown(p[i])));
    }
    task->partial_epochs.push_back(p[i].get<double>());
  }
  return absl::OkStatus();
}

absl::Status ParseTask(const json& j, TaskSpec* task) {
  if (!j.is_object()) return Invalid(absl::StrCat("task must be an object, not ", TypeName(j)));
  // The type decides which keys are allowed, so read it (as a string) first.
  ASSIGN_OR_RETURN(const std::string type, GetString(j, "type", "task", ""));
  RETURN_IF_ERROR(CheckLength(type, kMaxTypeNameBytes, "task.type"));
  if (type == "external") {
    RETURN_IF_ERROR(CheckKeys(j, "task", {"type", "max_steps"}));
    task->type = "external";
    ASSIGN_OR_RETURN(int64_t steps, GetInt(j, "max_steps", "task", 0));
    if (steps < 0 || steps > 1'000'000) return Invalid("task.max_steps must be in [0, 1000000] (0: no limit)");
    task->max_epochs = static_cast<int>(steps);
    task->val_examples = 0;
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(CheckKeys(j, "task",
                            {"type", "dataset", "train_examples", "val_examples", "test_examples",
                             "max_epochs", "data_seed", "executions_per_trial", "imbalance", "image_size",
                             "channels", "resize", "partial_epochs", "training_seed"}));
  ASSIGN_OR_RETURN(int64_t executions, GetInt(j, "executions_per_trial", "task", 1));
  if (executions < 1 || executions > 10) return Invalid("task.executions_per_trial must be in [1, 10]");
  task->executions_per_trial = static_cast<int>(executions);
  if (j.contains("imbalance")) {
    const json& im = j.at("imbalance");
    if (!im.is_object() || !im.contains("classes") || !im.at("classes").is_array() || im.at("classes").empty() ||
        !im.contains("keep_fraction") || !im.at("keep_fraction").is_number()) {
      return Invalid("task.imbalance must be {\"classes\": [class labels], \"keep_fraction\": 0..1}");
    }
    RETURN_IF_ERROR(CheckKeys(im, "task.imbalance", {"classes", "keep_fraction"}));
    for (const json& c : im.at("classes")) {
      // Judged as the integer itself: get<int>() would truncate 2^32 to class 0.
      if (!c.is_number_integer() || !IntWithin(c, 255) || (!c.is_number_unsigned() && c.get<int64_t>() < 0)) {
        return Invalid("task.imbalance.classes must be class labels (integers 0..255)");
      }
      task->imbalance_classes.push_back(c.get<int>());
    }
    task->imbalance_keep = im.at("keep_fraction").get<double>();
    if (!(task->imbalance_keep > 0 && task->imbalance_keep <= 1)) {
      return Invalid("task.imbalance.keep_fraction must be in (0, 1]");
    }
  }
  ASSIGN_OR_RETURN(task->type, GetString(j, "type", "task"));
  ASSIGN_OR_RETURN(task->dataset, GetString(j, "dataset", "task"));
  RETURN_IF_ERROR(CheckDatasetName(task->dataset));
  ASSIGN_OR_RETURN(int64_t train, GetInt(j, "train_examples", "task", 0));
  // No default is filled in: 0 lets the worker pick one that fits the data it finds.
  ASSIGN_OR_RETURN(int64_t val, GetInt(j, "val_examples", "task", 0));
  ASSIGN_OR_RETURN(int64_t test, GetInt(j, "test_examples", "task", 0));
  ASSIGN_OR_RETURN(int64_t epochs, GetInt(j, "max_epochs", "task", 10));
  ASSIGN_OR_RETURN(task->data_seed, GetInt(j, "data_seed", "task", 0));
  if (train < 0 || train > 10'000'000) return Invalid("task.train_examples must be in [0, 10000000] (0: all)");
  if (val < 0 || val > 10'000'000) {
    return Invalid("task.val_examples must be in [1, 10000000], or 0 / omitted for the default (all of val/, "
                   "10000 for IDX and CIFAR, 20% of an image folder without val/)");
  }
  if (test < 0 || test > 10'000'000) return Invalid("task.test_examples must be in [0, 10000000] (0: all)");
  if (epochs < 1 || epochs > 10000) return Invalid("task.max_epochs must be in [1, 10000]");
  task->train_examples = static_cast<int>(train);
  task->val_examples = static_cast<int>(val);
  task->test_examples = static_cast<int>(test);
  task->max_epochs = static_cast<int>(epochs);
  RETURN_IF_ERROR(ParsePartialEpochs(j, task));
  ASSIGN_OR_RETURN(int64_t training_seed, GetInt(j, "training_seed", "task", 0));
  if (training_seed < 0 || training_seed > 2147483647) {
    return Invalid("task.training_seed must be in [0, 2147483647] (0: the default seeds)");
  }
  task->training_seed = training_seed;
  return ParseImageOptions(j, task);
}

// Sorting finds a repeated choice in O(n log n); the pairwise check took 81 s for 480,000 choices.
// std::variant orders by alternative first, so 1 and 1.0 stay distinct, as == has them.
absl::Status CheckDistinct(const std::vector<ParamValue>& choices) {
  std::vector<const ParamValue*> sorted;
  sorted.reserve(choices.size());
  for (const ParamValue& v : choices) sorted.push_back(&v);
  std::sort(sorted.begin(), sorted.end(), [](const ParamValue* a, const ParamValue* b) { return *a < *b; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (*sorted[i] == *sorted[i - 1]) {
      return Invalid(absl::StrCat("choice ", ClientTextPrefix(ToString(*sorted[i])), " appears twice"));
    }
  }
  return absl::OkStatus();
}

// The spec object after parsing: every key, type and range.
absl::StatusOr<StudySpec> ParseSpecObject(const json& j) {
  if (!j.is_object()) return Invalid(absl::StrCat("the spec must be a JSON object, not ", TypeName(j)));
  RETURN_IF_ERROR(CheckKeys(j, "spec", {"name", "objective", "task", "parameters", "sampler",
                                        "pruner", "max_trials", "max_retries", "max_minutes"}));
  StudySpec spec;
  ASSIGN_OR_RETURN(spec.name, GetString(j, "name", "spec"));
  if (spec.name.empty()) return Invalid("spec.name must not be empty");
  RETURN_IF_ERROR(CheckLength(spec.name, kMaxStudyNameBytes, "spec.name"));

  if (!j.contains("task")) return Invalid("spec: \"task\" is required (e.g. {\"type\": \"cnn\", \"dataset\": \"fashion-mnist\"})");
  RETURN_IF_ERROR(ParseTask(j.at("task"), &spec.task));

  if (j.contains("objective")) {
    const json& o = j.at("objective");
    if (!o.is_object()) return Invalid("objective must be an object");
    RETURN_IF_ERROR(CheckKeys(o, "objective", {"metric", "direction"}));
    ASSIGN_OR_RETURN(spec.metric, GetString(o, "metric", "objective",
                                            spec.task.type == "external" ? "value" : "val_accuracy"));
    ASSIGN_OR_RETURN(std::string dir, GetString(o, "direction", "objective",
                                                spec.metric == "val_loss" ? "minimize" : "maximize"));
    RETURN_IF_ERROR(CheckLength(spec.metric, kMaxParamNameBytes, "objective.metric"));
    if (dir == "maximize") {
      spec.direction = Direction::kMaximize;
    } else if (dir == "minimize") {
      spec.direction = Direction::kMinimize;
    } else {
      return Invalid(absl::StrCat("objective.direction ", Quoted(dir), " must be maximize or minimize"));
    }
  } else if (spec.task.type == "external") {
    spec.metric = "value";
  }
  RETURN_IF_ERROR(ValidateTaskMetric(spec.task.type, spec.metric));

  if (!j.contains("parameters") || !j.at("parameters").is_array() || j.at("parameters").empty()) {
    return Invalid("spec: \"parameters\" must be a non-empty array of parameter definitions");
  }
  if (j.at("parameters").size() > kMaxParameters) {
    return Invalid(absl::StrCat("spec: ", j.at("parameters").size(), " parameters; at most ", kMaxParameters,
                                " parameters are accepted"));
  }
  std::set<std::string> names;
  size_t index = 0;
  for (const auto& pj : j.at("parameters")) {
    ASSIGN_OR_RETURN(ParamSpec p, ParseParam(pj, index));
    if (!names.insert(p.name).second) {
      return Invalid(absl::StrCat("parameters[", index, "]: duplicate parameter name \"", p.name, "\""));
    }
    if (!p.parent.empty()) {
      auto parent = std::find_if(spec.params.begin(), spec.params.end(),
                                 [&](const ParamSpec& q) { return q.name == p.parent; });
      if (parent == spec.params.end() || parent->type != ParamType::kCategorical) {
        return Invalid(absl::StrCat("parameters[", index, "] (\"", p.name, "\"): condition.parent \"",
                                    p.parent, "\" must be a categorical parameter defined before it"));
      }
      for (const ParamValue& v : p.parent_values) {
        if (std::find(parent->choices.begin(), parent->choices.end(), v) == parent->choices.end()) {
          return Invalid(absl::StrCat("parameters[", index, "] (\"", p.name, "\"): condition value ",
                                      ClientTextPrefix(ToString(v)), " is not a choice of \"", p.parent, "\""));
        }
      }
    }
    RETURN_IF_ERROR(ValidateTaskParam(spec.task.type, p));
    spec.params.push_back(std::move(p));
    ++index;
  }

  ASSIGN_OR_RETURN(int64_t max_trials, GetInt(j, "max_trials", "spec"));
  if (max_trials < 1 || max_trials > 1'000'000) {
    return Invalid(absl::StrCat("max_trials must be between 1 and 1000000 (got ", max_trials, ")"));
  }
  spec.max_trials = static_cast<int>(max_trials);
  ASSIGN_OR_RETURN(int64_t retries, GetInt(j, "max_retries", "spec", 1));
  if (retries < 0 || retries > 10) return Invalid("max_retries must be between 0 and 10");
  spec.max_retries = static_cast<int>(retries);
  if (j.contains("max_minutes")) {
    ASSIGN_OR_RETURN(spec.max_minutes, GetNumber(j, "max_minutes", "spec"));
    if (!(spec.max_minutes > 0) || spec.max_minutes > kMaxStudyMinutes) {
      return Invalid(absl::StrCat("max_minutes must be a number of minutes above 0 and at most ", kMaxStudyMinutes,
                                  " (a year; got ", spec.max_minutes, "); leave it out for no time budget"));
    }
  }

  spec.sampler = j.value("sampler", json{{"type", "random"}});
  spec.pruner = j.value("pruner", json{{"type", "none"}});
  if (!spec.sampler.is_object() || !spec.sampler.contains("type") || !spec.sampler.at("type").is_string()) {
    return Invalid("sampler must be an object with a string \"type\", e.g. {\"type\": \"tpe\"}");
  }
  if (!spec.pruner.is_array() &&
      (!spec.pruner.is_object() || !spec.pruner.contains("type") || !spec.pruner.at("type").is_string())) {
    return Invalid("pruner must be an object with a string \"type\" (e.g. {\"type\": \"asha\"}), or a list "
                   "of them (pruned when any says so)");
  }
  if (spec.sampler.contains("seed")) {
    const json& seed = spec.sampler.at("seed");
    if (!seed.is_number_integer() || seed.get<int64_t>() < 0) {
      return Invalid("sampler.seed must be a non-negative integer");
    }
    spec.seed = seed.get<uint64_t>();
  }
  return spec;
}

}  // namespace

absl::Status ValidateParamSpec(const ParamSpec& p) {
  if (p.type == ParamType::kCategorical) {
    if (p.choices.empty()) return Invalid("choices must not be empty");
    return CheckDistinct(p.choices);
  }
  if (!std::isfinite(p.low) || !std::isfinite(p.high)) return Invalid("low and high must be finite");
  if (p.low >= p.high) {
    return Invalid(absl::StrCat("low (", p.low, ") must be below high (", p.high, ")"));
  }
  // Finite ends can still be ~3.6e308 apart: then every (high - low) below is infinite or NaN.
  if (!std::isfinite(p.high - p.low)) {
    return Invalid(absl::StrCat("the range [", p.low, ", ", p.high, "] is too wide: high - low must be finite"));
  }
  if (p.type == ParamType::kInt) {
    const double limit = static_cast<double>(kMaxIntMagnitude);
    if (std::fabs(p.low) > limit || std::fabs(p.high) > limit || (p.step && *p.step > limit)) {
      return Invalid(absl::StrCat("int parameters must lie within +-2^53 (+-", kMaxIntMagnitude,
                                  "), with a step no larger"));
    }
  }
  if (p.log && p.low <= 0) {
    return Invalid(absl::StrCat("a log-scaled range needs low > 0 (got ", p.low, ")"));
  }
  if (p.step) {
    const double step = *p.step;
    if (p.log) return Invalid("step and log cannot be combined");
    if (!(step > 0) || !std::isfinite(step)) {
      return Invalid(absl::StrCat("step must be a positive finite number (got ", step, ")"));
    }
    const double n = (p.high - p.low) / step;
    if (step > p.high - p.low || std::fabs(n - std::round(n)) > 1e-9 * std::max(1.0, n)) {
      return Invalid(absl::StrCat("step ", step, " does not fit the range [", p.low, ", ", p.high,
                                  "]: high - low must be a multiple of step"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StudySpec> ParseStudySpec(const std::string& json_text) {
  ASSIGN_OR_RETURN(const json j, ParseClientJson(json_text, kMaxSpecBytes, "the spec"));
  // Every access below checks types first; this catches what a future edit might miss, so that
  // no nlohmann exception reaches a gRPC handler.
  try {
    return ParseSpecObject(j);
  } catch (const json::exception& e) {
    return Invalid(absl::StrCat("the spec cannot be read: ", ClientTextPrefix(e.what(), 300)));
  }
}

}  // namespace hpo::server
