// What the gRPC handlers tell the metrics, without naming Prometheus: server/rpc/ depends only on
// this interface, and the Prometheus implementation (prometheus_metrics.h) sits behind it.
//
// The handlers reach the implementation through one process-wide pointer, set by main() before the
// gRPC server starts and cleared after it stops; null (the default, and in tests that do not ask
// for metrics) means "record nothing". Implementations must be thread-safe: every method is called
// from gRPC's callback threads, concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace hpo::server {

class RpcMetrics {
 public:
  virtual ~RpcMetrics() = default;

  // Every RPC (and every message on the measurement stream, as "ReportProgress") once it has
  // been answered: its status code and how long the handler took.
  virtual void RpcDone(std::string_view method, absl::StatusCode code, absl::Duration latency) = 0;
  // A successful AskTrial: the study of the trial handed out (0: none was), and the time it took,
  // sampling included.
  virtual void Asked(int64_t study_id, absl::Duration latency) = 0;
  // A stored measurement and the decision sent back: "continue", "prune" or "stop".
  virtual void Reported(std::string_view decision) = 0;
  // A worker that asked for a trial or sent a heartbeat (counts connected workers).
  virtual void WorkerSeen(std::string_view worker_id) = 0;
};

namespace internal {
inline std::atomic<RpcMetrics*> g_rpc_metrics{nullptr};
}  // namespace internal

// The metrics the handlers record into, or null. `metrics` must outlive every RPC.
inline void SetRpcMetrics(RpcMetrics* metrics) { internal::g_rpc_metrics.store(metrics); }
inline RpcMetrics* GetRpcMetrics() { return internal::g_rpc_metrics.load(std::memory_order_acquire); }

}  // namespace hpo::server
