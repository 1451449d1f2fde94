// hpoctl: command-line client of the hpo coordinator.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "client/commands.h"
#include "proto/common/tls_files.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "address of hpo-server (HOST:PORT)");
ABSL_FLAG(bool, json, false, "print machine-readable JSON");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "deadline of each RPC");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(1), "watch: how often to poll");
ABSL_FLAG(int, trial, -1, "diagnose: judge this trial number instead of the best one");
ABSL_FLAG(std::string, out, "", "report: the HTML file to write; init: the spec file to write (default: stdout)");
ABSL_FLAG(std::string, token, "", "bearer token sent with every call (default: $HPO_TOKEN)");
ABSL_FLAG(std::string, tls_ca, "", "connect with TLS, trusting this CA (PEM) for the coordinator's certificate");
ABSL_FLAG(std::string, tls_cert, "", "mutual TLS: this client's certificate (PEM); needs --tls_key and --tls_ca");
ABSL_FLAG(std::string, tls_key, "", "mutual TLS: the private key (PEM) of --tls_cert");
ABSL_FLAG(std::string, role, "", "token create: admin, worker or reader");
ABSL_FLAG(int64_t, study, 0, "token create --role=worker: bind the token to this study id (default: any study)");
ABSL_FLAG(std::string, note, "", "token create: free text stored with the token (e.g. the machine it is for)");

namespace {
constexpr char kUsage[] = R"(hpoctl [--coordinator=HOST:PORT] [--json] COMMAND [ARGS]

Commands:
  create FILE     create a study from a JSON spec file; prints its id alone on the last line
  list            list studies (every page)
  show STUDY      one study: state, trial counts, best value, spec
  trials STUDY    every trial (every page): number, state, parameters, value, per-epoch values, reason
  best STUDY      the best completed trial
  watch STUDY     follow a study live; returns (exit 0) when it is finished
  stop STUDY      stop a study: no new trials, running ones are failed
  delete STUDY    delete a study with its trials and measurements (admin; asks nothing)
  diagnose STUDY [--trial=N]
                  why validation accuracy is not improving: causes with their evidence
  report STUDY --out=FILE.html
                  one self-contained HTML page with the study's charts and diagnosis
  enqueue STUDY FILE
                  queue a trial with the parameters in FILE (a JSON object), handed out first
  token create --role=admin|worker|reader [--study=ID] [--note=TEXT]
                  make a bearer token (admin); prints it once
  token list      every token: id, role, study, state, created, note (admin)
  token revoke ID revoke a token: calls with it are refused from then on (admin)
  init DATA_DIR [--out=spec.json]
                  inspect a data set folder and draft a study spec for it, with the reason for
                  each choice and the commands to run it (needs no coordinator)

Security: --tls_ca=CA.pem (plus --tls_cert/--tls_key for mutual TLS) when the coordinator serves TLS;
--token=TOKEN or HPO_TOKEN when it requires tokens (README "Security").

Exit status: 0 ok, 1 the coordinator refused or could not be reached, 2 bad usage.)";
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) {
    std::cerr << "usage: " << kUsage << "\n";
    return 2;
  }
  hpo::client::Context ctx;
  ctx.address = absl::GetFlag(FLAGS_coordinator);
  ctx.json = absl::GetFlag(FLAGS_json);
  ctx.timeout = absl::GetFlag(FLAGS_timeout);
  ctx.watch_interval = absl::GetFlag(FLAGS_interval);
  ctx.trial = absl::GetFlag(FLAGS_trial);
  ctx.out = absl::GetFlag(FLAGS_out);
  ctx.token = hpo::TokenFromFlagOrEnv(absl::GetFlag(FLAGS_token));
  ctx.role = absl::GetFlag(FLAGS_role);
  ctx.study = absl::GetFlag(FLAGS_study);
  ctx.note = absl::GetFlag(FLAGS_note);
  hpo::ClientSecurity security;
  security.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  security.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  security.tls_key = absl::GetFlag(FLAGS_tls_key);
  ctx.tls = !security.tls_ca.empty();
  auto credentials = hpo::MakeChannelCredentials(security);
  if (!credentials.ok()) {
    std::cerr << "hpoctl: " << credentials.status().message() << "\n";
    return 2;
  }
  ctx.stub = hpo::v1::Coordinator::NewStub(grpc::CreateChannel(ctx.address, *credentials));
  const std::string command = positional[1];
  std::vector<std::string> args(positional.begin() + 2, positional.end());
  absl::Status s = hpo::client::RunCommand(ctx, command, args);
  std::cout.flush();
  if (!s.ok()) {
    std::cerr << "hpoctl: " << s.message() << "\n";
    return s.code() == absl::StatusCode::kInvalidArgument && s.message().rfind("usage", 0) == 0 ? 2 : 1;
  }
  return 0;
}
