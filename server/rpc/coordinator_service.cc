#include "server/rpc/coordinator_service.h"

#include <spdlog/spdlog.h>

#include <map>
#include <optional>

#include "proto/common/grpc_status.h"
#include "server/rpc/proto_convert.h"

namespace hpo::server {
namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// One trial's measurement stream: read a report, decide, write the decision,
// read the next. Only one operation is ever in flight, so no locking is needed.
class ReportReactor final
    : public grpc::ServerBidiReactor<hpo::v1::ProgressReport, hpo::v1::ProgressDecision> {
 public:
  explicit ReportReactor(Coordinator* c) : c_(c) { StartRead(&report_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the worker closed its side, or the call was cancelled
      Finish(grpc::Status::OK);
      return;
    }
    std::optional<DataReport> data;
    if (report_.has_data()) data = FromProto(report_.data());
    auto d = c_->Report(report_.trial_id(), FromProto(report_.measurement()), std::move(data));
    if (!d.ok()) {
      Finish(ToGrpcStatus(d.status()));
      return;
    }
    decision_.Clear();
    decision_.set_step(report_.measurement().step());
    switch (d->action) {
      case Action::kContinue: decision_.set_action(hpo::v1::ProgressDecision::CONTINUE); break;
      case Action::kPrune: decision_.set_action(hpo::v1::ProgressDecision::PRUNE); break;
      case Action::kStop: decision_.set_action(hpo::v1::ProgressDecision::STOP); break;
    }
    decision_.set_reason(d->reason);
    finish_after_write_ = d->action != Action::kContinue;
    if (finish_after_write_) {
      spdlog::info("trial id {} pruned at step {}: {}", report_.trial_id(),
                   report_.measurement().step(), d->reason);
    }
    StartWrite(&decision_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the worker went away"));
    } else if (finish_after_write_) {
      Finish(grpc::Status::OK);
    } else {
      StartRead(&report_);
    }
  }

  void OnDone() override { delete this; }

 private:
  Coordinator* c_;
  hpo::v1::ProgressReport report_;
  hpo::v1::ProgressDecision decision_;
  bool finish_after_write_ = false;
};

}  // namespace

grpc::ServerUnaryReactor* CoordinatorService::CreateStudy(grpc::CallbackServerContext* ctx,
                                                          const hpo::v1::CreateStudyRequest* req,
                                                          hpo::v1::CreateStudyResponse* resp) {
  auto s = c_->CreateStudy(req->spec_json());
  if (s.ok()) {
    ToProto(*s, resp->mutable_study());
    spdlog::info("created study {} \"{}\"", s->id, s->spec.name);
  }
  return Done(ctx, s.status());
}

grpc::ServerUnaryReactor* CoordinatorService::GetStudy(grpc::CallbackServerContext* ctx,
                                                       const hpo::v1::GetStudyRequest* req,
                                                       hpo::v1::GetStudyResponse* resp) {
  auto s = c_->GetStudy(req->study_id());
  if (s.ok()) ToProto(*s, resp->mutable_study());
  return Done(ctx, s.status());
}

