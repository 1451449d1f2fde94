// Requests a hostile or careless client could send, through the real gRPC handlers (a server on
// a loopback port, in process): each must be answered with a status that says what is wrong,
// never crash the coordinator, and never be stored.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <stdexcept>

#include "hpo/v1/coordinator.grpc.pb.h"
#include "server/rpc/coordinator_service.h"
#include "server/storage/sqlite_storage.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;

using hpo::testing::FakeClock;

// SQLite storage that throws from the next write when asked to: stands in for any bug that
// lets an exception out of the coordinator.
class ThrowingStorage final : public Storage {
 public:
  explicit ThrowingStorage(std::unique_ptr<Storage> inner) : inner_(std::move(inner)) {}
  std::atomic<bool> throw_next{false};

  absl::StatusOr<std::vector<Study>> LoadAll() override { return inner_->LoadAll(); }
  absl::StatusOr<int64_t> CreateStudy(const Study& s) override {
    MaybeThrow();
    return inner_->CreateStudy(s);
  }
  absl::Status UpdateStudyState(int64_t id, StudyState state) override {
    MaybeThrow();
    return inner_->UpdateStudyState(id, state);
  }
  absl::Status DeleteStudy(int64_t id) override {
    MaybeThrow();
    return inner_->DeleteStudy(id);
  }
  absl::StatusOr<int64_t> CreateTrial(const Trial& t) override {
    MaybeThrow();
    return inner_->CreateTrial(t);
  }
  absl::Status UpdateTrial(const Trial& t, const Measurement* m) override {
    MaybeThrow();
    return inner_->UpdateTrial(t, m);
  }
  absl::Status Transaction(const std::function<absl::Status()>& body) override {
    return inner_->Transaction(body);
  }
  absl::StatusOr<std::vector<TrialDetails>> LoadTrialDetails(int64_t id, int first, int limit) override {
    return inner_->LoadTrialDetails(id, first, limit);
  }

 private:
  void MaybeThrow() {
    if (throw_next.exchange(false)) throw std::runtime_error("storage exploded");
  }
  std::unique_ptr<Storage> inner_;
};

constexpr char kExternalSpec[] = R"({"name": "hostile", "task": {"type": "external", "max_steps": 3},
  "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1}], "max_trials": 100})";

class HostileInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::filesystem::temp_directory_path() /
          ("hpo_hostile_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db");
    Cleanup();
    auto sqlite = OpenSqliteStorage(db_.string());
    ASSERT_THAT(sqlite, IsOk());
    auto storage = std::make_unique<ThrowingStorage>(std::move(*sqlite));
    storage_ = storage.get();
    auto c = Coordinator::Open(std::move(storage), &clock_, CoordinatorOptions{});
    ASSERT_THAT(c, IsOk());
    coordinator_ = std::move(*c);
    service_ = std::make_unique<CoordinatorService>(coordinator_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    ConfigureServerBuilder(&builder);
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_ != nullptr && port != 0);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = hpo::v1::Coordinator::NewStub(channel_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
    service_.reset();
    coordinator_.reset();
    Cleanup();
  }
  void Cleanup() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db_.string() + suffix);
  }

  grpc::Status CreateStudy(const std::string& spec, int64_t* id = nullptr) {
    hpo::v1::CreateStudyRequest req;
    req.set_spec_json(spec);
    hpo::v1::CreateStudyResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->CreateStudy(&ctx, req, &resp);
    if (id != nullptr) *id = resp.study().id();
    return s;
  }
  grpc::Status Ask(const std::string& worker, hpo::v1::AskTrialResponse* resp) {
    hpo::v1::AskTrialRequest req;
    req.set_worker_id(worker);
    req.add_task_types("external");
    grpc::ClientContext ctx;
    return stub_->AskTrial(&ctx, req, resp);
  }
  // A running trial of a new external study (max_steps 3); its id.
  int64_t RunningTrial() {
    int64_t study = 0;
    EXPECT_TRUE(CreateStudy(kExternalSpec, &study).ok());
    hpo::v1::AskTrialResponse resp;
    EXPECT_TRUE(Ask("w1", &resp).ok());
    EXPECT_TRUE(resp.assigned());
    return resp.trial().id();
  }
  // Sends `reports` on one stream; the decisions read and the stream's final status.
  grpc::Status Stream(const std::vector<hpo::v1::ProgressReport>& reports,
                      std::vector<hpo::v1::ProgressDecision>* decisions = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub_->ReportProgress(&ctx);
    for (const auto& r : reports) {
      hpo::v1::ProgressDecision d;
      if (!stream->Write(r) || !stream->Read(&d)) break;
      if (decisions != nullptr) decisions->push_back(d);
    }
    stream->WritesDone();
    hpo::v1::ProgressDecision ignored;
    while (stream->Read(&ignored)) {
    }
    return stream->Finish();
  }
  static hpo::v1::ProgressReport Report(int64_t trial, int step, double value) {
    hpo::v1::ProgressReport r;
    r.set_trial_id(trial);
    r.mutable_measurement()->set_step(step);
    r.mutable_measurement()->set_value(value);
    return r;
  }
  hpo::v1::Trial GetTrial(int64_t study, int number) {
    hpo::v1::ListTrialsRequest req;
    req.set_study_id(study);
    hpo::v1::ListTrialsResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(stub_->ListTrials(&ctx, req, &resp).ok());
    return resp.trials(number);
  }

  FakeClock clock_;
  std::filesystem::path db_;
  ThrowingStorage* storage_ = nullptr;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<hpo::v1::Coordinator::Stub> stub_;
};

