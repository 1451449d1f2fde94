// Who may call what (server/auth/policy.h): the role table, study-bound worker tokens, the
// bearer metadata, and which listening addresses need TLS and tokens. A fake token store.
#include "server/auth/policy.h"

#include <gtest/gtest.h>

#include <map>

#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;

// Tokens by secret, in memory.
class FakeTokenStore final : public TokenStore {
 public:
  void Put(const std::string& secret, TokenRecord r) { by_secret_[secret] = r; }
  absl::StatusOr<NewToken> Create(Role role, int64_t study_id, const std::string& note) override {
    NewToken t;
    t.secret = "secret-" + std::to_string(next_id_);
    t.record.id = next_id_++;
    t.record.role = role;
    t.record.study_id = study_id;
    t.record.note = note;
    by_secret_[t.secret] = t.record;
    return t;
  }
  absl::StatusOr<TokenRecord> Lookup(std::string_view secret) override {
    ++lookups;
    if (fail) return absl::UnavailableError("store down");
    auto it = by_secret_.find(std::string(secret));
    if (it == by_secret_.end()) return absl::NotFoundError("no such token");
    return it->second;
  }
  absl::StatusOr<std::vector<TokenRecord>> List() override {
    std::vector<TokenRecord> out;
    for (const auto& [s, r] : by_secret_) out.push_back(r);
    return out;
  }
  absl::StatusOr<TokenRecord> Revoke(int64_t id) override {
    for (auto& [s, r] : by_secret_) {
      if (r.id == id) {
        r.revoked = true;
        return r;
      }
    }
    return absl::NotFoundError("no token");
  }
  int lookups = 0;
  bool fail = false;

 private:
  std::map<std::string, TokenRecord> by_secret_;
  int64_t next_id_ = 1;
};

TokenRecord Token(int64_t id, Role role, int64_t study = 0) {
  TokenRecord r;
  r.id = id;
  r.role = role;
  r.study_id = study;
  return r;
}

TEST(RequiredRoleTest, EveryRpcOfTheIssueHasItsRole) {
  for (const char* rpc : {"CreateStudy", "StopStudy", "EnqueueTrial", "DeleteStudy", "CreateToken", "ListTokens",
                          "RevokeToken"}) {
    EXPECT_EQ(RequiredRole(rpc), Role::kAdmin) << rpc;
  }
  for (const char* rpc : {"AskTrial", "ReportProgress", "Heartbeat", "CompleteTrial", "FailTrial"}) {
    EXPECT_EQ(RequiredRole(rpc), Role::kWorker) << rpc;
  }
  for (const char* rpc : {"GetStudy", "ListStudies", "ListTrials", "GetBestTrial", "DiagnoseStudy"}) {
    EXPECT_EQ(RequiredRole(rpc), Role::kReader) << rpc;
  }
  EXPECT_EQ(RequiredRole("SomethingNew"), Role::kAdmin);  // fail closed
}

TEST(PermitTest, AdminMayDoEverything) {
  for (const char* rpc : {"CreateStudy", "CreateToken", "AskTrial", "ReportProgress", "ListStudies", "Unknown"}) {
    EXPECT_THAT(Permit(rpc, Token(1, Role::kAdmin), 7), IsOk()) << rpc;
  }
}

TEST(PermitTest, ReaderReadsAndIsToldWhichRoleTheRestNeeds) {
  EXPECT_THAT(Permit("ListTrials", Token(3, Role::kReader), 1), IsOk());
  EXPECT_THAT(Permit("CreateStudy", Token(3, Role::kReader), 0),
              StatusIs(absl::StatusCode::kPermissionDenied, "CreateStudy needs a token with role admin"));
  EXPECT_THAT(Permit("CreateStudy", Token(3, Role::kReader), 0),
              StatusIs(absl::StatusCode::kPermissionDenied, "token 3 has role reader"));
  EXPECT_THAT(Permit("ReportProgress", Token(3, Role::kReader), 0),
              StatusIs(absl::StatusCode::kPermissionDenied, "needs a token with role worker or admin"));
}

TEST(PermitTest, WorkerWorksAndReadsButDoesNotAdminister) {
  for (const char* rpc : {"AskTrial", "ReportProgress", "Heartbeat", "CompleteTrial", "FailTrial", "GetStudy"}) {
    EXPECT_THAT(Permit(rpc, Token(2, Role::kWorker), 1), IsOk()) << rpc;
  }
  for (const char* rpc : {"CreateStudy", "StopStudy", "EnqueueTrial", "CreateToken", "RevokeToken"}) {
    EXPECT_THAT(Permit(rpc, Token(2, Role::kWorker), 1), StatusIs(absl::StatusCode::kPermissionDenied, "admin"))
        << rpc;
  }
}

TEST(PermitTest, AStudyBoundWorkerTokenNamesNoOtherStudy) {
  const TokenRecord bound = Token(4, Role::kWorker, 5);
  EXPECT_THAT(Permit("AskTrial", bound, 5), IsOk());
  EXPECT_THAT(Permit("AskTrial", bound, 0), IsOk());  // the service narrows it to study 5
  EXPECT_THAT(Permit("GetStudy", bound, 5), IsOk());
  EXPECT_THAT(Permit("AskTrial", bound, 6),
              StatusIs(absl::StatusCode::kPermissionDenied, "AskTrial of study 6 needs a token with role worker"));
  EXPECT_THAT(Permit("ListTrials", bound, 6), StatusIs(absl::StatusCode::kPermissionDenied, "for study 5 only"));
  // Trial RPCs name no study: they are bound through the lease the token holds.
  EXPECT_THAT(Permit("ReportProgress", bound, 0), IsOk());
}

