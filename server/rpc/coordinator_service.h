// gRPC handlers: proto -> core call -> Status. No SQL, no algorithm logic.
#pragma once

#include <grpcpp/server_builder.h>

#include <atomic>
#include <optional>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hpo/v1/coordinator.grpc.pb.h"
#include "server/auth/policy.h"
#include "server/core/coordinator.h"

namespace hpo::server {

// The largest gRPC message the server accepts (a spec may be 1 MiB; a worker's largest report,
// 256 classes of figures, is far below) and sends (ListTrials of a large study). Both documented
// in README "Limits"; gRPC refuses larger ones with RESOURCE_EXHAUSTED.
inline constexpr int kMaxReceiveMessageBytes = 4 << 20;
inline constexpr int kMaxSendMessageBytes = 16 << 20;

// Paging of ListStudies and ListTrials (README "Limits"): page_size 0 asks for the default, a
// larger one than the maximum gets the maximum, and a page stops before it passes kMaxPageBytes
// (below the 4 MiB a gRPC client accepts by default), holding at least one item.
inline constexpr int kDefaultStudiesPerPage = 100;
inline constexpr int kMaxStudiesPerPage = 1000;
inline constexpr int kDefaultTrialsPerPage = 1000;
inline constexpr int kMaxTrialsPerPage = 10000;
inline constexpr size_t kMaxPageBytes = 2 << 20;

// What every call and open stream is told while the server drains (hpo-server on SIGTERM).
inline constexpr char kShuttingDownMessage[] = "hpo-server is shutting down; reconnect";

// Applies the limits above to a server that serves CoordinatorService.
void ConfigureServerBuilder(grpc::ServerBuilder* builder);

struct ServiceOptions {
  // Open ReportProgress streams at most (hpo-server --max_streams); one more is refused at once
  // with RESOURCE_EXHAUSTED naming the flag and the limit.
  int max_streams = 1000;
  // EndIdleStreams ends a stream that has had no message for longer than this (zero: the
  // coordinator's lease timeout), so that an abandoned stream cannot hold memory forever.
  absl::Duration stream_idle_timeout = absl::ZeroDuration();
};

class ReportReactor;  // one open ReportProgress stream (coordinator_service.cc)

class CoordinatorService final : public hpo::v1::Coordinator::CallbackService {
 public:
  // `auth` (may be null: every call is let in, and the token RPCs answer FAILED_PRECONDITION)
  // checks each call's bearer token against the role its RPC needs (server/auth/policy.h). Both
  // must outlive the service, and the service must outlive the grpc::Server that serves it.
  explicit CoordinatorService(Coordinator* coordinator, const Authorizer* auth = nullptr,
                              ServiceOptions options = ServiceOptions());

  // Starts draining (hpo-server on SIGTERM): from now on every call is answered UNAVAILABLE
  // (kShuttingDownMessage), and every open stream ends with that status (a stream that is
  // storing a report or sending its decision ends right after). Idempotent; thread-safe.
  void BeginShutdown() ABSL_LOCKS_EXCLUDED(streams_mu_);
  // Ends, with UNAVAILABLE saying why, every stream that is waiting for a message and has had
  // none for longer than the idle timeout. Returns how many. Thread-safe; hpo-server calls it
  // every second.
  int EndIdleStreams() ABSL_LOCKS_EXCLUDED(streams_mu_);
  // ReportProgress streams open now.
  int OpenStreams() const ABSL_LOCKS_EXCLUDED(streams_mu_);
  // How long a stream may go without a message before EndIdleStreams ends it (the option, or
  // the lease timeout); AskTrial tells workers (stream_idle_timeout_ms).
  absl::Duration StreamIdleTimeout() const;

