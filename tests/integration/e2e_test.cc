// End to end: the real hpo-server, real hpo-worker processes training on real
// Fashion-MNIST, and hpoctl, talking gRPC over TCP on 127.0.0.1.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "hpo/v1/coordinator.grpc.pb.h"
#include "tests/testing/image_files.h"
#include "tests/testing/process.h"
#include "worker/data/dataset.h"

namespace hpo {
namespace {

namespace fs = std::filesystem;
using hpo::testing::CommandResult;
using hpo::testing::Process;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kFashionMnist[] = "/usr/share/datasets/fashion-mnist";

// A small study: 1,000 training images, 2 epochs, a search space wide enough
// that some configurations are bad (to be pruned).
json SmallSpec(int max_trials, int epochs = 2, int train = 1000) {
  json spec = json::parse(R"({
    "name": "e2e",
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "parameters": [
      {"name": "learning_rate", "type": "float", "low": 0.00001, "high": 0.3, "log": true},
      {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
      {"name": "batch_size", "type": "categorical", "choices": [32, 64]},
      {"name": "conv_blocks", "type": "int", "low": 1, "high": 2},
      {"name": "filters", "type": "int", "low": 4, "high": 16, "step": 4},
      {"name": "dense_units", "type": "int", "low": 16, "high": 64, "log": true}
    ],
    "sampler": {"type": "random", "seed": 7},
    "pruner": {"type": "median", "startup_trials": 2, "warmup_steps": 0}
  })");
  spec["max_trials"] = max_trials;
  spec["task"] = {{"type", "cnn"}, {"dataset", "fashion-mnist"}, {"train_examples", train},
                  {"val_examples", 500}, {"test_examples", 500}, {"max_epochs", epochs}};
  return spec;
}

class EndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kFashionMnist))
        << kFashionMnist << " is missing: install dataset-fashion-mnist (tests/run.sh does)";
    dir_ = fs::temp_directory_path() / ("hpo_e2e_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    data_root_ = "/usr/share/datasets";
  }
  void TearDown() override {
    workers_.clear();
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

  void StartServer(int port = 0, const std::vector<std::string>& extra = {}) {
    const std::string port_file = (dir_ / "port").string();
    fs::remove(port_file);
    std::vector<std::string> argv = {HPO_SERVER_BIN, "--listen=127.0.0.1:" + std::to_string(port),
                                     "--db=" + (dir_ / "hpo.db").string(), "--port_file=" + port_file};
    argv.insert(argv.end(), extra.begin(), extra.end());
    server_ = Process::Start(argv, (dir_ / ("server" + std::to_string(server_starts_++) + ".log")).string());
    port_ = hpo::testing::WaitForPortFile(port_file, server_);
    ASSERT_TRUE(server_.Running()) << "hpo-server exited";
    ASSERT_GT(port_, 0);
    address_ = "127.0.0.1:" + std::to_string(port_);
  }

  Process& StartWorker(const std::string& name) {
    workers_.push_back(Process::Start(
        {HPO_WORKER_BIN, "--coordinator=" + address_, "--data_root=" + data_root_, "--threads=1",
         "--worker_id=" + name, "--cache_dir=" + (dir_ / "cache").string()},
        (dir_ / (name + ".log")).string()));
    return workers_.back();
  }

  CommandResult Ctl(std::vector<std::string> args, milliseconds timeout = seconds(30)) {
    args.insert(args.begin(), {HPO_CTL_BIN, "--coordinator=" + address_});
    return hpo::testing::Run(args, timeout);
  }

  std::string WriteSpec(const json& spec, const std::string& name = "spec.json") {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << spec.dump(2);
    return path;
  }

  // Creates a study through hpoctl; returns its id (the last line of the output).
  int64_t Create(const json& spec) {
    CommandResult r = Ctl({"create", WriteSpec(spec)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string last;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) last = line;
    }
    return std::stoll(last);
  }

  json TrialsJson(int64_t study) {
    CommandResult r = Ctl({"--json", "trials", std::to_string(study)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }

  json ShowJson(int64_t study) {
    CommandResult r = Ctl({"--json", "show", std::to_string(study)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }

  // Polls `trials --json` until `pred` holds; returns the last trials seen.
  template <typename Pred>
  json WaitForTrials(int64_t study, Pred pred, seconds timeout, const char* what) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    json trials;
    while (std::chrono::steady_clock::now() < until) {
      CommandResult r = Ctl({"--json", "trials", std::to_string(study)});
      if (r.exit_code == 0) {
        trials = json::parse(r.out);
        if (pred(trials)) return trials;
      }
      std::this_thread::sleep_for(milliseconds(250));
    }
    ADD_FAILURE() << "timed out waiting for " << what << "; trials: " << trials.dump();
    return trials;
  }

  std::unique_ptr<hpo::v1::Coordinator::Stub> Stub() {
    return hpo::v1::Coordinator::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  fs::path dir_;
  std::string data_root_;
  Process server_;
  std::vector<Process> workers_;
  int port_ = 0, server_starts_ = 0;
  std::string address_;
};

int CountState(const json& trials, const std::string& state) {
  int n = 0;
  for (const auto& t : trials) n += t["state"] == state;
  return n;
}

TEST_F(EndToEndTest, TwoWorkersFinishAStudyWithPruningAndTheBestTrialAgreesWithTrials) {
  StartServer();
  StartWorker("w1");
  StartWorker("w2");
  const int64_t study = Create(SmallSpec(8));
  CommandResult watch = Ctl({"watch", std::to_string(study)}, seconds(400));
  ASSERT_EQ(watch.exit_code, 0) << watch.err;
  EXPECT_NE(watch.out.find("epoch 1: val_accuracy"), std::string::npos) << watch.out;
  EXPECT_NE(watch.out.find("is COMPLETED"), std::string::npos) << watch.out;

  json trials = TrialsJson(study);
  ASSERT_EQ(trials.size(), 8u);
  EXPECT_EQ(CountState(trials, "COMPLETED") + CountState(trials, "PRUNED"), 8);
  EXPECT_GE(CountState(trials, "PRUNED"), 1) << trials.dump(1);
  EXPECT_GE(CountState(trials, "COMPLETED"), 2);
  std::set<std::string> workers;
  double best_value = -1;
  int best_number = -1;
  for (const auto& t : trials) {
    workers.insert(t["worker"].get<std::string>());
    const auto& values = t["values"];
    ASSERT_FALSE(values.empty());
    double max_value = *std::max_element(values.begin(), values.end());
    EXPECT_DOUBLE_EQ(t["value"].get<double>(), max_value);  // the trial's value is its best epoch
    EXPECT_GE(t["params"]["learning_rate"].get<double>(), 0.00001);
    EXPECT_LE(t["params"]["learning_rate"].get<double>(), 0.3);
    EXPECT_EQ(t["params"]["filters"].get<int>() % 4, 0);
    if (t["state"] == "PRUNED") {
      EXPECT_NE(t["reason"].get<std::string>().find("median rule"), std::string::npos);
      EXPECT_FALSE(t["final_metrics"].contains("test_accuracy"));
    } else {
      EXPECT_EQ(values.size(), 2u);
      const double test = t["final_metrics"]["test_accuracy"].get<double>();
      EXPECT_GT(test, 0.0);
      EXPECT_LE(test, 1.0);
      for (const auto& m : t["measurements"]) {
        for (const char* k : {"val_loss", "train_accuracy", "train_loss", "epoch_seconds"}) {
          EXPECT_TRUE(m["metrics"].contains(k)) << k;
        }
      }
      if (max_value > best_value) {
        best_value = max_value;
        best_number = t["trial"].get<int>();
      }
    }
  }
  EXPECT_EQ(workers, (std::set<std::string>{"w1", "w2"}));  // both workers ran trials
  EXPECT_GT(best_value, 0.5);  // a 2-epoch CNN on 1,000 images is far above chance (0.1)

  CommandResult best = Ctl({"--json", "best", std::to_string(study)});
  ASSERT_EQ(best.exit_code, 0) << best.err;
  json b = json::parse(best.out);
  EXPECT_EQ(b["trial"].get<int>(), best_number);
  EXPECT_EQ(b["state"], "COMPLETED");
  EXPECT_DOUBLE_EQ(b["value"].get<double>(), best_value);
  EXPECT_EQ(b["params"], trials[best_number]["params"]);

  json show = ShowJson(study);
  EXPECT_EQ(show["state"], "COMPLETED");
  EXPECT_EQ(show["best_trial"].get<int>(), best_number);
  CommandResult list = Ctl({"list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_NE(list.out.find("e2e"), std::string::npos);
  CommandResult human = Ctl({"trials", std::to_string(study)});
  EXPECT_NE(human.out.find("median rule"), std::string::npos) << human.out;

  CommandResult diagnose = Ctl({"--json", "diagnose", std::to_string(study)});
  ASSERT_EQ(diagnose.exit_code, 0) << diagnose.err;
  json findings = json::parse(diagnose.out);
  ASSERT_FALSE(findings.empty());
  for (const auto& f : findings) {
    EXPECT_FALSE(f["cause"].get<std::string>().empty());
    EXPECT_FALSE(f["evidence"].get<std::string>().empty());
  }
  // The report: one self-contained page whose charts hold the study's series.
  const std::string html_path = (dir_ / "report.html").string();
  CommandResult report = Ctl({"report", std::to_string(study), "--out=" + html_path});
  ASSERT_EQ(report.exit_code, 0) << report.err;
  std::ifstream in(html_path);
  std::stringstream html;
  html << in.rdbuf();
  auto count = [](const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  for (const char* chart : {"history", "curves", "parallel", "recall", "confusion"}) {
    EXPECT_EQ(count(html.str(), std::string("data-chart=\"") + chart + "\""), 1u) << chart;
  }
  EXPECT_EQ(count(html.str(), "<circle class=\"point"), trials.size());   // one point per trial
  EXPECT_EQ(count(html.str(), "class=\"series val trial-"), trials.size());  // one validation curve per trial
  EXPECT_EQ(count(html.str(), "class=\"pruned-mark\""), static_cast<size_t>(CountState(trials, "PRUNED")));
  EXPECT_EQ(count(html.str(), "<script"), 0u);
  EXPECT_EQ(count(html.str(), "http"), 0u);  // nothing fetched from a network
  // Rendered by a real browser: the DOM it builds has every chart, and the screenshot is not blank.
  const std::string chromium = "/usr/bin/chromium";
  ASSERT_TRUE(fs::exists(chromium)) << "install chromium (tests/run.sh does)";
  const std::vector<std::string> flags = {chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                          "--no-first-run", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync",
                                          "--user-data-dir=" + (dir_ / "chromium").string()};
  std::vector<std::string> dump = flags;
  dump.insert(dump.end(), {"--dump-dom", "file://" + html_path});
  CommandResult dom = hpo::testing::Run(dump, seconds(90));
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_EQ(count(dom.out, "<svg class=\"chart\""), count(html.str(), "<svg class=\"chart\""));
  EXPECT_EQ(count(dom.out, "<polyline"), count(html.str(), "<polyline"));
  std::vector<std::string> shot = flags;
  const std::string png = (dir_ / "report.png").string();
  shot.insert(shot.end(), {"--hide-scrollbars", "--window-size=1280,2000", "--screenshot=" + png, "file://" + html_path});
  CommandResult screenshot = hpo::testing::Run(shot, seconds(90));
  ASSERT_EQ(screenshot.exit_code, 0) << screenshot.err;
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 50'000u);  // a blank 1280x2000 page compresses to a few kB

  CommandResult unknown = Ctl({"diagnose", "999"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("NOT_FOUND"), std::string::npos) << unknown.err;
}

TEST_F(EndToEndTest, AshaWithPatienceAndTpeShowWhichTrialsStoppedAndWhy) {
  StartServer();
  StartWorker("w1");
  StartWorker("w2");
  json spec = SmallSpec(8, 3);
  spec["sampler"] = {{"type", "tpe"}, {"seed", 3}, {"n_startup_trials", 4}};
  spec["pruner"] = json::array({{{"type", "asha"}, {"min_resource", 1}, {"reduction_factor", 2}},
                                {{"type", "patience"}, {"patience", 2}}});
  spec["task"]["partial_epochs"] = {0.25};  // the first rung trains on a quarter of the images
  const int64_t study = Create(spec);
  ASSERT_EQ(Ctl({"watch", std::to_string(study)}, seconds(400)).exit_code, 0);
  json trials = TrialsJson(study);
  ASSERT_EQ(trials.size(), 8u);
  int pruned = 0;
  std::string a_reason;
  for (const auto& t : trials) {
    // SmallSpec trains on 1000 images: epoch 1 on ceil(0.25 x 1000), later epochs on all.
    for (const auto& m : t["measurements"]) {
      EXPECT_EQ(m["metrics"]["train_images"], m["step"] == 1 ? 250.0 : 1000.0) << m.dump();
    }
    if (t["state"] != "PRUNED") continue;
    ++pruned;
    a_reason = t["reason"];
    const std::string reason = t["reason"];
    EXPECT_TRUE(reason.find("asha rung") != std::string::npos || reason.find("patience") != std::string::npos)
        << reason;
    EXPECT_EQ(t["measurements"].size(), t["values"].size());
    EXPECT_LT(t["values"].size(), 3u + 1);
  }
  EXPECT_GE(pruned, 1) << trials.dump(1);
  CommandResult human = Ctl({"trials", std::to_string(study)});
  EXPECT_NE(human.out.find(a_reason), std::string::npos) << human.out;
  EXPECT_EQ(ShowJson(study)["pruner"], "asha+patience");
  CommandResult shown = Ctl({"show", std::to_string(study)});
  EXPECT_NE(shown.out.find("3 epochs, epoch 1 on 25% of the training images"), std::string::npos)
      << shown.out;
}

// Studies built to have one known problem each; the diagnosis must name it first.
TEST_F(EndToEndTest, DiagnosisNamesTheProblemEachStudyWasBuiltToHave) {
  StartServer();
  struct Case {
    std::string expected;
    json task;
    std::vector<json> configs;
  };
  auto task = [](int train, int epochs) {
    return json{{"type", "cnn"}, {"dataset", "fashion-mnist"}, {"train_examples", train}, {"val_examples", 500},
                {"test_examples", 200}, {"max_epochs", epochs}};
  };
  json imbalanced = task(2000, 3);
  imbalanced["imbalance"] = {{"classes", {0, 2, 4, 6}}, {"keep_fraction", 0.03}};
  const json small = {{"filters", 8}, {"dense_units", 32}, {"learning_rate", 0.002}, {"batch_size", 32}};
  std::vector<Case> cases = {
      {"class imbalance", imbalanced, {small}},
      {"overfitting", task(300, 15),
       {{{"filters", 32}, {"dense_units", 256}, {"learning_rate", 0.001}, {"batch_size", 32}}}},
      {"learning rate too high (divergence)", task(500, 2),
       {{{"filters", 8}, {"dense_units", 32}, {"learning_rate", 0.5}, {"batch_size", 32}},
        {{"filters", 8}, {"dense_units", 32}, {"learning_rate", 0.3}, {"batch_size", 32}}, small}},
      {"underfitting", task(1000, 6),
       {{{"filters", 2}, {"dense_units", 0}, {"global_pooling", "average"}, {"dropout", 0.5},
         {"learning_rate", 0.01}, {"batch_size", 32}}}},
      {"nothing stands out", task(1000, 3),
       {{{"filters", 16}, {"dense_units", 64}, {"learning_rate", 0.002}, {"batch_size", 32}}}},
  };
  std::vector<int64_t> studies;
  for (const Case& c : cases) {
    // Each parameter is a categorical of the values the configurations use; every trial is queued.
    std::map<std::string, std::vector<json>> values;
    for (const json& config : c.configs) {
      for (const auto& [k, v] : config.items()) {
        auto& vs = values[k];
        if (std::find(vs.begin(), vs.end(), v) == vs.end()) vs.push_back(v);
      }
    }
    json params = json::array();
    for (const auto& [k, vs] : values) params.push_back({{"name", k}, {"type", "categorical"}, {"choices", vs}});
    json spec = {{"name", c.expected}, {"task", c.task}, {"parameters", params},
                 {"max_trials", c.configs.size()}, {"sampler", {{"type", "random"}, {"seed", 1}}}};
    const int64_t study = Create(spec);
    for (size_t i = 0; i < c.configs.size(); ++i) {
      const std::string file = WriteSpec(c.configs[i], "config-" + std::to_string(study) + "-" + std::to_string(i) + ".json");
      ASSERT_EQ(Ctl({"enqueue", std::to_string(study), file}).exit_code, 0);
    }
    studies.push_back(study);
  }
  // Watched from before any worker asks: each queued trial is seen waiting, then started.
  const std::string watch_log = (dir_ / "watch-queued.log").string();
  Process watch = Process::Start({HPO_CTL_BIN, "--coordinator=" + address_, "watch", std::to_string(studies[0])},
                                 watch_log);
  std::this_thread::sleep_for(seconds(1));
  StartWorker("w1");  // only now: every trial was queued before anyone asked
  StartWorker("w2");
  ASSERT_EQ(watch.Wait(seconds(300)), 0);
  std::ifstream in(watch_log);
  const std::string watched((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(watched.find("trial 0 (queued) started on w"), std::string::npos) << watched;
  EXPECT_NE(watched.find("learning_rate"), std::string::npos) << watched;  // with its parameters
  EXPECT_EQ(watched.find("retry of"), std::string::npos) << watched;      // nothing here is a retry
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_EQ(Ctl({"watch", std::to_string(studies[i])}, seconds(300)).exit_code, 0);
    CommandResult d = Ctl({"--json", "diagnose", std::to_string(studies[i])});
    ASSERT_EQ(d.exit_code, 0) << d.err;
    json findings = json::parse(d.out);
    ASSERT_FALSE(findings.empty());
    EXPECT_EQ(findings[0]["cause"], cases[i].expected)
        << "study " << studies[i] << ": " << findings.dump(1) << "\n" << TrialsJson(studies[i]).dump();
  }
}

TEST_F(EndToEndTest, BadInputIsRefusedWithAClearStatusAndTheServerKeepsServing) {
  StartServer();
  struct Case {
    std::string text;
    std::string message;
  };
  auto with = [](const char* key, const json& value) {
    json s = SmallSpec(2);
    s[key] = value;
    return s.dump();
  };
  auto param = [](const json& p) {
    json s = SmallSpec(2);
    s["parameters"].push_back(p);
    return s.dump();
  };
  const std::vector<Case> cases = {
      {"{\n  \"name\": \"x\",\n  \"task\": {\n}", "line 4, column"},
      {param({{"name", "dropout"}, {"type", "real"}, {"low", 0}, {"high", 1}}), "unknown type \"real\""},
      {param({{"name", "dropout"}, {"type", "float"}, {"low", 0.4}, {"high", 0.1}}), "must be below high"},
      {param({{"name", "weight_decay"}, {"type", "float"}, {"low", 0}, {"high", 0.1}, {"log", true}}),
       "needs low > 0"},
      {param({{"name", "kernel_size"}, {"type", "categorical"}, {"choices", json::array()}}), "must not be empty"},
      {param({{"name", "kernel_size"}, {"type", "categorical"}, {"choices", {3, 3}}}), "appears twice"},
      {param({{"name", "filters"}, {"type", "int"}, {"low", 4}, {"high", 8}}), "duplicate parameter name"},
      {param({{"name", "dense_units"}, {"type", "int"}, {"low", 10}, {"high", 100}, {"step", 7}}),
       "does not fit the range"},
      {param({{"name", "momentum_decay"}, {"type", "float"}, {"low", 0}, {"high", 1}}),
       "not a parameter of the cnn task"},
      {with("sampler", {{"type", "cmaes"}}), "sampler.type \"cmaes\" is unknown"},
      {with("pruner", {{"type", "wilcoxon"}}), "pruner.type \"wilcoxon\" is unknown"},
      {with("max_trials", 0), "max_trials must be between 1"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = (dir_ / ("bad" + std::to_string(i) + ".json")).string();
    std::ofstream(path) << cases[i].text;
    CommandResult r = Ctl({"create", path});
    EXPECT_EQ(r.exit_code, 1) << cases[i].message;
    EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(cases[i].message), std::string::npos) << "expected \"" << cases[i].message
                                                               << "\" in: " << r.err;
    EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
  }
  CommandResult list = Ctl({"list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_NE(list.out.find("no studies yet"), std::string::npos) << "a refused spec must not be stored";

  CommandResult missing = Ctl({"show", "77"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("NOT_FOUND: no study with id 77"), std::string::npos) << missing.err;
  CommandResult usage = Ctl({"show", "abc"});
  EXPECT_EQ(usage.exit_code, 2) << usage.err;
  CommandResult none = Ctl({"create", (dir_ / "absent.json").string()});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("cannot read the spec file"), std::string::npos) << none.err;

  // Measurements from a client acting as a worker, over the real stream.
  const int64_t study = Create(SmallSpec(2));
  auto stub = Stub();
  auto report = [&](int64_t trial, int step, double value) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    auto stream = stub->ReportProgress(&ctx);
    hpo::v1::ProgressReport r;
    r.set_trial_id(trial);
    r.mutable_measurement()->set_step(step);
    r.mutable_measurement()->set_value(value);
    hpo::v1::ProgressDecision d;
    if (stream->Write(r)) stream->Read(&d);
    stream->WritesDone();
    return stream->Finish();
  };
  grpc::Status s = report(12345, 1, 0.5);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("no trial with id 12345"), std::string::npos);

  hpo::v1::AskTrialRequest ask;
  ask.set_worker_id("fake-worker");
  ask.add_task_types("cnn");
  hpo::v1::AskTrialResponse assigned;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->AskTrial(&ctx, ask, &assigned).ok());
  }
  ASSERT_TRUE(assigned.assigned());
  EXPECT_EQ(assigned.trial().study_id(), study);
  const int64_t trial = assigned.trial().id();
  s = report(trial, 1, std::nan(""));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("must be finite"), std::string::npos) << s.error_message();
  s = report(trial, 1, INFINITY);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(report(trial, 2, 0.4).ok());
  s = report(trial, 1, 0.5);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("steps must increase"), std::string::npos) << s.error_message();
  {
    grpc::ClientContext ctx;
    hpo::v1::CompleteTrialRequest req;
    req.set_trial_id(trial);
    hpo::v1::CompleteTrialResponse resp;
    ASSERT_TRUE(stub->CompleteTrial(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.trial().value(), 0.4);
  }
  s = report(trial, 3, 0.5);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("is COMPLETED"), std::string::npos) << s.error_message();
  json trials = TrialsJson(study);
  ASSERT_EQ(trials[0]["values"], json::array({0.4}));  // nothing refused was stored

  // An unreachable coordinator: a message, not a stack trace.
  CommandResult down = hpo::testing::Run({HPO_CTL_BIN, "--coordinator=127.0.0.1:1", "list"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.err.find("cannot reach the coordinator at 127.0.0.1:1"), std::string::npos) << down.err;
  EXPECT_TRUE(server_.Running());
}

TEST_F(EndToEndTest, AKilledWorkersTrialLeavesRunningWithin30SecondsAndIsRetried) {
  StartServer();  // default lease: 30 s
  Process& doomed = StartWorker("doomed");
  json spec = SmallSpec(3, 3, 2000);
  spec["pruner"] = {{"type", "none"}};
  const int64_t study = Create(spec);
  json trials = WaitForTrials(
      study, [](const json& ts) { return !ts.empty() && ts[0]["state"] == "RUNNING" && !ts[0]["values"].empty(); },
      seconds(120), "trial 0 to report an epoch");
  doomed.Signal(SIGKILL);
  ASSERT_EQ(doomed.Wait(seconds(5)), 128 + SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  trials = WaitForTrials(study, [](const json& ts) { return ts[0]["state"] == "FAILED"; }, seconds(45),
                         "the dead worker's trial to fail");
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_LE(waited, 30.0 + 3.0);  // lease 30 s; the reaper runs every second; polling every 0.25 s
  EXPECT_NE(trials[0]["reason"].get<std::string>().find("lease lost: worker doomed"), std::string::npos)
      << trials[0]["reason"];
  EXPECT_TRUE(trials[0]["retried"].get<bool>());

  StartWorker("rescuer");
  CommandResult watch = Ctl({"watch", std::to_string(study)}, seconds(300));
  ASSERT_EQ(watch.exit_code, 0) << watch.err;
  trials = TrialsJson(study);
  ASSERT_EQ(trials.size(), 4u);  // 3 trials + the retry of trial 0
  int retries = 0;
  for (const auto& t : trials) {
    if (t["retry_of"].is_null()) continue;
    ++retries;
    EXPECT_EQ(t["retry_of"].get<int>(), 0);
    EXPECT_EQ(t["params"], trials[0]["params"]);  // the same configuration, run again
    EXPECT_EQ(t["state"], "COMPLETED");
    EXPECT_EQ(t["worker"], "rescuer");
  }
  EXPECT_EQ(retries, 1);
  EXPECT_EQ(CountState(trials, "COMPLETED"), 3);
  EXPECT_EQ(CountState(trials, "RUNNING"), 0);
}

TEST_F(EndToEndTest, ARestartedServerLosesNothingAcknowledgedAndTheStudyFinishes) {
  StartServer();
  StartWorker("w1");
  StartWorker("w2");
  json spec = SmallSpec(6, 3, 1500);
  spec["pruner"] = {{"type", "none"}};
  const int64_t study = Create(spec);
  json before = WaitForTrials(
      study,
      [](const json& ts) {
        int n = 0;
        for (const auto& t : ts) n += static_cast<int>(t["values"].size());
        return n >= 3;
      },
      seconds(180), "three measurements");
  server_.Signal(SIGKILL);
  ASSERT_EQ(server_.Wait(seconds(5)), 128 + SIGKILL);
  // What the dead server had acknowledged: read from its database only by the restarted server.
  std::this_thread::sleep_for(seconds(2));  // workers notice and retry meanwhile
  StartServer(port_);
  CommandResult watch = Ctl({"watch", std::to_string(study)}, seconds(400));
  ASSERT_EQ(watch.exit_code, 0) << watch.err;
  json after = TrialsJson(study);
  for (const auto& t : before) {
    const auto& later = after[t["trial"].get<int>()];
    EXPECT_EQ(later["params"], t["params"]);
    ASSERT_GE(later["measurements"].size(), t["measurements"].size());
    for (size_t k = 0; k < t["measurements"].size(); ++k) {
      EXPECT_EQ(later["measurements"][k]["step"], t["measurements"][k]["step"]);
      EXPECT_EQ(later["measurements"][k]["value"], t["measurements"][k]["value"]);
    }
  }
  int used = 0;
  for (const auto& t : after) used += t["retried"].get<bool>() ? 0 : 1;
  EXPECT_EQ(used, 6);
  EXPECT_EQ(CountState(after, "RUNNING"), 0);
  EXPECT_GE(CountState(after, "COMPLETED"), 5);
  EXPECT_EQ(ShowJson(study)["state"], "COMPLETED");
}

TEST_F(EndToEndTest, ACorruptDataSetFailsTheTrialAndTheWorkerGoesOn) {
  data_root_ = (dir_ / "data").string();
  fs::create_directories(dir_ / "data" / "broken");
  // A copy, not a symbolic link: a data set that links out of the data root is refused.
  fs::copy(kFashionMnist, dir_ / "data" / "fashion-mnist");
  fs::copy_file(std::string(kFashionMnist) + "/train-labels-idx1-ubyte.gz",
                dir_ / "data/broken/train-labels-idx1-ubyte.gz");
  std::ofstream(dir_ / "data/broken/train-images-idx3-ubyte") << "this is not an IDX file";
  StartServer();
  Process& worker = StartWorker("w1");
  json spec = SmallSpec(2);
  spec["task"]["dataset"] = "broken";
  const int64_t broken = Create(spec);
  ASSERT_EQ(Ctl({"watch", std::to_string(broken)}, seconds(120)).exit_code, 0);
  json trials = TrialsJson(broken);
  ASSERT_EQ(trials.size(), 2u);
  for (const auto& t : trials) {
    EXPECT_EQ(t["state"], "FAILED");
    EXPECT_NE(t["reason"].get<std::string>().find("not an IDX image file"), std::string::npos) << t["reason"];
  }
  EXPECT_TRUE(worker.Running());
  const int64_t good = Create(SmallSpec(1));
  ASSERT_EQ(Ctl({"watch", std::to_string(good)}, seconds(120)).exit_code, 0);
  EXPECT_EQ(TrialsJson(good)[0]["state"], "COMPLETED");
  CommandResult best = Ctl({"best", std::to_string(broken)});
  EXPECT_EQ(best.exit_code, 1);
  EXPECT_NE(best.err.find("no completed trial"), std::string::npos) << best.err;
}

TEST_F(EndToEndTest, SigtermHandsTheTrialBackAndStopEndsTheStudy) {
  StartServer();
  Process& worker = StartWorker("w1");
  json spec = SmallSpec(2, 30, 2000);
  const int64_t study = Create(spec);
  WaitForTrials(study, [](const json& ts) { return !ts.empty() && !ts[0]["values"].empty(); }, seconds(120),
                "an epoch");
  worker.Signal(SIGTERM);
  EXPECT_EQ(worker.Wait(seconds(20)), 0) << "the worker exits cleanly on SIGTERM";
  json trials = TrialsJson(study);
  ASSERT_EQ(trials.size(), 2u);
  EXPECT_EQ(trials[0]["state"], "FAILED");
  EXPECT_NE(trials[0]["reason"].get<std::string>().find("shut down"), std::string::npos) << trials[0]["reason"];
  EXPECT_EQ(trials[1]["state"], "WAITING");
  EXPECT_EQ(trials[1]["retry_of"], 0);

  CommandResult stop = Ctl({"stop", std::to_string(study)});
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_NE(stop.out.find("STOPPED"), std::string::npos) << stop.out;
  trials = TrialsJson(study);
  EXPECT_EQ(trials[1]["state"], "FAILED");
  EXPECT_EQ(CountState(trials, "RUNNING") + CountState(trials, "WAITING"), 0);
  EXPECT_EQ(Ctl({"watch", std::to_string(study)}, seconds(10)).exit_code, 0);
}

TEST_F(EndToEndTest, ATimeBudgetEndsAStudyOfRealTrainingAndHpoctlShowsWhatIsLeft) {
  StartServer();
  json spec = SmallSpec(5000, 2, 2000);  // far more trials than 15 s can train: the budget ends the study
  spec["pruner"] = {{"type", "none"}};
  spec["max_minutes"] = 0.25;  // 15 s from the first trial's start
  CommandResult created = Ctl({"create", WriteSpec(spec)});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_NE(created.out.find("5000 trials within 0.25 minutes of task cnn"), std::string::npos) << created.out;
  const int64_t study = 1;  // the server's first study
  const std::string id = std::to_string(study);
  CommandResult before = Ctl({"show", id});
  EXPECT_NE(before.out.find("time budget 0.25 min from the first trial's start"), std::string::npos) << before.out;
  StartWorker("w1");
  StartWorker("w2");
  // The study ends by its budget alone, and watch returns then.
  CommandResult watch = Ctl({"watch", id}, seconds(180));
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  json shown = ShowJson(study);
  EXPECT_EQ(shown["state"], "COMPLETED") << shown.dump();
  json trials = TrialsJson(study);
  ASSERT_GE(trials.size(), 2u);
  EXPECT_LT(trials.size(), 5000u);
  int64_t first = std::numeric_limits<int64_t>::max();
  for (const auto& t : trials) first = std::min(first, t["started_unix_ms"].get<int64_t>());
  EXPECT_EQ(shown["time_budget_end_unix_ms"], first + 15'000) << shown.dump();
  EXPECT_EQ(shown["max_minutes"], 0.25);
  for (const auto& t : trials) {
    EXPECT_LT(t["started_unix_ms"].get<int64_t>(), first + 15'000) << t.dump();  // none started after the end
    EXPECT_NE(t["state"], "RUNNING");
  }
  CommandResult after = Ctl({"show", id});
  EXPECT_NE(after.out.find("time budget 0.25 min, used up (no trial starts)"), std::string::npos) << after.out;
}

// Writes a photos/ folder built from Fashion-MNIST images the way a user's would look:
// photos/train/<class>/ and photos/val/<class>/, PNG and JPEG of mixed sizes, some in colour, plus
// bad files. val/ is collected differently from train/: its garments are inverted (dark on light) and
// its class frequencies differ, the seed's "dataset bias" case. Returns the number of bad files.
int WritePhotoFolder(const fs::path& photos) {
  auto images = hpo::worker::ReadIdx(std::string(kFashionMnist) + "/train-images-idx3-ubyte",
                                     std::string(kFashionMnist) + "/train-labels-idx1-ubyte");
  EXPECT_TRUE(images.ok()) << images.status();
  if (!images.ok()) return 0;
  const std::map<int, std::string> classes = {{1, "trouser"}, {7, "sneaker"}, {8, "bag"}};
  const std::map<std::string, int> train_per_class = {{"trouser", 150}, {"sneaker", 150}, {"bag", 150}};
  const std::map<std::string, int> val_per_class = {{"trouser", 15}, {"sneaker", 15}, {"bag", 60}};
  std::map<std::string, int> written_train, written_val;
  int file = 0;
  for (int64_t i = 0; i < images->count; ++i) {
    auto c = classes.find(images->labels[i]);
    if (c == classes.end()) continue;
    const std::string& name = c->second;
    const bool to_train = written_train[name] < train_per_class.at(name);
    if (!to_train && written_val[name] >= val_per_class.at(name)) continue;
    ++(to_train ? written_train : written_val)[name];
    const fs::path dir = photos / (to_train ? "train" : "val") / name;
    fs::create_directories(dir);
    std::vector<uint8_t> px(images->pixels.begin() + i * 784, images->pixels.begin() + (i + 1) * 784);
    if (!to_train) {
      for (uint8_t& p : px) p = static_cast<uint8_t>(255 - p);
    }
    int size = 28;
    if (file % 3 == 1) {  // upscaled to 42x42 (nearest neighbour)
      size = 42;
      std::vector<uint8_t> big(42 * 42);
      for (int y = 0; y < 42; ++y)
        for (int x = 0; x < 42; ++x) big[y * 42 + x] = px[(y * 2 / 3) * 28 + x * 2 / 3];
      px = big;
    }
    const std::string stem = (dir / ("img_" + std::to_string(file))).string();
    bool ok = false;
    if (file % 5 == 2) {  // a colour JPEG, tinted
      std::vector<uint8_t> rgb;
      for (uint8_t p : px) rgb.insert(rgb.end(), {p, static_cast<uint8_t>(p * 9 / 10), static_cast<uint8_t>(p * 8 / 10)});
      ok = hpo::testing::WriteJpeg(stem + ".jpg", size, size, 3, rgb, 92);
    } else if (file % 2 == 0) {
      ok = hpo::testing::WriteJpeg(stem + ".jpeg", size, size, 1, px, 92);
    } else {
      ok = hpo::testing::WritePng(stem + ".png", size, size, 1, 8, px);
    }
    EXPECT_TRUE(ok);
    ++file;
    if (written_train == train_per_class && written_val == val_per_class) break;
  }
  // Bad files of every kind: each is skipped and counted, none stops the study.
  auto put = [](const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; };
  put(photos / "train" / "README.txt", "photos from the shop, 2026\n");
  put(photos / "train" / "bag" / ".DS_Store", std::string("\0\0\0\1Bud1", 8));
  put(photos / "train" / "bag" / "notes.txt", "bags: 150\n");
  put(photos / "train" / "trouser" / "empty.png", "");
  // A truncated copy of a real JPEG.
  for (const auto& e : fs::directory_iterator(photos / "train" / "sneaker")) {
    if (e.path().extension() == ".jpeg") {
      std::ifstream j(e.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(j)), {});
      put(photos / "train" / "sneaker" / "truncated.jpeg", bytes.substr(0, bytes.size() / 2));
      break;
    }
  }
  put(photos.parent_path() / "elsewhere.png", "outside the data set");
  fs::create_symlink(photos.parent_path() / "elsewhere.png", photos / "train" / "trouser" / "link.png");
  return 6;
}

TEST_F(EndToEndTest, APhotoFolderStudyFromHpoctlInitNamesClassesAndSeesTheValidationMismatch) {
  data_root_ = (dir_ / "data").string();
  const fs::path photos = dir_ / "data" / "photos";
  const int bad_files = WritePhotoFolder(photos);
  ASSERT_EQ(bad_files, 6);

  // 1. hpoctl init drafts the spec from the folder and says why.
  const std::string spec_path = (dir_ / "spec.json").string();
  CommandResult init = Ctl({"init", photos.string(), "--out=" + spec_path});
  ASSERT_EQ(init.exit_code, 0) << init.out << init.err;
  const std::string said = init.out + init.err;
  EXPECT_NE(said.find("hpoctl create"), std::string::npos) << said;
  json spec = json::parse(std::ifstream(spec_path));
  EXPECT_EQ(spec["task"]["dataset"], "photos");
  EXPECT_EQ(spec["task"]["channels"], 3) << "some images are in colour";
  EXPECT_FALSE(spec["task"].contains("val_examples")) << "val/ is the validation set as it stands";
  // Small enough for a test: 3 trials of 3 epochs.
  spec["max_trials"] = 3;
  spec["task"]["max_epochs"] = 3;
  spec["pruner"] = {{"type", "none"}};

  // 2. Two workers run it; the first trial decodes, the others map the cache.
  StartServer();
  StartWorker("w1");
  StartWorker("w2");
  const int64_t study = Create(spec);
  CommandResult watch = Ctl({"watch", std::to_string(study)}, seconds(400));
  ASSERT_EQ(watch.exit_code, 0) << watch.err;
  json trials = TrialsJson(study);
  ASSERT_EQ(trials.size(), 3u);
  std::set<std::string> workers;
  for (const auto& t : trials) {
    ASSERT_EQ(t["state"], "COMPLETED") << t.dump();
    workers.insert(t["worker"].get<std::string>());
    const json& data = t["data"];
    EXPECT_EQ(data["format"], "image_folder");
    EXPECT_EQ(data["class_names"], json({"bag", "sneaker", "trouser"}));
    EXPECT_EQ(data["skipped_files"], bad_files) << data.dump();
    EXPECT_EQ(data["train_images"], 450);
    EXPECT_EQ(data["val_images"], 90);
    EXPECT_EQ(data["test_images"], 0);
    EXPECT_FALSE(t["final_metrics"].contains("test_accuracy")) << "there is no test/ folder";
    ASSERT_EQ(t["val_recall"].size(), 3u);
  }
  EXPECT_EQ(workers.size(), 2u);
  std::string logs;
  for (const char* w : {"w1.log", "w2.log"}) {
    std::ifstream in(dir_ / w);
    logs += std::string((std::istreambuf_iterator<char>(in)), {});
  }
  EXPECT_NE(logs.find("from the decoded-image cache"), std::string::npos) << logs;
  EXPECT_NE(logs.find("train/README.txt: not in a class folder"), std::string::npos) << logs;

  // 3. What the user reads: class names, skipped files, per-class recall, the mismatch.
  CommandResult text = Ctl({"trials", std::to_string(study)});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("skipped 6 files"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("sneaker "), std::string::npos) << text.out;
  CommandResult best = Ctl({"best", std::to_string(study)});
  ASSERT_EQ(best.exit_code, 0) << best.err;
  EXPECT_NE(best.out.find("trouser"), std::string::npos) << best.out;
  CommandResult diagnose = Ctl({"--json", "diagnose", std::to_string(study)});
  ASSERT_EQ(diagnose.exit_code, 0) << diagnose.err;
  json findings = json::parse(diagnose.out);
  bool mismatch = false;
  for (const auto& f : findings) {
    if (f["cause"] != "train/validation mismatch") continue;
    mismatch = true;
    const std::string evidence = f["evidence"];
    EXPECT_NE(evidence.find("bag"), std::string::npos) << evidence;  // 33% of training, 67% of validation
    EXPECT_NE(evidence.find("mean pixel value"), std::string::npos) << evidence;
  }
  EXPECT_TRUE(mismatch) << findings.dump(1);
}

}  // namespace
}  // namespace hpo
