// The coordinator's metrics in the Prometheus text format, built with prometheus-cpp-core
// (Registry, Counter, Histogram, TextSerializer). Two kinds:
//  - events counted as they happen (RPCs and their errors, latencies, reports, prune decisions,
//    SQLite commits), recorded through RpcMetrics / StorageTimer;
//  - per-study figures read from the coordinator's snapshot at each scrape (trials started,
//    finished by state, retried, leases lost, running), so they agree with the stored trials and
//    survive a restart of the server.
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "server/core/coordinator.h"
#include "server/http/rpc_metrics.h"
#include "server/http/timed_storage.h"

namespace hpo::server {

class PrometheusMetrics : public RpcMetrics, public StorageTimer {
 public:
  // `coordinator` (may be null until SetCoordinator) must outlive this object's last Scrape().
  // A worker counts as connected for `worker_window` after it last asked or sent a heartbeat.
  static std::unique_ptr<PrometheusMetrics> Create(absl::Duration worker_window);
  ~PrometheusMetrics() override = default;

  virtual void SetCoordinator(const Coordinator* coordinator) = 0;
  // The exposition, text format 0.0.4.
  virtual std::string Scrape() = 0;
};

}  // namespace hpo::server
