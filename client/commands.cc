#include "client/commands.h"

#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "proto/common/grpc_status.h"
#include "client/init.h"
#include "client/report.h"
#include "proto/common/param_json.h"
#include "proto/common/status_macros.h"
#include "proto/common/tls_files.h"

namespace hpo::client {
namespace {

using nlohmann::json;

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    default: return "ERROR";
  }
}

// Calls `rpc(context)` with a deadline; turns a failure into a message that says what to do.
template <typename Fn>
absl::Status Call(Context& ctx, Fn rpc) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(ctx.timeout));
  AddBearerToken(&context, ctx.token);
  grpc::Status s = rpc(&context);
  if (s.ok()) return absl::OkStatus();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE && s.error_message().find("shutting down") != std::string::npos) {
    return absl::UnavailableError(absl::StrCat("the coordinator at ", ctx.address, " is shutting down (",
                                               s.error_message(), "); try again once it is back"));
  }
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(absl::StrCat("cannot reach the coordinator at ", ctx.address, " (",
                                               s.error_message(),
                                               "): is hpo-server running there? (--coordinator)",
                                               ctx.tls ? " Does its certificate match --tls_ca and the address?"
                                                       : " If it serves TLS, pass --tls_ca."));
  }
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::DeadlineExceededError(absl::StrCat("the coordinator at ", ctx.address,
                                                    " did not answer within ",
                                                    absl::FormatDuration(ctx.timeout)));
  }
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(CodeName(s.error_code()), ": ", s.error_message()));
}

absl::StatusOr<int64_t> ParseStudyId(const std::vector<std::string>& args, const char* command) {
  if (args.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("usage: hpoctl ", command, " STUDY"));
  }
  try {
    size_t used = 0;
    int64_t id = std::stoll(args[0], &used);
    if (used == args[0].size() && id > 0) return id;
  } catch (const std::exception&) {
  }
  return absl::InvalidArgumentError(
      absl::StrCat("usage: hpoctl ", command, " STUDY: STUDY is a study id (a positive number, see "
                   "hpoctl list), not \"", args[0], "\""));
}

std::string Fmt(double v) { return absl::StrFormat("%.4f", v); }

json TrialJson(const hpo::v1::Trial& t) {
  json j;
  j["trial"] = t.number();
  j["id"] = t.id();
  j["state"] = TrialStateName(t.state());
  j["value"] = t.has_value() ? json(t.value()) : json(nullptr);
  j["best_step"] = t.has_value() ? json(t.best_step()) : json(nullptr);
  j["params"] = ParamsToJson(t.params());
  json values = json::array(), measurements = json::array();
  for (const auto& m : t.measurements()) {
    values.push_back(m.value());
    json metrics = json::object();
    for (const auto& [k, v] : std::map<std::string, double>(m.metrics().begin(), m.metrics().end())) {
      metrics[k] = v;
    }
    measurements.push_back({{"step", m.step()}, {"value", m.value()}, {"metrics", metrics}});
  }
  j["values"] = values;
  j["measurements"] = measurements;
  json final_metrics = json::object();
  for (const auto& [k, v] : std::map<std::string, double>(t.final_metrics().begin(), t.final_metrics().end())) {
    final_metrics[k] = v;
  }
  j["final_metrics"] = final_metrics;
  // What the worker found in the data set, and the names of the classes by label (empty when
  // the worker did not say).
  j["data"] = t.has_data() ? DataReportToJson(t.data()) : json(nullptr);
  j["class_names"] = std::vector<std::string>(t.data().class_names().begin(), t.data().class_names().end());
  if (t.has_classes()) {
    const json classes = ClassReportToJson(t.classes());
    j["classes"] = classes;
    if (!classes["val_recall"].empty()) j["val_recall"] = classes["val_recall"];  // per class, best epoch
    if (!classes["val_confusion"].empty()) {
      j["val_confusion_matrix"] = classes["val_confusion"];  // [true class][predicted class]
    }
  }
  j["reason"] = t.reason();
  j["worker"] = t.worker();
  j["retry_of"] = t.retry_of() >= 0 ? json(t.retry_of()) : json(nullptr);
  j["retried"] = t.retried();
  j["started_unix_ms"] = t.started_unix_ms() > 0 ? json(t.started_unix_ms()) : json(nullptr);
  j["finished_unix_ms"] = t.finished_unix_ms() > 0 ? json(t.finished_unix_ms()) : json(nullptr);
  return j;
}