grpc::ServerUnaryReactor* CoordinatorService::ListStudies(grpc::CallbackServerContext* ctx,
                                                          const hpo::v1::ListStudiesRequest*,
                                                          hpo::v1::ListStudiesResponse* resp) {
  for (const Study& s : c_->ListStudies()) ToProto(s, resp->add_studies());
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CoordinatorService::StopStudy(grpc::CallbackServerContext* ctx,
                                                        const hpo::v1::StopStudyRequest* req,
                                                        hpo::v1::StopStudyResponse* resp) {
  auto s = c_->StopStudy(req->study_id());
  if (s.ok()) ToProto(*s, resp->mutable_study());
  return Done(ctx, s.status());
}

grpc::ServerUnaryReactor* CoordinatorService::ListTrials(grpc::CallbackServerContext* ctx,
                                                         const hpo::v1::ListTrialsRequest* req,
                                                         hpo::v1::ListTrialsResponse* resp) {
  auto s = c_->GetStudy(req->study_id());
  if (s.ok()) {
    for (const Trial& t : s->trials) ToProto(t, resp->add_trials());
  }
  return Done(ctx, s.status());
}

grpc::ServerUnaryReactor* CoordinatorService::GetBestTrial(grpc::CallbackServerContext* ctx,
                                                           const hpo::v1::GetBestTrialRequest* req,
                                                           hpo::v1::GetBestTrialResponse* resp) {
  auto t = c_->BestTrial(req->study_id());
  if (t.ok()) ToProto(*t, resp->mutable_trial());
  return Done(ctx, t.status());
}

grpc::ServerUnaryReactor* CoordinatorService::DiagnoseStudy(grpc::CallbackServerContext* ctx,
                                                            const hpo::v1::DiagnoseStudyRequest* req,
                                                            hpo::v1::DiagnoseStudyResponse* resp) {
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
  return Done(ctx, findings.status());
}

grpc::ServerUnaryReactor* CoordinatorService::EnqueueTrial(grpc::CallbackServerContext* ctx,
                                                           const hpo::v1::EnqueueTrialRequest* req,
                                                           hpo::v1::EnqueueTrialResponse* resp) {
  auto t = c_->EnqueueTrial(req->study_id(), req->params_json());
  if (t.ok()) ToProto(*t, resp->mutable_trial());
  return Done(ctx, t.status());
}

grpc::ServerUnaryReactor* CoordinatorService::AskTrial(grpc::CallbackServerContext* ctx,
                                                       const hpo::v1::AskTrialRequest* req,
                                                       hpo::v1::AskTrialResponse* resp) {
  if (req->worker_id().empty()) {
    return Done(ctx, absl::InvalidArgumentError("worker_id must be set (e.g. host:pid)"));
  }
  std::vector<std::string> types(req->task_types().begin(), req->task_types().end());
  auto a = c_->AskTrial(req->worker_id(), types, req->study_id());
  if (!a.ok()) return Done(ctx, a.status());
  resp->set_heartbeat_interval_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(c_->options().heartbeat_interval)));
  resp->set_retry_after_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(c_->options().idle_retry)));
  if (a->has_value()) {
    resp->set_assigned(true);
    ToProto((*a)->trial, resp->mutable_trial());
    ToProto((*a)->task, resp->mutable_task());
    resp->set_metric((*a)->metric);
    spdlog::info("trial {} of study {} (id {}) -> worker {}", (*a)->trial.number,
                 (*a)->trial.study_id, (*a)->trial.id, req->worker_id());
  }
  return Done(ctx, absl::OkStatus());
}

grpc::ServerBidiReactor<hpo::v1::ProgressReport, hpo::v1::ProgressDecision>*
CoordinatorService::ReportProgress(grpc::CallbackServerContext*) {
  return new ReportReactor(c_);
}

grpc::ServerUnaryReactor* CoordinatorService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                        const hpo::v1::HeartbeatRequest* req,
                                                        hpo::v1::HeartbeatResponse* resp) {
  auto h = c_->Heartbeat(req->trial_id(), req->worker_id());
  if (h.ok()) {
    resp->set_keep_running(h->keep_running);
    resp->set_reason(h->reason);
  }
  return Done(ctx, h.status());
}

grpc::ServerUnaryReactor* CoordinatorService::CompleteTrial(grpc::CallbackServerContext* ctx,
                                                            const hpo::v1::CompleteTrialRequest* req,
                                                            hpo::v1::CompleteTrialResponse* resp) {
  std::map<std::string, double> metrics(req->final_metrics().begin(), req->final_metrics().end());
  std::optional<ClassReport> classes;
  if (req->has_classes()) classes = FromProto(req->classes());
  auto t = c_->CompleteTrial(req->trial_id(), std::move(metrics), std::move(classes));
  if (t.ok()) {
    ToProto(*t, resp->mutable_trial());
    spdlog::info("trial {} of study {} completed: value {}", t->number, t->study_id,
                 t->value.value_or(0));
  }
  return Done(ctx, t.status());
}

grpc::ServerUnaryReactor* CoordinatorService::FailTrial(grpc::CallbackServerContext* ctx,
                                                        const hpo::v1::FailTrialRequest* req,
                                                        hpo::v1::FailTrialResponse* resp) {
  auto t = c_->FailTrial(req->trial_id(), req->reason(), req->retry());
  if (t.ok()) {
    ToProto(*t, resp->mutable_trial());
    spdlog::warn("trial {} of study {} failed: {}", t->number, t->study_id, t->reason);
  }
  return Done(ctx, t.status());
}

}  // namespace hpo::server
