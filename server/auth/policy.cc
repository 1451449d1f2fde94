#include "server/auth/policy.h"

#include <array>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace hpo::server {
namespace {

// Every RPC of coordinator.proto with the role it needs (README "Security", roles table).
constexpr std::array<std::pair<std::string_view, Role>, 17> kRequired = {{
    {"CreateStudy", Role::kAdmin},
    {"StopStudy", Role::kAdmin},
    {"DeleteStudy", Role::kAdmin},
    {"EnqueueTrial", Role::kAdmin},
    {"CreateToken", Role::kAdmin},
    {"ListTokens", Role::kAdmin},
    {"RevokeToken", Role::kAdmin},
    {"AskTrial", Role::kWorker},
    {"ReportProgress", Role::kWorker},
    {"Heartbeat", Role::kWorker},
    {"CompleteTrial", Role::kWorker},
    {"FailTrial", Role::kWorker},
    {"GetStudy", Role::kReader},
    {"ListStudies", Role::kReader},
    {"ListTrials", Role::kReader},
    {"GetBestTrial", Role::kReader},
    {"DiagnoseStudy", Role::kReader},
}};

// Whether a token of role `has` may do what `needed` may.
bool Covers(Role has, Role needed) {
  switch (has) {
    case Role::kAdmin: return true;
    case Role::kWorker: return needed == Role::kWorker || needed == Role::kReader;
    case Role::kReader: return needed == Role::kReader;
  }
  return false;
}

std::string Describe(const TokenRecord& t) {
  std::string s = absl::StrCat("token ", t.id, " has role ", RoleName(t.role));
  if (t.role == Role::kWorker && t.study_id != 0) absl::StrAppend(&s, " for study ", t.study_id, " only");
  return s;
}

}  // namespace

Role RequiredRole(std::string_view rpc) {
  for (const auto& [name, role] : kRequired) {
    if (name == rpc) return role;
  }
  return Role::kAdmin;
}

bool IsStudyScoped(std::string_view rpc) {
  return rpc == "AskTrial" || rpc == "GetStudy" || rpc == "ListTrials" || rpc == "GetBestTrial" ||
         rpc == "DiagnoseStudy" || rpc == "StopStudy" || rpc == "EnqueueTrial" || rpc == "DeleteStudy";
}

absl::Status Permit(std::string_view rpc_name, const TokenRecord& token, int64_t study_id) {
  const std::string rpc(rpc_name);
  if (token.revoked) {
    return absl::UnauthenticatedError(
        absl::StrCat("token ", token.id, " was revoked: ask an admin for a new one (hpoctl token create)"));
  }
  const Role needed = RequiredRole(rpc);
  if (!Covers(token.role, needed)) {
    return absl::PermissionDeniedError(absl::StrCat(rpc, " needs a token with role ", RoleName(needed),
                                                    needed == Role::kAdmin ? "" : " or admin", "; ",
                                                    Describe(token)));
  }
  // AskTrial naming no study is let through: the service then asks only for the bound study.
  const bool ask_any = rpc == "AskTrial" && study_id == 0;
  if (token.role == Role::kWorker && token.study_id != 0 && IsStudyScoped(rpc) && study_id != token.study_id &&
      !ask_any) {
    return absl::PermissionDeniedError(absl::StrCat(
        rpc, study_id == 0 ? " of every study" : absl::StrCat(" of study ", study_id),
        " needs a token with role ", RoleName(needed), " for that study (or any study) or admin; ",
        Describe(token)));
  }
  return absl::OkStatus();
}

std::string Caller::Holder(const std::string& worker_id) const {
  return authenticated ? absl::StrCat("token:", token.id) : worker_id;
}

absl::StatusOr<Caller> Authorizer::Check(std::string_view rpc_name, const std::string* authorization,
                                         int64_t study_id) const {
  const std::string rpc(rpc_name);
  Caller caller;
  if (!require_) return caller;
  if (authorization == nullptr || authorization->empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        rpc, ": this coordinator requires a token (hpo-server --require_tokens): pass --token=TOKEN or set "
        "HPO_TOKEN (an admin makes one with hpoctl token create)"));
  }
  const std::string& value = *authorization;
  const std::string kBearer = "bearer ";
  if (value.size() <= kBearer.size() || !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer)) {
    return absl::UnauthenticatedError(
        absl::StrCat(rpc, ": the authorization metadata must be \"Bearer TOKEN\""));
  }
  const std::string secret(absl::StripAsciiWhitespace(value.substr(kBearer.size())));
  absl::StatusOr<TokenRecord> token = tokens_->Lookup(secret);
  if (!token.ok()) {
    if (absl::IsNotFound(token.status())) {
      return absl::UnauthenticatedError(absl::StrCat(
          rpc, ": the token is not known to this coordinator (a typo, or a token of another server?)"));
    }
    return absl::UnavailableError(
        absl::StrCat(rpc, ": cannot check the token: ", token.status().message()));
  }
  if (absl::Status s = Permit(rpc, *token, study_id); !s.ok()) {
    return absl::Status(s.code(), s.code() == absl::StatusCode::kUnauthenticated
                                      ? absl::StrCat(rpc, ": ", s.message())
                                      : std::string(s.message()));
  }
  caller.authenticated = true;
  caller.token = *std::move(token);
  return caller;
}

bool IsLoopbackAddress(const std::string& address) {
  if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) return true;
  std::string host;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos) return false;
    host = address.substr(1, close - 1);
  } else {
    const size_t colon = address.rfind(':');
    host = colon == std::string::npos ? address : address.substr(0, colon);
  }
  host = absl::AsciiStrToLower(host);
  if (host == "localhost" || host == "::1" || host == "ip6-localhost") return true;
  // 127.0.0.0/8: four decimal parts, the first 127.
  std::vector<std::string> parts = absl::StrSplit(host, '.');
  if (parts.size() != 4) return false;
  for (const std::string& p : parts) {
    int n = 0;
    if (p.empty() || p.size() > 3 || !absl::SimpleAtoi(p, &n) || n < 0 || n > 255) return false;
  }
  return parts[0] == "127";
}

absl::Status CheckListenSecurity(const std::string& address, bool tls, bool require_tokens, bool insecure,
                                 std::string* warning) {
  warning->clear();
  if (IsLoopbackAddress(address) || (tls && require_tokens)) return absl::OkStatus();
  std::string missing;
  if (!tls) missing = "TLS (--tls_cert and --tls_key)";
  if (!require_tokens) absl::StrAppend(&missing, missing.empty() ? "" : " and ", "--require_tokens");
  if (insecure) {
    const char* risk = !require_tokens ? (tls ? "anyone who can reach it can create, stop and report into studies"
                                              : "anyone who can reach it can read the traffic and create, stop "
                                                "and report into studies")
                                       : "tokens and results cross the network in plaintext";
    *warning = absl::StrCat("--insecure: serving ", address, " without ", missing, ": ", risk);
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "--listen=", address, " is reachable from other machines, so it needs ", missing,
      " (see README \"Security\"); or pass --insecure to serve it anyway (e.g. on a private network you "
      "trust), or listen on 127.0.0.1"));
}

}  // namespace hpo::server
