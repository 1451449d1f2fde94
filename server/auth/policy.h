// Who may call what (README "Security"): the role each RPC needs, the check of a call's bearer
// token against it, and the rule for which listening addresses need TLS and tokens. No gRPC types:
// the service hands in the metadata value and gets back an absl::Status.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/auth/token_store.h"

namespace hpo::server {

// The role an RPC (by its name in coordinator.proto, e.g. "CreateStudy") needs. An RPC this
// table does not know needs admin (fail closed).
Role RequiredRole(std::string_view rpc);

// Whether `rpc` names the study it acts on in its request (so a study-bound worker token is
// checked against it). Trial RPCs (report, heartbeat, complete, fail) are bound through the lease.
bool IsStudyScoped(std::string_view rpc);

// The pure rule: may `token` call `rpc` on `study_id` (0: none named, or any study)?
//   admin may call everything; worker: the worker RPCs and the reader RPCs; reader: the reader RPCs.
//   A worker token bound to a study may name no other study (AskTrial naming none is let in: the
//   service narrows it to the bound study).
// kUnauthenticated for a revoked token; kPermissionDenied naming the role needed otherwise.
[[nodiscard]] absl::Status Permit(std::string_view rpc, const TokenRecord& token, int64_t study_id);

// Who made a call, once it is let in.
struct Caller {
  bool authenticated = false;  // false: tokens are off, anyone may call
  TokenRecord token;           // when authenticated
  // The lease identity for trial RPCs: "token:<id>" when authenticated, else the request's worker id.
  std::string Holder(const std::string& worker_id) const;
};

// Checks the "authorization" metadata of calls against a token store.
// Thread-safe when the store is (TokenStore is).
class Authorizer {
 public:
  // `tokens` must outlive the Authorizer. With require_tokens false every call is let in
  // unauthenticated and tokens are not looked at.
  Authorizer(TokenStore* tokens, bool require_tokens) : tokens_(tokens), require_(require_tokens) {}

  bool require_tokens() const { return require_; }
  TokenStore* tokens() const { return tokens_; }

  // `authorization` is the metadata value ("Bearer TOKEN"), or nullptr when the call had none.
  // kUnauthenticated: no token, not a bearer token, an unknown or revoked one; kPermissionDenied
  // (see Permit); kUnavailable when the store cannot be read.
  [[nodiscard]] absl::StatusOr<Caller> Check(std::string_view rpc, const std::string* authorization,
                                             int64_t study_id) const;

 private:
  TokenStore* tokens_;
  bool require_;
};

// The safe-defaults rule for --listen: an address other than loopback (127.0.0.0/8, ::1,
// localhost, a unix socket) needs TLS and --require_tokens, or --insecure. kFailedPrecondition
// saying which flags are missing. `*warning` is set (to a line to log at start) when the server
// will serve a non-loopback address without TLS or tokens because of --insecure.
[[nodiscard]] absl::Status CheckListenSecurity(const std::string& address, bool tls, bool require_tokens,
                                               bool insecure, std::string* warning);

// Whether `address` (a gRPC listening address, HOST:PORT, [V6]:PORT or unix:PATH) is only
// reachable from this machine.
bool IsLoopbackAddress(const std::string& address);

}  // namespace hpo::server