json StudyJson(const hpo::v1::Study& s) {
  json j;
  j["id"] = s.id();
  j["name"] = s.name();
  j["state"] = StudyStateName(s.state());
  j["direction"] = s.direction() == hpo::v1::MINIMIZE ? "minimize" : "maximize";
  j["metric"] = s.metric();
  j["max_trials"] = s.max_trials();
  j["max_minutes"] = s.max_minutes() > 0 ? json(s.max_minutes()) : json(nullptr);
  j["time_budget_end_unix_ms"] = s.time_budget_end_unix_ms() > 0 ? json(s.time_budget_end_unix_ms()) : json(nullptr);
  j["counts"] = {{"waiting", s.counts().waiting()},     {"running", s.counts().running()},
                 {"completed", s.counts().completed()}, {"pruned", s.counts().pruned()},
                 {"failed", s.counts().failed()}};
  j["best_value"] = s.has_best() ? json(s.best_value()) : json(nullptr);
  j["best_trial"] = s.has_best() ? json(s.best_trial()) : json(nullptr);
  j["sampler"] = s.sampler();
  j["pruner"] = s.pruner();
  j["seed"] = s.seed();
  j["task"] = {{"type", s.task().type()},
               {"dataset", s.task().dataset()},
               {"train_examples", s.task().train_examples()},
               {"val_examples", s.task().val_examples()},
               {"max_epochs", s.task().max_epochs()}};
  if (s.task().image_height() > 0) j["task"]["image_size"] = {s.task().image_height(), s.task().image_width()};
  if (s.task().channels() > 0) j["task"]["channels"] = s.task().channels();
  if (!s.task().resize().empty()) j["task"]["resize"] = s.task().resize();
  // ListStudies sends summaries, without the spec: then there is none to show.
  if (!s.spec_json().empty()) j["spec"] = json::parse(s.spec_json(), nullptr, false);
  return j;
}

std::string ParamsText(const hpo::v1::Trial& t) {
  std::vector<std::string> parts;
  const json params = ParamsToJson(t.params());
  for (const auto& [k, v] : params.items()) {
    std::string text = v.is_string() ? v.get<std::string>() : v.dump();
    if (v.is_number_float()) text = absl::StrFormat("%.4g", v.get<double>());
    parts.push_back(absl::StrCat(k, "=", text));
  }
  return absl::StrJoin(parts, " ");
}

// "skipped 3 files (first: cats/x.txt: not an image)".
std::string SkippedText(const hpo::v1::DataReport& d) {
  std::string text = absl::StrCat("skipped ", d.skipped_files(), d.skipped_files() == 1 ? " file" : " files");
  if (d.skipped_examples_size() > 0) absl::StrAppend(&text, " (first: ", d.skipped_examples(0), ")");
  return text;
}

// One line about the data a trial trained on.
std::string DataText(const hpo::v1::DataReport& d) {
  std::string text = d.format().empty() ? "data set" : d.format();
  if (d.class_names_size() > 0) absl::StrAppend(&text, ", ", d.class_names_size(), " classes");
  if (d.height() > 0) {
    absl::StrAppend(&text, absl::StrFormat(", %dx%d images with %d channel%s", d.height(), d.width(), d.channels(),
                                           d.channels() == 1 ? "" : "s"));
  }
  absl::StrAppend(&text, absl::StrFormat("; %d training, %d validation, %d test images", d.train_images(),
                                         d.val_images(), d.test_images()));
  if (d.skipped_files() > 0) absl::StrAppend(&text, "; ", SkippedText(d));
  return text;
}