  grpc::ServerUnaryReactor* CreateStudy(grpc::CallbackServerContext* ctx,
                                        const hpo::v1::CreateStudyRequest* req,
                                        hpo::v1::CreateStudyResponse* resp) override;
  grpc::ServerUnaryReactor* GetStudy(grpc::CallbackServerContext* ctx,
                                     const hpo::v1::GetStudyRequest* req,
                                     hpo::v1::GetStudyResponse* resp) override;
  grpc::ServerUnaryReactor* ListStudies(grpc::CallbackServerContext* ctx,
                                        const hpo::v1::ListStudiesRequest* req,
                                        hpo::v1::ListStudiesResponse* resp) override;
  grpc::ServerUnaryReactor* StopStudy(grpc::CallbackServerContext* ctx,
                                      const hpo::v1::StopStudyRequest* req,
                                      hpo::v1::StopStudyResponse* resp) override;
  grpc::ServerUnaryReactor* ListTrials(grpc::CallbackServerContext* ctx,
                                       const hpo::v1::ListTrialsRequest* req,
                                       hpo::v1::ListTrialsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteStudy(grpc::CallbackServerContext* ctx,
                                        const hpo::v1::DeleteStudyRequest* req,
                                        hpo::v1::DeleteStudyResponse* resp) override;
  grpc::ServerUnaryReactor* GetBestTrial(grpc::CallbackServerContext* ctx,
                                         const hpo::v1::GetBestTrialRequest* req,
                                         hpo::v1::GetBestTrialResponse* resp) override;
  grpc::ServerUnaryReactor* DiagnoseStudy(grpc::CallbackServerContext* ctx,
                                          const hpo::v1::DiagnoseStudyRequest* req,
                                          hpo::v1::DiagnoseStudyResponse* resp) override;
  grpc::ServerUnaryReactor* EnqueueTrial(grpc::CallbackServerContext* ctx,
                                         const hpo::v1::EnqueueTrialRequest* req,
                                         hpo::v1::EnqueueTrialResponse* resp) override;
  grpc::ServerUnaryReactor* AskTrial(grpc::CallbackServerContext* ctx,
                                     const hpo::v1::AskTrialRequest* req,
                                     hpo::v1::AskTrialResponse* resp) override;
  grpc::ServerBidiReactor<hpo::v1::ProgressReport, hpo::v1::ProgressDecision>* ReportProgress(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const hpo::v1::HeartbeatRequest* req,
                                      hpo::v1::HeartbeatResponse* resp) override;
  grpc::ServerUnaryReactor* CompleteTrial(grpc::CallbackServerContext* ctx,
                                          const hpo::v1::CompleteTrialRequest* req,
                                          hpo::v1::CompleteTrialResponse* resp) override;
  grpc::ServerUnaryReactor* FailTrial(grpc::CallbackServerContext* ctx,
                                      const hpo::v1::FailTrialRequest* req,
                                      hpo::v1::FailTrialResponse* resp) override;
  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext* ctx,
                                        const hpo::v1::CreateTokenRequest* req,
                                        hpo::v1::CreateTokenResponse* resp) override;
  grpc::ServerUnaryReactor* ListTokens(grpc::CallbackServerContext* ctx,
                                       const hpo::v1::ListTokensRequest* req,
                                       hpo::v1::ListTokensResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeToken(grpc::CallbackServerContext* ctx,
                                        const hpo::v1::RevokeTokenRequest* req,
                                        hpo::v1::RevokeTokenResponse* resp) override;

 private:
  // The one check every handler makes first: the call's token against the role `rpc` needs (and
  // `study_id`, for a study-bound worker token). Let in unauthenticated when auth_ is null or
  // tokens are not required.
  [[nodiscard]] absl::StatusOr<Caller> Authorize(grpc::CallbackServerContext* ctx, const char* rpc,
                                                 int64_t study_id) const;

  friend class ReportReactor;
  // Called by a stream's OnDone, just before it is deleted.
  void Unregister(ReportReactor* stream) ABSL_LOCKS_EXCLUDED(streams_mu_);

  Coordinator* c_;
  const Authorizer* auth_;
  const ServiceOptions options_;
  std::atomic<bool> draining_{false};
  mutable absl::Mutex streams_mu_;
  std::set<ReportReactor*> streams_ ABSL_GUARDED_BY(streams_mu_);
};

// The "authorization" metadata of a call, or nullopt when it has none.
std::optional<std::string> AuthorizationOf(const grpc::ServerContextBase& ctx);

}  // namespace hpo::server
