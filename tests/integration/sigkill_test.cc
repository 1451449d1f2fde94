// SIGKILL under load (issue 13, "Faults"): a real hpo-server on a temporary SQLite file, 32 concurrent
// measurement streams, and the server SIGKILLed several times while they run and restarted on the same
// file and port. Every report the server acknowledged (a decision came back) is counted client side,
// and at the end every one of them must be in the database: an acknowledgement is a promise that the
// measurement is committed.
//
// The short form runs in the suite (3 kills, about 2.5 s apart, under 30 s). The long form is the same
// test with more of everything, e.g.
//   HPO_SIGKILL_KILLS=30 HPO_SIGKILL_INTERVAL_MS=10000 HPO_SIGKILL_STREAMS=64 build/tests/sigkill_test
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hpo/v1/coordinator.grpc.pb.h"
#include "tests/testing/process.h"

namespace hpo {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using hpo::testing::Process;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

// The same value for the same step, so that a report resent after a lost acknowledgement is the
// same measurement (the server answers it again instead of refusing it).
double ValueFor(int64_t trial, int step) { return static_cast<double>((trial * 7919 + step) % 1000) / 1000.0; }

// Sets ProgressReport.worker_id (the lease holder's name) when the proto has it.
void SetWorkerId(google::protobuf::Message* m, const std::string& worker) {
  const auto* field = m->GetDescriptor()->FindFieldByName("worker_id");
  if (field != nullptr) m->GetReflection()->SetString(m, field, worker);
}

class SigkillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("hpo_sigkill_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    server_ = Process();  // SIGKILLs it if still running
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // Starts hpo-server on `port` (0: any free one, remembered for the restarts) and waits for it.
  void StartServer() {
    const std::string port_file = (dir_ / "port").string();
    fs::remove(port_file);
    server_ = Process::Start({HPO_SERVER_BIN, "--listen=127.0.0.1:" + std::to_string(port_),
                              "--db=" + (dir_ / "hpo.db").string(), "--port_file=" + port_file,
                              "--lease_timeout=600s", "--log_level=info"},
                             (dir_ / ("server" + std::to_string(starts_++) + ".log")).string());
    const int port = hpo::testing::WaitForPortFile(port_file, server_, milliseconds(20000));
    ASSERT_TRUE(server_.Running()) << "hpo-server exited; see " << dir_;
    ASSERT_GT(port, 0);
    if (port_ == 0) port_ = port;
    ASSERT_EQ(port, port_);
  }

  fs::path dir_;
  Process server_;
  int port_ = 0;
  int starts_ = 0;
};

// One client: a trial of its own, reported step after step on a stream that is reopened whenever
// the server goes away; the same step is sent again until it is acknowledged.
struct Client {
  std::string worker;
  int64_t trial = 0;
  std::atomic<int> acked{0};  // steps 1..acked are acknowledged (written by the client thread only)
  int reconnects = 0;
  std::string error;      // a refusal that is not the server going away
  std::string last_break; // how the last stream ended when it broke (for a failure message)
};

void RunClient(Client* c, hpo::v1::Coordinator::Stub* stub, const std::atomic<bool>* stop) {
  while (!stop->load()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));  // renewed after about 3 s
    // While the server is down, wait for it (up to the deadline) rather than fail at once: a
    // channel whose every call fails fast may not be retrying its connection when the server is back.
    ctx.set_wait_for_ready(true);
    auto stream = stub->ReportProgress(&ctx);
    bool broken = false;
    while (!stop->load()) {
      hpo::v1::ProgressReport r;
      r.set_trial_id(c->trial);
      SetWorkerId(&r, c->worker);
      const int step = c->acked + 1;
      r.mutable_measurement()->set_step(step);
      r.mutable_measurement()->set_value(ValueFor(c->trial, step));
      hpo::v1::ProgressDecision d;
      if (!stream->Write(r) || !stream->Read(&d)) {
        broken = true;
        break;
      }
      if (d.step() != step || d.action() != hpo::v1::ProgressDecision::CONTINUE) {
        c->error = "step " + std::to_string(step) + ": decision for step " + std::to_string(d.step()) +
                   ", action " + std::to_string(d.action()) + " " + d.reason();
        return;
      }
      c->acked = step;  // acknowledged: it must be in the database from now on
      if (ctx.deadline() - std::chrono::system_clock::now() < seconds(2)) break;  // a fresh stream now and then
    }
    stream->WritesDone();
    hpo::v1::ProgressDecision ignored;
    while (stream->Read(&ignored)) {
    }
    const grpc::Status s = stream->Finish();
    // The server was killed (UNAVAILABLE, CANCELLED, a reset stream: INTERNAL or UNKNOWN) or not
    // back yet: try again. Anything the coordinator itself refuses is a failure of the test.
    if (!s.ok() && (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                    s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                    s.error_code() == grpc::StatusCode::NOT_FOUND ||
                    s.error_code() == grpc::StatusCode::PERMISSION_DENIED)) {
      c->error = "stream refused at step " + std::to_string(c->acked + 1) + ": " + s.error_message();
      return;
    }
    if (broken) {
      if (!stop->load()) c->last_break = std::to_string(s.error_code()) + " " + s.error_message();
      ++c->reconnects;
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
}

TEST_F(SigkillTest, EveryAcknowledgedReportSurvivesRepeatedSigkillsUnderLoad) {
  const int kills = EnvInt("HPO_SIGKILL_KILLS", 3);
  const int streams = EnvInt("HPO_SIGKILL_STREAMS", 32);
  const int interval_ms = EnvInt("HPO_SIGKILL_INTERVAL_MS", 2500);
  ASSERT_NO_FATAL_FAILURE(StartServer());

  grpc::ChannelArguments args;
  // Reconnect soon after a restart. Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: it is also the time a
  // connection attempt may take, and at 50 ms a busy restarting server could never be reached.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials(), args);
  auto stub = hpo::v1::Coordinator::NewStub(channel);

  hpo::v1::CreateStudyRequest create;
  create.set_spec_json(R"({"name": "sigkill", "task": {"type": "external", "max_steps": 1000000},
    "objective": {"metric": "value", "direction": "maximize"},
    "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1}],
    "sampler": {"type": "random", "seed": 1}, "max_trials": )" + std::to_string(streams) + "}");
  hpo::v1::CreateStudyResponse created;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(30));
    const grpc::Status s = stub->CreateStudy(&ctx, create, &created);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  std::vector<Client> clients(streams);
  for (int i = 0; i < streams; ++i) {
    clients[i].worker = "sigkill-client-" + std::to_string(i);
    hpo::v1::AskTrialRequest ask;
    ask.set_worker_id(clients[i].worker);
    ask.add_task_types("external");
    ask.set_study_id(created.study().id());
    hpo::v1::AskTrialResponse got;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(30));
    const grpc::Status s = stub->AskTrial(&ctx, ask, &got);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_TRUE(got.assigned()) << "client " << i;
    clients[i].trial = got.trial().id();
  }

  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (Client& c : clients) threads.emplace_back(RunClient, &c, stub.get(), &stop);
  auto total_acked = [&] {
    int64_t n = 0;
    for (const Client& c : clients) n += c.acked.load();
    return n;
  };

  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> jitter(interval_ms / 2, interval_ms * 3 / 2);
  std::vector<int64_t> acked_at_kill;
  for (int k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(milliseconds(jitter(rng)));
    acked_at_kill.push_back(total_acked());
    server_.Signal(SIGKILL);
    ASSERT_EQ(server_.Wait(seconds(10)), 128 + SIGKILL);
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_NO_FATAL_FAILURE(StartServer());
  }
  std::this_thread::sleep_for(milliseconds(interval_ms));
  acked_at_kill.push_back(total_acked());
  // The last kill comes while the clients are still writing, too.
  server_.Signal(SIGKILL);
  ASSERT_EQ(server_.Wait(seconds(10)), 128 + SIGKILL);
  stop = true;
  for (std::thread& t : threads) t.join();

  int64_t acked = 0;
  int reconnects = 0;
  for (const Client& c : clients) {
    EXPECT_EQ(c.error, "") << c.worker;
    acked += c.acked;
    reconnects += c.reconnects;
  }
  // The server served between every two kills, and every client reconnected after the kills.
  for (size_t k = 1; k < acked_at_kill.size(); ++k) {
    EXPECT_GT(acked_at_kill[k], acked_at_kill[k - 1])
        << "nothing acknowledged between kill " << k - 1 << " and " << k << "; a stream broke last with "
        << clients[0].last_break;
  }
  EXPECT_GE(reconnects, streams) << "the kills did not break the streams";
  EXPECT_GT(acked, 100);

  // Every acknowledged report is in the database, with its value.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "hpo.db").string().c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT step, value FROM measurements WHERE trial_id = ? ORDER BY step", -1, &q,
                               nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  int64_t lost = 0, stored = 0;
  for (const Client& c : clients) {
    sqlite3_bind_int64(q, 1, c.trial);
    std::map<int, double> steps;
    while (sqlite3_step(q) == SQLITE_ROW) steps[sqlite3_column_int(q, 0)] = sqlite3_column_double(q, 1);
    sqlite3_reset(q);
    stored += static_cast<int64_t>(steps.size());
    for (int step = 1; step <= c.acked; ++step) {
      auto it = steps.find(step);
      if (it == steps.end()) {
        if (++lost <= 10) ADD_FAILURE() << "trial " << c.trial << ": acknowledged step " << step << " is not stored";
      } else {
        EXPECT_EQ(it->second, ValueFor(c.trial, step)) << "trial " << c.trial << " step " << step;
      }
    }
  }
  sqlite3_finalize(q);
  sqlite3_close(db);
  EXPECT_EQ(lost, 0);
  EXPECT_GE(stored, acked);  // unacknowledged reports may be stored too (the reply was lost)
  std::printf("sigkill: %d streams, %d kills + 1 at the end, %lld reports acknowledged, %lld stored, %lld lost, "
              "%d reconnects\n",
              streams, kills, static_cast<long long>(acked), static_cast<long long>(stored),
              static_cast<long long>(lost), reconnects);
}

}  // namespace
}  // namespace hpo