// Characters (UTF-8 code points) in `s`: what a terminal column count sees.
size_t Columns(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// `s` cut to at most `width` characters (never inside one) and padded with spaces to `width`,
// on the left (`right_align`) or on the right.
std::string Cell(const std::string& s, size_t width, bool right_align) {
  std::string cut;
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool starts = (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
    if (starts && n++ == width) break;
    cut += s[i];
  }
  const std::string pad(width - std::min(width, Columns(cut)), ' ');
  return right_align ? pad + cut : cut + pad;
}

// The best trial's validation recall per class and confusion matrix, rows and columns labelled
// by class name (columns cut to 10 characters); empty when the trial has no per-class figures.
std::string ClassTable(const hpo::v1::Trial& t) {
  const auto& c = t.classes();
  const int n = std::max(c.val_recall_size(), ConfusionSide(c));
  if (n == 0) return "";
  size_t name_width = 5, cell = 6;  // "class", and room for 5-digit counts
  for (int k = 0; k < n; ++k) name_width = std::max(name_width, Columns(ClassName(t, k)));
  for (int64_t v : c.val_confusion()) cell = std::max(cell, std::to_string(v).size() + 1);
  cell = std::max(cell, std::min<size_t>(name_width, 10) + 1);
  name_width = std::min<size_t>(name_width, 24);
  const bool matrix = ConfusionSide(c) == n;
  std::string out = matrix ? "  validation recall per class and confusion matrix (rows: true class, columns: "
                             "predicted):\n"
                           : "  validation recall per class:\n";
  absl::StrAppend(&out, "    ", Cell("class", name_width, false), " recall");
  if (matrix) {
    for (int b = 0; b < n; ++b) absl::StrAppend(&out, " ", Cell(ClassName(t, b), cell - 1, true));
  }
  absl::StrAppend(&out, "\n");
  for (int a = 0; a < n; ++a) {
    absl::StrAppend(&out, "    ", Cell(ClassName(t, a), name_width, false),
                    a < c.val_recall_size() ? absl::StrFormat(" %6.3f", c.val_recall(a)) : "      -");
    if (matrix) {
      for (int b = 0; b < n; ++b) {
        absl::StrAppend(&out, absl::StrFormat("%*d", static_cast<int>(cell), c.val_confusion(a * n + b)));
      }
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

// "6000 train, 2000 validation images, 4 epochs": 0 counts are the worker's defaults.
std::string TaskText(const hpo::v1::Task& t) {
  std::vector<std::string> parts;
  parts.push_back(t.train_examples() > 0 ? absl::StrCat(t.train_examples(), " train") : "all remaining train");
  parts.push_back(t.val_examples() > 0 ? absl::StrCat(t.val_examples(), " validation images")
                                       : "the default validation split");
  parts.push_back(absl::StrCat(t.max_epochs(), " epochs"));
  for (int k = 0; k < t.partial_epochs_size(); ++k) {  // "epoch 1 on 33% of the training images"
    parts.push_back(
        absl::StrFormat("epoch %d on %.4g%% of the training images", k + 1, 100 * t.partial_epochs(k)));
  }
  if (t.training_seed() != 0) parts.push_back(absl::StrCat("training seed ", t.training_seed()));
  if (t.image_height() > 0) {
    parts.push_back(absl::StrFormat("images resized to %dx%d", t.image_height(), t.image_width()));
  }
  if (t.channels() > 0) parts.push_back(absl::StrCat(t.channels(), t.channels() == 1 ? " channel" : " channels"));
  if (!t.resize().empty()) parts.push_back(absl::StrCat("resize ", t.resize()));
  return absl::StrJoin(parts, ", ");
}

std::string CountsText(const hpo::v1::Study& s) {
  const auto& c = s.counts();
  const int finished = c.completed() + c.pruned() + c.failed();
  std::string text = absl::StrFormat("%d finished of %d (%d completed, %d pruned, %d failed), %d running",
                                     finished, s.max_trials(), c.completed(), c.pruned(),
                                     c.failed(), c.running());
  if (c.waiting() > 0) absl::StrAppend(&text, ", ", c.waiting(), " waiting");
  if (s.max_minutes() > 0) {  // "; time budget 30 min, 12.5 left"
    absl::StrAppend(&text, "; time budget ", absl::StrFormat("%.4g", s.max_minutes()), " min");
    if (s.time_budget_end_unix_ms() == 0) {
      absl::StrAppend(&text, " from the first trial's start");
    } else if (const absl::Duration left = absl::FromUnixMillis(s.time_budget_end_unix_ms()) - absl::Now();
               left > absl::ZeroDuration()) {
      absl::StrAppend(&text, ", ", absl::StrFormat("%.1f", absl::ToDoubleMinutes(left)), " left");
    } else {
      absl::StrAppend(&text, ", used up (no trial starts)");
    }
  }
  if (s.has_best()) {
    absl::StrAppend(&text, "; best ", s.metric(), " ", Fmt(s.best_value()), " (trial ",
                    s.best_trial(), ")");
  }
  return text;
}

absl::StatusOr<hpo::v1::Study> FetchStudy(Context& ctx, int64_t id) {
  hpo::v1::GetStudyRequest req;
  req.set_study_id(id);
  hpo::v1::GetStudyResponse resp;
  absl::Status s = Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->GetStudy(c, req, &resp); });
  if (!s.ok()) return s;
  return resp.study();
}

// A server that hands back the token it was given would page forever.
absl::Status CheckNextPage(const std::string& given, const std::string& next, const char* rpc) {
  if (!next.empty() && next == given) {
    return absl::InternalError(absl::StrCat(rpc, ": the coordinator sent the same page token twice; stopped paging"));
  }
  return absl::OkStatus();
}

// Every trial of a study, a page (one RPC, with its own deadline) at a time.
absl::StatusOr<std::vector<hpo::v1::Trial>> FetchTrials(Context& ctx, int64_t id) {
  std::vector<hpo::v1::Trial> trials;
  hpo::v1::ListTrialsRequest req;
  req.set_study_id(id);
  for (;;) {
    hpo::v1::ListTrialsResponse resp;
    RETURN_IF_ERROR(Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->ListTrials(c, req, &resp); }));
    trials.insert(trials.end(), resp.trials().begin(), resp.trials().end());
    RETURN_IF_ERROR(CheckNextPage(req.page_token(), resp.next_page_token(), "ListTrials"));
    if (resp.next_page_token().empty()) return trials;
    req.set_page_token(resp.next_page_token());
  }
}

