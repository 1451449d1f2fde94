// SIGTERM drains (issue 13), with real processes: hpo-server, an hpo-worker training a small
// Fashion-MNIST study, and a client of our own holding a measurement stream open. On SIGTERM the
// health service says NOT_SERVING, the open stream ends UNAVAILABLE with "hpo-server is shutting
// down; reconnect", new calls get UNAVAILABLE, and the server exits 0 within a few seconds. The
// worker then reconnects to the server restarted on the same port, and the study finishes.
#include <gtest/gtest.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/types/optional.h"
#include "hpo/v1/coordinator.grpc.pb.h"
#include "tests/testing/process.h"

namespace hpo {
namespace {

namespace fs = std::filesystem;
using hpo::testing::Process;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kFashionMnist[] = "/usr/share/datasets/fashion-mnist";
constexpr char kShuttingDown[] = "hpo-server is shutting down; reconnect";

// grpc.health.v1.Health/Check with an empty request (all services): the serialized answer, whose
// field 1 is 1 for SERVING and 2 for NOT_SERVING; or the call's error.
grpc::Status Health(const std::string& address, std::string* answer) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
  grpc::Slice empty("", 0);
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  grpc::Status s = done.get_future().get();
  answer->clear();
  std::vector<grpc::Slice> slices;
  if (s.ok() && response.Dump(&slices).ok()) {
    for (const auto& sl : slices) answer->append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  }
  return s;
}

class DrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kFashionMnist)) << kFashionMnist << " is missing: install dataset-fashion-mnist";
    dir_ = fs::temp_directory_path() / ("hpo_drain_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    worker_ = Process();
    server_ = Process();
    if (HasFailure()) {
      for (const auto& f : fs::directory_iterator(dir_)) {
        if (f.path().extension() != ".log") continue;
        std::ifstream in(f.path());
        std::stringstream s;
        s << in.rdbuf();
        std::string text = s.str();
        if (text.size() > 6000) text = "..." + text.substr(text.size() - 6000);
        std::cerr << "==== " << f.path().filename() << " ====\n" << text << "\n";
      }
    }
    fs::remove_all(dir_);
  }

  void StartServer(int port) {
    const std::string port_file = (dir_ / "port").string();
    fs::remove(port_file);
    server_ = Process::Start({HPO_SERVER_BIN, "--listen=127.0.0.1:" + std::to_string(port),
                              "--db=" + (dir_ / "hpo.db").string(), "--port_file=" + port_file, "--drain_time=3s"},
                             (dir_ / ("server" + std::to_string(starts_++) + ".log")).string());
    port_ = hpo::testing::WaitForPortFile(port_file, server_);
    ASSERT_TRUE(server_.Running()) << "hpo-server exited";
    ASSERT_GT(port_, 0);
    address_ = "127.0.0.1:" + std::to_string(port_);
    stub_ = hpo::v1::Coordinator::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  int64_t CreateStudy(const json& spec) {
    hpo::v1::CreateStudyRequest req;
    req.set_spec_json(spec.dump());
    hpo::v1::CreateStudyResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->CreateStudy(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.study().id();
  }

  absl::optional<hpo::v1::Study> GetStudy(int64_t id) {
    hpo::v1::GetStudyRequest req;
    req.set_study_id(id);
    hpo::v1::GetStudyResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
    if (!stub_->GetStudy(&ctx, req, &resp).ok()) return absl::nullopt;
    return resp.study();
  }

  fs::path dir_;
  Process server_, worker_;
  int port_ = 0, starts_ = 0;
  std::string address_;
  std::unique_ptr<hpo::v1::Coordinator::Stub> stub_;
};

TEST_F(DrainTest, SigtermDrainsAndTheWorkerFinishesTheStudyOnTheRestartedServer) {
  ASSERT_NO_FATAL_FAILURE(StartServer(0));
  // A CNN study for the real worker: 3 trials of 3 short epochs, no pruning.
  json cnn = {{"name", "drain"},
              {"objective", {{"metric", "val_accuracy"}, {"direction", "maximize"}}},
              {"parameters", json::array({{{"name", "learning_rate"}, {"type", "float"}, {"low", 0.001},
                                           {"high", 0.01}, {"log", true}}})},
              {"sampler", {{"type", "random"}, {"seed", 3}}},
              {"pruner", {{"type", "none"}}},
              {"max_trials", 3},
              {"task", {{"type", "cnn"}, {"dataset", "fashion-mnist"}, {"train_examples", 600},
                        {"val_examples", 300}, {"test_examples", 300}, {"max_epochs", 3}}}};
  const int64_t study = CreateStudy(cnn);
  // An external study whose trial our own client reports into, holding its stream open.
  json external = {{"name", "probe"},
                   {"task", {{"type", "external"}, {"max_steps", 100}}},
                   {"parameters", json::array({{{"name", "x"}, {"type", "float"}, {"low", 0}, {"high", 1}}})},
                   {"max_trials", 1}};
  CreateStudy(external);
  hpo::v1::AskTrialRequest ask;
  ask.set_worker_id("probe");
  ask.add_task_types("external");
  hpo::v1::AskTrialResponse asked;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->AskTrial(&ctx, ask, &asked).ok());
    ASSERT_TRUE(asked.assigned());
  }
  grpc::ClientContext stream_ctx;
  stream_ctx.set_deadline(std::chrono::system_clock::now() + seconds(120));
  auto stream = stub_->ReportProgress(&stream_ctx);
  hpo::v1::ProgressReport report;
  report.set_trial_id(asked.trial().id());
  report.set_worker_id("probe");
  report.mutable_measurement()->set_step(0);
  report.mutable_measurement()->set_value(0.25);
  hpo::v1::ProgressDecision decision;
  ASSERT_TRUE(stream->Write(report) && stream->Read(&decision));
  EXPECT_EQ(decision.action(), hpo::v1::ProgressDecision::CONTINUE);

  worker_ = Process::Start({HPO_WORKER_BIN, "--coordinator=" + address_, "--data_root=/usr/share/datasets",
                            "--threads=1", "--worker_id=w1", "--cache_dir=" + (dir_ / "cache").string()},
                           (dir_ / "worker.log").string());
  // Until the worker has reported an epoch.
  bool training = false;
  for (int i = 0; i < 600 && !training; ++i) {
    hpo::v1::ListTrialsRequest req;
    req.set_study_id(study);
    hpo::v1::ListTrialsResponse resp;
    grpc::ClientContext ctx;
    if (stub_->ListTrials(&ctx, req, &resp).ok() && resp.trials_size() > 0 &&
        resp.trials(0).measurements_size() > 0) {
      training = true;
    } else {
      std::this_thread::sleep_for(milliseconds(200));
    }
  }
  ASSERT_TRUE(training) << "the worker reported no epoch within 120 s";

  std::string health;
  ASSERT_TRUE(Health(address_, &health).ok());
  EXPECT_EQ(health, std::string("\x08\x01", 2)) << "SERVING before the signal";

  const auto signalled = std::chrono::steady_clock::now();
  server_.Signal(SIGTERM);
  // The open stream ends with UNAVAILABLE and the message, at once.
  EXPECT_FALSE(stream->Read(&decision));
  grpc::Status ended = stream->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ended.error_message(), kShuttingDown);
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, seconds(2));
  // During the drain (--drain_time=3s): health says NOT_SERVING; other calls get UNAVAILABLE.
  grpc::Status h = Health(address_, &health);
  ASSERT_TRUE(h.ok()) << h.error_message();
  EXPECT_EQ(health, std::string("\x08\x02", 2)) << "NOT_SERVING during the drain";
  {
    hpo::v1::GetStudyRequest req;
    req.set_study_id(study);
    hpo::v1::GetStudyResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->GetStudy(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(s.error_message(), kShuttingDown);
  }
  // Then it stops, cleanly, within a few seconds.
  EXPECT_EQ(server_.Wait(seconds(10)), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, seconds(8));
  EXPECT_TRUE(worker_.Running()) << "the worker waits for the coordinator";

  // Restarted on the same port: the worker reconnects by itself and the study finishes.
  std::this_thread::sleep_for(seconds(1));
  ASSERT_NO_FATAL_FAILURE(StartServer(port_));
  absl::optional<hpo::v1::Study> s;
  for (int i = 0; i < 1500; ++i) {  // 300 s
    s = GetStudy(study);
    if (s.has_value() && s->state() != hpo::v1::STUDY_RUNNING) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state(), hpo::v1::STUDY_COMPLETED);
  EXPECT_EQ(s->counts().completed(), 3) << "no trial was lost to the restart";
  EXPECT_EQ(s->counts().failed(), 0);
  EXPECT_TRUE(worker_.Running());
}

}  // namespace
}  // namespace hpo
