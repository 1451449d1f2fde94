// The worker's side of the coordinator API: one channel for the process's
// life, a deadline on every unary call, retries with backoff while the
// coordinator is unreachable.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include <grpcpp/security/credentials.h>

#include "hpo/v1/coordinator.grpc.pb.h"

namespace hpo::worker {

class CoordinatorClient {
 public:
  // `credentials`: TLS or plaintext (null: plaintext; see proto/common/tls_files.h). `token`, when
  // set, goes with every call as "authorization: Bearer TOKEN".
  CoordinatorClient(const std::string& address, std::string worker_id, const std::atomic<bool>* stop,
                    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr, std::string token = "");

  const std::string& worker_id() const { return worker_id_; }
  const std::string& address() const { return address_; }

  // One AskTrial call (no retry): nullopt-like empty response when there is no work.
  [[nodiscard]] absl::StatusOr<hpo::v1::AskTrialResponse> Ask(const std::vector<std::string>& task_types);
  // Sends a measurement on the trial's stream and waits for the decision.
  // Reconnects (and resends) while the coordinator is unreachable, for up to
  // `give_up_after`; other errors (the trial was pruned/failed/lost) come back at once.
  // `data` (what the worker found in the data set) goes with the trial's first measurement.
  [[nodiscard]] absl::StatusOr<hpo::v1::ProgressDecision> Report(int64_t trial_id,
                                                                 const hpo::v1::Measurement& m,
                                                                 const hpo::v1::DataReport* data = nullptr);
  // Ends the trial's stream (if open).
  void CloseStream();
  [[nodiscard]] absl::StatusOr<hpo::v1::HeartbeatResponse> Heartbeat(int64_t trial_id);
  // Retried while the coordinator is unreachable (both calls are idempotent).
  [[nodiscard]] absl::Status Complete(int64_t trial_id, const std::map<std::string, double>& metrics,
                                      const hpo::v1::ClassReport* classes = nullptr);
  [[nodiscard]] absl::Status Fail(int64_t trial_id, const std::string& reason, bool retry);

  absl::Duration give_up_after = absl::Minutes(5);

  // The coordinator closes a stream that has had no message for this long
  // (AskTrialResponse.stream_idle_timeout_ms; zero: never). A report that comes
  // after half of it goes on a fresh stream, closed after its decision, instead
  // of on one the coordinator may have closed (a trial whose epochs outlast the
  // timeout would otherwise find its stream closed, and retry, at every report).
  void set_stream_idle_timeout(absl::Duration d) { stream_idle_timeout_ = d; }
  // Calls retried because the coordinator was unreachable or cut the call, since construction.
  int64_t retries() const { return retries_.load(); }

 private:
  template <typename Fn>
  absl::Status Retrying(const char* what, Fn call);

  // A context with the token (when set) for one call.
  void Prepare(grpc::ClientContext* ctx) const;

  std::string address_, worker_id_, token_;
  const std::atomic<bool>* stop_;
  std::unique_ptr<hpo::v1::Coordinator::Stub> stub_;
  // The open measurement stream of the current trial.
  std::unique_ptr<grpc::ClientContext> stream_ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<hpo::v1::ProgressReport, hpo::v1::ProgressDecision>> stream_;
  absl::Time stream_last_message_ = absl::InfinitePast();  // when the stream last carried a report
  absl::Duration stream_idle_timeout_ = absl::ZeroDuration();
  std::atomic<int64_t> retries_{0};
};

}  // namespace hpo::worker
