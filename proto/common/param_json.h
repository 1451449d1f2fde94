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

// The DataReport as a JSON object with the proto's field names.
nlohmann::json DataReportToJson(const hpo::v1::DataReport& data);
// The ClassReport as a JSON object with the proto's field names; val_confusion as an n x n
// array of rows ([true class][predicted class]). Arrays the worker did not send are empty.
nlohmann::json ClassReportToJson(const hpo::v1::ClassReport& classes);
// The side of the ClassReport's n x n confusion matrix (0 when it has none).
int ConfusionSide(const hpo::v1::ClassReport& classes);
// How to show class label `c` of trial `t` to a person: its name from the trial's DataReport,
// or the label number when the worker sent no names.
std::string ClassName(const hpo::v1::Trial& t, int c);

}  // namespace hpo
