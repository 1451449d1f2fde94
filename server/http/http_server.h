// hpo-server's HTTP listener (--http): the dashboard's pages and assets, the read-only JSON API
// (api.h) and /metrics (prometheus_metrics.h). Built on cpp-httplib; its own small thread pool,
// so a slow browser never holds a gRPC thread. Serves GET/HEAD only: nothing it does writes.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/coordinator.h"
#include "server/http/prometheus_metrics.h"

namespace hpo::server {

struct HttpOptions {
  std::string address = "127.0.0.1:8080";  // HOST:PORT; port 0 picks a free one
  // Listen on an address other than loopback (the dashboard and metrics have no authentication).
  bool allow_remote = false;
  int threads = 8;  // one per open connection (cpp-httplib); more wait in its queue
};

// Splits HOST:PORT ([v6]:PORT too) and checks it: kInvalidArgument for a malformed address, or a
// host that is not loopback (127.0.0.0/8, ::1, localhost) without `allow_remote`.
[[nodiscard]] absl::Status CheckHttpAddress(const std::string& address, bool allow_remote, std::string* host,
                                            int* port);

class HttpServer {
 public:
  virtual ~HttpServer() = default;
  // The port actually bound.
  virtual int port() const = 0;
  // "http://HOST:PORT/" with the port actually bound.
  virtual std::string url() const = 0;
  // Stops accepting, finishes the requests in flight and joins the threads. Idempotent.
  virtual void Stop() = 0;
};

// Binds and starts serving on a thread of its own. `coordinator` and `metrics` (may be null: then
// /metrics is 404) must outlive the server. kInvalidArgument for a bad address (see
// CheckHttpAddress), kUnavailable when it cannot be bound.
[[nodiscard]] absl::StatusOr<std::unique_ptr<HttpServer>> StartHttpServer(const HttpOptions& options,
                                                                          const Coordinator* coordinator,
                                                                          PrometheusMetrics* metrics);

}  // namespace hpo::server
