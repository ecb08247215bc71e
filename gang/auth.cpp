// FrameMac uses SHA256_Init/Update/Final (see there for why).
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "gang/auth.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string_view>

namespace dynamos::gang {
namespace {

std::string to_hex(std::span<const std::uint8_t> b) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (auto c : b) {
    s.push_back(digits[c >> 4]);
    s.push_back(digits[c & 15]);
  }
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Closes a descriptor on every path out of a function.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void append(std::vector<std::uint8_t>& out, std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
}
void append(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> b) {
  out.insert(out.end(), b.begin(), b.end());
}

}  // namespace

Result<Secret> Secret::create(const std::string& path) {
  std::uint8_t raw[kSize];
  if (RAND_bytes(raw, sizeof raw) != 1)
    return fail(Errc::system, "create secret " + path + ": the OpenSSL random generator failed");
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)};
  if (f.fd < 0) return fail_errno("create secret " + path);
  // The umask can only remove bits, but say exactly what we mean.
  if (::fchmod(f.fd, 0600) != 0) {
    auto e = fail_errno("chmod 600 " + path);
    ::unlink(path.c_str());
    return e;
  }
  std::string text = to_hex(raw) + "\n";
  if (::write(f.fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(f.fd) != 0) {
    auto e = fail_errno("write secret " + path);
    ::unlink(path.c_str());
    return e;
  }
  return from_bytes(raw);
}

Result<Secret> Secret::load(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
  if (f.fd < 0) return fail_errno("open secret " + path);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return fail_errno("stat secret " + path);
  if (!S_ISREG(st.st_mode))
    return fail(Errc::invalid_argument, "secret " + path + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return fail(Errc::not_permitted, "secret " + path + " has mode " + mode +
                                         "; it must be readable by its owner only (chmod 600 " +
                                         path + ")");
  }
  if (st.st_uid != ::geteuid() && st.st_uid != 0)
    return fail(Errc::not_permitted, "secret " + path + " belongs to uid " +
                                         std::to_string(st.st_uid) + ", not to this user or root");
  char buf[256];
  ssize_t n = ::read(f.fd, buf, sizeof buf);
  if (n < 0) return fail_errno("read secret " + path);
  std::string_view text(buf, static_cast<std::size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r'))
    text.remove_suffix(1);
  if (text.size() != 2 * kSize)
    return fail(Errc::invalid_argument, "secret " + path + ": expected " +
                                            std::to_string(2 * kSize) + " hex digits, found " +
                                            std::to_string(text.size()) + " characters");
  std::vector<std::uint8_t> raw(kSize);
  for (std::size_t i = 0; i < kSize; ++i) {
    int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return fail(Errc::invalid_argument, "secret " + path + ": not a hex digit at offset " +
                                              std::to_string(hi < 0 ? 2 * i : 2 * i + 1));
    raw[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return from_bytes(raw);
}

Secret Secret::from_bytes(std::span<const std::uint8_t> bytes) {
  Secret s;
  s.key_.assign(bytes.begin(), bytes.end());
  return s;
}

proto::Mac hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data) {
  proto::Mac mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), mac.data(),
       &len);
  return mac;
}

Result<proto::Nonce> random_nonce() {
  proto::Nonce n{};
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1)
    return fail(Errc::system, "draw a nonce: the OpenSSL random generator failed");
  return n;
}

namespace {
// HMAC(secret, who | first | second | node): what each side proves (see auth.hpp).
proto::Mac proof(const Secret& s, std::string_view who, const proto::Nonce& first,
                 const proto::Nonce& second, const std::string& node) {
  std::vector<std::uint8_t> msg;
  append(msg, who);
  append(msg, first);
  append(msg, second);
  append(msg, node);
  return hmac_sha256(s.bytes(), msg);
}
}  // namespace

proto::Mac server_proof(const Secret& s, const proto::Nonce& client_nonce,
                        const proto::Nonce& server_nonce, const std::string& node) {
  return proof(s, "gangd", client_nonce, server_nonce, node);
}

