// Conversions between wire parameter values and JSON, shared by hpoctl and hpo-worker.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "hpo/v1/study.pb.h"

namespace hpo {

nlohmann::json ParamValueToJson(const hpo::v1::ParamValue& value);
// Object from parameter name to value, keys sorted.
nlohmann::json ParamsToJson(const google::protobuf::Map<std::string, hpo::v1::ParamValue>& params);
std::string TrialStateName(hpo::v1::TrialState state);   // "COMPLETED", ...
std::string StudyStateName(hpo::v1::StudyState state);   // "RUNNING", ...

}  // namespace hpo