TEST_F(HostileInputTest, AnExceptionInAHandlerBecomesAStatusWithAMessage) {
  // Before: the library answered UNIMPLEMENTED with an empty message (and a stream handler's
  // exception terminated the server).
  storage_->throw_next = true;
  grpc::Status s = CreateStudy(kExternalSpec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(s.error_message().find("storage exploded"), std::string::npos) << s.error_message();
  const int64_t trial = RunningTrial();
  storage_->throw_next = true;
  s = Stream({Report(trial, 1, 0.5)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL) << s.error_message();
  EXPECT_NE(s.error_message().find("storage exploded"), std::string::npos) << s.error_message();
  // The server is still serving.
  EXPECT_TRUE(Stream({Report(trial, 1, 0.5)}).ok());
}

TEST_F(HostileInputTest, ABadSpecIsInvalidArgumentOverTheWire) {
  grpc::Status s = CreateStudy(R"({"name": "x", "task": {"type": 1}, "parameters": [], "max_trials": 1})");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("task.type"), std::string::npos) << s.error_message();
  s = CreateStudy(R"({"name": "x", "task": {"type": "external"}, "max_trials": 1e309})");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  // Invalid UTF-8 in a proto3 string: gRPC itself refuses the request before the handler runs
  // (UNIMPLEMENTED, no message; only a `bytes` field would let the handler say more).
  s = CreateStudy("{\"name\": \"\xff\xfe\"}");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(CreateStudy(kExternalSpec).ok());  // still serving
}

TEST_F(HostileInputTest, EnqueuedParametersAreBoundedInDepthAndSize) {
  int64_t study = 0;
  ASSERT_TRUE(CreateStudy(kExternalSpec, &study).ok());
  auto enqueue = [&](const std::string& params) {
    hpo::v1::EnqueueTrialRequest req;
    req.set_study_id(study);
    req.set_params_json(params);
    hpo::v1::EnqueueTrialResponse resp;
    grpc::ClientContext ctx;
    return stub_->EnqueueTrial(&ctx, req, &resp);
  };
  // Before: the error message dumped the value recursively and overflowed the stack.
  const std::string deep = std::string(70'000, '[') + std::string(70'000, ']');
  grpc::Status s = enqueue("{\"x\": " + deep + "}");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("nested deeper than 64"), std::string::npos) << s.error_message();
  s = enqueue("{\"x\": \"" + std::string(100'000, 'a') + "\"}");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("65536 bytes"), std::string::npos) << s.error_message().substr(0, 200);
  s = enqueue("{\"x\": \"" + std::string(10'000, 'a') + "\"}");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(s.error_message().size(), 400u);
  EXPECT_TRUE(enqueue(R"({"x": 0.5})").ok());
}

TEST_F(HostileInputTest, AReportWithoutAMeasurementOrBeyondMaxStepsIsRefused) {
  const int64_t trial = RunningTrial();
  hpo::v1::ProgressReport empty;
  empty.set_trial_id(trial);
  // Before: stored as step 0, value 0.
  grpc::Status s = Stream({empty});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("measurement"), std::string::npos) << s.error_message();
  std::vector<hpo::v1::ProgressDecision> decisions;
  EXPECT_TRUE(Stream({Report(trial, 1, 0.5), Report(trial, 3, 0.4)}, &decisions).ok());
  EXPECT_EQ(decisions.size(), 2u);
  s = Stream({Report(trial, 4, 0.3)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("max_steps (3)"), std::string::npos) << s.error_message();
  EXPECT_EQ(GetTrial(1, 0).measurements_size(), 2);
}

TEST_F(HostileInputTest, MetricsPerMeasurementAndTheirNamesAreBounded) {
  const int64_t trial = RunningTrial();
  hpo::v1::ProgressReport many = Report(trial, 1, 0.5);
  for (int i = 0; i < 65; ++i) (*many.mutable_measurement()->mutable_metrics())["m" + std::to_string(i)] = i;
  grpc::Status s = Stream({many});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("at most 64 metrics"), std::string::npos) << s.error_message();
  hpo::v1::ProgressReport long_name = Report(trial, 1, 0.5);
  (*long_name.mutable_measurement()->mutable_metrics())[std::string(129, 'm')] = 1;
  s = Stream({long_name});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("128 bytes"), std::string::npos) << s.error_message().substr(0, 300);
  EXPECT_LT(s.error_message().size(), 400u);
  EXPECT_EQ(GetTrial(1, 0).measurements_size(), 0);

  hpo::v1::CompleteTrialRequest complete;
  complete.set_trial_id(trial);
  for (int i = 0; i < 65; ++i) (*complete.mutable_final_metrics())["m" + std::to_string(i)] = i;
  hpo::v1::CompleteTrialResponse resp;
  grpc::ClientContext ctx;
  s = stub_->CompleteTrial(&ctx, complete, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("at most 64 metrics"), std::string::npos) << s.error_message();
}

TEST_F(HostileInputTest, WorkerIdsAreBoundedAndReasonsTruncated) {
  hpo::v1::AskTrialResponse ask;
  ASSERT_TRUE(CreateStudy(kExternalSpec).ok());
  grpc::Status s = Ask(std::string(257, 'w'), &ask);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("256 bytes"), std::string::npos) << s.error_message().substr(0, 300);
  EXPECT_FALSE(ask.assigned());
  ASSERT_TRUE(Ask(std::string(256, 'w'), &ask).ok());
  ASSERT_TRUE(ask.assigned());

  hpo::v1::HeartbeatRequest hb;
  hb.set_trial_id(ask.trial().id());
  hb.set_worker_id(std::string(3'000'000, 'w'));
  hpo::v1::HeartbeatResponse hb_resp;
  grpc::ClientContext hb_ctx;
  EXPECT_EQ(stub_->Heartbeat(&hb_ctx, hb, &hb_resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  hpo::v1::FailTrialRequest fail;
  fail.set_trial_id(ask.trial().id());
  fail.set_reason(std::string(3'000'000, 'r'));
  hpo::v1::FailTrialResponse fail_resp;
  grpc::ClientContext fail_ctx;
  ASSERT_TRUE(stub_->FailTrial(&fail_ctx, fail, &fail_resp).ok());
  const std::string reason = GetTrial(1, 0).reason();
  EXPECT_LE(reason.size(), 4096u + 100u);
  EXPECT_NE(reason.find("truncated"), std::string::npos);
}

TEST_F(HostileInputTest, AMalformedStreamMessageEndsTheStreamWithAnError) {
  const int64_t trial = RunningTrial();
  // A raw frame that is not a ProgressReport: a varint tag with no value.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel_.get(),
          grpc::internal::RpcMethod("/hpo.v1.Coordinator/ReportProgress",
                                    grpc::internal::RpcMethod::BIDI_STREAMING),
          &ctx));
  const char garbage[] = {0x08};
  grpc::Slice slice(garbage, sizeof(garbage));
  grpc::ByteBuffer buffer(&slice, 1);
  stream->Write(buffer);
  grpc::ByteBuffer reply;
  EXPECT_FALSE(stream->Read(&reply));  // no decision
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  // A clean half-close still ends with OK.
  EXPECT_TRUE(Stream({Report(trial, 1, 0.5)}).ok());
  EXPECT_TRUE(Stream({}).ok());
}

TEST_F(HostileInputTest, TheMessageSizeIsBounded) {
  // ConfigureServerBuilder sets 4 MiB as the largest request.
  grpc::Status s = CreateStudy(std::string(5 << 20, ' '));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_TRUE(CreateStudy(kExternalSpec).ok());  // still serving
}

}  // namespace
}  // namespace hpo::server