TEST(PermitTest, ARevokedTokenIsUnauthenticated) {
  TokenRecord t = Token(9, Role::kAdmin);
  t.revoked = true;
  EXPECT_THAT(Permit("ListStudies", t, 0), StatusIs(absl::StatusCode::kUnauthenticated, "token 9 was revoked"));
}

TEST(AuthorizerTest, WithoutRequireTokensEveryoneIsLetInUnauthenticated) {
  FakeTokenStore store;
  Authorizer auth(&store, /*require_tokens=*/false);
  const std::string bogus = "Bearer nothing";
  absl::StatusOr<Caller> c = auth.Check("CreateStudy", &bogus, 0);
  ASSERT_THAT(c, IsOk());
  EXPECT_FALSE(c->authenticated);
  EXPECT_EQ(c->Holder("host:1"), "host:1");
  EXPECT_EQ(store.lookups, 0);
}

TEST(AuthorizerTest, MissingMalformedUnknownAndRevokedTokensAreUnauthenticated) {
  FakeTokenStore store;
  store.Put("good", Token(1, Role::kAdmin));
  TokenRecord revoked = Token(2, Role::kWorker);
  revoked.revoked = true;
  store.Put("old", revoked);
  Authorizer auth(&store, true);
  EXPECT_THAT(auth.Check("ListStudies", nullptr, 0),
              StatusIs(absl::StatusCode::kUnauthenticated, "requires a token"));
  const std::string empty;
  EXPECT_THAT(auth.Check("ListStudies", &empty, 0), StatusIs(absl::StatusCode::kUnauthenticated, "HPO_TOKEN"));
  const std::string basic = "Basic dXNlcjpwYXNz";
  EXPECT_THAT(auth.Check("ListStudies", &basic, 0), StatusIs(absl::StatusCode::kUnauthenticated, "Bearer TOKEN"));
  const std::string unknown = "Bearer nope";
  EXPECT_THAT(auth.Check("ListStudies", &unknown, 0), StatusIs(absl::StatusCode::kUnauthenticated, "not known"));
  const std::string old = "Bearer old";
  EXPECT_THAT(auth.Check("AskTrial", &old, 0), StatusIs(absl::StatusCode::kUnauthenticated, "revoked"));
  const std::string good = "bearer  good ";  // the scheme is case-insensitive; spaces around are ignored
  absl::StatusOr<Caller> c = auth.Check("CreateStudy", &good, 0);
  ASSERT_THAT(c, IsOk());
  EXPECT_TRUE(c->authenticated);
  EXPECT_EQ(c->Holder("host:1"), "token:1");  // the lease belongs to the token, not the worker name
}

TEST(AuthorizerTest, WrongRoleIsPermissionDeniedAndAStoreFailureIsUnavailable) {
  FakeTokenStore store;
  store.Put("r", Token(3, Role::kReader));
  Authorizer auth(&store, true);
  const std::string reader = "Bearer r";
  EXPECT_THAT(auth.Check("CreateStudy", &reader, 0),
              StatusIs(absl::StatusCode::kPermissionDenied, "needs a token with role admin"));
  store.fail = true;
  EXPECT_THAT(auth.Check("ListStudies", &reader, 0), StatusIs(absl::StatusCode::kUnavailable, "store down"));
}

TEST(ListenSecurityTest, LoopbackIsAlwaysFine) {
  std::string warning;
  for (const char* a : {"127.0.0.1:50051", "127.1.2.3:0", "localhost:1", "[::1]:50051", "unix:/tmp/hpo.sock"}) {
    EXPECT_THAT(CheckListenSecurity(a, false, false, false, &warning), IsOk()) << a;
    EXPECT_TRUE(warning.empty());
  }
}

TEST(ListenSecurityTest, OtherAddressesNeedTlsAndTokensOrInsecure) {
  std::string warning;
  for (const char* a : {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:50051", "myhost:50051", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(a)) << a;
    EXPECT_THAT(CheckListenSecurity(a, false, false, false, &warning),
                StatusIs(absl::StatusCode::kFailedPrecondition, "needs TLS (--tls_cert and --tls_key) and "
                                                                "--require_tokens"))
        << a;
    EXPECT_THAT(CheckListenSecurity(a, true, false, false, &warning),
                StatusIs(absl::StatusCode::kFailedPrecondition, "needs --require_tokens"));
    EXPECT_THAT(CheckListenSecurity(a, false, true, false, &warning),
                StatusIs(absl::StatusCode::kFailedPrecondition, "--insecure"));
    EXPECT_THAT(CheckListenSecurity(a, true, true, false, &warning), IsOk());
    EXPECT_TRUE(warning.empty());
    EXPECT_THAT(CheckListenSecurity(a, false, false, true, &warning), IsOk());
    EXPECT_NE(warning.find("--insecure"), std::string::npos) << warning;
  }
}

}  // namespace
}  // namespace hpo::server
