#include "server/core/types.h"

#include "absl/strings/str_cat.h"

namespace hpo::server {

std::string ToString(const ParamValue& v) {
  if (auto* d = std::get_if<double>(&v)) return absl::StrCat(*d);
  if (auto* i = std::get_if<int64_t>(&v)) return absl::StrCat(*i);
  if (auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  return std::get<std::string>(v);
}

nlohmann::json ToJson(const ParamValue& v) {
  return std::visit([](const auto& x) { return nlohmann::json(x); }, v);
}

const char* StateName(TrialState s) {
  switch (s) {
    case TrialState::kWaiting: return "WAITING";
    case TrialState::kRunning: return "RUNNING";
    case TrialState::kCompleted: return "COMPLETED";
    case TrialState::kPruned: return "PRUNED";
    case TrialState::kFailed: return "FAILED";
  }
  return "UNKNOWN";
}

const char* StateName(StudyState s) {
  switch (s) {
    case StudyState::kRunning: return "RUNNING";
    case StudyState::kCompleted: return "COMPLETED";
    case StudyState::kStopped: return "STOPPED";
  }
  return "UNKNOWN";
}

bool IsActive(const ParamSpec& p, const ParamMap& chosen) {
  if (p.parent.empty()) return true;
  auto it = chosen.find(p.parent);
  if (it == chosen.end()) return false;
  for (const ParamValue& v : p.parent_values) {
    if (v == it->second) return true;
  }
  return false;
}

bool IsFinished(TrialState s) {
  return s == TrialState::kCompleted || s == TrialState::kPruned || s == TrialState::kFailed;
}

}  // namespace hpo::server