// Every study (summaries, without their specs), a page at a time.
absl::StatusOr<std::vector<hpo::v1::Study>> FetchStudies(Context& ctx) {
  std::vector<hpo::v1::Study> studies;
  hpo::v1::ListStudiesRequest req;
  for (;;) {
    hpo::v1::ListStudiesResponse resp;
    RETURN_IF_ERROR(Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->ListStudies(c, req, &resp); }));
    studies.insert(studies.end(), resp.studies().begin(), resp.studies().end());
    RETURN_IF_ERROR(CheckNextPage(req.page_token(), resp.next_page_token(), "ListStudies"));
    if (resp.next_page_token().empty()) return studies;
    req.set_page_token(resp.next_page_token());
  }
}

absl::Status Create(Context& ctx, const std::vector<std::string>& args) {
  if (args.size() != 1) return absl::InvalidArgumentError("usage: hpoctl create FILE");
  std::ifstream in(args[0]);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the spec file ", args[0]));
  std::stringstream text;
  text << in.rdbuf();
  hpo::v1::CreateStudyRequest req;
  req.set_spec_json(text.str());
  hpo::v1::CreateStudyResponse resp;
  absl::Status s = Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->CreateStudy(c, req, &resp); });
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(args[0], ": ", s.message()));
  const auto& st = resp.study();
  if (ctx.json) {
    std::cout << StudyJson(st).dump(2) << "\n";
  } else {
    const std::string minutes =
        st.max_minutes() > 0 ? absl::StrFormat(" within %.4g minutes", st.max_minutes()) : std::string();
    std::cout << absl::StrFormat("created study %d \"%s\": %s sampler, %s pruner, %d trials%s of task %s on %s\n",
                                 st.id(), st.name(), st.sampler(), st.pruner(), st.max_trials(), minutes,
                                 st.task().type(), st.task().dataset());
    std::cout << st.id() << "\n";
  }
  return absl::OkStatus();
}

absl::Status List(Context& ctx, const std::vector<std::string>& args) {
  if (!args.empty()) return absl::InvalidArgumentError("usage: hpoctl list");
  ASSIGN_OR_RETURN(const std::vector<hpo::v1::Study> studies, FetchStudies(ctx));
  if (ctx.json) {
    json out = json::array();
    for (const auto& st : studies) out.push_back(StudyJson(st));
    std::cout << out.dump(2) << "\n";
    return absl::OkStatus();
  }
  if (studies.empty()) {
    std::cout << "no studies yet: create one with hpoctl create FILE\n";
    return absl::OkStatus();
  }
  std::cout << absl::StrFormat("%-4s %-24s %-10s %-9s %-8s %s\n", "ID", "NAME", "STATE", "FINISHED",
                               "RUNNING", "BEST");
  for (const auto& st : studies) {
    const auto& c = st.counts();
    std::cout << absl::StrFormat("%-4d %-24s %-10s %-9s %-8d %s\n", st.id(), st.name(),
                                 StudyStateName(st.state()),
                                 absl::StrCat(c.completed() + c.pruned() + c.failed(), "/", st.max_trials()),
                                 c.running(),
                                 st.has_best() ? absl::StrCat(Fmt(st.best_value()), " (trial ", st.best_trial(), ")")
                                               : "-");
  }
  return absl::OkStatus();
}

absl::Status Show(Context& ctx, const std::vector<std::string>& args) {
  auto id = ParseStudyId(args, "show");
  if (!id.ok()) return id.status();
  auto st = FetchStudy(ctx, *id);
  if (!st.ok()) return st.status();
  if (ctx.json) {
    std::cout << StudyJson(*st).dump(2) << "\n";
    return absl::OkStatus();
  }
  std::cout << absl::StrFormat(
      "study %d \"%s\": %s\n  objective: %s %s\n  task: %s on %s (%s)\n  sampler: %s (seed %d), pruner: %s\n"
      "  trials: %s\n",
      st->id(), st->name(), StudyStateName(st->state()),
      st->direction() == hpo::v1::MINIMIZE ? "minimize" : "maximize", st->metric(), st->task().type(),
      st->task().dataset(), TaskText(st->task()), st->sampler(), st->seed(), st->pruner(), CountsText(*st));
  return absl::OkStatus();
}

