#include "server/model/task_catalog.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hpo::server {
namespace {

enum class Kind { kReal, kInteger, kString, kBool };

struct TaskParam {
  const char* name;
  Kind kind;
  double min, max;        // inclusive bounds for numbers
  bool max_exclusive;
  std::vector<std::string> allowed;  // for strings
  const char* help;
};

const std::vector<TaskParam>& CnnParams() {
  static const auto* params = new std::vector<TaskParam>{
      {"learning_rate", Kind::kReal, 1e-8, 10, false, {}, "optimizer step size"},
      {"optimizer", Kind::kString, 0, 0, false, {"adam", "adamw", "rmsprop", "sgd"}, "optimizer"},
      {"nesterov", Kind::kBool, 0, 1, false, {}, "Nesterov momentum (sgd)"},
      {"lr_schedule", Kind::kString, 0, 0, false, {"constant", "cosine", "step"}, "learning-rate schedule"},
      {"label_smoothing", Kind::kReal, 0, 0.5, true, {}, "label smoothing of the loss"},
      {"patience", Kind::kInteger, 0, 1000, false, {}, "epochs without improvement before the trial ends (0: off)"},
      {"activation", Kind::kString, 0, 0, false, {"relu", "elu", "gelu"}, "activation function"},
      {"global_pooling", Kind::kString, 0, 0, false, {"flatten", "average"}, "how the last feature map becomes a vector"},
      {"class_weighting", Kind::kString, 0, 0, false, {"none", "inverse", "sqrt_inverse"}, "class weights in the loss"},
      {"sampling", Kind::kString, 0, 0, false, {"shuffle", "balanced"}, "balanced: oversample minority classes"},
      {"aug_rotation", Kind::kReal, 0, 180, false, {}, "random rotation, degrees"},
      {"aug_shift", Kind::kReal, 0, 0.5, false, {}, "random shift, fraction of width and height"},
      {"aug_zoom", Kind::kReal, 0, 0.9, false, {}, "random zoom, fraction"},
      {"aug_shear", Kind::kReal, 0, 60, false, {}, "random shear, degrees"},
      {"aug_hflip", Kind::kBool, 0, 1, false, {}, "random horizontal flips"},
      {"aug_fill", Kind::kString, 0, 0, false, {"constant", "nearest", "reflect"}, "fill mode of augmented pixels"},
      {"momentum", Kind::kReal, 0, 1, true, {}, "SGD/RMSprop momentum (default 0.9 for sgd)"},
      {"batch_size", Kind::kInteger, 1, 65536, false, {}, "training batch size"},
      {"weight_decay", Kind::kReal, 0, 1, false, {}, "L2 penalty"},
      {"conv_blocks", Kind::kInteger, 1, 8, false, {}, "conv-ReLU-pool blocks"},
      {"filters", Kind::kInteger, 1, 1024, false, {}, "filters of the first block (doubling per block)"},
      {"kernel_size", Kind::kInteger, 1, 11, false, {}, "convolution kernel size"},
      {"dense_units", Kind::kInteger, 0, 8192, false, {}, "hidden dense units (0: none)"},
      {"dropout", Kind::kReal, 0, 1, true, {}, "dropout before the dense layers"},
      {"batch_norm", Kind::kBool, 0, 1, false, {}, "batch normalization after each conv"},
  };
  return *params;
}

std::string KnownNames() {
  std::vector<std::string> names;
  for (const auto& p : CnnParams()) names.push_back(p.name);
  return absl::StrJoin(names, ", ");
}

absl::Status CheckNumber(const TaskParam& tp, const std::string& what, double v) {
  if (!std::isfinite(v) || v < tp.min || v > tp.max || (tp.max_exclusive && v >= tp.max)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter \"", tp.name, "\": ", what, " ", v, " is outside what the cnn task accepts [",
        tp.min, ", ", tp.max, tp.max_exclusive ? ")" : "]", " (", tp.help, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckChoice(const TaskParam& tp, const ParamValue& v) {
  const std::string shown = ToString(v);
  switch (tp.kind) {
    case Kind::kString: {
      const auto* s = std::get_if<std::string>(&v);
      if (s == nullptr || std::find(tp.allowed.begin(), tp.allowed.end(), *s) == tp.allowed.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("parameter \"", tp.name, "\": choice ", shown,
                         " is not supported by the cnn task; use one of: ",
                         absl::StrJoin(tp.allowed, ", ")));
      }
      return absl::OkStatus();
    }
    case Kind::kBool:
      if (std::holds_alternative<bool>(v)) return absl::OkStatus();
      if (auto* i = std::get_if<int64_t>(&v); i && (*i == 0 || *i == 1)) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(
          "parameter \"", tp.name, "\": choice ", shown, " is not a boolean; use true or false"));
    case Kind::kInteger:
      if (auto* i = std::get_if<int64_t>(&v)) return CheckNumber(tp, "choice", static_cast<double>(*i));
      return absl::InvalidArgumentError(absl::StrCat(
          "parameter \"", tp.name, "\": choice ", shown, " must be an integer"));
    case Kind::kReal:
      if (auto* i = std::get_if<int64_t>(&v)) return CheckNumber(tp, "choice", static_cast<double>(*i));
      if (auto* d = std::get_if<double>(&v)) return CheckNumber(tp, "choice", *d);
      return absl::InvalidArgumentError(absl::StrCat(
          "parameter \"", tp.name, "\": choice ", shown, " must be a number"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> TaskTypes() { return {"cnn", "external"}; }

absl::Status ValidateTaskMetric(const std::string& type, const std::string& metric) {
  if (type == "external") {
    if (metric.empty()) return absl::InvalidArgumentError("objective.metric must not be empty");
    return absl::OkStatus();
  }
  if (type != "cnn") {
    return absl::InvalidArgumentError(
        absl::StrCat("task.type \"", type, "\" is unknown; supported: cnn, external"));
  }
  if (metric != "val_accuracy" && metric != "val_loss" && metric != "val_balanced_accuracy" &&
      metric != "val_macro_f1") {
    return absl::InvalidArgumentError(absl::StrCat("objective.metric \"", metric,
                                                   "\" is not reported by the cnn task; use val_accuracy, "
                                                   "val_balanced_accuracy, val_macro_f1 or val_loss"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTaskParam(const std::string& type, const ParamSpec& p) {
  if (type == "external") return absl::OkStatus();  // the client's objective defines its parameters
  const auto& params = CnnParams();
  auto it = std::find_if(params.begin(), params.end(),
                         [&](const TaskParam& tp) { return p.name == tp.name; });
  if (it == params.end()) {
    return absl::InvalidArgumentError(absl::StrCat("parameter \"", p.name,
                                                   "\" is not a parameter of the ", type,
                                                   " task; known parameters: ", KnownNames()));
  }
  const TaskParam& tp = *it;
  switch (p.type) {
    case ParamType::kCategorical:
      for (const auto& c : p.choices) {
        if (auto s = CheckChoice(tp, c); !s.ok()) return s;
      }
      return absl::OkStatus();
    case ParamType::kInt:
    case ParamType::kFloat:
      if (tp.kind == Kind::kString || tp.kind == Kind::kBool) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameter \"", p.name, "\" must be categorical (", tp.help, ")"));
      }
      if (tp.kind == Kind::kInteger && p.type == ParamType::kFloat) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameter \"", p.name, "\" takes integers: declare it with \"type\": \"int\""));
      }
      if (auto s = CheckNumber(tp, "low", p.low); !s.ok()) return s;
      return CheckNumber(tp, "high", p.high);
  }
  return absl::OkStatus();
}

}  // namespace hpo::server
