#include "server/rpc/coordinator_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <map>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "proto/common/grpc_status.h"
#include "proto/common/json_limits.h"
#include "proto/common/status_macros.h"
#include "server/http/rpc_metrics.h"
#include "server/rpc/proto_convert.h"

namespace hpo::server {
namespace {

// Documented limits on what clients send (README "Limits"); each refusal is INVALID_ARGUMENT
// with the limit in the message. Everything here is stored, logged or sent back to every
// reader, so nothing may be as large as the 4 MiB a request can be.
constexpr size_t kMaxWorkerIdBytes = 256;
constexpr size_t kMaxTaskTypes = 16;
constexpr size_t kMaxTaskTypeBytes = 64;
constexpr size_t kMaxReasonBytes = 4096;  // longer reasons are cut, with a note, not refused
constexpr size_t kMaxMetrics = 64;        // per measurement, and final metrics per trial
constexpr size_t kMaxMetricNameBytes = 128;
constexpr size_t kMaxParamsJsonBytes = 64 << 10;
constexpr size_t kMaxParamStringBytes = 1024;  // a string value in EnqueueTrial's params_json
// How much of a reason a log line carries.
constexpr size_t kLoggedReasonBytes = 200;

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Runs a handler's body. An exception that escapes a callback handler would otherwise reach
// the client as UNIMPLEMENTED with no message (unary) or terminate the server (stream).
// Each call is recorded in the metrics (server/http/rpc_metrics.h), when there are any.
template <typename Body>
absl::Status GuardedBody(const char* rpc, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    spdlog::error("{}: uncaught exception: {}", rpc, ClientTextPrefix(e.what(), 300));
    return absl::InternalError(absl::StrCat(rpc, " failed inside the coordinator: ",
                                            ClientTextPrefix(e.what(), 300)));
  } catch (...) {
    spdlog::error("{}: uncaught exception of unknown type", rpc);
    return absl::InternalError(absl::StrCat(rpc, " failed inside the coordinator (unknown exception)"));
  }
}
template <typename Body>
absl::Status Guarded(const char* rpc, Body&& body) {
  const absl::Time start = absl::Now();
  absl::Status status = GuardedBody(rpc, std::forward<Body>(body));
  if (RpcMetrics* m = GetRpcMetrics()) m->RpcDone(rpc, status.code(), absl::Now() - start);
  return status;
}

absl::Status CheckLength(const std::string& s, size_t max_bytes, const char* what) {
  if (s.size() <= max_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " is ", s.size(), " bytes; at most ", max_bytes, " bytes are accepted"));
}

absl::Status CheckWorkerId(const std::string& worker_id) {
  return CheckLength(worker_id, kMaxWorkerIdBytes, "worker_id");
}