absl::Status Trials(Context& ctx, const std::vector<std::string>& args) {
  auto id = ParseStudyId(args, "trials");
  if (!id.ok()) return id.status();
  auto trials = FetchTrials(ctx, *id);
  if (!trials.ok()) return trials.status();
  if (ctx.json) {
    json out = json::array();
    for (const auto& t : *trials) out.push_back(TrialJson(t));
    std::cout << out.dump(2) << "\n";
    return absl::OkStatus();
  }
  if (trials->empty()) {
    std::cout << "study " << *id << " has no trials yet\n";
    return absl::OkStatus();
  }
  std::cout << absl::StrFormat("%-4s %-10s %-7s %-5s %-40s %s\n", "#", "STATE", "VALUE", "EPOCH",
                               "VALUES PER EPOCH", "PARAMETERS");
  for (const auto& t : *trials) {
    std::vector<std::string> values;
    for (const auto& m : t.measurements()) values.push_back(absl::StrFormat("%.3f", m.value()));
    std::cout << absl::StrFormat("%-4d %-10s %-7s %-5s %-40s %s\n", t.number(), TrialStateName(t.state()),
                                 t.has_value() ? Fmt(t.value()) : "-",
                                 t.has_value() ? absl::StrCat(t.best_step()) : "-",
                                 values.empty() ? "-" : absl::StrJoin(values, " "), ParamsText(t));
    std::vector<std::string> notes;
    if (auto it = t.final_metrics().find("test_accuracy"); it != t.final_metrics().end()) {
      notes.push_back(absl::StrCat("test_accuracy ", Fmt(it->second)));
    }
    if (auto it = t.final_metrics().find("patience_stop"); it != t.final_metrics().end() && it->second > 0) {
      notes.push_back("stopped by patience (no improvement)");
    }
    if (t.classes().val_recall_size() > 0) {
      std::vector<std::string> r;
      for (int c = 0; c < t.classes().val_recall_size(); ++c) {
        r.push_back(absl::StrFormat("%s %.2f", ClassName(t, c), t.classes().val_recall(c)));
      }
      notes.push_back(absl::StrCat("validation recall per class: ", absl::StrJoin(r, ", ")));
    }
    if (t.data().skipped_files() > 0) notes.push_back(SkippedText(t.data()));
    if (t.retry_of() >= 0) notes.push_back(absl::StrCat("retry of trial ", t.retry_of()));
    if (!t.reason().empty()) notes.push_back(t.reason());
    if (!notes.empty()) std::cout << "     " << absl::StrJoin(notes, "; ") << "\n";
  }
  return absl::OkStatus();
}

absl::Status Best(Context& ctx, const std::vector<std::string>& args) {
  auto id = ParseStudyId(args, "best");
  if (!id.ok()) return id.status();
  hpo::v1::GetBestTrialRequest req;
  req.set_study_id(*id);
  hpo::v1::GetBestTrialResponse resp;
  absl::Status s = Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->GetBestTrial(c, req, &resp); });
  if (!s.ok()) return s;
  const auto& t = resp.trial();
  if (ctx.json) {
    std::cout << TrialJson(t).dump(2) << "\n";
    return absl::OkStatus();
  }
  std::cout << absl::StrFormat("best trial of study %d: trial %d, value %s at epoch %d\n", *id, t.number(),
                               Fmt(t.value()), t.best_step());
  for (const auto& [k, v] : std::map<std::string, double>(t.final_metrics().begin(), t.final_metrics().end())) {
    std::cout << "  " << k << ": " << Fmt(v) << "\n";
  }
  std::cout << "  parameters: " << ParamsText(t) << "\n";
  if (t.has_data()) std::cout << "  data: " << DataText(t.data()) << "\n";
  std::cout << ClassTable(t);
  return absl::OkStatus();
}

absl::Status Enqueue(Context& ctx, const std::vector<std::string>& args) {
  if (args.size() != 2) return absl::InvalidArgumentError("usage: hpoctl enqueue STUDY FILE (a JSON object of parameters)");
  auto id = ParseStudyId({args[0]}, "enqueue");
  if (!id.ok()) return id.status();
  std::ifstream in(args[1]);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the parameter file ", args[1]));
  std::stringstream text;
  text << in.rdbuf();
  hpo::v1::EnqueueTrialRequest req;
  req.set_study_id(*id);
  req.set_params_json(text.str());
  hpo::v1::EnqueueTrialResponse resp;
  absl::Status s = Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->EnqueueTrial(c, req, &resp); });
  if (!s.ok()) return s;
  if (ctx.json) {
    std::cout << TrialJson(resp.trial()).dump(2) << "\n";
  } else {
    std::cout << "queued trial " << resp.trial().number() << " of study " << *id << ": " << ParamsText(resp.trial())
              << "\n";
  }
  return absl::OkStatus();
}

