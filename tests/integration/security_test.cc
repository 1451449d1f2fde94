// TLS, bearer tokens with roles, lease identity and safe defaults (issue 13, README "Security"),
// with real processes: a CA and certificates made here with the openssl CLI, hpo-server with TLS
// and --require_tokens, hpoctl, and gRPC clients standing in for workers.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "hpo/v1/coordinator.grpc.pb.h"
#include "tests/testing/process.h"

namespace hpo {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::Process;


std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all from the
// openssl CLI, as README "Security" shows.
void MakeCertificates(const fs::path& dir) {
  auto openssl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    CommandResult r = testing::Run(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  const std::string d = dir.string() + "/";
  openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "ca.key", "-out", d + "ca.pem", "-days",
           "2", "-subj", "/CN=hpo test CA"});
  std::ofstream(d + "server.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  openssl({"req", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "server.key", "-out", d + "server.csr", "-subj",
           "/CN=hpo-server"});
  openssl({"x509", "-req", "-in", d + "server.csr", "-CA", d + "ca.pem", "-CAkey", d + "ca.key", "-CAcreateserial",
           "-out", d + "server.pem", "-days", "2", "-extfile", d + "server.ext"});
  openssl({"req", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "client.key", "-out", d + "client.csr", "-subj",
           "/CN=hpo-worker"});
  openssl({"x509", "-req", "-in", d + "client.csr", "-CA", d + "ca.pem", "-CAkey", d + "ca.key", "-CAcreateserial",
           "-out", d + "client.pem", "-days", "2"});
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("hpo_security_test." + std::to_string(getpid()) + "." +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    MakeCertificates(dir_);
    spec_ = (dir_ / "spec.json").string();
    std::ofstream(spec_) << R"({"name": "secured", "task": {"type": "external", "max_steps": 10},
      "parameters": [{"name": "x", "type": "float", "low": 0, "high": 1}], "max_trials": 4})";
  }
  void TearDown() override {
    if (server_.Running()) {
      server_.Signal(SIGTERM);
      server_.Wait(std::chrono::seconds(10));
    }
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string P(const std::string& name) const { return (dir_ / name).string(); }

  // Starts hpo-server with `flags`; returns false (and the log) when it does not come up.
  void StartServer(std::vector<std::string> flags) {
    std::vector<std::string> argv = {HPO_SERVER_BIN, "--db=" + P("hpo.db"), "--port_file=" + P("port")};
    argv.insert(argv.end(), flags.begin(), flags.end());
    fs::remove(P("port"));
    server_ = Process::Start(argv, P("server.log"));
    port_ = testing::WaitForPortFile(P("port"), server_);
    ASSERT_GT(port_, 0) << ReadFile(P("server.log"));
    address_ = "127.0.0.1:" + std::to_string(port_);
  }

  CommandResult Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {HPO_CTL_BIN, "--coordinator=" + address_});
    return testing::Run(args);
  }

  std::unique_ptr<v1::Coordinator::Stub> Stub(bool tls) {
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (tls) {
      grpc::SslCredentialsOptions o;
      o.pem_root_certs = ReadFile(P("ca.pem"));
      creds = grpc::SslCredentials(o);
    }
    return v1::Coordinator::NewStub(grpc::CreateChannel(address_, creds));
  }

  fs::path dir_;
  std::string spec_;
  Process server_;
  int port_ = 0;
  std::string address_;
};

// A context with a deadline and, when given, the token.
std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

grpc::Status Report(v1::Coordinator::Stub& stub, const std::string& token, int64_t trial, int step,
                    const std::string& worker_id, v1::ProgressDecision* decision) {
  auto ctx = Ctx(token);
  auto stream = stub.ReportProgress(ctx.get());
  v1::ProgressReport r;
  r.set_trial_id(trial);
  r.set_worker_id(worker_id);
  r.mutable_measurement()->set_step(step);
  r.mutable_measurement()->set_value(0.5);
  if (stream->Write(r)) stream->Read(decision);
  stream->WritesDone();
  return stream->Finish();
}