proto::Mac client_proof(const Secret& s, const proto::Nonce& server_nonce,
                        const proto::Nonce& client_nonce, const std::string& node) {
  return proof(s, "agent", server_nonce, client_nonce, node);
}

bool mac_equal(const proto::Mac& a, const proto::Mac& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

FrameKeys frame_keys(const Secret& s, const proto::Nonce& client_nonce,
                     const proto::Nonce& server_nonce, const std::string& node) {
  auto key = [&](std::string_view direction) {
    std::vector<std::uint8_t> msg;
    append(msg, "dynamos frame key|");
    append(msg, direction);
    append(msg, client_nonce);
    append(msg, server_nonce);
    append(msg, node);
    return hmac_sha256(s.bytes(), msg);
  };
  return FrameKeys{key("to gangd"), key("to agent")};
}

// HMAC-SHA256 (RFC 2104) from the two keyed SHA-256 states, computed once a session:
// a tag is then a copy of each state and the hash of the frame. Through EVP_MAC the
// same tag cost several times more (context copies and parameter plumbing around a
// 60-byte frame: perf showed them at 10% of a 1,000-agent switch round), so this uses
// OpenSSL's SHA-256 primitive, deprecated in OpenSSL 3 but kept; the tags equal
// hmac_sha256's (tested: Auth.FrameTagIsHmacOfSequenceAndFrame).
struct FrameMac::Ctx {
  SHA256_CTX inner, outer;
};

FrameMac::FrameMac(const proto::Mac& key) : ctx_(std::make_unique<Ctx>()) {
  std::uint8_t pad[SHA256_CBLOCK];
  static_assert(sizeof key <= SHA256_CBLOCK, "a longer key would be hashed first");
  for (std::size_t i = 0; i < sizeof pad; ++i)
    pad[i] = static_cast<std::uint8_t>((i < key.size() ? key[i] : 0) ^ 0x36);
  SHA256_Init(&ctx_->inner);
  SHA256_Update(&ctx_->inner, pad, sizeof pad);
  for (auto& b : pad)
    b ^= 0x36 ^ 0x5c;
  SHA256_Init(&ctx_->outer);
  SHA256_Update(&ctx_->outer, pad, sizeof pad);
  OPENSSL_cleanse(pad, sizeof pad);
}
FrameMac::FrameMac(FrameMac&&) noexcept = default;
FrameMac& FrameMac::operator=(FrameMac&&) noexcept = default;
FrameMac::~FrameMac() {
  if (ctx_) OPENSSL_cleanse(ctx_.get(), sizeof *ctx_);
}

proto::Mac FrameMac::tag(std::span<const std::uint8_t> frame) {
  std::uint8_t seq[8];
  for (int i = 0; i < 8; ++i)
    seq[i] = static_cast<std::uint8_t>(seq_ >> (56 - 8 * i));
  SHA256_CTX c = ctx_->inner;
  SHA256_Update(&c, seq, sizeof seq);
  SHA256_Update(&c, frame.data(), frame.size());
  std::uint8_t inner[SHA256_DIGEST_LENGTH];
  SHA256_Final(inner, &c);
  c = ctx_->outer;
  SHA256_Update(&c, inner, sizeof inner);
  proto::Mac out{};
  SHA256_Final(out.data(), &c);
  OPENSSL_cleanse(&c, sizeof c);
  return out;
}

proto::Mac FrameMac::seal(std::span<const std::uint8_t> frame) {
  auto t = tag(frame);
  ++seq_;
  return t;
}

bool FrameMac::check(std::span<const std::uint8_t> frame, std::span<const std::uint8_t> tag_in) {
  if (tag_in.size() != proto::kMacSize) return false;
  auto want = tag(frame);
  if (CRYPTO_memcmp(want.data(), tag_in.data(), want.size()) != 0) return false;
  ++seq_;
  return true;
}

}  // namespace dynamos::gang
