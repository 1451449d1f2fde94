// --log_format=json: fields found in the message text, escaping, and the real hpo-server's lines.
#include "proto/common/json_log.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/testing/process.h"

namespace hpo {
namespace {

using nlohmann::json;

TEST(JsonLogTest, FindsStudyTrialAndWorkerInTheMessage) {
  LogFields f = FieldsOfLogLine("trial 12 of study 3 (id 40) -> worker w2");
  EXPECT_EQ(f.study, 3);
  EXPECT_EQ(f.trial, 12);
  EXPECT_EQ(f.worker, "w2");
  f = FieldsOfLogLine("created study 7 \"photos\"");
  EXPECT_EQ(f.study, 7);
  EXPECT_EQ(f.trial, -1);
  EXPECT_EQ(f.worker, "");
  f = FieldsOfLogLine("lease lost: worker host-1:4242 sent no heartbeat for 30s.");
  EXPECT_EQ(f.worker, "host-1:4242");
  f = FieldsOfLogLine("subtrial 5 of study x, superstudy 9");  // not words of their own
  EXPECT_EQ(f.trial, -1);
  EXPECT_EQ(f.study, -1);
}

TEST(JsonLogTest, EveryLineIsOneValidJsonObjectEvenForHostileText) {
  const std::string line = JsonLogLine("2026-11-30T05:00:00.000+0000", "warning", "worker", "w1",
                                       "trial 2 of study 5 failed: data set: \"x\"\n\tbad \xff\xfe bytes");
  ASSERT_EQ(line.find('\n'), std::string::npos);
  const json j = json::parse(line);
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["process"], "worker");
  EXPECT_EQ(j["worker"], "w1");  // the process's own id wins
  EXPECT_EQ(j["study"], 5);
  EXPECT_EQ(j["trial"], 2);
  EXPECT_NE(j["msg"].get<std::string>().find("data set: \"x\"\n\tbad"), std::string::npos);
  EXPECT_FALSE(SetLogFormat("xml", "%v", "server").ok());
}

TEST(JsonLogTest, TheServerWritesJsonLinesWithStudyFields) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("hpo_json_log_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string log = (dir / "server.log").string(), port_file = (dir / "port").string();
  auto server = testing::Process::Start({HPO_SERVER_BIN, "--listen=127.0.0.1:0", "--db=" + (dir / "h.db").string(),
                                         "--port_file=" + port_file, "--log_format=json"},
                                        log);
  const int port_number = testing::WaitForPortFile(port_file, server);
  ASSERT_GT(port_number, 0);
  const std::string port = std::to_string(port_number);
  const std::string spec = (dir / "spec.json").string();
  std::ofstream(spec) << R"({"name": "json logs", "task": {"type": "external", "max_steps": 3},
    "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1}], "max_trials": 2})";
  auto r = testing::Run({HPO_CTL_BIN, "--coordinator=127.0.0.1:" + port, "create", spec});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  server.Signal(SIGTERM);  // a clean stop: it logs its shutdown too
  EXPECT_EQ(server.Wait(std::chrono::seconds(20)), 0);
  std::ifstream in(log);
  int lines = 0, with_study = 0;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);  // throws (fails the test) on a line that is not JSON
    ++lines;
    EXPECT_EQ(j["process"], "server");
    EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg"));
    if (j.contains("study")) {
      ++with_study;
      EXPECT_EQ(j["study"], 1);
    }
  }
  EXPECT_GE(lines, 2);
  EXPECT_GE(with_study, 1);  // "created study 1 ..."
  fs::remove_all(dir);
}

}  // namespace
}  // namespace hpo