// The standard health service, called without any token through the generic stub (its request
// is empty; a SERVING answer is field 1 = 1).
grpc::Status Health(const std::string& address, const std::string& ca_pem, std::string* answer) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = ca_pem;
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::SslCredentials(o)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("", 0);
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  grpc::Status s = done.get_future().get();
  std::vector<grpc::Slice> slices;
  if (s.ok() && response.Dump(&slices).ok()) {
    for (const auto& sl : slices) answer->append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  }
  return s;
}

TEST_F(SecurityTest, TlsAndTokensWithRolesLeasesAndRevocation) {
  // The first admin token, made offline.
  CommandResult made = testing::Run({HPO_SERVER_BIN, "--db=" + P("hpo.db"), "--new_token=admin"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string admin = Trim(made.out);
  ASSERT_EQ(admin.rfind("hpo_", 0), 0u) << made.out;

  ASSERT_NO_FATAL_FAILURE(StartServer({"--listen=127.0.0.1:0", "--tls_cert=" + P("server.pem"),
                                       "--tls_key=" + P("server.key"), "--require_tokens"}));
  const std::string ca = "--tls_ca=" + P("ca.pem");

  // A plaintext client cannot talk to a TLS server.
  CommandResult plain = Ctl({"--token=" + admin, "list"});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_NE(plain.err.find("cannot reach the coordinator"), std::string::npos) << plain.err;
  EXPECT_NE(plain.err.find("--tls_ca"), std::string::npos) << plain.err;
  // No token: UNAUTHENTICATED.
  CommandResult anonymous = Ctl({ca, "list"});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_NE(anonymous.err.find("UNAUTHENTICATED"), std::string::npos) << anonymous.err;
  // A made-up token: UNAUTHENTICATED too.
  CommandResult forged = Ctl({ca, "--token=hpo_0000", "list"});
  EXPECT_NE(forged.err.find("UNAUTHENTICATED"), std::string::npos) << forged.err;
  // The health service stays open for probes.
  std::string health;
  grpc::Status h = Health(address_, ReadFile(P("ca.pem")), &health);
  EXPECT_TRUE(h.ok()) << h.error_message();
  EXPECT_EQ(health, std::string("\x08\x01", 2));

  // The admin creates two studies and three tokens.
  CommandResult created = Ctl({ca, "--token=" + admin, "create", spec_});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  ASSERT_EQ(Ctl({ca, "--token=" + admin, "create", spec_}).exit_code, 0);
  CommandResult w1 = Ctl({ca, "--token=" + admin, "token", "create", "--role=worker"});
  ASSERT_EQ(w1.exit_code, 0) << w1.err;
  ::setenv("HPO_TOKEN", admin.c_str(), 1);  // the environment variable works as well as --token
  CommandResult w2 = Ctl({ca, "token", "create", "--role=worker", "--study=1", "--note=box two"});
  ::unsetenv("HPO_TOKEN");
  ASSERT_EQ(w2.exit_code, 0) << w2.err;
  CommandResult reader = Ctl({ca, "--token=" + admin, "token", "create", "--role=reader"});
  ASSERT_EQ(reader.exit_code, 0) << reader.err;
  const std::string worker1 = Trim(w1.out), worker2 = Trim(w2.out), read = Trim(reader.out);

  // The reader reads but may not create: PERMISSION_DENIED naming admin.
  EXPECT_EQ(Ctl({ca, "--token=" + read, "list"}).exit_code, 0);
  CommandResult refused = Ctl({ca, "--token=" + read, "create", spec_});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("PERMISSION_DENIED"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("admin"), std::string::npos) << refused.err;
  // A worker token may not manage tokens.
  CommandResult escalate = Ctl({ca, "--token=" + worker1, "token", "create", "--role=admin"});
  EXPECT_NE(escalate.err.find("PERMISSION_DENIED"), std::string::npos) << escalate.err;

  // Worker 1 takes a trial of study 1.
  auto stub = Stub(/*tls=*/true);
  v1::AskTrialRequest ask;
  ask.set_worker_id("w1");
  ask.add_task_types("external");
  ask.set_study_id(1);
  v1::AskTrialResponse got;
  grpc::Status s = stub->AskTrial(Ctx(worker1).get(), ask, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(got.assigned());
  const int64_t trial = got.trial().id();
  v1::ProgressDecision decision;
  s = Report(*stub, worker1, trial, 0, "w1", &decision);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(decision.action(), v1::ProgressDecision::CONTINUE);

  // Worker 2 (even claiming the same worker id) cannot report into, beat for, complete or fail it.
  s = Report(*stub, worker2, trial, 1, "w1", &decision);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  v1::HeartbeatRequest beat;
  beat.set_trial_id(trial);
  beat.set_worker_id("w1");
  v1::HeartbeatResponse beat_resp;
  EXPECT_EQ(stub->Heartbeat(Ctx(worker2).get(), beat, &beat_resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::CompleteTrialRequest complete;
  complete.set_trial_id(trial);
  complete.set_worker_id("w1");
  v1::CompleteTrialResponse complete_resp;
  EXPECT_EQ(stub->CompleteTrial(Ctx(worker2).get(), complete, &complete_resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::FailTrialRequest fail;
  fail.set_trial_id(trial);
  fail.set_reason("hijack");
  v1::FailTrialResponse fail_resp;
  EXPECT_EQ(stub->FailTrial(Ctx(worker2).get(), fail, &fail_resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // A reader may not work at all.
  s = Report(*stub, read, trial, 1, "w1", &decision);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("worker"), std::string::npos) << s.error_message();

  // Worker 2 is bound to study 1: study 2 is refused, and asking for any study gives study 1.
  ask.set_worker_id("w2");
  ask.set_study_id(2);
  s = stub->AskTrial(Ctx(worker2).get(), ask, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("study 1 only"), std::string::npos) << s.error_message();
  ask.set_study_id(0);
  s = stub->AskTrial(Ctx(worker2).get(), ask, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(got.assigned());
  EXPECT_EQ(got.trial().study_id(), 1);

  // The holder finishes its trial.
  s = stub->CompleteTrial(Ctx(worker1).get(), complete, &complete_resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(complete_resp.trial().state(), v1::TRIAL_COMPLETED);

  // Listing shows no secret; revoking a token refuses it from the next call on.
  CommandResult listed = Ctl({ca, "--token=" + admin, "token", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("box two"), std::string::npos) << listed.out;
  EXPECT_EQ(listed.out.find(worker1), std::string::npos);
  EXPECT_EQ(Ctl({ca, "--token=" + admin, "token", "revoke", "2"}).exit_code, 0);  // worker 1
  s = stub->AskTrial(Ctx(worker1).get(), ask, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("revoked"), std::string::npos) << s.error_message();

  // The token file keeps hashes only.
  const std::string stored = ReadFile(P("hpo.db.tokens")) + ReadFile(P("hpo.db.tokens-wal"));
  for (const std::string& t : {admin, worker1, worker2, read}) EXPECT_EQ(stored.find(t), std::string::npos);
}

TEST_F(SecurityTest, MutualTlsRefusesAClientWithoutACertificate) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--listen=127.0.0.1:0", "--tls_cert=" + P("server.pem"),
                                       "--tls_key=" + P("server.key"), "--tls_client_ca=" + P("ca.pem")}));
  const std::string ca = "--tls_ca=" + P("ca.pem");
  CommandResult without = Ctl({ca, "list"});
  EXPECT_EQ(without.exit_code, 1);
  EXPECT_NE(without.err.find("cannot reach the coordinator"), std::string::npos) << without.err;
  CommandResult with = Ctl({ca, "--tls_cert=" + P("client.pem"), "--tls_key=" + P("client.key"), "list"});
  EXPECT_EQ(with.exit_code, 0) << with.err;
  CommandResult half = Ctl({ca, "--tls_cert=" + P("client.pem"), "list"});
  EXPECT_EQ(half.exit_code, 2);
  EXPECT_NE(half.err.find("--tls_cert and --tls_key go together"), std::string::npos) << half.err;
}

TEST_F(SecurityTest, WithoutTokensTheLeaseBelongsToTheWorkerId) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--listen=127.0.0.1:0"}));
  ASSERT_EQ(Ctl({"create", spec_}).exit_code, 0);
  auto stub = Stub(/*tls=*/false);
  v1::AskTrialRequest ask;
  ask.set_worker_id("alice");
  ask.add_task_types("external");
  v1::AskTrialResponse got;
  ASSERT_TRUE(stub->AskTrial(Ctx("").get(), ask, &got).ok());
  ASSERT_TRUE(got.assigned());
  v1::ProgressDecision decision;
  grpc::Status s = Report(*stub, "", got.trial().id(), 0, "mallory", &decision);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  v1::CompleteTrialRequest complete;
  complete.set_trial_id(got.trial().id());
  complete.set_worker_id("mallory");
  v1::CompleteTrialResponse resp;
  EXPECT_EQ(stub->CompleteTrial(Ctx("").get(), complete, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  s = Report(*stub, "", got.trial().id(), 0, "alice", &decision);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(SecurityTest, SafeDefaultsRefuseAnOpenPortAndBadFilesWithTheReason) {
  CommandResult open = testing::Run({HPO_SERVER_BIN, "--db=" + P("hpo.db"), "--listen=0.0.0.0:0"});
  EXPECT_EQ(open.exit_code, 2);
  EXPECT_NE((open.out + open.err).find("needs TLS (--tls_cert and --tls_key) and --require_tokens"), std::string::npos)
      << open.out << open.err;
  EXPECT_NE((open.out + open.err).find("--insecure"), std::string::npos);
  CommandResult half = testing::Run({HPO_SERVER_BIN, "--db=" + P("hpo.db"), "--listen=0.0.0.0:0",
                            "--tls_cert=" + P("server.pem"), "--tls_key=" + P("server.key")});
  EXPECT_EQ(half.exit_code, 2);
  EXPECT_NE((half.out + half.err).find("needs --require_tokens"), std::string::npos) << half.out << half.err;
  CommandResult missing = testing::Run({HPO_SERVER_BIN, "--db=" + P("hpo.db"), "--tls_cert=" + P("nope.pem"),
                               "--tls_key=" + P("server.key")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE((missing.out + missing.err).find("--tls_cert=" + P("nope.pem") + ": cannot read it"), std::string::npos) << missing.out << missing.err;
  std::ofstream(P("der.bin")) << std::string("\x30\x82\x01\x00", 4);
  CommandResult der = testing::Run({HPO_SERVER_BIN, "--db=" + P("hpo.db"), "--tls_cert=" + P("der.bin"),
                           "--tls_key=" + P("server.key")});
  EXPECT_EQ(der.exit_code, 2);
  EXPECT_NE((der.out + der.err).find("not a PEM file"), std::string::npos) << der.out << der.err;
  CommandResult ctl = testing::Run({HPO_CTL_BIN, "--tls_ca=" + P("nope.pem"), "list"});
  EXPECT_EQ(ctl.exit_code, 2);
  EXPECT_NE(ctl.err.find("--tls_ca=" + P("nope.pem") + ": cannot read it"), std::string::npos) << ctl.err;
  CommandResult role = testing::Run({HPO_SERVER_BIN, "--db=" + P("hpo.db"), "--new_token=root"});
  EXPECT_EQ(role.exit_code, 2);
  EXPECT_NE((role.out + role.err).find("admin, worker and reader"), std::string::npos) << role.out << role.err;

  // --insecure starts, with a warning.
  ASSERT_NO_FATAL_FAILURE(StartServer({"--listen=0.0.0.0:0", "--insecure"}));
  EXPECT_EQ(Ctl({"list"}).exit_code, 0);
  EXPECT_NE(ReadFile(P("server.log")).find("--insecure: serving 0.0.0.0:0 without"), std::string::npos)
      << ReadFile(P("server.log"));
}

}  // namespace
}  // namespace hpo
