// TLS and bearer-token settings shared by hpo-server, hpo-worker and hpoctl (README "Security").
#pragma once

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class ClientContext;
}

namespace hpo {

// Reads a PEM file named by a flag. kInvalidArgument naming the flag and the path when it cannot
// be read, is empty, or holds no "-----BEGIN" block (e.g. a DER file, or the key given as --tls_cert).
[[nodiscard]] absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path);

// How a client reaches the coordinator.
struct ClientSecurity {
  std::string tls_ca;    // PEM file of the CA that signed the server's certificate; empty: plaintext
  std::string tls_cert;  // mutual TLS: this client's certificate (PEM) ...
  std::string tls_key;   // ... and its private key
  std::string token;     // bearer token; empty: none
};

// Channel credentials for `security`: TLS trusting tls_ca (with the client's own certificate when
// tls_cert/tls_key are set), else plaintext. kInvalidArgument naming the flag for a missing or
// unreadable file, or a certificate without its key (or the other way round).
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientSecurity& security);

// The token to use: the --token flag's value when set, else $HPO_TOKEN, else empty.
std::string TokenFromFlagOrEnv(const std::string& flag_value);

// Adds "authorization: Bearer TOKEN" to a call (nothing when `token` is empty).
void AddBearerToken(grpc::ClientContext* ctx, const std::string& token);

}  // namespace hpo
