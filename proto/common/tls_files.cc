#include "proto/common/tls_files.h"

#include <grpcpp/client_context.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"

namespace hpo {

absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", path, ": cannot read it (", std::strerror(errno),
                                                   ")"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string pem = text.str();
  if (pem.find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, "=", path, pem.empty() ? ": the file is empty" : ": not a PEM file (no -----BEGIN line)",
        "; see README \"Security\" for making one with openssl"));
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const ClientSecurity& s) {
  if (s.tls_cert.empty() != s.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key go together: a client certificate needs its private key");
  }
  if (s.tls_ca.empty()) {
    if (!s.tls_cert.empty()) {
      return absl::InvalidArgumentError(
          "--tls_cert needs --tls_ca: the CA that signed the coordinator's certificate");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions options;
  absl::StatusOr<std::string> ca = ReadPemFile("tls_ca", s.tls_ca);
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = *ca;
  if (!s.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile("tls_cert", s.tls_cert);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile("tls_key", s.tls_key);
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *cert;
    options.pem_private_key = *key;
  }
  return grpc::SslCredentials(options);
}

std::string TokenFromFlagOrEnv(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  const char* env = std::getenv("HPO_TOKEN");
  return env != nullptr ? std::string(absl::StripAsciiWhitespace(env)) : std::string();
}

void AddBearerToken(grpc::ClientContext* ctx, const std::string& token) {
  if (!token.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

}  // namespace hpo