// `what` is "measurement metrics" or "final_metrics".
absl::Status CheckMetrics(const google::protobuf::Map<std::string, double>& metrics, const char* what) {
  if (metrics.size() > kMaxMetrics) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", metrics.size(), " metrics; at most ", kMaxMetrics, " metrics are accepted"));
  }
  for (const auto& [name, value] : metrics) {
    if (name.size() > kMaxMetricNameBytes) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the metric name \"", ClientTextPrefix(name),
                                                     "\" is longer than ", kMaxMetricNameBytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

// A failure reason is kept even when too long (the worker is failing anyway): cut at a UTF-8
// character boundary, so that it still serializes, with a note of the original size.
std::string TruncateReason(const std::string& reason) {
  if (reason.size() <= kMaxReasonBytes) return reason;
  size_t cut = kMaxReasonBytes;
  while (cut > 0 && (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(reason.substr(0, cut), " ... [truncated: ", reason.size(), " bytes]");
}

// EnqueueTrial's JSON, checked here before the coordinator parses it: bounded size and depth,
// and only scalar values (no parameter takes an array or object) with short strings, so that
// nothing the coordinator quotes back can be large or deep.
absl::Status CheckParamsJson(const std::string& params_json) {
  ASSIGN_OR_RETURN(const nlohmann::json j, ParseClientJson(params_json, kMaxParamsJsonBytes, "params_json"));
  if (!j.is_object()) return absl::OkStatus();  // the coordinator says what it must be
  for (const auto& [name, v] : j.items()) {
    if (v.is_array() || v.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("parameter \"", ClientTextPrefix(name),
                                                     "\": a value must be a number, string or boolean"));
    }
    if (v.is_string() && v.get_ref<const std::string&>().size() > kMaxParamStringBytes) {
      return absl::InvalidArgumentError(absl::StrCat("parameter \"", ClientTextPrefix(name), "\": a string value ",
                                                     "may be at most ", kMaxParamStringBytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

void ToProto(const TokenRecord& t, hpo::v1::TokenInfo* out) {
  out->set_id(t.id);
  switch (t.role) {
    case Role::kAdmin: out->set_role(hpo::v1::ROLE_ADMIN); break;
    case Role::kWorker: out->set_role(hpo::v1::ROLE_WORKER); break;
    case Role::kReader: out->set_role(hpo::v1::ROLE_READER); break;
  }
  out->set_study_id(t.study_id);
  out->set_note(t.note);
  out->set_created_unix_ms(t.created_unix_ms);
  out->set_revoked(t.revoked);
}

// A stream refused before it starts (too many open, or the server is draining).
class RefusedStream final
    : public grpc::ServerBidiReactor<hpo::v1::ProgressReport, hpo::v1::ProgressDecision> {
 public:
  explicit RefusedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// Page tokens: opaque to clients (web-safe base64 of "studies:AFTER_ID" or
// "trials:STUDY:NEXT_NUMBER"); checked, never trusted.
std::string StudyPageToken(int64_t after_id) { return absl::WebSafeBase64Escape(absl::StrCat("studies:", after_id)); }
std::string TrialPageToken(int64_t study_id, int next_number) {
  return absl::WebSafeBase64Escape(absl::StrCat("trials:", study_id, ":", next_number));
}

absl::Status BadPageToken(const char* rpc) {
  return absl::InvalidArgumentError(absl::StrCat(
      "page_token is not a ", rpc, " page token of this server (for this request): pass the next_page_token of "
      "the previous response unchanged, or none for the first page"));
}

// The id the page starts after; 0 for the first page.
absl::StatusOr<int64_t> ParseStudyPageToken(const std::string& token) {
  if (token.empty()) return 0;
  std::string text;
  if (token.size() > 100 || !absl::WebSafeBase64Unescape(token, &text)) return BadPageToken("ListStudies");
  absl::string_view rest = text;
  int64_t after = 0;
  if (!absl::ConsumePrefix(&rest, "studies:") || !absl::SimpleAtoi(rest, &after) || after < 0) {
    return BadPageToken("ListStudies");
  }
  return after;
}

// The trial number the page starts at; 0 for the first page.
absl::StatusOr<int> ParseTrialPageToken(const std::string& token, int64_t study_id) {
  if (token.empty()) return 0;
  std::string text;
  if (token.size() > 100 || !absl::WebSafeBase64Unescape(token, &text)) return BadPageToken("ListTrials");
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  int64_t study = 0;
  int next = 0;
  if (parts.size() != 3 || parts[0] != "trials" || !absl::SimpleAtoi(parts[1], &study) || study != study_id ||
      !absl::SimpleAtoi(parts[2], &next) || next < 0) {
    return BadPageToken("ListTrials");
  }
  return next;
}

// page_size as asked: 0 is `def`, more than `max` is `max`, negative is refused.
absl::StatusOr<int> PageSize(int32_t asked, int def, int max) {
  if (asked < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size is ", asked, "; give 0 for the default (", def, ") or up to ", max));
  }
  return asked == 0 ? def : std::min<int>(asked, max);
}

std::string Who(const Caller& caller) {
  return caller.authenticated ? absl::StrCat(" by token ", caller.token.id) : std::string();
}

}  // namespace

// One trial's measurement stream: read a report, decide, write the decision, read the next.
// Only one read or write is ever in flight. The service may end the stream from outside its
// reactions (BeginShutdown, EndIdleStreams), so the state below is guarded: a stream storing a
// report or sending its decision is ended right after that write, never with a write in flight.
class ReportReactor final
    : public grpc::ServerBidiReactor<hpo::v1::ProgressReport, hpo::v1::ProgressDecision> {
 public:
  ReportReactor(CoordinatorService* service, std::optional<std::string> authorization)
      : service_(service), c_(service->c_), auth_(service->auth_), authorization_(std::move(authorization)) {
    NextRead();
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      last_message_ = absl::Now();
      if (finished_) return;  // ended from outside while the read was pending
      if (ok) busy_ = true;
    }
    if (!ok) {
      // gRPC says only "no message" both when the worker closed its side and when a message
      // arrived that is not a ProgressReport. Parsing clears the message first, so a cleared
      // marker tells the second case, which must not end with OK as if nothing happened.
      if (report_.trial_id() != kUnread) {
        End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "a message on the measurement stream is not a ProgressReport"));
      } else {
        End(grpc::Status::OK);
      }
      return;
    }
    absl::Status s = Guarded("ReportProgress", [&] { return Decide(); });
    {
      absl::MutexLock lock(&mu_);
      busy_ = false;
      if (s.ok()) writing_ = true;  // an end asked for meanwhile waits for this write
    }
    if (!s.ok()) {
      End(ToGrpcStatus(s));
      return;
    }
    StartWrite(&decision_);
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> end;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) end = grpc::Status(grpc::StatusCode::CANCELLED, "the worker went away");
      else if (pending_end_.has_value()) end = std::move(pending_end_);
      else if (finish_after_write_) end = grpc::Status::OK;
      if (!end.has_value()) reading_ = true;
    }
    if (end.has_value()) {
      End(*std::move(end));
    } else {
      NextRead();
    }
  }

  void OnDone() override {
    service_->Unregister(this);
    delete this;
  }

  // Ends the stream with `status`: now when it is waiting for a message, else right after the
  // decision being worked on is written. Thread-safe; a no-op on an ended stream.
  void EndFromOutside(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || pending_end_.has_value()) return;
      if (busy_ || writing_) {
        pending_end_ = std::move(status);
        return;
      }
      finished_ = true;
    }
    Finish(std::move(status));  // a read may be pending: allowed; its OnReadDone sees finished_
  }

  // Whether the stream has waited for a message since before `cutoff`.
  bool IdleSince(absl::Time cutoff) const {
    absl::MutexLock lock(&mu_);
    return reading_ && !finished_ && !pending_end_.has_value() && last_message_ < cutoff;
  }

 private:
  // No real trial has this id (ids are positive).
  static constexpr int64_t kUnread = std::numeric_limits<int64_t>::min();

  void NextRead() {
    report_.Clear();
    report_.set_trial_id(kUnread);
    {
      absl::MutexLock lock(&mu_);
      reading_ = true;
    }
    StartRead(&report_);
  }

  // Ends the stream from inside a reaction (no write in flight).
  void End(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(std::move(status));
  }

  // Stores report_ and fills decision_.
  absl::Status Decide() {
    // Checked on every message, so that a token revoked while its stream is open stops at once.
    Caller caller;
    if (auth_ != nullptr) {
      ASSIGN_OR_RETURN(caller, auth_->Check("ReportProgress", authorization_ ? &*authorization_ : nullptr, 0));
    }
    RETURN_IF_ERROR(CheckWorkerId(report_.worker_id()));
    // Without one, proto3 reads step 0 and value 0, which would be stored as a real measurement.
    if (!report_.has_measurement()) {
      return absl::InvalidArgumentError(absl::StrCat("the report for trial id ", report_.trial_id(),
                                                     " has no measurement (step and value)"));
    }
    RETURN_IF_ERROR(CheckMetrics(report_.measurement().metrics(), "measurement metrics"));
    std::optional<DataReport> data;
    if (report_.has_data()) data = FromProto(report_.data());
    ASSIGN_OR_RETURN(Decision d, c_->Report(report_.trial_id(), FromProto(report_.measurement()), std::move(data),
                                            caller.Holder(report_.worker_id())));
    decision_.Clear();
    decision_.set_step(report_.measurement().step());
    switch (d.action) {
      case Action::kContinue: decision_.set_action(hpo::v1::ProgressDecision::CONTINUE); break;
      case Action::kPrune: decision_.set_action(hpo::v1::ProgressDecision::PRUNE); break;
      case Action::kStop: decision_.set_action(hpo::v1::ProgressDecision::STOP); break;
    }
    decision_.set_reason(d.reason);
    if (RpcMetrics* m = GetRpcMetrics()) {
      m->Reported(d.action == Action::kContinue ? "continue" : d.action == Action::kPrune ? "prune" : "stop");
    }
    finish_after_write_ = d.action != Action::kContinue;
    if (finish_after_write_) {
      spdlog::info("trial id {} pruned at step {}: {}", report_.trial_id(), report_.measurement().step(),
                   d.reason);
    }
    return absl::OkStatus();
  }

  CoordinatorService* const service_;
  Coordinator* const c_;
  const Authorizer* const auth_;
  const std::optional<std::string> authorization_;
  // Touched only by the one reaction running at a time (reads and writes alternate).
  hpo::v1::ProgressReport report_;
  hpo::v1::ProgressDecision decision_;
  bool finish_after_write_ = false;

  mutable absl::Mutex mu_;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;   // a read is pending
  bool busy_ ABSL_GUARDED_BY(mu_) = false;      // a report is being stored and decided
  bool writing_ ABSL_GUARDED_BY(mu_) = false;   // a decision is being sent
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish was called
  std::optional<grpc::Status> pending_end_ ABSL_GUARDED_BY(mu_);  // end after the current write
  absl::Time last_message_ ABSL_GUARDED_BY(mu_) = absl::Now();
};


