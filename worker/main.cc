// hpo-worker: asks the coordinator for trials and trains them with LibTorch.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <chrono>
#include <thread>

#include "proto/common/tls_files.h"
#include "absl/flags/flag.h"
#include "proto/common/json_log.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "worker/coordinator_client.h"
#include "worker/train/trainer.h"
#include "worker/trial_runner.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "address of hpo-server (HOST:PORT)");
ABSL_FLAG(std::string, data_root, "/usr/share/datasets", "directory holding one folder per data set");
ABSL_FLAG(std::string, cache_dir, "",
          "where decoded image folders are cached, shared by the workers of this machine (default: "
          "$XDG_CACHE_HOME/hpo or ~/.cache/hpo; \"none\": no cache)");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads (0: all cores)");
ABSL_FLAG(std::string, worker_id, "", "name of this worker (default HOST:PID)");
ABSL_FLAG(int, max_trials, 0, "exit after running this many trials (0: run until stopped)");
ABSL_FLAG(std::string, token, "", "bearer token (role worker) sent with every call (default: $HPO_TOKEN)");
ABSL_FLAG(std::string, tls_ca, "", "connect with TLS, trusting this CA (PEM) for the coordinator's certificate");
ABSL_FLAG(std::string, tls_cert, "", "mutual TLS: this worker's certificate (PEM); needs --tls_key and --tls_ca");
ABSL_FLAG(std::string, tls_key, "", "mutual TLS: the private key (PEM) of --tls_cert");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(std::string, log_format, "text", "text, or json: one object a line with study, trial and worker fields");
ABSL_FLAG(bool, malloc_tuning, true,
          "raise glibc's mmap and trim thresholds so batch buffers are reused instead of returned to the OS");

namespace {
// The BLAS library this process actually loaded (LibTorch uses whatever libblas.so.3 is selected).
std::string LoadedBlas() {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (path.find("libblas") != std::string::npos || path.find("libopenblas") != std::string::npos) return path;
  }
  return "none loaded yet";
}
}  // namespace

namespace {
std::atomic<bool> g_stop{false};
extern "C" void OnSignal(int) { g_stop.store(true); }

// Sleeps up to `d`, waking early on shutdown.
void Nap(std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!g_stop.load() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hpo-worker --coordinator=HOST:PORT --data_root=DIR --threads=N: trains the trials the coordinator hands out");
  absl::ParseCommandLine(argc, argv);
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  std::string worker_id = absl::GetFlag(FLAGS_worker_id);
  if (worker_id.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    worker_id = absl::StrCat(host, ":", getpid());
  }
  if (absl::Status s = hpo::SetLogFormat(absl::GetFlag(FLAGS_log_format),
                                         absl::StrCat("%Y-%m-%d %H:%M:%S.%e [worker ", worker_id, "] %^%l%$ %v"),
                                         "worker", worker_id);
      !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }

  hpo::ClientSecurity security;
  security.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  security.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  security.tls_key = absl::GetFlag(FLAGS_tls_key);
  auto credentials = hpo::MakeChannelCredentials(security);
  if (!credentials.ok()) {
    spdlog::error("{}", std::string(credentials.status().message()));
    return 2;
  }

  // Threads first, before any LibTorch work (see README "Performance").
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
  torch::set_num_interop_threads(1);
  if (absl::GetFlag(FLAGS_malloc_tuning)) hpo::worker::KeepFreedBuffers();
  (void)torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));  // loads the BLAS, to report which one

  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  hpo::worker::CoordinatorClient client(absl::GetFlag(FLAGS_coordinator), worker_id, &g_stop, *credentials,
                                        hpo::TokenFromFlagOrEnv(absl::GetFlag(FLAGS_token)));
  hpo::worker::RunnerOptions options;
  options.data_root = absl::GetFlag(FLAGS_data_root);
  options.threads = threads;
  options.cache_dir = absl::GetFlag(FLAGS_cache_dir);
  if (options.cache_dir.empty()) {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    if (xdg != nullptr && *xdg != '\0') options.cache_dir = absl::StrCat(xdg, "/hpo");
    else if (home != nullptr && *home != '\0') options.cache_dir = absl::StrCat(home, "/.cache/hpo");
  } else if (options.cache_dir == "none") {
    options.cache_dir.clear();
  }
  spdlog::info("hpo-worker {} serving {} with {} LibTorch thread(s), data in {}, image cache in {}", worker_id,
               client.address(), torch::get_num_threads(), options.data_root,
               options.cache_dir.empty() ? "(none)" : options.cache_dir);
  spdlog::info("BLAS: {}; malloc tuning: {}", LoadedBlas(),
               absl::GetFlag(FLAGS_malloc_tuning) ? "mmap threshold 256 MiB, trim threshold 512 MiB" : "off");

  const int max_trials = absl::GetFlag(FLAGS_max_trials);
  int ran = 0;
  auto backoff = std::chrono::milliseconds(500);
  bool warned = false;
  while (!g_stop.load() && (max_trials == 0 || ran < max_trials)) {
    auto a = client.Ask({"cnn"});
    if (!a.ok() && (a.status().code() == absl::StatusCode::kUnauthenticated ||
                    a.status().code() == absl::StatusCode::kPermissionDenied)) {
      // Asking again will not help: a missing, revoked or wrong token.
      spdlog::error("the coordinator at {} refused this worker: {} (give --token or HPO_TOKEN a worker token)",
                    client.address(), std::string(a.status().message()));
      return 1;
    }
    if (!a.ok()) {
      const bool transient = a.status().code() == absl::StatusCode::kUnavailable ||
                             a.status().code() == absl::StatusCode::kDeadlineExceeded;
      if (!warned || !transient) {
        spdlog::warn("cannot get a trial from {}: {}; retrying", client.address(),
                     std::string(a.status().message()));
        warned = true;
      }
      Nap(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      continue;
    }
    if (warned) spdlog::info("coordinator {} reachable again", client.address());
    warned = false;
    backoff = std::chrono::milliseconds(500);
    if (!a->assigned()) {
      Nap(std::chrono::milliseconds(std::max(100, a->retry_after_ms())));
      continue;
    }
    hpo::worker::RunTrial(client, *a, options, g_stop);
    ++ran;
  }
  spdlog::info("hpo-worker {} exiting after {} trial(s)", worker_id, ran);
  return 0;
}
