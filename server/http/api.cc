#include "server/http/api.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/model/study_summary.h"

namespace hpo::server {
namespace {

using nlohmann::json;

// Strings from workers (class names from folder names, reasons) need not be UTF-8: replace
// what is not, rather than fail.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

ApiReply Reply(int status, const json& j) { return {status, Dump(j)}; }
ApiReply Error(int status, const std::string& message) { return Reply(status, json{{"error", message}}); }

ApiReply FromStatus(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      return Error(404, std::string(s.message()));
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return Error(400, std::string(s.message()));
    default:
      return Error(500, std::string(s.message()));
  }
}

json Time(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return nullptr;
  return absl::ToUnixMillis(t) / 1000.0;
}

json Number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json Lower(const char* s) { return absl::AsciiStrToLower(s); }

json ParamSpecJson(const ParamSpec& p) {
  json j{{"name", p.name}};
  switch (p.type) {
    case ParamType::kFloat:
      j["type"] = "float";
      break;
    case ParamType::kInt:
      j["type"] = "int";
      break;
    case ParamType::kCategorical:
      j["type"] = "categorical";
      break;
  }
  if (p.type == ParamType::kCategorical) {
    json choices = json::array();
    for (const ParamValue& v : p.choices) choices.push_back(ToJson(v));
    j["choices"] = choices;
  } else {
    j["low"] = p.low;
    j["high"] = p.high;
    j["log"] = p.log;
    if (p.step.has_value()) j["step"] = *p.step;
  }
  if (!p.parent.empty()) {
    json values = json::array();
    for (const ParamValue& v : p.parent_values) values.push_back(ToJson(v));
    j["condition"] = {{"parent", p.parent}, {"values", values}};
  }
  return j;
}

json StudySummaryJson(const StudySummary& summary) {
  const Study& s = summary.study;
  const TrialCounts& c = summary.counts;
  json j{{"id", s.id},
         {"name", s.spec.name},
         {"state", Lower(StateName(s.state))},
         {"metric", s.spec.metric},
         {"direction", s.spec.direction == Direction::kMaximize ? "maximize" : "minimize"},
         {"task", s.spec.task.type},
         {"dataset", s.spec.task.dataset},
         {"max_epochs", s.spec.task.max_epochs},
         {"sampler", s.spec.sampler.value("type", "")},
         {"pruner", s.spec.pruner.value("type", "")},
         {"max_trials", s.spec.max_trials},
         {"used_trials", summary.used_slots},
         {"finished_trials", c.completed + c.pruned + c.failed},
         {"counts",
          {{"waiting", c.waiting},
           {"running", c.running},
           {"completed", c.completed},
           {"pruned", c.pruned},
           {"failed", c.failed}}},
         {"created", Time(s.created)},
         {"max_minutes", s.spec.max_minutes > 0 ? json(s.spec.max_minutes) : json(nullptr)},
         {"time_budget_end", Time(TimeBudgetEnd(s.spec, summary.first_started))}};
  if (summary.best) {
    j["best"] = {{"trial", summary.best->number}, {"value", Number(summary.best->value)}, {"step", summary.best->step}};
  } else {
    j["best"] = nullptr;
  }
  return j;
}

json StudySummaryJson(const Study& s) { return StudySummaryJson(Summarize(s)); }

json TrialJson(const Trial& t, bool with_measurements) {
  json params = json::object();
  for (const auto& [name, v] : t.params) params[name] = ToJson(v);
  json final_metrics = json::object();
  for (const auto& [name, v] : t.final_metrics) final_metrics[name] = Number(v);
  json j{{"id", t.id},
         {"number", t.number},
         {"state", Lower(StateName(t.state))},
         {"params", params},
         {"value", t.value.has_value() ? Number(*t.value) : json(nullptr)},
         {"best_step", t.best_step},
         {"final_metrics", final_metrics},
         {"reason", t.reason},
         {"worker", t.worker},
         {"retry_of", t.retry_of >= 0 ? json(t.retry_of) : json(nullptr)},
         {"retried", t.retried},
         {"created", Time(t.created)},
         {"started", Time(t.started)},
         {"finished", Time(t.finished)},
         {"steps", t.measurements.size()}};
  if (!t.measurements.empty()) {
    j["last_step"] = t.measurements.back().step;
  } else {
    j["last_step"] = nullptr;
  }
  if (with_measurements) {
    json ms = json::array();
    for (const Measurement& m : t.measurements) {
      json metrics = json::object();
      for (const auto& [name, v] : m.metrics) metrics[name] = Number(v);
      ms.push_back(
          {{"step", m.step}, {"value", Number(m.value)}, {"metrics", metrics}, {"time", Time(m.time)}});
    }
    j["measurements"] = ms;
  }
  if (t.data.has_value()) {
    j["data"] = ToJson(*t.data);
  } else {
    j["data"] = nullptr;
  }
  if (t.classes.has_value() && !t.classes->empty()) {
    const ClassReport& c = *t.classes;
    json recall = json::array(), train_recall = json::array();
    for (double v : c.val_recall) recall.push_back(Number(v));
    for (double v : c.train_recall) train_recall.push_back(Number(v));
    const int n = c.NumClasses();
    json confusion = json::array();
    if (n > 0 && c.val_confusion.size() == static_cast<size_t>(n) * n) {
      for (int r = 0; r < n; ++r) {
        confusion.push_back(
            std::vector<int64_t>(c.val_confusion.begin() + r * n, c.val_confusion.begin() + (r + 1) * n));
      }
    }
    j["classes"] = {{"n", n},
                    {"train_count", c.train_count},
                    {"val_count", c.val_count},
                    {"train_recall", train_recall},
                    {"val_recall", recall},
                    {"val_confusion", confusion}};
  } else {
    j["classes"] = nullptr;
  }
  return j;
}

json StudyJson(const Study& s) {
  json j = StudySummaryJson(s);
  json params = json::array();
  for (const ParamSpec& p : s.spec.params) params.push_back(ParamSpecJson(p));
  j["params"] = params;
  j["spec"] = json::parse(s.spec_json, nullptr, false);
  if (j["spec"].is_discarded()) j["spec"] = nullptr;
  return j;
}

// A non-negative decimal integer of at most 18 digits (no sign, no spaces).
bool ParseId(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
  }
  return absl::SimpleAtoi(s, out);
}