std::optional<std::string> AuthorizationOf(const grpc::ServerContextBase& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

CoordinatorService::CoordinatorService(Coordinator* coordinator, const Authorizer* auth, ServiceOptions options)
    : c_(coordinator), auth_(auth), options_(options) {}

absl::StatusOr<Caller> CoordinatorService::Authorize(grpc::CallbackServerContext* ctx, const char* rpc,
                                                     int64_t study_id) const {
  if (draining_.load()) return absl::UnavailableError(kShuttingDownMessage);
  if (auth_ == nullptr) return Caller();
  const std::optional<std::string> authorization = AuthorizationOf(*ctx);
  return auth_->Check(rpc, authorization ? &*authorization : nullptr, study_id);
}

void CoordinatorService::BeginShutdown() {
  absl::MutexLock lock(&streams_mu_);
  draining_.store(true);
  // OnDone (which unregisters, then deletes a stream) needs streams_mu_, so none is deleted here.
  for (ReportReactor* stream : streams_) {
    stream->EndFromOutside(grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDownMessage));
  }
}

absl::Duration CoordinatorService::StreamIdleTimeout() const {
  return options_.stream_idle_timeout > absl::ZeroDuration() ? options_.stream_idle_timeout
                                                             : c_->options().lease_timeout;
}

