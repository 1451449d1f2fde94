#include "worker/coordinator_client.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proto/common/grpc_status.h"
#include "proto/common/tls_files.h"

namespace hpo::worker {
namespace {

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

// kCancelled too: this client never cancels its own calls, so a cancelled one was cut by the
// coordinator or the connection, e.g. a call that raced hpo-server's shutdown after its drain.
bool Transient(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable || s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kCancelled;
}

}  // namespace

CoordinatorClient::CoordinatorClient(const std::string& address, std::string worker_id,
                                     const std::atomic<bool>* stop,
                                     std::shared_ptr<grpc::ChannelCredentials> credentials, std::string token)
    : address_(address), worker_id_(std::move(worker_id)), token_(std::move(token)), stop_(stop) {
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  stub_ = hpo::v1::Coordinator::NewStub(
      grpc::CreateCustomChannel(address, credentials, args));
}

void CoordinatorClient::Prepare(grpc::ClientContext* ctx) const { AddBearerToken(ctx, token_); }

template <typename Fn>
absl::Status CoordinatorClient::Retrying(const char* what, Fn call) {
  const auto start = std::chrono::steady_clock::now();
  auto backoff = std::chrono::milliseconds(200);
  for (;;) {
    absl::Status s = call();
    if (!Transient(s)) return s;
    // While shutting down, hand the trial back quickly rather than wait for a coordinator.
    const absl::Duration limit = stop_->load() ? absl::Seconds(10) : give_up_after;
    if (std::chrono::steady_clock::now() - start > absl::ToChronoMilliseconds(limit)) {
      return absl::UnavailableError(absl::StrCat("gave up on ", what, " after ",
                                                 absl::FormatDuration(limit), ": ", s.message()));
    }
    ++retries_;
    spdlog::warn("{}: coordinator at {} unreachable ({}); retrying in {} ms", what, address_,
                 std::string(s.message()), backoff.count());
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

absl::StatusOr<hpo::v1::AskTrialResponse> CoordinatorClient::Ask(const std::vector<std::string>& task_types) {
  hpo::v1::AskTrialRequest req;
  req.set_worker_id(worker_id_);
  for (const auto& t : task_types) req.add_task_types(t);
  hpo::v1::AskTrialResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  ctx.set_deadline(Deadline(absl::Seconds(30)));
  absl::Status s = FromGrpcStatus(stub_->AskTrial(&ctx, req, &resp));
  if (!s.ok()) return s;
  return resp;
}

void CoordinatorClient::CloseStream() {
  if (!stream_) return;
  stream_->WritesDone();
  hpo::v1::ProgressDecision ignored;
  while (stream_->Read(&ignored)) {
  }
  (void)stream_->Finish();
  stream_.reset();
  stream_ctx_.reset();
}

absl::StatusOr<hpo::v1::ProgressDecision> CoordinatorClient::Report(int64_t trial_id,
                                                                    const hpo::v1::Measurement& m,
                                                                    const hpo::v1::DataReport* data) {
  hpo::v1::ProgressReport report;
  report.set_trial_id(trial_id);
  report.set_worker_id(worker_id_);
  *report.mutable_measurement() = m;
  if (data != nullptr) *report.mutable_data() = *data;
  hpo::v1::ProgressDecision decision;
  // A report after half the idle timeout (an epoch longer than that) goes on a fresh stream, and
  // its stream is closed after the decision, as the next one will likely come as late.
  const bool late = stream_idle_timeout_ > absl::ZeroDuration() && stream_last_message_ != absl::InfinitePast() &&
                    absl::Now() - stream_last_message_ > stream_idle_timeout_ / 2;
  if (late && stream_) CloseStream();
  absl::Status s = Retrying("report", [&]() -> absl::Status {
    if (!stream_) {
      stream_ctx_ = std::make_unique<grpc::ClientContext>();
      Prepare(stream_ctx_.get());
      stream_ctx_->set_deadline(Deadline(absl::Hours(72)));  // a trial's whole life
      stream_ = stub_->ReportProgress(stream_ctx_.get());
    }
    if (stream_->Write(report) && stream_->Read(&decision)) {
      stream_last_message_ = absl::Now();
      return absl::OkStatus();
    }
    // The stream broke: its status says why (the coordinator refused, or went away).
    stream_->WritesDone();
    absl::Status st = FromGrpcStatus(stream_->Finish());
    stream_.reset();
    stream_ctx_.reset();
    if (st.ok()) return absl::UnavailableError("the coordinator closed the stream");
    return st;
  });
  if (!s.ok()) return s;
  if (late || decision.action() != hpo::v1::ProgressDecision::CONTINUE) CloseStream();
  return decision;
}

absl::StatusOr<hpo::v1::HeartbeatResponse> CoordinatorClient::Heartbeat(int64_t trial_id) {
  hpo::v1::HeartbeatRequest req;
  req.set_trial_id(trial_id);
  req.set_worker_id(worker_id_);
  hpo::v1::HeartbeatResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  ctx.set_deadline(Deadline(absl::Seconds(5)));
  absl::Status s = FromGrpcStatus(stub_->Heartbeat(&ctx, req, &resp));
  if (!s.ok()) return s;
  return resp;
}

absl::Status CoordinatorClient::Complete(int64_t trial_id, const std::map<std::string, double>& metrics,
                                         const hpo::v1::ClassReport* classes) {
  return Retrying("complete", [&] {
    hpo::v1::CompleteTrialRequest req;
    req.set_trial_id(trial_id);
    req.set_worker_id(worker_id_);
    if (classes != nullptr) *req.mutable_classes() = *classes;
    for (const auto& [k, v] : metrics) (*req.mutable_final_metrics())[k] = v;
    hpo::v1::CompleteTrialResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    ctx.set_deadline(Deadline(absl::Seconds(10)));
    return FromGrpcStatus(stub_->CompleteTrial(&ctx, req, &resp));
  });
}

absl::Status CoordinatorClient::Fail(int64_t trial_id, const std::string& reason, bool retry) {
  return Retrying("fail", [&] {
    hpo::v1::FailTrialRequest req;
    req.set_trial_id(trial_id);
    req.set_reason(reason);
    req.set_retry(retry);
    req.set_worker_id(worker_id_);
    hpo::v1::FailTrialResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    ctx.set_deadline(Deadline(absl::Seconds(10)));
    return FromGrpcStatus(stub_->FailTrial(&ctx, req, &resp));
  });
}

}  // namespace hpo::worker