absl::Status Diagnose(Context& ctx, const std::vector<std::string>& args) {
  auto id = ParseStudyId(args, "diagnose");
  if (!id.ok()) return id.status();
  hpo::v1::DiagnoseStudyRequest req;
  req.set_study_id(*id);
  if (ctx.trial >= 0) {
    req.set_has_trial(true);
    req.set_trial(ctx.trial);
  }
  hpo::v1::DiagnoseStudyResponse resp;
  absl::Status s = Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->DiagnoseStudy(c, req, &resp); });
  if (!s.ok()) return s;
  if (ctx.json) {
    json out = json::array();
    for (const auto& f : resp.findings()) {
      out.push_back({{"cause", f.cause()}, {"evidence", f.evidence()}, {"suggestion", f.suggestion()}});
    }
    std::cout << out.dump(2) << "\n";
    return absl::OkStatus();
  }
  int k = 0;
  for (const auto& f : resp.findings()) {
    std::cout << ++k << ". " << f.cause() << "\n   evidence: " << f.evidence() << "\n   try: " << f.suggestion()
              << "\n";
  }
  return absl::OkStatus();
}

absl::Status Report(Context& ctx, const std::vector<std::string>& args) {
  auto id = ParseStudyId(args, "report");
  if (!id.ok()) return id.status();
  if (ctx.out.empty()) return absl::InvalidArgumentError("usage: hpoctl report STUDY --out=FILE.html");
  auto st = FetchStudy(ctx, *id);
  if (!st.ok()) return st.status();
  auto trials = FetchTrials(ctx, *id);
  if (!trials.ok()) return trials.status();
  hpo::v1::DiagnoseStudyRequest req;
  req.set_study_id(*id);
  hpo::v1::DiagnoseStudyResponse resp;
  absl::Status s = Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->DiagnoseStudy(c, req, &resp); });
  if (!s.ok()) return s;
  std::ofstream out(ctx.out);
  out << RenderReport(*st, *trials, std::vector<hpo::v1::Finding>(resp.findings().begin(), resp.findings().end()));
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", ctx.out));
  std::cout << "wrote " << ctx.out << "\n";
  return absl::OkStatus();
}

absl::Status Stop(Context& ctx, const std::vector<std::string>& args) {
  auto id = ParseStudyId(args, "stop");
  if (!id.ok()) return id.status();
  hpo::v1::StopStudyRequest req;
  req.set_study_id(*id);
  hpo::v1::StopStudyResponse resp;
  absl::Status s = Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->StopStudy(c, req, &resp); });
  if (!s.ok()) return s;
  if (ctx.json) {
    std::cout << StudyJson(resp.study()).dump(2) << "\n";
  } else {
    std::cout << "study " << *id << " is " << StudyStateName(resp.study().state()) << ": "
              << CountsText(resp.study()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Delete(Context& ctx, const std::vector<std::string>& args) {
  auto id = ParseStudyId(args, "delete");
  if (!id.ok()) return id.status();
  hpo::v1::DeleteStudyRequest req;
  req.set_study_id(*id);
  hpo::v1::DeleteStudyResponse resp;
  RETURN_IF_ERROR(Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->DeleteStudy(c, req, &resp); }));
  const auto& st = resp.study();
  if (ctx.json) {
    json j = StudyJson(st);
    j["deleted"] = true;
    std::cout << j.dump(2) << "\n";
  } else {
    const auto& c = st.counts();
    const int trials = c.waiting() + c.running() + c.completed() + c.pruned() + c.failed();
    std::cout << "deleted study " << st.id() << " \"" << st.name() << "\" (" << StudyStateName(st.state())
              << ") with its " << trials << (trials == 1 ? " trial" : " trials") << " and their measurements: "
              << CountsText(st) << "\n";
  }
  return absl::OkStatus();
}

