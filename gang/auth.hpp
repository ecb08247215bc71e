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
//
// Every frame after Auth, in both directions (Welcome included), carries a tag: the
// HMAC-SHA256, under that direction's session key, of the frame's sequence number in
// its direction (u64, from 0, never sent) and the frame's bytes (header and payload).
// Session keys are derived from the secret and both nonces (FrameKeys), so they are
// fresh each connection; a frame injected by someone without the key, a frame replayed
// (from this session or an earlier one), dropped or reordered fails its check, and the
// receiver closes the session with the reason in its log.
#pragma once

#include <cstdint>
#include <memory>
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

// The two per-session frame keys: HMAC(secret, "dynamos frame key" | direction |
// client_nonce | server_nonce | node), direction "to gangd" or "to agent".
struct FrameKeys {
  proto::Mac to_gangd{}, to_agent{};
};
FrameKeys frame_keys(const Secret& s, const proto::Nonce& client_nonce,
                     const proto::Nonce& server_nonce, const std::string& node);

// The tags of one direction of one session: seals (sender) or checks (receiver) frames
// in order. A keyed HMAC context is kept, so a tag costs the hash of the frame only.
class FrameMac {
 public:
  explicit FrameMac(const proto::Mac& key);
  FrameMac(FrameMac&&) noexcept;
  FrameMac& operator=(FrameMac&&) noexcept;
  ~FrameMac();

  // The tag of the next frame (header and payload), consuming its sequence number.
  proto::Mac seal(std::span<const std::uint8_t> frame);
  // Whether `tag` is the next frame's; the sequence number moves on only if it is.
  bool check(std::span<const std::uint8_t> frame, std::span<const std::uint8_t> tag);
  // Sequence number of the next frame.
  std::uint64_t sequence() const { return seq_; }

 private:
  proto::Mac tag(std::span<const std::uint8_t> frame);
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  std::uint64_t seq_ = 0;
};

}  // namespace dynamos::gang