// Checks that `query` has only names from `allowed`, each at most once.
absl::Status CheckQuery(const std::multimap<std::string, std::string>& query,
                        const std::set<std::string>& allowed) {
  for (const auto& [name, value] : query) {
    if (allowed.count(name) == 0) {
      std::string names;
      for (const std::string& a : allowed) absl::StrAppend(&names, names.empty() ? "" : ", ", a);
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown query parameter \"", name.substr(0, 64), "\"",
          allowed.empty() ? "; this address takes none" : absl::StrCat("; this address takes ", names)));
    }
    if (query.count(name) > 1)
      return absl::InvalidArgumentError(absl::StrCat("query parameter \"", name, "\" given twice"));
  }
  return absl::OkStatus();
}

const std::string* QueryValue(const std::multimap<std::string, std::string>& query, const std::string& name) {
  auto it = query.find(name);
  return it == query.end() ? nullptr : &it->second;
}

ApiReply Trials(const Study& s, const std::multimap<std::string, std::string>& query) {
  if (auto st = CheckQuery(query, {"state", "measurements"}); !st.ok()) return FromStatus(st);
  std::set<std::string> states;
  if (const std::string* v = QueryValue(query, "state")) {
    static const std::set<std::string> kStates = {"waiting", "running", "completed", "pruned", "failed"};
    for (absl::string_view part : absl::StrSplit(*v, ',')) {
      const std::string name = absl::AsciiStrToLower(part);
      if (kStates.count(name) == 0) {
        return Error(400, absl::StrCat("state: \"", name.substr(0, 64),
                                       "\" is not one of waiting, running, completed, pruned, failed"));
      }
      states.insert(name);
    }
  }
  bool with_measurements = true;
  if (const std::string* v = QueryValue(query, "measurements")) {
    if (*v == "true" || *v == "1") {
      with_measurements = true;
    } else if (*v == "false" || *v == "0") {
      with_measurements = false;
    } else {
      return Error(400, "measurements: must be true or false");
    }
  }
  json out = json::array();
  for (const Trial& t : s.trials) {
    json tj = TrialJson(t, with_measurements);
    if (!states.empty() && states.count(tj["state"].get<std::string>()) == 0) continue;
    out.push_back(std::move(tj));
  }
  return Reply(200, out);
}

