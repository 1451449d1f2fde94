#include "proto/common/param_json.h"

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

}  // namespace hpo
