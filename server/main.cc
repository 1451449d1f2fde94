// hpo-server: the coordinator. Owns the SQLite file; serves gRPC.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "proto/common/json_log.h"
#include "proto/common/tls_files.h"
#include "server/auth/policy.h"
#include "server/auth/token_store.h"
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
ABSL_FLAG(std::string, tls_cert, "", "serve gRPC over TLS with this certificate chain (PEM); needs --tls_key");
ABSL_FLAG(std::string, tls_key, "", "the private key (PEM) of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "mutual TLS: require client certificates signed by this CA (PEM)");
ABSL_FLAG(bool, require_tokens, false,
          "every call but the health service needs a bearer token with the role its RPC needs");
ABSL_FLAG(bool, insecure, false,
          "allow --listen on an address other than loopback without TLS and --require_tokens (logs a warning)");
ABSL_FLAG(std::string, new_token, "",
          "print a new token with this role (admin, worker, reader) for --db and exit");
ABSL_FLAG(int64_t, new_token_study, 0, "with --new_token=worker: bind the token to this study id");
ABSL_FLAG(int, max_streams, 1000,
          "open ReportProgress streams at most (one per running trial); one more is refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, drain_time, absl::Seconds(2),
          "on SIGTERM/SIGINT: how long health says NOT_SERVING and calls get UNAVAILABLE before the server "
          "closes (a second signal ends the wait)");
ABSL_FLAG(int, max_studies, 10000, "studies held at most; CreateStudy beyond gets RESOURCE_EXHAUSTED (delete old ones)");
ABSL_FLAG(int, max_running_trials, 100000,
          "trials RUNNING at once across all studies; AskTrial beyond gets RESOURCE_EXHAUSTED");
ABSL_FLAG(int, sampling_threads, 4, "threads that run samplers for AskTrial (off gRPC's threads)");
ABSL_FLAG(int, max_waiting_asks, 1024,
          "AskTrial calls that may wait for a sampling thread; beyond, RESOURCE_EXHAUSTED (ask again shortly)");
ABSL_FLAG(std::string, tokens_db, "", "the SQLite file of tokens (default: the --db path + \".tokens\")");

namespace {

// hpo-server --new_token=ROLE: makes a token in the token store of --db, prints it, exits.
int NewToken(const std::string& role_name, int64_t study_id, const std::string& tokens_path) {
  absl::StatusOr<hpo::server::Role> role = hpo::server::ParseRole(role_name);
  if (!role.ok()) {
    spdlog::error("--new_token: {}", std::string(role.status().message()));
    return 2;
  }
  auto store = hpo::server::OpenSqliteTokenStore(tokens_path);
  if (!store.ok()) {
    spdlog::error("{}", std::string(store.status().message()));
    return 1;
  }
  auto token = (*store)->Create(*role, study_id, "hpo-server --new_token");
  if (!token.ok()) {
    spdlog::error("--new_token: {}", std::string(token.status().message()));
    return 1;
  }
  std::cout << token->secret << std::endl;
  std::cerr << "token " << token->record.id << " (role " << role_name
            << (study_id != 0 ? ", study " + std::to_string(study_id) : std::string()) << ") stored hashed in "
            << tokens_path << "; it is shown only now. Clients pass it as --token or HPO_TOKEN.\n";
  return 0;
}

// Writes `port` to `path` whole or not at all (a temporary file renamed over it), so that a reader
// polling for the file never reads it half-written.
void WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out.flush()) {
      spdlog::error("cannot write the port file {}", tmp);
      return;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    spdlog::error("cannot rename {} to {}: {}", tmp, path, std::strerror(errno));
  }
}

}  // namespace

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
  options.max_studies = absl::GetFlag(FLAGS_max_studies);
  options.max_running_trials = absl::GetFlag(FLAGS_max_running_trials);
  options.sampling_threads = absl::GetFlag(FLAGS_sampling_threads);
  options.max_waiting_asks = absl::GetFlag(FLAGS_max_waiting_asks);
  if (options.max_studies < 1 || options.max_running_trials < 1 || options.sampling_threads < 1 ||
      options.sampling_threads > 256 || options.max_waiting_asks < 1) {
    spdlog::error("--max_studies, --max_running_trials, --max_waiting_asks must be >= 1 and --sampling_threads "
                  "in [1, 256]");
    return 2;
  }
  if (options.lease_timeout <= options.heartbeat_interval) {
    spdlog::error("--lease_timeout ({}) must be longer than --heartbeat_interval ({})",
                  absl::FormatDuration(options.lease_timeout),
                  absl::FormatDuration(options.heartbeat_interval));
    return 2;
  }
  const int max_streams = absl::GetFlag(FLAGS_max_streams);
  if (max_streams < 1) {
    spdlog::error("--max_streams={}: it must be at least 1 (each running trial holds one stream)", max_streams);
    return 2;
  }
  const absl::Duration drain_time = absl::GetFlag(FLAGS_drain_time);
  if (drain_time < absl::ZeroDuration() || drain_time > absl::Minutes(10)) {
    spdlog::error("--drain_time={}: give a duration from 0s to 10m", absl::FormatDuration(drain_time));
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
  const std::string tokens_path =
      absl::GetFlag(FLAGS_tokens_db).empty() ? hpo::server::TokenDbPathFor(db_path) : absl::GetFlag(FLAGS_tokens_db);
  if (!absl::GetFlag(FLAGS_new_token).empty()) {
    return NewToken(absl::GetFlag(FLAGS_new_token), absl::GetFlag(FLAGS_new_token_study), tokens_path);
  }

  // TLS and tokens (README "Security"): checked before anything is opened.
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const bool require_tokens = absl::GetFlag(FLAGS_require_tokens);
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  const bool tls = !absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty();
  if (tls) {
    if (absl::GetFlag(FLAGS_tls_cert).empty() || absl::GetFlag(FLAGS_tls_key).empty()) {
      spdlog::error("--tls_cert and --tls_key go together: the server's certificate chain and its private key");
      return 2;
    }
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    absl::StatusOr<std::string> cert = hpo::ReadPemFile("tls_cert", absl::GetFlag(FLAGS_tls_cert));
    absl::StatusOr<std::string> key =
        cert.ok() ? hpo::ReadPemFile("tls_key", absl::GetFlag(FLAGS_tls_key)) : cert.status();
    if (!key.ok()) {
      spdlog::error("{}", std::string(key.status().message()));
      return 2;
    }
    pair.cert_chain = *cert;
    pair.private_key = *key;
    ssl.pem_key_cert_pairs.push_back(pair);
    if (!absl::GetFlag(FLAGS_tls_client_ca).empty()) {
      absl::StatusOr<std::string> ca = hpo::ReadPemFile("tls_client_ca", absl::GetFlag(FLAGS_tls_client_ca));
      if (!ca.ok()) {
        spdlog::error("{}", std::string(ca.status().message()));
        return 2;
      }
      ssl.pem_root_certs = *ca;
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(ssl);
  } else if (!absl::GetFlag(FLAGS_tls_client_ca).empty()) {
    spdlog::error("--tls_client_ca needs --tls_cert and --tls_key: mutual TLS is TLS first");
    return 2;
  }
  std::string insecure_warning;
  if (absl::Status s = hpo::server::CheckListenSecurity(listen, tls, require_tokens, absl::GetFlag(FLAGS_insecure),
                                                        &insecure_warning);
      !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  if (!insecure_warning.empty()) spdlog::warn("{}", insecure_warning);

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

  auto tokens = hpo::server::OpenSqliteTokenStore(tokens_path);
  if (!tokens.ok()) {
    spdlog::error("{}", std::string(tokens.status().message()));
    return 1;
  }
  if (require_tokens) {
    auto known = (*tokens)->List();
    const bool any_admin = known.ok() && std::any_of(known->begin(), known->end(), [](const auto& t) {
      return t.role == hpo::server::Role::kAdmin && !t.revoked;
    });
    if (!any_admin) {
      spdlog::warn("--require_tokens and no admin token yet: make one with hpo-server --db={} --new_token=admin",
                   db_path);
    }
  }
  if (metrics) {
    metrics->SetCoordinator(coordinator->get());
    hpo::server::SetRpcMetrics(metrics.get());
  }
  hpo::server::Authorizer authorizer(tokens->get(), require_tokens);
  hpo::server::ServiceOptions service_options;
  service_options.max_streams = max_streams;
  service_options.stream_idle_timeout = options.lease_timeout;  // a stream silent longer than a lease is closed
  hpo::server::CoordinatorService service(coordinator->get(), &authorizer, service_options);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, credentials, &port);
  builder.RegisterService(&service);
  hpo::server::ConfigureServerBuilder(&builder);  // message size limits (README "Limits")
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    spdlog::error("cannot listen on {}: is the address valid and the port free?{}", listen,
                  tls ? " (and do --tls_cert and --tls_key belong together?)" : "");
    return 1;
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) WritePortFile(absl::GetFlag(FLAGS_port_file), port);
  spdlog::info("hpo-server listening on port {} (database {}, lease {}; {}, {})", port, db_path,
               absl::FormatDuration(options.lease_timeout),
               !tls ? "plaintext" : absl::GetFlag(FLAGS_tls_client_ca).empty() ? "TLS" : "mutual TLS",
               require_tokens ? "tokens required" : "no tokens");
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
      WritePortFile(absl::GetFlag(FLAGS_http_port_file), http->port());
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
      if (int n = (*coordinator)->EndTimeBudgets(); n > 0) {
        spdlog::info("{} stud{} completed: time budget (max_minutes) used up", n, n == 1 ? "y" : "ies");
      }
      service.EndIdleStreams();
      lock.lock();
    }
  });
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    // The drain (README "What happens when things go wrong"): health says NOT_SERVING, so that
    // load balancers and probes stop sending work; open measurement streams end with UNAVAILABLE
    // and every new call gets UNAVAILABLE ("reconnect"), which workers retry; then the server closes.
    spdlog::info("signal {}: draining for {}, then shutting down", sig, absl::FormatDuration(drain_time));
    server->GetHealthCheckService()->SetServingStatus(false);
    service.BeginShutdown();
    timespec wait = absl::ToTimespec(drain_time);
    if (sigtimedwait(&signals, nullptr, &wait) > 0) spdlog::info("second signal: shutting down now");
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
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
