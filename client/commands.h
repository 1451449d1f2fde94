// hpoctl's commands: each makes its RPC(s) with a deadline and prints the result.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "hpo/v1/coordinator.grpc.pb.h"

namespace hpo::client {

struct Context {
  std::unique_ptr<hpo::v1::Coordinator::Stub> stub;
  std::string address;
  bool json = false;
  absl::Duration timeout = absl::Seconds(10);
  absl::Duration watch_interval = absl::Seconds(1);
  int trial = -1;  // diagnose: the trial to judge (-1: the best)
  std::string out;  // report: the HTML file to write
  std::string token;  // bearer token sent with every call (--token or $HPO_TOKEN); empty: none
  bool tls = false;   // the channel uses TLS (--tls_ca)
  // token create:
  std::string role;      // --role: admin, worker or reader
  int64_t study = 0;     // --study: bind a worker token to this study (0: any)
  std::string note;      // --note: free text stored with the token
};

// Runs `command` with `args`; prints to stdout. The status says what went wrong.
absl::Status RunCommand(Context& ctx, const std::string& command, const std::vector<std::string>& args);

}  // namespace hpo::client
