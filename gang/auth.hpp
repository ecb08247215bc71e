// Authentication of TCP peers with a shared secret.
//
// The secret is 32 random bytes kept hex-encoded in a file of mode 0600 created at
// cluster up; every gangd and dynamosd of a cluster reads the same file. The secret
// never crosses the wire. The handshake is a mutual challenge-response with
// HMAC-SHA256, so each side proves knowledge of the secret and neither proof can be
// replayed (both nonces are fresh and both go into each MAC):
//
//   agent -> gangd   Hello     { role, node, pid, client_nonce }
//   gangd -> agent   Challenge { server_nonce, server_proof = HMAC(secret, "gangd" | cn | sn |
//   node) } agent -> gangd   Auth      { client_proof = HMAC(secret, "agent" | sn | cn | node) }
//
// The agent checks server_proof before it answers; gangd checks client_proof before it
// accepts any other message. MACs are compared in constant time.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang {

class Secret {
 public:
  static constexpr std::size_t kSize = 32;

  // Creates `path` with a fresh random secret, mode 0600. Refuses to overwrite an
  // existing file (another cluster's secret would be lost).
  static Result<Secret> create(const std::string& path);
  // Reads a secret file; refuses a file that group or others can read or write.
  static Result<Secret> load(const std::string& path);
  // A secret from raw bytes (tests, simulations).
  static Secret from_bytes(std::span<const std::uint8_t> bytes);

  std::span<const std::uint8_t> bytes() const { return key_; }

 private:
  std::vector<std::uint8_t> key_;
};

// HMAC-SHA256 of `data` under `key`.
proto::Mac hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data);

// A fresh random nonce from the OpenSSL CSPRNG.
Result<proto::Nonce> random_nonce();

proto::Mac server_proof(const Secret& s, const proto::Nonce& client_nonce,
                        const proto::Nonce& server_nonce, const std::string& node);
proto::Mac client_proof(const Secret& s, const proto::Nonce& server_nonce,
                        const proto::Nonce& client_nonce, const std::string& node);

// Constant-time comparison.
bool mac_equal(const proto::Mac& a, const proto::Mac& b);

}  // namespace dynamos::gang