ApiReply Diagnosis(const Coordinator& c, const Study& s,
                   const std::multimap<std::string, std::string>& query) {
  if (auto st = CheckQuery(query, {"trial"}); !st.ok()) return FromStatus(st);
  int64_t trial = -1;
  if (const std::string* v = QueryValue(query, "trial")) {
    if (!ParseId(*v, &trial) || trial >= static_cast<int64_t>(s.trials.size())) {
      return Error(400, absl::StrCat("trial: must be a trial number from 0 to ",
                                     static_cast<int64_t>(s.trials.size()) - 1, " of study ", s.id));
    }
  }
  auto findings = c.Diagnose(s.id, static_cast<int>(trial));
  if (!findings.ok()) return FromStatus(findings.status());
  json out = json::array();
  for (const Finding& f : *findings) {
    json figures = json::object();
    for (const auto& [k, v] : f.figures) figures[k] = Number(v);
    out.push_back({{"cause", f.cause},
                   {"evidence", f.evidence},
                   {"suggestion", f.suggestion},
                   {"severity", Number(f.severity)},
                   {"figures", figures}});
  }
  return Reply(200,
               json{{"study", s.id}, {"trial", trial >= 0 ? json(trial) : json(nullptr)}, {"findings", out}});
}

}  // namespace

std::string ApiError(const std::string& message) { return Dump(json{{"error", message}}); }

ApiReply HandleApi(const Coordinator& c, const std::string& path,
                   const std::multimap<std::string, std::string>& query) {
  std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  if (parts.empty() || parts[0] != "api") return Error(404, "no such address");
  if (parts.size() == 1 || parts[1] != "studies") {
    return Error(404, "no such address: the API is under /api/studies");
  }
  if (parts.size() == 2) {
    if (auto st = CheckQuery(query, {}); !st.ok()) return FromStatus(st);
    json out = json::array();
    int64_t after = 0;
    for (;;) {  // a page at a time: no copy of every study at once
      std::vector<StudySummary> page = c.ListStudySummaries(after, 1000);
      if (page.empty()) break;
      for (const StudySummary& s : page) out.push_back(StudySummaryJson(s));
      after = page.back().study.id;
    }
    return Reply(200, out);
  }
  int64_t study_id = 0;
  if (!ParseId(parts[2], &study_id))
    return Error(404, absl::StrCat("no study with id \"", parts[2].substr(0, 64), "\""));
  auto study = c.GetStudy(study_id);
  if (!study.ok()) return FromStatus(study.status());
  if (parts.size() == 3) {
    if (auto st = CheckQuery(query, {}); !st.ok()) return FromStatus(st);
    return Reply(200, StudyJson(*study));
  }
  if (parts[3] == "trials") {
    if (parts.size() == 4) {
      // Finished trials' metrics are read back from storage (Coordinator::GetStudy).
      auto detailed = c.GetStudyWithDetails(study_id);
      if (!detailed.ok()) return FromStatus(detailed.status());
      return Trials(*detailed, query);
    }
    if (parts.size() == 5) {
      if (auto st = CheckQuery(query, {}); !st.ok()) return FromStatus(st);
      int64_t number = 0;
      if (!ParseId(parts[4], &number) || number >= static_cast<int64_t>(study->trials.size())) {
        return Error(404, absl::StrCat("study ", study_id, " has no trial \"", parts[4].substr(0, 64), "\""));
      }
      auto page = c.ListTrials(study_id, static_cast<int>(number), 1);
      if (!page.ok()) return FromStatus(page.status());
      if (page->trials.empty()) return Error(404, absl::StrCat("study ", study_id, " has no trial ", number));
      json j = TrialJson(page->trials.front(), true);
      j["study"] = StudySummaryJson(*study);
      return Reply(200, j);
    }
  }
  if (parts[3] == "diagnosis" && parts.size() == 4) return Diagnosis(c, *study, query);
  return Error(404, "no such address");
}

}  // namespace hpo::server