// Polls the study and prints what changed: new trials, each new epoch, each trial's end.
absl::Status Watch(Context& ctx, const std::vector<std::string>& args) {
  auto id = ParseStudyId(args, "watch");
  if (!id.ok()) return id.status();
  const auto start = std::chrono::steady_clock::now();
  auto stamp = [&] {
    return absl::StrFormat("[%6.1fs]", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  };
  auto emit = [&](const json& event, const std::string& text) {
    if (ctx.json) std::cout << event.dump() << "\n";
    else std::cout << stamp() << " " << text << "\n";
    std::cout.flush();
  };
  std::map<int, std::pair<int, int>> seen;  // number -> (state, measurements shown)
  std::string last_summary;
  auto unavailable_since = std::chrono::steady_clock::time_point();
  for (;;) {
    auto st = FetchStudy(ctx, *id);
    absl::StatusOr<std::vector<hpo::v1::Trial>> trials =
        st.ok() ? FetchTrials(ctx, *id) : absl::StatusOr<std::vector<hpo::v1::Trial>>(st.status());
    if (!trials.ok()) {
      const absl::Status& err = trials.status();
      if (err.code() != absl::StatusCode::kUnavailable && err.code() != absl::StatusCode::kDeadlineExceeded) {
        return err;
      }
      const auto now = std::chrono::steady_clock::now();
      if (unavailable_since == std::chrono::steady_clock::time_point()) {
        unavailable_since = now;
        emit({{"event", "unreachable"}, {"message", std::string(err.message())}},
             absl::StrCat("coordinator unreachable, retrying for up to 2 minutes: ", err.message()));
      } else if (now - unavailable_since > std::chrono::minutes(2)) {
        return err;
      }
      std::this_thread::sleep_for(absl::ToChronoMilliseconds(ctx.watch_interval));
      continue;
    }
    unavailable_since = std::chrono::steady_clock::time_point();
    for (const auto& t : *trials) {
      auto it = seen.find(t.number());
      if (it == seen.end()) {
        it = seen.emplace(t.number(), std::make_pair(static_cast<int>(hpo::v1::TRIAL_WAITING), 0)).first;
        if (t.state() != hpo::v1::TRIAL_WAITING) {
          emit({{"event", "started"}, {"trial", t.number()}, {"params", ParamsToJson(t.params())}},
               absl::StrCat("trial ", t.number(), " started on ", t.worker(), ": ", ParamsText(t)));
        }
      } else if (it->second.first == hpo::v1::TRIAL_WAITING && t.state() == hpo::v1::TRIAL_RUNNING) {
        // A trial seen waiting is a retry of a failed one, or one queued with `hpoctl enqueue`.
        emit({{"event", "started"}, {"trial", t.number()}, {"params", ParamsToJson(t.params())}},
             t.retry_of() >= 0 ? absl::StrCat("trial ", t.number(), " (retry of trial ", t.retry_of(),
                                              ") started on ", t.worker())
                               : absl::StrCat("trial ", t.number(), " (queued) started on ", t.worker(), ": ",
                                              ParamsText(t)));
      }
      for (int k = it->second.second; k < t.measurements_size(); ++k) {
        const auto& m = t.measurements(k);
        std::string extra;
        if (auto v = m.metrics().find("train_accuracy"); v != m.metrics().end()) {
          absl::StrAppend(&extra, ", train_accuracy ", Fmt(v->second));
        }
        if (auto v = m.metrics().find("epoch_seconds"); v != m.metrics().end()) {
          absl::StrAppend(&extra, absl::StrFormat(", %.1fs", v->second));
        }
        emit({{"event", "measurement"}, {"trial", t.number()}, {"step", m.step()}, {"value", m.value()}},
             absl::StrCat("trial ", t.number(), " epoch ", m.step(), ": ", st->metric(), " ",
                          Fmt(m.value()), extra));
      }
      if (t.state() != it->second.first &&
          (t.state() == hpo::v1::TRIAL_COMPLETED || t.state() == hpo::v1::TRIAL_PRUNED ||
           t.state() == hpo::v1::TRIAL_FAILED)) {
        std::string text = absl::StrCat("trial ", t.number(), " ", TrialStateName(t.state()));
        if (t.has_value()) absl::StrAppend(&text, ": best ", Fmt(t.value()), " at epoch ", t.best_step());
        if (auto v = t.final_metrics().find("test_accuracy"); v != t.final_metrics().end()) {
          absl::StrAppend(&text, ", test_accuracy ", Fmt(v->second));
        }
        if (!t.reason().empty()) absl::StrAppend(&text, " (", t.reason(), ")");
        emit({{"event", "finished"}, {"trial", TrialJson(t)}}, text);
      }
      it->second = {t.state(), t.measurements_size()};
    }
    const std::string summary = CountsText(*st);
    if (summary != last_summary) {
      emit({{"event", "progress"}, {"study", StudyJson(*st)}},
           absl::StrCat("study ", *id, " ", StudyStateName(st->state()), ": ", summary));
      last_summary = summary;
    }
    if (st->state() != hpo::v1::STUDY_RUNNING) {
      if (!ctx.json) {
        std::cout << "study " << *id << " is " << StudyStateName(st->state()) << ": " << summary << "\n";
      }
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(ctx.watch_interval));
  }
}

}  // namespace

namespace {

const char* RoleText(hpo::v1::Role r) {
  switch (r) {
    case hpo::v1::ROLE_ADMIN: return "admin";
    case hpo::v1::ROLE_WORKER: return "worker";
    case hpo::v1::ROLE_READER: return "reader";
    default: return "?";
  }
}

json TokenJson(const hpo::v1::TokenInfo& t) {
  return {{"id", t.id()},
          {"role", RoleText(t.role())},
          {"study", t.study_id() != 0 ? json(t.study_id()) : json(nullptr)},
          {"note", t.note()},
          {"created_unix_ms", t.created_unix_ms()},
          {"revoked", t.revoked()}};
}

std::string TokenLine(const hpo::v1::TokenInfo& t) {
  return absl::StrCat(Cell(absl::StrCat(t.id()), 5, true), "  ", Cell(RoleText(t.role()), 7, false), "  ",
                      Cell(t.study_id() != 0 ? absl::StrCat(t.study_id()) : "any", 6, false), "  ",
                      Cell(t.revoked() ? "revoked" : "active", 8, false), "  ",
                      absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(t.created_unix_ms()),
                                       absl::LocalTimeZone()),
                      "  ", t.note());
}

