// hpo-server --http: the JSON API (api.h) called directly, the listener (http_server.h) over a
// loopback socket, and /metrics scraped while a fake worker runs a study through the real gRPC
// handlers, its counts checked against the study's trials and its exposition checked with
// `promtool check metrics` (Debian's prometheus package), like the alert rules in deploy/prometheus/.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "hpo/v1/coordinator.grpc.pb.h"
#include "server/model/study_summary.h"
#include "server/http/api.h"
#include "server/http/http_server.h"
#include "server/http/prometheus_metrics.h"
#include "server/http/rpc_metrics.h"
#include "server/http/timed_storage.h"
#include "server/rpc/coordinator_service.h"
#include "server/storage/sqlite_storage.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;
using ::testing::HasSubstr;
using json = nlohmann::json;

class ManualClock final : public Clock {
 public:
  absl::Time Now() const override {
    return absl::FromUnixSeconds(1'800'000'000) + absl::Seconds(offset_s.load());
  }
  std::atomic<int64_t> offset_s{0};
};

constexpr char kSpec[] = R"({"name": "metrics", "objective": {"direction": "minimize"},
  "task": {"type": "external", "max_steps": 10},
  "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1},
                 {"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]}],
  "pruner": {"type": "threshold", "upper": 5.0},
  "max_trials": 6, "max_retries": 1})";

std::string RunCommand(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

bool HavePromtool() { return access("/usr/bin/promtool", X_OK) == 0; }

// The value of the sample `name{labels}` (labels as printed, e.g. `study="1",state="pruned"`) in an
// exposition, or -1 when absent.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hpo_http_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    metrics_ = PrometheusMetrics::Create(absl::Seconds(30));
    auto sqlite = OpenSqliteStorage((dir_ / "hpo.db").string());
    ASSERT_THAT(sqlite, IsOk());
    CoordinatorOptions options;
    options.lease_timeout = absl::Seconds(30);
    auto c = Coordinator::Open(NewTimedStorage(std::move(*sqlite), metrics_.get()), &clock_, options);
    ASSERT_THAT(c, IsOk());
    coordinator_ = std::move(*c);
    metrics_->SetCoordinator(coordinator_.get());
  }

  void TearDown() override {
    if (http_) http_->Stop();
    if (grpc_) grpc_->Shutdown();
    SetRpcMetrics(nullptr);
    std::filesystem::remove_all(dir_);
  }

  void StartGrpc() {
    SetRpcMetrics(metrics_.get());
    service_ = std::make_unique<CoordinatorService>(coordinator_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    grpc_ = builder.BuildAndStart();
    ASSERT_TRUE(grpc_ != nullptr && port != 0);
    stub_ = hpo::v1::Coordinator::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }

  void StartHttp() {
    HttpOptions o;
    o.address = "127.0.0.1:0";
    auto s = StartHttpServer(o, coordinator_.get(), metrics_.get());
    ASSERT_THAT(s, IsOk());
    http_ = std::move(*s);
  }

  httplib::Result Get(const std::string& path, const httplib::Headers& headers = {}) {
    httplib::Client client("127.0.0.1", http_->port());
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    return client.Get(path.c_str(), headers);
  }

  int64_t CreateStudy() {
    auto s = coordinator_->CreateStudy(kSpec);
    EXPECT_THAT(s, IsOk());
    return s.ok() ? s->id : 0;
  }

  // A fake worker over gRPC: asks for a trial of `study`, reports `values` (one per step) on the
  // stream and completes it unless it was pruned. Returns the trial id.
  int64_t RunTrial(int64_t study, const std::vector<double>& values, bool complete = true) {
    grpc::ClientContext ask_ctx;
    hpo::v1::AskTrialRequest ask;
    ask.set_worker_id("fake-worker");
    ask.add_task_types("external");
    ask.set_study_id(study);
    hpo::v1::AskTrialResponse assigned;
    EXPECT_TRUE(stub_->AskTrial(&ask_ctx, ask, &assigned).ok());
    EXPECT_TRUE(assigned.assigned());
    const int64_t id = assigned.trial().id();
    grpc::ClientContext stream_ctx;
    auto stream = stub_->ReportProgress(&stream_ctx);
    bool stopped = false;
    for (size_t step = 0; step < values.size() && !stopped; ++step) {
      hpo::v1::ProgressReport r;
      r.set_trial_id(id);
      r.mutable_measurement()->set_step(static_cast<int>(step));
      r.mutable_measurement()->set_value(values[step]);
      (*r.mutable_measurement()->mutable_metrics())["val_loss"] = values[step];
      EXPECT_TRUE(stream->Write(r));
      hpo::v1::ProgressDecision d;
      EXPECT_TRUE(stream->Read(&d));
      stopped = d.action() != hpo::v1::ProgressDecision::CONTINUE;
    }
    stream->WritesDone();
    hpo::v1::ProgressDecision ignored;
    while (stream->Read(&ignored)) {
    }
    EXPECT_TRUE(stream->Finish().ok());
    if (complete && !stopped) {
      grpc::ClientContext ctx;
      hpo::v1::CompleteTrialRequest req;
      req.set_trial_id(id);
      hpo::v1::CompleteTrialResponse resp;
      EXPECT_TRUE(stub_->CompleteTrial(&ctx, req, &resp).ok());
    }
    return id;
  }

  std::filesystem::path dir_;
  ManualClock clock_;
  std::unique_ptr<PrometheusMetrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<hpo::v1::Coordinator::Stub> stub_;
  std::unique_ptr<HttpServer> http_;
};

