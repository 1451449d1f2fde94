// hpo-server: the coordinator. Owns the SQLite file; serves gRPC.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "proto/common/json_log.h"
#include "server/core/coordinator.h"
#include "server/http/http_server.h"
#include "server/http/prometheus_metrics.h"
#include "server/http/timed_storage.h"
#include "server/rpc/coordinator_service.h"
#include "server/storage/sqlite_storage.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "address to serve gRPC on (HOST:PORT; port 0 picks a free one)");
ABSL_FLAG(std::string, db, "hpo.db", "SQLite database file (created if missing)");
ABSL_FLAG(absl::Duration, lease_timeout, absl::Seconds(30),
          "a RUNNING trial whose worker is silent this long is failed and retried");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5), "how often workers send heartbeats");
ABSL_FLAG(std::string, port_file, "", "if set, write the port actually bound to this file");
ABSL_FLAG(std::string, http, "",
          "serve the dashboard, its JSON API and /metrics on HOST:PORT (e.g. 127.0.0.1:8080; empty: off)");
ABSL_FLAG(bool, http_allow_remote, false,
          "allow --http on an address other than loopback (no authentication)");
ABSL_FLAG(std::string, http_port_file, "", "if set, write the HTTP port actually bound to this file");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(std::string, log_format, "text", "text, or json: one object a line with study, trial and worker fields");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("hpo-server --listen=HOST:PORT --db=PATH: the hpo coordinator");
  absl::ParseCommandLine(argc, argv);
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  if (absl::Status s = hpo::SetLogFormat(absl::GetFlag(FLAGS_log_format), "%Y-%m-%d %H:%M:%S.%e [server] %^%l%$ %v",
                                         "server");
      !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }

  // SIGINT/SIGTERM are taken by a dedicated thread (sigwait), so block them everywhere.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  hpo::server::CoordinatorOptions options;
  options.lease_timeout = absl::GetFlag(FLAGS_lease_timeout);
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  if (options.lease_timeout <= options.heartbeat_interval) {
    spdlog::error("--lease_timeout ({}) must be longer than --heartbeat_interval ({})",
                  absl::FormatDuration(options.lease_timeout),
                  absl::FormatDuration(options.heartbeat_interval));
    return 2;
  }
  // Rows repaired at start-up, a full disk and its end, the file deleted or replaced: logged by
  // the storage as they happen (README "What happens when things go wrong").
  options.warn = [](const std::string& line) { spdlog::warn("{}", line); };
  hpo::server::SqliteStorageOptions storage_options;
  storage_options.log = [](hpo::server::SqliteStorageOptions::Level level, const std::string& line) {
    using Level = hpo::server::SqliteStorageOptions::Level;
    if (level == Level::kError) spdlog::error("{}", line);
    else if (level == Level::kWarning) spdlog::warn("{}", line);
    else spdlog::info("{}", line);
  };
  const std::string http_address = absl::GetFlag(FLAGS_http);
  if (!http_address.empty()) {
    std::string host;
    int http_port = 0;
    const absl::Status checked = hpo::server::CheckHttpAddress(
        http_address, absl::GetFlag(FLAGS_http_allow_remote), &host, &http_port);
    if (!checked.ok()) {
      spdlog::error("{}", std::string(checked.message()));
      return 2;
    }
  }
  const std::string db_path = absl::GetFlag(FLAGS_db);
  auto storage = hpo::server::OpenSqliteStorage(db_path, storage_options);
  if (!storage.ok()) {
    spdlog::error("{}", std::string(storage.status().message()));
    return 1;
  }
  // Metrics only when there is somewhere to read them: --http.
  std::unique_ptr<hpo::server::PrometheusMetrics> metrics;
  if (!http_address.empty()) {
    metrics = hpo::server::PrometheusMetrics::Create(options.lease_timeout);
    *storage = hpo::server::NewTimedStorage(std::move(*storage), metrics.get());
  }
  hpo::server::RealClock clock;
  auto coordinator = hpo::server::Coordinator::Open(std::move(*storage), &clock, options);
  if (!coordinator.ok()) {
    spdlog::error("cannot load {}: {}", db_path, std::string(coordinator.status().message()));
    return 1;
  }

  if (metrics) {
    metrics->SetCoordinator(coordinator->get());
    hpo::server::SetRpcMetrics(metrics.get());
  }
  hpo::server::CoordinatorService service(coordinator->get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  hpo::server::ConfigureServerBuilder(&builder);  // message size limits (README "Limits")
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    spdlog::error("cannot listen on {}: is the address valid and the port free?",
                  absl::GetFlag(FLAGS_listen));
    return 1;
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_port_file)) << port << "\n";
  }
  spdlog::info("hpo-server listening on port {} (database {}, lease {})", port, db_path,
               absl::FormatDuration(options.lease_timeout));
  std::unique_ptr<hpo::server::HttpServer> http;
  if (!http_address.empty()) {
    hpo::server::HttpOptions http_options;
    http_options.address = http_address;
    http_options.allow_remote = absl::GetFlag(FLAGS_http_allow_remote);
    auto started = hpo::server::StartHttpServer(http_options, coordinator->get(), metrics.get());
    if (!started.ok()) {
      spdlog::error("{}", std::string(started.status().message()));
      server->Shutdown();
      hpo::server::SetRpcMetrics(nullptr);
      return 1;
    }
    http = std::move(*started);
    if (!absl::GetFlag(FLAGS_http_port_file).empty()) {
      std::ofstream(absl::GetFlag(FLAGS_http_port_file)) << http->port() << "\n";
    }
    spdlog::info("dashboard on {} (metrics: {}metrics)", http->url(), http->url());
  }

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread reaper([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!cv.wait_for(lock, std::chrono::seconds(1), [&] { return stopping; })) {
      lock.unlock();
      if (int n = (*coordinator)->ReapExpiredLeases(); n > 0) {
        spdlog::warn("{} trial(s) lost their worker's lease: failed and handed out again", n);
      }
      lock.lock();
    }
  });
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: shutting down", sig);
    server->GetHealthCheckService()->SetServingStatus(false);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  });
  server->Wait();
  if (http) http->Stop();
  hpo::server::SetRpcMetrics(nullptr);
  {
    std::lock_guard<std::mutex> lock(mu);
    stopping = true;
  }
  cv.notify_all();
  reaper.join();
  signal_thread.join();
  spdlog::info("hpo-server stopped");
  return 0;
}
