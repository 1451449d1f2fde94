// Bounds of the gRPC service (issue 13), through the real handlers on a loopback port: paged
// ListStudies/ListTrials, DeleteStudy, the open-stream limit (--max_streams), idle streams, and
// the drain that SIGTERM starts (tests/integration/drain_test.cc has the real-process side).
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "hpo/v1/coordinator.grpc.pb.h"
#include "server/rpc/coordinator_service.h"
#include "server/storage/sqlite_storage.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"
#include "worker/coordinator_client.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;
using hpo::testing::FakeClock;
using nlohmann::json;
using std::chrono::milliseconds;

json ExternalSpec(const std::string& name, int max_trials) {
  return {{"name", name},
          {"task", {{"type", "external"}, {"max_steps", 100}}},
          {"parameters", json::array({{{"name", "x"}, {"type", "float"}, {"low", 0}, {"high", 1}}})},
          {"max_trials", max_trials}};
}

class ServiceLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::filesystem::temp_directory_path() /
          ("hpo_limits_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db");
    Cleanup();
    auto sqlite = OpenSqliteStorage(db_.string());
    ASSERT_THAT(sqlite, IsOk());
    auto c = Coordinator::Open(std::move(*sqlite), &clock_, CoordinatorOptions{});
    ASSERT_THAT(c, IsOk());
    coordinator_ = std::move(*c);
    service_ = std::make_unique<CoordinatorService>(coordinator_.get(), nullptr, options_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    ConfigureServerBuilder(&builder);
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_ != nullptr && port != 0);
    address_ = "127.0.0.1:" + std::to_string(port);
    stub_ = hpo::v1::Coordinator::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
    service_.reset();
    coordinator_.reset();
    Cleanup();
  }
  void Cleanup() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db_.string() + suffix);
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
  // A RUNNING trial of a new external study (its id in last_study_); its id.
  int64_t RunningTrial() {
    last_study_ = CreateStudy(ExternalSpec("streams", 100));
    auto a = coordinator_->AskTrial("w1", {"external"}, 0);
    EXPECT_TRUE(a.ok() && a->has_value());
    return (a.ok() && a->has_value()) ? (*a)->trial.id : 0;
  }
  grpc::Status ListStudies(const hpo::v1::ListStudiesRequest& req, hpo::v1::ListStudiesResponse* resp) {
    grpc::ClientContext ctx;
    return stub_->ListStudies(&ctx, req, resp);
  }
  grpc::Status ListTrials(const hpo::v1::ListTrialsRequest& req, hpo::v1::ListTrialsResponse* resp) {
    grpc::ClientContext ctx;
    return stub_->ListTrials(&ctx, req, resp);
  }
  // Waits until the service counts `n` open streams.
  bool WaitForOpenStreams(int n) {
    for (int i = 0; i < 500; ++i) {
      if (service_->OpenStreams() == n) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  // An open measurement stream, from the client's side.
  struct Stream {
    ~Stream() {
      if (finished || rw == nullptr) return;
      ctx.TryCancel();
      hpo::v1::ProgressDecision ignored;
      while (rw->Read(&ignored)) {
      }
      (void)rw->Finish();
    }
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<hpo::v1::ProgressReport, hpo::v1::ProgressDecision>> rw;
    bool finished = false;
  };
  std::unique_ptr<Stream> Open() {
    auto s = std::make_unique<Stream>();
    s->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    s->rw = stub_->ReportProgress(&s->ctx);
    return s;
  }
  // Sends one report and reads its decision; false when the stream has ended.
  static bool Report(Stream& s, int64_t trial_id, int step, hpo::v1::ProgressDecision* d) {
    hpo::v1::ProgressReport r;
    r.set_trial_id(trial_id);
    r.set_worker_id("w1");
    r.mutable_measurement()->set_step(step);
    r.mutable_measurement()->set_value(0.5);
    return s.rw->Write(r) && s.rw->Read(d);
  }
  // The status the server ended a stream with (reading what is left first).
  static grpc::Status EndOf(Stream& s) {
    hpo::v1::ProgressDecision ignored;
    while (s.rw->Read(&ignored)) {
    }
    s.finished = true;
    return s.rw->Finish();
  }

  std::filesystem::path db_;
  FakeClock clock_;
  ServiceOptions options_;
  int64_t last_study_ = 0;
  std::string address_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<hpo::v1::Coordinator::Stub> stub_;
};

TEST_F(ServiceLimitsTest, ListStudiesPagesSummariesByToken) {
  std::vector<int64_t> ids;
  for (int k = 0; k < 5; ++k) ids.push_back(CreateStudy(ExternalSpec("s" + std::to_string(k), 3)));
  std::vector<int64_t> seen;
  hpo::v1::ListStudiesRequest req;
  req.set_page_size(2);
  std::vector<int> sizes;
  for (int pages = 0; pages < 10; ++pages) {
    hpo::v1::ListStudiesResponse resp;
    ASSERT_TRUE(ListStudies(req, &resp).ok());
    sizes.push_back(resp.studies_size());
    for (const auto& s : resp.studies()) {
      seen.push_back(s.id());
      EXPECT_TRUE(s.spec_json().empty()) << "a summary carries no spec";
      EXPECT_EQ(s.max_trials(), 3);
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(sizes, (std::vector<int>{2, 2, 1}));
  EXPECT_EQ(seen, ids);

  hpo::v1::ListStudiesRequest full;
  full.set_full(true);
  hpo::v1::ListStudiesResponse all;
  ASSERT_TRUE(ListStudies(full, &all).ok());
  ASSERT_EQ(all.studies_size(), 5) << "the default page holds them all";
  EXPECT_TRUE(all.next_page_token().empty());
  EXPECT_EQ(json::parse(all.studies(0).spec_json())["name"], "s0");

  for (const std::string& bad : std::vector<std::string>{"garbage", "c3R1ZGllczp4", std::string(300, 'A')}) {
    hpo::v1::ListStudiesRequest r;
    r.set_page_token(bad);
    hpo::v1::ListStudiesResponse resp;
    grpc::Status s = ListStudies(r, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("page_token"), std::string::npos) << s.error_message();
  }
  hpo::v1::ListStudiesRequest negative;
  negative.set_page_size(-1);
  hpo::v1::ListStudiesResponse resp;
  grpc::Status s = ListStudies(negative, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("page_size"), std::string::npos) << s.error_message();
}

TEST_F(ServiceLimitsTest, ListTrialsPagesByCountAndBytes) {
  // Trials of ~8 KB each (eight 1,000-byte string parameters): 400 of them are ~3.2 MB, more
  // than one page may hold.
  json spec = ExternalSpec("big", 2000);
  spec["parameters"] = json::array();
  const std::string a(1000, 'a'), b(1000, 'b');
  json params = json::object();
  for (int k = 0; k < 8; ++k) {
    spec["parameters"].push_back({{"name", "p" + std::to_string(k)}, {"type", "categorical"}, {"choices", {a, b}}});
    params["p" + std::to_string(k)] = a;
  }
  const int64_t study = CreateStudy(spec);
  for (int k = 0; k < 1100; ++k) ASSERT_THAT(coordinator_->EnqueueTrial(study, params.dump()), IsOk());

  hpo::v1::ListTrialsRequest req;
  req.set_study_id(study);
  req.set_page_size(100000);  // more than the maximum: the maximum, then the byte bound
  std::vector<int> numbers;
  int pages = 0;
  for (; pages < 50; ++pages) {
    hpo::v1::ListTrialsResponse resp;
    grpc::Status s = ListTrials(req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.total(), 1100);
    EXPECT_LE(resp.ByteSizeLong(), kMaxPageBytes + (16 << 10));
    for (const auto& t : resp.trials()) numbers.push_back(t.number());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_GE(pages + 1, 5) << "1,100 trials of 8 KB cannot fit in fewer than five 2 MiB pages";
  ASSERT_EQ(numbers.size(), 1100u);
  for (int k = 0; k < 1100; ++k) EXPECT_EQ(numbers[k], k);

  // Small trials: the default page is 1,000 trials.
  const int64_t small = CreateStudy(ExternalSpec("small", 2000));
  for (int k = 0; k < 1001; ++k) ASSERT_THAT(coordinator_->EnqueueTrial(small, R"({"x": 0.5})"), IsOk());
  hpo::v1::ListTrialsRequest first;
  first.set_study_id(small);
  hpo::v1::ListTrialsResponse page1, page2;
  ASSERT_TRUE(ListTrials(first, &page1).ok());
  EXPECT_EQ(page1.trials_size(), kDefaultTrialsPerPage);
  ASSERT_FALSE(page1.next_page_token().empty());
  hpo::v1::ListTrialsRequest second = first;
  second.set_page_token(page1.next_page_token());
  ASSERT_TRUE(ListTrials(second, &page2).ok());
  ASSERT_EQ(page2.trials_size(), 1);
  EXPECT_EQ(page2.trials(0).number(), 1000);
  EXPECT_TRUE(page2.next_page_token().empty());

  // A token is bound to its study.
  hpo::v1::ListTrialsRequest other;
  other.set_study_id(study);
  other.set_page_token(page1.next_page_token());
  hpo::v1::ListTrialsResponse ignored;
  grpc::Status s = ListTrials(other, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("next_page_token"), std::string::npos) << s.error_message();
}

TEST_F(ServiceLimitsTest, DeleteStudyRemovesItAndItsTrialsRefuseReports) {
  const int64_t trial = RunningTrial();
  const int64_t doomed = last_study_;
  const int64_t keep = CreateStudy(ExternalSpec("keep", 3));
  auto stream = Open();
  hpo::v1::ProgressDecision d;
  ASSERT_TRUE(Report(*stream, trial, 0, &d));

  hpo::v1::DeleteStudyRequest req;
  req.set_study_id(doomed);
  hpo::v1::DeleteStudyResponse resp;
  {
    grpc::ClientContext ctx;
    grpc::Status s = stub_->DeleteStudy(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(resp.study().id(), doomed);
  EXPECT_EQ(resp.study().name(), "streams");
  EXPECT_EQ(resp.study().counts().running(), 1);

  hpo::v1::ListStudiesResponse list;
  ASSERT_TRUE(ListStudies(hpo::v1::ListStudiesRequest(), &list).ok());
  ASSERT_EQ(list.studies_size(), 1);
  EXPECT_EQ(list.studies(0).id(), keep);
  // Its trial's next report, on the stream opened before: NOT_FOUND.
  EXPECT_FALSE(Report(*stream, trial, 1, &d));
  EXPECT_EQ(EndOf(*stream).error_code(), grpc::StatusCode::NOT_FOUND);
  // Deleting it again, or an id that never was: NOT_FOUND naming the id.
  for (int64_t id : {doomed, int64_t{987}}) {
    grpc::ClientContext ctx;
    req.set_study_id(id);
    grpc::Status s = stub_->DeleteStudy(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(s.error_message().find(std::to_string(id)), std::string::npos) << s.error_message();
  }
}

class StreamLimitTest : public ServiceLimitsTest {
 protected:
  void SetUp() override {
    options_.max_streams = 3;
    options_.stream_idle_timeout = absl::Milliseconds(300);
    ServiceLimitsTest::SetUp();
  }
};

TEST_F(StreamLimitTest, StreamsBeyondTheLimitAreRefusedUntilOneCloses) {
  const int64_t trial = RunningTrial();
  std::vector<std::unique_ptr<Stream>> open;
  for (int k = 0; k < 3; ++k) open.push_back(Open());
  ASSERT_TRUE(WaitForOpenStreams(3));
  auto extra = Open();
  hpo::v1::ProgressDecision d;
  EXPECT_FALSE(Report(*extra, trial, 0, &d));
  grpc::Status refused = EndOf(*extra);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("--max_streams=3"), std::string::npos) << refused.error_message();
  EXPECT_EQ(service_->OpenStreams(), 3);

  // Closing two makes room for a new one, which works.
  for (int k = 0; k < 2; ++k) {
    open.back()->rw->WritesDone();
    EXPECT_TRUE(EndOf(*open.back()).ok());
    open.pop_back();
  }
  ASSERT_TRUE(WaitForOpenStreams(1));
  auto again = Open();
  ASSERT_TRUE(Report(*again, trial, 0, &d));
  EXPECT_EQ(d.action(), hpo::v1::ProgressDecision::CONTINUE);
  EXPECT_EQ(service_->OpenStreams(), 2);
}

TEST_F(StreamLimitTest, AnIdleStreamIsEndedAndABusyOneIsNot) {
  const int64_t trial = RunningTrial();
  auto idle = Open();
  hpo::v1::ProgressDecision d;
  ASSERT_TRUE(Report(*idle, trial, 0, &d));
  std::this_thread::sleep_for(milliseconds(600));  // twice the idle timeout
  auto fresh = Open();
  ASSERT_TRUE(WaitForOpenStreams(2));
  EXPECT_EQ(service_->EndIdleStreams(), 1);
  grpc::Status ended = EndOf(*idle);
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(ended.error_message().find("no message for"), std::string::npos) << ended.error_message();
  ASSERT_TRUE(WaitForOpenStreams(1));
  // The fresh one goes on; its report resends the last step, which is answered again.
  ASSERT_TRUE(Report(*fresh, trial, 0, &d));
  EXPECT_EQ(d.action(), hpo::v1::ProgressDecision::CONTINUE);
  EXPECT_EQ(service_->EndIdleStreams(), 0);
}

// A worker whose epochs outlast the idle timeout (a large data set on one thread) must not find its
// stream closed, and retry, at every report: AskTrial tells it the timeout, and a report that comes
// after half of it goes on a fresh stream.
TEST_F(StreamLimitTest, AWorkerThatReportsLessOftenThanTheIdleTimeoutOpensAFreshStream) {
  last_study_ = CreateStudy(ExternalSpec("slow-epochs", 10));
  const std::atomic<bool> stop{false};
  hpo::worker::CoordinatorClient client(address_, "w1", &stop);
  auto a = client.Ask({"external"});
  ASSERT_THAT(a, IsOk());
  ASSERT_TRUE(a->assigned());
  EXPECT_EQ(a->stream_idle_timeout_ms(), 300);
  client.set_stream_idle_timeout(absl::Milliseconds(a->stream_idle_timeout_ms()));
  const int64_t trial = a->trial().id();
  hpo::v1::Measurement m;
  m.set_value(0.5);
  auto report = [&](int step) {
    m.set_step(step);
    auto d = client.Report(trial, m);
    EXPECT_THAT(d, IsOk());
    EXPECT_TRUE(d.ok() && d->action() == hpo::v1::ProgressDecision::CONTINUE);
  };
  report(0);
  ASSERT_TRUE(WaitForOpenStreams(1));
  std::this_thread::sleep_for(milliseconds(600));  // one slow epoch
  EXPECT_EQ(service_->EndIdleStreams(), 1);        // the coordinator closes the quiet stream
  report(1);                                       // on a fresh stream, which the client then closes
  EXPECT_EQ(client.retries(), 0);
  ASSERT_TRUE(WaitForOpenStreams(0));
  std::this_thread::sleep_for(milliseconds(600));
  EXPECT_EQ(service_->EndIdleStreams(), 0);  // nothing left for the coordinator to close
  report(2);
  EXPECT_EQ(client.retries(), 0);

  // Without the timeout the same gap costs a retry: the report is written to the closed stream.
  client.set_stream_idle_timeout(absl::ZeroDuration());
  report(3);
  ASSERT_TRUE(WaitForOpenStreams(1));
  std::this_thread::sleep_for(milliseconds(600));
  EXPECT_EQ(service_->EndIdleStreams(), 1);
  report(4);
  EXPECT_EQ(client.retries(), 1);
}

TEST_F(ServiceLimitsTest, BeginShutdownEndsStreamsAndRefusesNewCalls) {
  const int64_t trial = RunningTrial();
  auto stream = Open();
  hpo::v1::ProgressDecision d;
  ASSERT_TRUE(Report(*stream, trial, 0, &d));
  service_->BeginShutdown();
  grpc::Status ended = EndOf(*stream);
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ended.error_message(), kShuttingDownMessage);
  ASSERT_TRUE(WaitForOpenStreams(0));

  auto late = Open();
  EXPECT_FALSE(Report(*late, trial, 1, &d));
  grpc::Status refused = EndOf(*late);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(refused.error_message(), kShuttingDownMessage);

  hpo::v1::ListStudiesResponse list;
  grpc::Status s = ListStudies(hpo::v1::ListStudiesRequest(), &list);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message(), kShuttingDownMessage);
  // Nothing was lost: the report acknowledged before the drain is stored.
  auto study = coordinator_->GetStudy(coordinator_->ListStudies()[0].id);
  ASSERT_THAT(study, IsOk());
  EXPECT_EQ(study->trials[0].measurements.size(), 1u);
}

}  // namespace
}  // namespace hpo::server
