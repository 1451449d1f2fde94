// gRPC handlers: proto -> core call -> Status. No SQL, no algorithm logic.
#pragma once

#include <grpcpp/server_builder.h>

#include <optional>
#include <string>

#include "hpo/v1/coordinator.grpc.pb.h"
#include "server/auth/policy.h"
#include "server/core/coordinator.h"

namespace hpo::server {

// The largest gRPC message the server accepts (a spec may be 1 MiB; a worker's largest report,
// 256 classes of figures, is far below) and sends (ListTrials of a large study). Both documented
// in README "Limits"; gRPC refuses larger ones with RESOURCE_EXHAUSTED.
inline constexpr int kMaxReceiveMessageBytes = 4 << 20;
inline constexpr int kMaxSendMessageBytes = 16 << 20;

// Applies the limits above to a server that serves CoordinatorService.
void ConfigureServerBuilder(grpc::ServerBuilder* builder);

class CoordinatorService final : public hpo::v1::Coordinator::CallbackService {
 public:
  // `auth` (may be null: every call is let in, and the token RPCs answer FAILED_PRECONDITION)
  // checks each call's bearer token against the role its RPC needs (server/auth/policy.h). Both
  // must outlive the service.
  explicit CoordinatorService(Coordinator* coordinator, const Authorizer* auth = nullptr)
      : c_(coordinator), auth_(auth) {}

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

  Coordinator* c_;
  const Authorizer* auth_;
};

// The "authorization" metadata of a call, or nullopt when it has none.
std::optional<std::string> AuthorizationOf(const grpc::ServerContextBase& ctx);

}  // namespace hpo::server