// hpoctl token create --role=ROLE [--study=ID] [--note=TEXT] | token list | token revoke ID
absl::Status Token(Context& ctx, const std::vector<std::string>& args) {
  constexpr char kUsage[] =
      "usage: hpoctl token create --role=admin|worker|reader [--study=ID] [--note=TEXT] | token list | "
      "token revoke ID";
  if (args.empty()) return absl::InvalidArgumentError(kUsage);
  if (args[0] == "create" && args.size() == 1) {
    hpo::v1::CreateTokenRequest req;
    if (ctx.role == "admin") req.set_role(hpo::v1::ROLE_ADMIN);
    else if (ctx.role == "worker") req.set_role(hpo::v1::ROLE_WORKER);
    else if (ctx.role == "reader") req.set_role(hpo::v1::ROLE_READER);
    else return absl::InvalidArgumentError(absl::StrCat(kUsage, ": --role must be admin, worker or reader"));
    if (ctx.study < 0) return absl::InvalidArgumentError(absl::StrCat(kUsage, ": --study is a study id"));
    req.set_study_id(ctx.study);
    req.set_note(ctx.note);
    hpo::v1::CreateTokenResponse resp;
    RETURN_IF_ERROR(Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->CreateToken(c, req, &resp); }));
    if (ctx.json) {
      json j = TokenJson(resp.info());
      j["token"] = resp.token();
      std::cout << j.dump() << "\n";
    } else {
      std::cerr << "token " << resp.info().id() << " (" << RoleText(resp.info().role())
                << (resp.info().study_id() != 0 ? absl::StrCat(", study ", resp.info().study_id()) : "")
                << "); it is shown only now: pass it as --token or HPO_TOKEN\n";
      std::cout << resp.token() << "\n";
    }
    return absl::OkStatus();
  }
  if (args[0] == "list" && args.size() == 1) {
    hpo::v1::ListTokensResponse resp;
    RETURN_IF_ERROR(Call(ctx, [&](grpc::ClientContext* c) {
      return ctx.stub->ListTokens(c, hpo::v1::ListTokensRequest(), &resp);
    }));
    if (ctx.json) {
      json j = json::array();
      for (const auto& t : resp.tokens()) j.push_back(TokenJson(t));
      std::cout << j.dump() << "\n";
    } else {
      std::cout << "   id  role     study   state     created              note\n";
      for (const auto& t : resp.tokens()) std::cout << TokenLine(t) << "\n";
    }
    return absl::OkStatus();
  }
  if (args[0] == "revoke" && args.size() == 2) {
    int64_t id = 0;
    if (!absl::SimpleAtoi(args[1], &id) || id <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("usage: hpoctl token revoke ID: ID is a token id (a positive "
                                                     "number, see hpoctl token list), not \"", args[1], "\""));
    }
    hpo::v1::RevokeTokenRequest req;
    req.set_token_id(id);
    hpo::v1::RevokeTokenResponse resp;
    RETURN_IF_ERROR(Call(ctx, [&](grpc::ClientContext* c) { return ctx.stub->RevokeToken(c, req, &resp); }));
    if (ctx.json) {
      std::cout << TokenJson(resp.info()).dump() << "\n";
    } else {
      std::cout << "token " << resp.info().id() << " revoked\n";
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(kUsage);
}

}  // namespace

absl::Status RunCommand(Context& ctx, const std::string& command, const std::vector<std::string>& args) {
  if (command == "create") return Create(ctx, args);
  if (command == "list") return List(ctx, args);
  if (command == "show") return Show(ctx, args);
  if (command == "trials") return Trials(ctx, args);
  if (command == "best") return Best(ctx, args);
  if (command == "watch") return Watch(ctx, args);
  if (command == "stop") return Stop(ctx, args);
  if (command == "delete") return Delete(ctx, args);
  if (command == "enqueue") return Enqueue(ctx, args);
  if (command == "diagnose") return Diagnose(ctx, args);
  if (command == "report") return Report(ctx, args);
  if (command == "token") return Token(ctx, args);
  if (command == "init") return Init(args, ctx.out, std::cout, std::cerr);  // client/init.h; no coordinator
  return absl::InvalidArgumentError(absl::StrCat(
      "usage: unknown command \"", command, "\"; commands: create, list, show, trials, best, watch, stop, "
      "delete, enqueue, diagnose, report, init (hpoctl --help)"));
}

}  // namespace hpo::client