int CoordinatorService::EndIdleStreams() {
  const absl::Duration idle = StreamIdleTimeout();
  const absl::Time cutoff = absl::Now() - idle;
  int ended = 0;
  absl::MutexLock lock(&streams_mu_);
  for (ReportReactor* stream : streams_) {
    if (!stream->IdleSince(cutoff)) continue;
    stream->EndFromOutside(grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("the measurement stream had no message for ", absl::FormatDuration(idle),
                     " (the lease timeout), so the coordinator closed it; open a new one to report")));
    ++ended;
  }
  if (ended > 0) spdlog::info("closed {} measurement stream(s) idle for {}", ended, absl::FormatDuration(idle));
  return ended;
}

int CoordinatorService::OpenStreams() const {
  absl::MutexLock lock(&streams_mu_);
  return static_cast<int>(streams_.size());
}

void CoordinatorService::Unregister(ReportReactor* stream) {
  absl::MutexLock lock(&streams_mu_);
  streams_.erase(stream);
}

void ConfigureServerBuilder(grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  builder->SetMaxSendMessageSize(kMaxSendMessageBytes);
}

grpc::ServerUnaryReactor* CoordinatorService::CreateStudy(grpc::CallbackServerContext* ctx,
                                                          const hpo::v1::CreateStudyRequest* req,
                                                          hpo::v1::CreateStudyResponse* resp) {
  return Done(ctx, Guarded("CreateStudy", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "CreateStudy", 0));
    auto s = c_->CreateStudy(req->spec_json());
    if (s.ok()) {
      ToProto(*s, resp->mutable_study());
      spdlog::info("created study {} \"{}\"{}", s->id, ClientTextPrefix(s->spec.name), Who(caller));
    }
    return s.status();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::GetStudy(grpc::CallbackServerContext* ctx,
                                                       const hpo::v1::GetStudyRequest* req,
                                                       hpo::v1::GetStudyResponse* resp) {
  return Done(ctx, Guarded("GetStudy", [&]() -> absl::Status {
    RETURN_IF_ERROR(Authorize(ctx, "GetStudy", req->study_id()).status());
    auto s = c_->GetStudySummary(req->study_id());
    if (s.ok()) ToProto(*s, resp->mutable_study());
    return s.status();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::ListStudies(grpc::CallbackServerContext* ctx,
                                                          const hpo::v1::ListStudiesRequest* req,
                                                          hpo::v1::ListStudiesResponse* resp) {
  return Done(ctx, Guarded("ListStudies", [&]() -> absl::Status {
    RETURN_IF_ERROR(Authorize(ctx, "ListStudies", 0).status());
    ASSIGN_OR_RETURN(const int page_size, PageSize(req->page_size(), kDefaultStudiesPerPage, kMaxStudiesPerPage));
    ASSIGN_OR_RETURN(const int64_t after, ParseStudyPageToken(req->page_token()));
    size_t bytes = 0;
    int64_t last = 0;
    bool more = false;
    for (const StudySummary& s : c_->ListStudySummaries(after, page_size + 1)) {  // by id
      if (resp->studies_size() >= page_size) {
        more = true;
        break;
      }
      hpo::v1::Study summary;
      ToProto(s, &summary);
      if (!req->full()) summary.clear_spec_json();
      const size_t size = summary.ByteSizeLong();
      if (resp->studies_size() > 0 && bytes + size > kMaxPageBytes) {
        more = true;
        break;
      }
      bytes += size;
      last = s.study.id;
      *resp->add_studies() = std::move(summary);
    }
    if (more) resp->set_next_page_token(StudyPageToken(last));
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::DeleteStudy(grpc::CallbackServerContext* ctx,
                                                          const hpo::v1::DeleteStudyRequest* req,
                                                          hpo::v1::DeleteStudyResponse* resp) {
  return Done(ctx, Guarded("DeleteStudy", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "DeleteStudy", req->study_id()));
    ASSIGN_OR_RETURN(const StudySummary before, c_->GetStudySummary(req->study_id()));
    RETURN_IF_ERROR(c_->DeleteStudy(req->study_id()));
    ToProto(before, resp->mutable_study());
    resp->mutable_study()->clear_spec_json();
    spdlog::warn("study {} \"{}\" deleted with its {} trial(s){}", before.study.id,
                 ClientTextPrefix(before.study.spec.name), before.trials, Who(caller));
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::StopStudy(grpc::CallbackServerContext* ctx,
                                                        const hpo::v1::StopStudyRequest* req,
                                                        hpo::v1::StopStudyResponse* resp) {
  return Done(ctx, Guarded("StopStudy", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "StopStudy", req->study_id()));
    auto s = c_->StopStudy(req->study_id());
    if (s.ok()) spdlog::info("study {} stopped{}", s->id, Who(caller));
    if (s.ok()) ToProto(*s, resp->mutable_study());
    return s.status();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::ListTrials(grpc::CallbackServerContext* ctx,
                                                         const hpo::v1::ListTrialsRequest* req,
                                                         hpo::v1::ListTrialsResponse* resp) {
  return Done(ctx, Guarded("ListTrials", [&]() -> absl::Status {
    RETURN_IF_ERROR(Authorize(ctx, "ListTrials", req->study_id()).status());
    ASSIGN_OR_RETURN(const int page_size, PageSize(req->page_size(), kDefaultTrialsPerPage, kMaxTrialsPerPage));
    ASSIGN_OR_RETURN(const int first, ParseTrialPageToken(req->page_token(), req->study_id()));
    ASSIGN_OR_RETURN(const TrialPage page, c_->ListTrials(req->study_id(), first, page_size));
    size_t bytes = 0;
    for (const Trial& t : page.trials) {
      hpo::v1::Trial proto;
      ToProto(t, &proto);
      const size_t size = proto.ByteSizeLong();
      if (resp->trials_size() > 0 && bytes + size > kMaxPageBytes) break;
      bytes += size;
      *resp->add_trials() = std::move(proto);
    }
    const int next = first + resp->trials_size();
    if (next < page.total) resp->set_next_page_token(TrialPageToken(req->study_id(), next));
    resp->set_total(page.total);
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::GetBestTrial(grpc::CallbackServerContext* ctx,
                                                           const hpo::v1::GetBestTrialRequest* req,
                                                           hpo::v1::GetBestTrialResponse* resp) {
  return Done(ctx, Guarded("GetBestTrial", [&]() -> absl::Status {
    RETURN_IF_ERROR(Authorize(ctx, "GetBestTrial", req->study_id()).status());
    auto t = c_->BestTrial(req->study_id());
    if (t.ok()) ToProto(*t, resp->mutable_trial());
    return t.status();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::DiagnoseStudy(grpc::CallbackServerContext* ctx,
                                                            const hpo::v1::DiagnoseStudyRequest* req,
                                                            hpo::v1::DiagnoseStudyResponse* resp) {
  return Done(ctx, Guarded("DiagnoseStudy", [&]() -> absl::Status {
    RETURN_IF_ERROR(Authorize(ctx, "DiagnoseStudy", req->study_id()).status());
    auto findings = c_->Diagnose(req->study_id(), req->has_trial() ? req->trial() : -1);
    if (findings.ok()) {
      for (const Finding& f : *findings) {
        auto* pf = resp->add_findings();
        pf->set_cause(f.cause);
        pf->set_evidence(f.evidence);
        pf->set_suggestion(f.suggestion);
        for (const auto& [k, v] : f.figures) (*pf->mutable_figures())[k] = v;
      }
    }
    return findings.status();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::EnqueueTrial(grpc::CallbackServerContext* ctx,
                                                           const hpo::v1::EnqueueTrialRequest* req,
                                                           hpo::v1::EnqueueTrialResponse* resp) {
  return Done(ctx, Guarded("EnqueueTrial", [&]() -> absl::Status {
    RETURN_IF_ERROR(Authorize(ctx, "EnqueueTrial", req->study_id()).status());
    RETURN_IF_ERROR(CheckParamsJson(req->params_json()));
    auto t = c_->EnqueueTrial(req->study_id(), req->params_json());
    if (t.ok()) ToProto(*t, resp->mutable_trial());
    return t.status();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::AskTrial(grpc::CallbackServerContext* ctx,
                                                       const hpo::v1::AskTrialRequest* req,
                                                       hpo::v1::AskTrialResponse* resp) {
  // Checked here; the ask itself (which may run a sampler for seconds) runs on the coordinator's
  // sampling pool, and the reactor finishes there: gRPC's callback threads never wait for a sampler.
  const absl::Time start = absl::Now();
  std::string holder;
  int64_t study_id = 0;
  std::vector<std::string> types;
  absl::Status checked = GuardedBody("AskTrial", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "AskTrial", req->study_id()));
    // A worker token bound to a study asks for that study's trials when the request names none.
    study_id = req->study_id() == 0 && caller.authenticated && caller.token.role == Role::kWorker
                   ? caller.token.study_id
                   : req->study_id();
    if (req->worker_id().empty()) return absl::InvalidArgumentError("worker_id must be set (e.g. host:pid)");
    RETURN_IF_ERROR(CheckWorkerId(req->worker_id()));
    if (static_cast<size_t>(req->task_types_size()) > kMaxTaskTypes) {
      return absl::InvalidArgumentError(absl::StrCat("task_types: ", req->task_types_size(),
                                                     " types; at most ", kMaxTaskTypes, " are accepted"));
    }
    for (const std::string& type : req->task_types()) RETURN_IF_ERROR(CheckLength(type, kMaxTaskTypeBytes, "a task type"));
    types.assign(req->task_types().begin(), req->task_types().end());
    holder = caller.Holder(req->worker_id());
    return absl::OkStatus();
  });
  if (!checked.ok()) {
    if (RpcMetrics* m = GetRpcMetrics()) m->RpcDone("AskTrial", checked.code(), absl::Now() - start);
    return Done(ctx, checked);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  c_->AskTrialAsync(
      req->worker_id(), std::move(types), study_id, std::move(holder),
      [this, req, resp, reactor, start](absl::StatusOr<std::optional<Assignment>> asked) {
        absl::Status status = GuardedBody("AskTrial", [&]() -> absl::Status {
          RETURN_IF_ERROR(asked.status());
          const std::optional<Assignment>& a = *asked;
          if (RpcMetrics* m = GetRpcMetrics()) {
            m->Asked(a.has_value() ? a->trial.study_id : 0, absl::Now() - start);
            m->WorkerSeen(req->worker_id());
          }
          resp->set_heartbeat_interval_ms(
              static_cast<int32_t>(absl::ToInt64Milliseconds(c_->options().heartbeat_interval)));
          resp->set_retry_after_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(c_->options().idle_retry)));
          resp->set_stream_idle_timeout_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(StreamIdleTimeout())));
          if (a.has_value()) {
            resp->set_assigned(true);
            ToProto(a->trial, resp->mutable_trial());
            ToProto(a->task, resp->mutable_task());
            resp->set_metric(a->metric);
            spdlog::info("trial {} of study {} (id {}) -> worker {}", a->trial.number, a->trial.study_id,
                         a->trial.id, ClientTextPrefix(req->worker_id()));
          }
          return absl::OkStatus();
        });
        if (RpcMetrics* m = GetRpcMetrics()) m->RpcDone("AskTrial", status.code(), absl::Now() - start);
        reactor->Finish(ToGrpcStatus(status));
      });
  return reactor;
}

grpc::ServerBidiReactor<hpo::v1::ProgressReport, hpo::v1::ProgressDecision>*
CoordinatorService::ReportProgress(grpc::CallbackServerContext* ctx) {
  absl::MutexLock lock(&streams_mu_);
  if (draining_.load()) {
    return new RefusedStream(grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDownMessage));
  }
  if (static_cast<int>(streams_.size()) >= options_.max_streams) {
    if (RpcMetrics* m = GetRpcMetrics()) m->RpcDone("ReportProgress", absl::StatusCode::kResourceExhausted, absl::ZeroDuration());
    return new RefusedStream(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("this coordinator already serves ", streams_.size(), " open measurement streams, its limit "
                     "(hpo-server --max_streams=", options_.max_streams, "); retry later, close streams that are "
                     "not in use, or raise --max_streams")));
  }
  auto* stream = new ReportReactor(this, AuthorizationOf(*ctx));
  streams_.insert(stream);
  return stream;
}

grpc::ServerUnaryReactor* CoordinatorService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                        const hpo::v1::HeartbeatRequest* req,
                                                        hpo::v1::HeartbeatResponse* resp) {
  return Done(ctx, Guarded("Heartbeat", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "Heartbeat", 0));
    RETURN_IF_ERROR(CheckWorkerId(req->worker_id()));
    ASSIGN_OR_RETURN(HeartbeatResult h,
                     c_->Heartbeat(req->trial_id(), req->worker_id(), caller.Holder(req->worker_id())));
    if (RpcMetrics* m = GetRpcMetrics()) m->WorkerSeen(req->worker_id());
    resp->set_keep_running(h.keep_running);
    resp->set_reason(h.reason);
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::CompleteTrial(grpc::CallbackServerContext* ctx,
                                                            const hpo::v1::CompleteTrialRequest* req,
                                                            hpo::v1::CompleteTrialResponse* resp) {
  return Done(ctx, Guarded("CompleteTrial", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "CompleteTrial", 0));
    RETURN_IF_ERROR(CheckWorkerId(req->worker_id()));
    RETURN_IF_ERROR(CheckMetrics(req->final_metrics(), "final_metrics"));
    std::map<std::string, double> metrics(req->final_metrics().begin(), req->final_metrics().end());
    std::optional<ClassReport> classes;
    if (req->has_classes()) classes = FromProto(req->classes());
    ASSIGN_OR_RETURN(Trial t, c_->CompleteTrial(req->trial_id(), std::move(metrics), std::move(classes),
                                                      caller.Holder(req->worker_id())));
    ToProto(t, resp->mutable_trial());
    spdlog::info("trial {} of study {} completed: value {}", t.number, t.study_id, t.value.value_or(0));
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::FailTrial(grpc::CallbackServerContext* ctx,
                                                        const hpo::v1::FailTrialRequest* req,
                                                        hpo::v1::FailTrialResponse* resp) {
  return Done(ctx, Guarded("FailTrial", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "FailTrial", 0));
    RETURN_IF_ERROR(CheckWorkerId(req->worker_id()));
    ASSIGN_OR_RETURN(Trial t, c_->FailTrial(req->trial_id(), TruncateReason(req->reason()), req->retry(),
                                            caller.Holder(req->worker_id())));
    ToProto(t, resp->mutable_trial());
    spdlog::warn("trial {} of study {} failed: {}", t.number, t.study_id,
                 ClientTextPrefix(t.reason, kLoggedReasonBytes));
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::CreateToken(grpc::CallbackServerContext* ctx,
                                                          const hpo::v1::CreateTokenRequest* req,
                                                          hpo::v1::CreateTokenResponse* resp) {
  return Done(ctx, Guarded("CreateToken", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "CreateToken", 0));
    if (auth_ == nullptr) return absl::FailedPreconditionError("this coordinator has no token store");
    Role role;
    switch (req->role()) {
      case hpo::v1::ROLE_ADMIN: role = Role::kAdmin; break;
      case hpo::v1::ROLE_WORKER: role = Role::kWorker; break;
      case hpo::v1::ROLE_READER: role = Role::kReader; break;
      default: return absl::InvalidArgumentError("role must be admin, worker or reader");
    }
    if (req->study_id() != 0 && role == Role::kWorker) {
      RETURN_IF_ERROR(c_->GetStudySummary(req->study_id()).status());  // NOT_FOUND for a study that is not there
    }
    ASSIGN_OR_RETURN(NewToken t, auth_->tokens()->Create(role, req->study_id(), req->note()));
    resp->set_token(t.secret);
    ToProto(t.record, resp->mutable_info());
    spdlog::info("token {} ({}{}) created{}", t.record.id, RoleName(role),
                 t.record.study_id != 0 ? absl::StrCat(", study ", t.record.study_id) : "", Who(caller));
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::ListTokens(grpc::CallbackServerContext* ctx,
                                                         const hpo::v1::ListTokensRequest*,
                                                         hpo::v1::ListTokensResponse* resp) {
  return Done(ctx, Guarded("ListTokens", [&]() -> absl::Status {
    RETURN_IF_ERROR(Authorize(ctx, "ListTokens", 0).status());
    if (auth_ == nullptr) return absl::FailedPreconditionError("this coordinator has no token store");
    ASSIGN_OR_RETURN(const std::vector<TokenRecord> tokens, auth_->tokens()->List());
    for (const TokenRecord& t : tokens) ToProto(t, resp->add_tokens());
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* CoordinatorService::RevokeToken(grpc::CallbackServerContext* ctx,
                                                          const hpo::v1::RevokeTokenRequest* req,
                                                          hpo::v1::RevokeTokenResponse* resp) {
  return Done(ctx, Guarded("RevokeToken", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller, Authorize(ctx, "RevokeToken", 0));
    if (auth_ == nullptr) return absl::FailedPreconditionError("this coordinator has no token store");
    ASSIGN_OR_RETURN(const TokenRecord t, auth_->tokens()->Revoke(req->token_id()));
    ToProto(t, resp->mutable_info());
    spdlog::warn("token {} ({}) revoked{}", t.id, RoleName(t.role), Who(caller));
    return absl::OkStatus();
  }));
}

}  // namespace hpo::server
