#include "proto/common/param_json.h"

#include <cmath>
#include <map>

namespace hpo {

nlohmann::json ParamValueToJson(const hpo::v1::ParamValue& value) {
  switch (value.kind_case()) {
    case hpo::v1::ParamValue::kFloatValue: return value.float_value();
    case hpo::v1::ParamValue::kIntValue: return value.int_value();
    case hpo::v1::ParamValue::kStringValue: return value.string_value();
    case hpo::v1::ParamValue::kBoolValue: return value.bool_value();
    default: return nullptr;
  }
}

nlohmann::json ParamsToJson(const google::protobuf::Map<std::string, hpo::v1::ParamValue>& params) {
  std::map<std::string, hpo::v1::ParamValue> sorted(params.begin(), params.end());
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, value] : sorted) out[name] = ParamValueToJson(value);
  return out;
}

std::string TrialStateName(hpo::v1::TrialState state) {
  switch (state) {
    case hpo::v1::TRIAL_WAITING: return "WAITING";
    case hpo::v1::TRIAL_RUNNING: return "RUNNING";
    case hpo::v1::TRIAL_COMPLETED: return "COMPLETED";
    case hpo::v1::TRIAL_PRUNED: return "PRUNED";
    case hpo::v1::TRIAL_FAILED: return "FAILED";
    default: return "UNKNOWN";
  }
}

std::string StudyStateName(hpo::v1::StudyState state) {
  switch (state) {
    case hpo::v1::STUDY_RUNNING: return "RUNNING";
    case hpo::v1::STUDY_COMPLETED: return "COMPLETED";
    case hpo::v1::STUDY_STOPPED: return "STOPPED";
    default: return "UNKNOWN";
  }
}

nlohmann::json DataReportToJson(const hpo::v1::DataReport& d) {
  return {{"format", d.format()},
          {"class_names", std::vector<std::string>(d.class_names().begin(), d.class_names().end())},
          {"train_images", d.train_images()},
          {"val_images", d.val_images()},
          {"test_images", d.test_images()},
          {"channels", d.channels()},
          {"height", d.height()},
          {"width", d.width()},
          {"skipped_files", d.skipped_files()},
          {"skipped_examples", std::vector<std::string>(d.skipped_examples().begin(), d.skipped_examples().end())}};
}

int ConfusionSide(const hpo::v1::ClassReport& c) {
  return static_cast<int>(std::lround(std::sqrt(static_cast<double>(c.val_confusion_size()))));
}

nlohmann::json ClassReportToJson(const hpo::v1::ClassReport& c) {
  const int n = ConfusionSide(c);
  nlohmann::json confusion = nlohmann::json::array();
  for (int a = 0; a < n; ++a) {
    nlohmann::json row = nlohmann::json::array();
    for (int b = 0; b < n && a * n + b < c.val_confusion_size(); ++b) row.push_back(c.val_confusion(a * n + b));
    confusion.push_back(row);
  }
  return {{"train_count", std::vector<int64_t>(c.train_count().begin(), c.train_count().end())},
          {"val_count", std::vector<int64_t>(c.val_count().begin(), c.val_count().end())},
          {"train_recall", std::vector<double>(c.train_recall().begin(), c.train_recall().end())},
          {"val_recall", std::vector<double>(c.val_recall().begin(), c.val_recall().end())},
          {"val_confusion", confusion}};
}

std::string ClassName(const hpo::v1::Trial& t, int c) {
  if (c >= 0 && c < t.data().class_names_size()) return t.data().class_names(c);
  return std::to_string(c);
}

}  // namespace hpo