TEST(HttpAddressTest, LoopbackOnlyUnlessAllowed) {
  std::string host;
  int port = -1;
  EXPECT_THAT(CheckHttpAddress("127.0.0.1:8080", false, &host, &port), IsOk());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  EXPECT_THAT(CheckHttpAddress("localhost:0", false, &host, &port), IsOk());
  EXPECT_THAT(CheckHttpAddress("[::1]:9000", false, &host, &port), IsOk());
  EXPECT_EQ(host, "::1");
  EXPECT_THAT(CheckHttpAddress("127.1.2.3:80", false, &host, &port), IsOk());
  absl::Status remote = CheckHttpAddress("0.0.0.0:8080", false, &host, &port);
  EXPECT_EQ(remote.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(remote.message()), HasSubstr("--http_allow_remote"));
  EXPECT_THAT(CheckHttpAddress("0.0.0.0:8080", true, &host, &port), IsOk());
  for (const char* bad : {"8080", ":8080", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:x",
                          "[::1]8080", "128.0.0.1:80", "127.0.0.1.evil.com:80"}) {
    EXPECT_FALSE(CheckHttpAddress(bad, false, &host, &port).ok()) << bad;
  }
}

TEST_F(HttpTest, ApiAnswersWithStudiesTrialsAndErrors) {
  StartGrpc();
  const int64_t study = CreateStudy();
  RunTrial(study, {3.0, 2.0, 1.5});
  RunTrial(study, {4.0, 9.0});  // pruned at step 1 (above the threshold)
  const std::multimap<std::string, std::string> none;

  ApiReply list = HandleApi(*coordinator_, "/api/studies", none);
  ASSERT_EQ(list.status, 200) << list.body;
  json studies = json::parse(list.body);
  ASSERT_EQ(studies.size(), 1u);
  EXPECT_EQ(studies[0]["id"], study);
  EXPECT_EQ(studies[0]["state"], "running");
  EXPECT_EQ(studies[0]["counts"]["completed"], 1);
  EXPECT_EQ(studies[0]["counts"]["pruned"], 1);
  EXPECT_EQ(studies[0]["best"]["trial"], 0);
  EXPECT_DOUBLE_EQ(studies[0]["best"]["value"].get<double>(), 1.5);

  ApiReply one = HandleApi(*coordinator_, "/api/studies/" + std::to_string(study), none);
  ASSERT_EQ(one.status, 200);
  json s = json::parse(one.body);
  EXPECT_EQ(s["params"].size(), 2u);
  EXPECT_EQ(s["params"][1]["choices"], json({"adam", "sgd"}));
  EXPECT_EQ(s["spec"]["name"], "metrics");

  ApiReply trials = HandleApi(*coordinator_, "/api/studies/" + std::to_string(study) + "/trials", none);
  ASSERT_EQ(trials.status, 200);
  json t = json::parse(trials.body);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0]["state"], "completed");
  ASSERT_EQ(t[0]["measurements"].size(), 3u);
  EXPECT_EQ(t[0]["measurements"][2]["step"], 2);
  EXPECT_DOUBLE_EQ(t[0]["measurements"][2]["metrics"]["val_loss"].get<double>(), 1.5);
  EXPECT_EQ(t[1]["state"], "pruned");
  EXPECT_THAT(t[1]["reason"].get<std::string>(), HasSubstr("threshold"));
  EXPECT_EQ(t[1]["last_step"], 1);

  std::multimap<std::string, std::string> q{{"state", "pruned"}, {"measurements", "false"}};
  json pruned =
      json::parse(HandleApi(*coordinator_, "/api/studies/" + std::to_string(study) + "/trials", q).body);
  ASSERT_EQ(pruned.size(), 1u);
  EXPECT_EQ(pruned[0]["number"], 1);
  EXPECT_FALSE(pruned[0].contains("measurements"));

  ApiReply trial = HandleApi(*coordinator_, "/api/studies/" + std::to_string(study) + "/trials/1", none);
  ASSERT_EQ(trial.status, 200);
  EXPECT_EQ(json::parse(trial.body)["measurements"].size(), 2u);
  ApiReply diagnosis = HandleApi(*coordinator_, "/api/studies/" + std::to_string(study) + "/diagnosis", none);
  ASSERT_EQ(diagnosis.status, 200) << diagnosis.body;
  EXPECT_TRUE(json::parse(diagnosis.body)["findings"].is_array());

  // Unknown things: 404 with a JSON error; bad query parameters: 400.
  const std::string base = "/api/studies/" + std::to_string(study);
  struct Case {
    std::string path;
    std::multimap<std::string, std::string> query;
    int status;
  };
  const std::vector<Case> cases = {
      {"/api/studies/99", {}, 404},
      {"/api/studies/abc", {}, 404},
      {"/api/studies/-1", {}, 404},
      {"/api/studies/99999999999999999999999", {}, 404},
      {base + "/trials/2", {}, 404},
      {base + "/trials/x", {}, 404},
      {base + "/nope", {}, 404},
      {"/api/other", {}, 404},
      {"/api", {}, 404},
      {"/api/studies", {{"limit", "3"}}, 400},
      {base + "/trials", {{"state", "done"}}, 400},
      {base + "/trials", {{"measurements", "maybe"}}, 400},
      {base + "/trials", {{"state", "pruned"}, {"state", "failed"}}, 400},
      {base + "/diagnosis", {{"trial", "7"}}, 400},
      {base + "/diagnosis", {{"trial", "-1"}}, 400},
      {base + "/diagnosis", {{"trail", "0"}}, 400},
  };
  for (const Case& c : cases) {
    ApiReply r = HandleApi(*coordinator_, c.path, c.query);
    EXPECT_EQ(r.status, c.status) << c.path << " " << r.body;
    json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << c.path;
    EXPECT_TRUE(j["error"].is_string()) << c.path;
  }
  EXPECT_EQ(HandleApi(*coordinator_, base + "/diagnosis", {{"trial", "0"}}).status, 200);
}

