// The cost of the coordinator's storage writes on SQLite (issue 12: the prepared-statement
// cache): UpdateTrial with a measurement (a Report), UpdateTrial alone (a start, completion or
// failure) and CreateTrial (an ask), each timed over `--n` calls on a fresh database file.
//
//   hpo-storage-bench [--n=20000] [--trials=100] [--dir=/tmp] [--repeat=3]
//
// Prints one line per operation: calls, wall seconds, microseconds per call, and the process's
// CPU time per call (steadier on a loaded machine), each the best of --repeat runs on new files. The figures in bench/README.md compare this binary built from
// today's server/storage/sqlite_storage.cc with one built from the version before the cache.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/storage/sqlite_storage.h"

namespace {

using hpo::server::Measurement;
using hpo::server::Storage;
using hpo::server::Study;
using hpo::server::Trial;
using hpo::server::TrialState;

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

struct Options {
  int n = 20000;
  int trials = 100;
  int repeat = 3;
  std::string dir = std::filesystem::temp_directory_path().string();
};

struct Cost {
  double wall = 0, cpu = 0;  // seconds; cpu: this process's user + system time
};

double CpuSeconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// Seconds for `op(i)`, i in [0, n), on a store with one study of `trials` RUNNING trials.
Cost Time(const Options& o, const std::function<void(Storage&, std::vector<Trial>&, int)>& op) {
  const std::string path = o.dir + "/hpo_storage_bench_" + std::to_string(::getpid()) + ".db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  Cost cost;
  {
    auto opened = hpo::server::OpenSqliteStorage(path);
    Check(opened.status(), "open");
    Storage& s = **opened;
    Study study;
    study.spec.name = "bench";
    study.spec_json = R"({"name": "bench"})";
    study.created = absl::Now();
    auto study_id = s.CreateStudy(study);
    Check(study_id.status(), "CreateStudy");
    std::vector<Trial> trials;
    for (int i = 0; i < o.trials; ++i) {
      Trial t;
      t.study_id = *study_id;
      t.number = i;
      t.state = TrialState::kRunning;
      t.params = {{"learning_rate", 0.001 * (i + 1)}, {"filters", int64_t{32}}, {"optimizer", std::string("adam")}};
      t.worker = "bench-worker";
      t.created = t.started = absl::Now();
      auto id = s.CreateTrial(t);
      Check(id.status(), "CreateTrial");
      t.id = *id;
      trials.push_back(std::move(t));
    }
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = CpuSeconds();
    for (int i = 0; i < o.n; ++i) op(s, trials, i);
    cost.cpu = CpuSeconds() - cpu_start;
    cost.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  return cost;
}

void Report(const Options& o, const char* name, const std::function<void(Storage&, std::vector<Trial>&, int)>& op) {
  Cost best{1e300, 1e300};
  for (int r = 0; r < o.repeat; ++r) {
    const Cost c = Time(o, op);
    best.wall = std::min(best.wall, c.wall);
    best.cpu = std::min(best.cpu, c.cpu);
  }
  std::printf("%-32s %7d calls  wall %7.3f s %7.1f us/call %8.0f calls/s  cpu %7.1f us/call\n", name, o.n,
              best.wall, 1e6 * best.wall / o.n, o.n / best.wall, 1e6 * best.cpu / o.n);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const std::string prefix = std::string(flag) + "=";
      return a.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (const char* v = value("--n")) o.n = std::atoi(v);
    else if (const char* v = value("--trials")) o.trials = std::atoi(v);
    else if (const char* v = value("--repeat")) o.repeat = std::atoi(v);
    else if (const char* v = value("--dir")) o.dir = v;
    else {
      std::fprintf(stderr, "usage: %s [--n=20000] [--trials=100] [--repeat=3] [--dir=/tmp]\n", argv[0]);
      return 2;
    }
  }
  if (o.n <= 0 || o.trials <= 0 || o.repeat <= 0) {
    std::fprintf(stderr, "--n, --trials and --repeat must be positive\n");
    return 2;
  }
  std::printf("SQLite %s, %d trials, best of %d runs\n", sqlite3_libversion(), o.trials, o.repeat);
  Report(o, "UpdateTrial with measurement", [&](Storage& s, std::vector<Trial>& trials, int i) {
    Trial& t = trials[i % trials.size()];
    Measurement m{static_cast<int>(i / trials.size()) + 1, 0.5 + 1e-6 * i,
                  {{"val_loss", 0.4}, {"train_accuracy", 0.8}, {"train_loss", 0.3}, {"learning_rate", 0.001},
                   {"epoch_seconds", 12.5}, {"images_per_second", 4000}},
                  absl::Now()};
    t.value = m.value;
    t.best_step = m.step;
    Check(s.UpdateTrial(t, &m), "UpdateTrial");
  });
  Report(o, "UpdateTrial without measurement", [&](Storage& s, std::vector<Trial>& trials, int i) {
    Trial& t = trials[i % trials.size()];
    t.reason = (i % 2) ? "a" : "b";
    Check(s.UpdateTrial(t, nullptr), "UpdateTrial");
  });
  Report(o, "CreateTrial", [&](Storage& s, std::vector<Trial>& trials, int i) {
    Trial t = trials[0];
    t.number = static_cast<int>(trials.size()) + i;
    Check(s.CreateTrial(t).status(), "CreateTrial");
  });
  return 0;
}
