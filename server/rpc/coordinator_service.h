// gRPC handlers: proto -> core call -> Status. No SQL, no algorithm logic.
#pragma once

#include <grpcpp/server_builder.h>

#include "hpo/v1/coordinator.grpc.pb.h"
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
  explicit CoordinatorService(Coordinator* coordinator) : c_(coordinator) {}

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

 private:
  Coordinator* c_;
};

}  // namespace hpo::server