TEST_F(HttpTest, ListenerServesPagesAssetsAndApiAndRefusesWrites) {
  StartHttp();
  const int64_t study = CreateStudy();
  auto page = Get("/studies/" + std::to_string(study));
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->body, HasSubstr("/assets/echarts.min.js"));
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
  for (const char* path : {"/", "/studies/1/", "/studies/1/trials/0"}) {
    auto r = Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << path;
  }
  auto echarts = Get("/assets/echarts.min.js");
  ASSERT_TRUE(echarts);
  EXPECT_EQ(echarts->status, 200);
  EXPECT_GT(echarts->body.size(), 1000u);
  auto api = Get("/api/studies");
  ASSERT_TRUE(api);
  EXPECT_EQ(api->status, 200);
  EXPECT_EQ(json::parse(api->body)[0]["id"], study);
  for (const char* path : {"/nope", "/studies/x", "/studies/1/trials", "/assets/none.js", "/api/studies/5",
                           "/studies/1/trials/0/extra"}) {
    auto r = Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_TRUE(json::parse(r->body, nullptr, false).contains("error")) << path;
  }
  auto bad_query = Get("/api/studies/1/trials?state=bogus");
  ASSERT_TRUE(bad_query);
  EXPECT_EQ(bad_query->status, 400);

  httplib::Client client("127.0.0.1", http_->port());
  auto post = client.Post("/api/studies", "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  auto del = client.Delete("/api/studies/1");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
  EXPECT_EQ(coordinator_->ListStudies().size(), 1u);
  // A page elsewhere that rebinds its DNS name to 127.0.0.1 cannot read the studies.
  auto rebound = Get("/api/studies", {{"Host", "attacker.example:8080"}});
  ASSERT_TRUE(rebound);
  EXPECT_EQ(rebound->status, 403);
}

