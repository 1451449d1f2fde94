// The SQLite token store (server/auth/token_store.h): hashed at rest, kept across reopening,
// revocation, and a second process (hpo-server --new_token) adding tokens while a server runs.
#include "server/auth/token_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/storage/sqlite_storage.h"
#include "tests/testing/status_matchers.h"

namespace hpo::server {
namespace {

namespace fs = std::filesystem;
using ::hpo::testing::IsOk;
using ::hpo::testing::StatusIs;

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("hpo_token_store_test." + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(TokenHashTest, SecretsAreRandomAndTheHashIsSha256) {
  absl::StatusOr<std::string> a = GenerateTokenSecret(), b = GenerateTokenSecret();
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->size(), 4u + 64u);
  EXPECT_EQ(a->rfind("hpo_", 0), 0u);
  EXPECT_NE(*a, *b);
  // SHA-256("abc"), FIPS 180-2 appendix B.1.
  EXPECT_EQ(HashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TokenRoleTest, NamesRoundTrip) {
  for (Role r : {Role::kAdmin, Role::kWorker, Role::kReader}) {
    absl::StatusOr<Role> back = ParseRole(RoleName(r));
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, r);
  }
  EXPECT_THAT(ParseRole("root"), StatusIs(absl::StatusCode::kInvalidArgument, "admin, worker and reader"));
}

TEST_F(TokenStoreTest, TokensAreStoredHashedAndSurviveReopening) {
  const std::string path = Path("hpo.db.tokens");
  std::string secret;
  int64_t id = 0;
  {
    auto store = OpenSqliteTokenStore(path);
    ASSERT_THAT(store, IsOk());
    absl::StatusOr<NewToken> t = (*store)->Create(Role::kWorker, 3, "gpu-box");
    ASSERT_THAT(t, IsOk());
    secret = t->secret;
    id = t->record.id;
    EXPECT_GT(id, 0);
  }
  // Neither the secret nor its random part is anywhere in the files; the hash is.
  std::string files = ReadAll(path) + ReadAll(path + "-wal");
  EXPECT_EQ(files.find(secret), std::string::npos);
  EXPECT_EQ(files.find(secret.substr(4, 32)), std::string::npos);
  EXPECT_NE(files.find(HashToken(secret)), std::string::npos);

  auto store = OpenSqliteTokenStore(path);
  ASSERT_THAT(store, IsOk());
  absl::StatusOr<TokenRecord> r = (*store)->Lookup(secret);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->id, id);
  EXPECT_EQ(r->role, Role::kWorker);
  EXPECT_EQ(r->study_id, 3);
  EXPECT_EQ(r->note, "gpu-box");
  EXPECT_FALSE(r->revoked);
  EXPECT_THAT((*store)->Lookup(secret + "x"), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_THAT((*store)->Lookup(HashToken(secret)), StatusIs(absl::StatusCode::kNotFound, ""));  // the hash is no key
}

TEST_F(TokenStoreTest, RevokedTokensStayRevokedAndAreListed) {
  const std::string path = Path("t.tokens");
  auto store = OpenSqliteTokenStore(path);
  ASSERT_THAT(store, IsOk());
  absl::StatusOr<NewToken> admin = (*store)->Create(Role::kAdmin, 0, "");
  absl::StatusOr<NewToken> reader = (*store)->Create(Role::kReader, 0, "dashboards");
  ASSERT_THAT(admin, IsOk());
  ASSERT_THAT(reader, IsOk());
  ASSERT_THAT((*store)->Lookup(reader->secret), IsOk());  // cached
  absl::StatusOr<TokenRecord> revoked = (*store)->Revoke(reader->record.id);
  ASSERT_THAT(revoked, IsOk());
  EXPECT_TRUE(revoked->revoked);
  EXPECT_TRUE((*store)->Lookup(reader->secret)->revoked);  // the cache follows
  EXPECT_THAT((*store)->Revoke(99), StatusIs(absl::StatusCode::kNotFound, "no token with id 99"));
  absl::StatusOr<std::vector<TokenRecord>> all = (*store)->List();
  ASSERT_THAT(all, IsOk());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].role, Role::kAdmin);
  EXPECT_TRUE((*all)[1].revoked);
  store->reset();
  auto again = OpenSqliteTokenStore(path);
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE((*again)->Lookup(reader->secret)->revoked);
  EXPECT_FALSE((*again)->Lookup(admin->secret)->revoked);
}

TEST_F(TokenStoreTest, ATokenMadeByAnotherConnectionIsSeenWhileOpen) {
  const std::string path = Path("shared.tokens");
  auto server = OpenSqliteTokenStore(path);
  ASSERT_THAT(server, IsOk());
  auto cli = OpenSqliteTokenStore(path);  // hpo-server --new_token while the server runs
  ASSERT_THAT(cli, IsOk());
  absl::StatusOr<NewToken> t = (*cli)->Create(Role::kAdmin, 0, "");
  ASSERT_THAT(t, IsOk());
  EXPECT_THAT((*server)->Lookup(t->secret), IsOk());
}

TEST_F(TokenStoreTest, BadInputAndBadFilesAreRefusedWithTheReason) {
  auto store = OpenSqliteTokenStore(Path("x.tokens"));
  ASSERT_THAT(store, IsOk());
  EXPECT_THAT((*store)->Create(Role::kReader, 4, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "only worker tokens are bound to a study"));
  EXPECT_THAT((*store)->Create(Role::kWorker, 0, std::string(300, 'n')),
              StatusIs(absl::StatusCode::kInvalidArgument, "at most 256 bytes"));
  std::ofstream(Path("garbage")) << std::string(4096, 'g');
  EXPECT_THAT(OpenSqliteTokenStore(Path("garbage")),
              StatusIs(absl::StatusCode::kFailedPrecondition, "not a SQLite file"));
  EXPECT_THAT(OpenSqliteTokenStore(Path("no/such/dir/t.tokens")),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no/such/dir/t.tokens"));
}

TEST_F(TokenStoreTest, TheTokenFileSitsBesideTheDatabaseWhichStillOpens) {
  const std::string db = Path("hpo.db");
  EXPECT_EQ(TokenDbPathFor(db), db + ".tokens");
  EXPECT_EQ(TokenDbPathFor(":memory:"), ":memory:");
  auto storage = OpenSqliteStorage(db);
  ASSERT_THAT(storage, IsOk());
  auto tokens = OpenSqliteTokenStore(TokenDbPathFor(db));  // while the database is locked by the server
  ASSERT_THAT(tokens, IsOk());
  ASSERT_THAT((*tokens)->Create(Role::kAdmin, 0, ""), IsOk());
  storage->reset();
  tokens->reset();
  EXPECT_THAT(OpenSqliteStorage(db), IsOk());  // still an hpo database
}

}  // namespace
}  // namespace hpo::server
