#include "server/model/types.h"

#include <cmath>
#include <tuple>

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

bool operator==(const DataReport& a, const DataReport& b) {
  auto fields = [](const DataReport& r) {
    return std::tie(r.format, r.class_names, r.train_images, r.val_images, r.test_images, r.channels, r.height,
                    r.width, r.skipped_files, r.skipped_examples);
  };
  return fields(a) == fields(b);
}

bool operator==(const ClassReport& a, const ClassReport& b) {
  auto fields = [](const ClassReport& r) {
    return std::tie(r.train_count, r.val_count, r.train_recall, r.val_recall, r.val_confusion);
  };
  return fields(a) == fields(b);
}

int ClassReport::NumClasses() const {
  for (size_t n : {train_count.size(), val_count.size(), train_recall.size(), val_recall.size()}) {
    if (n > 0) return static_cast<int>(n);
  }
  return static_cast<int>(std::lround(std::sqrt(static_cast<double>(val_confusion.size()))));
}

std::string ClassName(const Trial& t, int c) {
  if (t.data && c >= 0 && c < static_cast<int>(t.data->class_names.size())) {
    return absl::StrCat("\"", t.data->class_names[c], "\"");
  }
  return absl::StrCat(c);
}

bool IsFinished(TrialState s) {
  return s == TrialState::kCompleted || s == TrialState::kPruned || s == TrialState::kFailed;
}

nlohmann::json ToJson(const DataReport& d) {
  return {{"format", d.format},
          {"class_names", d.class_names},
          {"train_images", d.train_images},
          {"val_images", d.val_images},
          {"test_images", d.test_images},
          {"channels", d.channels},
          {"height", d.height},
          {"width", d.width},
          {"skipped_files", d.skipped_files},
          {"skipped_examples", d.skipped_examples}};
}

}  // namespace hpo::server