TEST_F(HttpTest, MetricsCountWhatTheStudyDidAndPassPromtool) {
  StartGrpc();
  StartHttp();
  const int64_t study = CreateStudy();
  RunTrial(study, {3.0, 2.0, 1.5});
  RunTrial(study, {2.5, 1.0});
  RunTrial(study, {4.0, 9.0});  // pruned
  // A trial whose worker vanishes: its lease runs out, it fails and is handed out again.
  {
    grpc::ClientContext ctx;
    hpo::v1::AskTrialRequest ask;
    ask.set_worker_id("vanishing-worker");
    ask.add_task_types("external");
    hpo::v1::AskTrialResponse resp;
    ASSERT_TRUE(stub_->AskTrial(&ctx, ask, &resp).ok());
    ASSERT_TRUE(resp.assigned());
    clock_.offset_s += 60;
    EXPECT_EQ(coordinator_->ReapExpiredLeases(), 1);
  }
  RunTrial(study, {1.2});  // the retry
  // Refused calls, counted by method and code.
  {
    grpc::ClientContext ctx;
    hpo::v1::GetStudyRequest req;
    req.set_study_id(404);
    hpo::v1::GetStudyResponse resp;
    EXPECT_EQ(stub_->GetStudy(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    hpo::v1::AskTrialRequest ask;  // no worker_id
    hpo::v1::AskTrialResponse resp;
    EXPECT_EQ(stub_->AskTrial(&ctx, ask, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A worker running a trial now.
  {
    grpc::ClientContext ctx;
    hpo::v1::AskTrialRequest ask;
    ask.set_worker_id("busy-worker");
    ask.add_task_types("external");
    hpo::v1::AskTrialResponse resp;
    ASSERT_TRUE(stub_->AskTrial(&ctx, ask, &resp).ok());
    ASSERT_TRUE(resp.assigned());
  }

  auto scrape = Get("/metrics");
  ASSERT_TRUE(scrape);
  ASSERT_EQ(scrape->status, 200);
  EXPECT_THAT(scrape->get_header_value("Content-Type"), HasSubstr("text/plain; version=0.0.4"));
  const std::string& text = scrape->body;

  // The counts, against the study's trials.
  auto s = coordinator_->GetStudy(study);
  ASSERT_THAT(s, IsOk());
  const TrialCounts counts = CountTrials(*s);
  ASSERT_EQ(counts.completed, 3);
  ASSERT_EQ(counts.pruned, 1);
  ASSERT_EQ(counts.failed, 1);
  ASSERT_EQ(counts.running, 1);
  const std::string sl = "{study=\"" + std::to_string(study) + "\"";
  EXPECT_EQ(Sample(text, "hpo_trials_started_total" + sl + "}"), 6) << text;
  EXPECT_EQ(Sample(text, "hpo_trials_finished_total" + sl + ",state=\"completed\"}"), counts.completed);
  EXPECT_EQ(Sample(text, "hpo_trials_finished_total" + sl + ",state=\"pruned\"}"), counts.pruned);
  EXPECT_EQ(Sample(text, "hpo_trials_finished_total" + sl + ",state=\"failed\"}"), counts.failed);
  EXPECT_EQ(Sample(text, "hpo_trials_retried_total" + sl + "}"), 1);
  EXPECT_EQ(Sample(text, "hpo_trials_leases_lost_total" + sl + "}"), 1);
  EXPECT_EQ(Sample(text, "hpo_trials_running" + sl + "}"), 1);
  EXPECT_EQ(Sample(text, "hpo_running_trials"), 1);
  EXPECT_EQ(Sample(text, "hpo_workers_connected"), 3);  // fake, vanishing and busy workers
  size_t measurements = 0;
  for (const Trial& t : s->trials) measurements += t.measurements.size();
  EXPECT_EQ(measurements, 8u);
  EXPECT_EQ(Sample(text, "hpo_reports_total{decision=\"continue\"}") +
                Sample(text, "hpo_reports_total{decision=\"prune\"}") +
                Sample(text, "hpo_reports_total{decision=\"stop\"}"),
            measurements);
  EXPECT_EQ(Sample(text, "hpo_reports_total{decision=\"prune\"}"), 1);
  EXPECT_EQ(Sample(text, "hpo_report_latency_seconds_count"), measurements);
  EXPECT_EQ(Sample(text, "hpo_ask_latency_seconds_count{sampler=\"random\"}"), 6);
  EXPECT_EQ(Sample(text, "hpo_rpc_errors_total{code=\"NOT_FOUND\",method=\"GetStudy\"}"), 1) << text;
  EXPECT_EQ(Sample(text, "hpo_rpc_errors_total{code=\"INVALID_ARGUMENT\",method=\"AskTrial\"}"), 1);
  EXPECT_EQ(Sample(text, "hpo_rpc_requests_total{code=\"OK\",method=\"CompleteTrial\"}"), 3);
  EXPECT_GT(Sample(text, "hpo_storage_commit_seconds_count{op=\"add_measurement\"}"), 0);
  EXPECT_EQ(Sample(text, "hpo_study_best_value" + sl + "}"), 1.0);

  if (!HavePromtool())
    GTEST_SKIP() << "no /usr/bin/promtool (Debian package prometheus): exposition not validated";
  const std::string file = (dir_ / "metrics.txt").string();
  std::ofstream(file) << text;
  int status = 0;
  const std::string out = RunCommand("/usr/bin/promtool check metrics < " + file + " 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
}

// The real binary: --http on a non-loopback address is refused (exit status 2) unless asked for.
TEST(HttpFlagTest, ServerRefusesARemoteHttpAddressWithoutTheOptIn) {
  if (access(HPO_SERVER_BIN, X_OK) != 0) GTEST_SKIP() << "no " << HPO_SERVER_BIN;
  const std::string db =
      (std::filesystem::temp_directory_path() / ("hpo_http_flag_" + std::to_string(::getpid()) + ".db"))
          .string();
  int status = 0;
  const std::string out = RunCommand(
      std::string(HPO_SERVER_BIN) + " --listen=127.0.0.1:0 --db=" + db + " --http=0.0.0.0:0 2>&1", &status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << out;
  EXPECT_THAT(out, HasSubstr("--http_allow_remote"));
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
}

TEST(PrometheusRulesTest, DeployRulesAndConfigPassPromtool) {
  if (!HavePromtool()) GTEST_SKIP() << "no /usr/bin/promtool (Debian package prometheus)";
  int status = 0;
  std::string out = RunCommand(
      "/usr/bin/promtool check rules " HPO_SOURCE_DIR "/deploy/prometheus/alerts.yml 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  out = RunCommand("/usr/bin/promtool check config " HPO_SOURCE_DIR "/deploy/prometheus/prometheus.yml 2>&1",
                   &status);
  EXPECT_EQ(status, 0) << out;
}

}  // namespace
}  // namespace hpo::server
