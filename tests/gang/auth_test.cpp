// Shared-secret authentication: HMAC-SHA256 is right, the secret file is private, and
// the proofs bind both nonces and the node name.
#include "gang/auth.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::gang;

namespace {
std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
}  // namespace

TEST(Auth, HmacMatchesRfc4231) {
  // RFC 4231, test case 2.
  auto mac = hmac_sha256(bytes_of("Jefe"), bytes_of("what do ya want for nothing?"));
  const std::uint8_t expected[] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
                                   0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
                                   0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
  EXPECT_TRUE(std::equal(mac.begin(), mac.end(), expected)) << "HMAC-SHA256 differs from RFC 4231";
}

TEST(Auth, SecretFileIsCreatedPrivateAndLoads) {
  test::TempDir dir;
  auto path = dir / "secret";
  ::umask(0);  // even with a permissive umask the file must be 0600
  auto s = Secret::create(path);
  ::umask(022);
  ASSERT_TRUE(s.has_value()) << s.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "secret file mode is not 0600";
  auto loaded = Secret::load(path);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message();
  EXPECT_TRUE(std::ranges::equal(loaded->bytes(), s->bytes()));

  auto again = Secret::create(path);
  ASSERT_FALSE(again) << "create must not overwrite an existing secret";
}

TEST(Auth, LoadRefusesReadableOrMalformedSecret) {
  test::TempDir dir;
  auto path = dir / "secret";
  ASSERT_TRUE(Secret::create(path).has_value());
  ::chmod(path.c_str(), 0644);
  auto r = Secret::load(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_permitted);
  EXPECT_NE(r.error().message().find("0644"), std::string::npos) << r.error().message();

  auto bad = dir / "bad";
  { std::ofstream(bad) << "not hex\n"; }
  ::chmod(bad.c_str(), 0600);
  r = Secret::load(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument) << r.error().message();

  r = Secret::load(dir / "missing");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found) << r.error().message();
}

TEST(Auth, ProofsBindNoncesNodeAndSecret) {
  auto a = Secret::from_bytes(bytes_of("0123456789abcdef0123456789abcdef"));
  auto b = Secret::from_bytes(bytes_of("0123456789abcdef0123456789abcdeX"));
  auto cn = random_nonce().value(), sn = random_nonce().value();
  EXPECT_NE(cn, sn);
  auto p = client_proof(a, sn, cn, "node1");
  EXPECT_TRUE(mac_equal(p, client_proof(a, sn, cn, "node1")));
  EXPECT_FALSE(mac_equal(p, client_proof(b, sn, cn, "node1")))
      << "another secret gives the same proof";
  EXPECT_FALSE(mac_equal(p, client_proof(a, sn, cn, "node2"))) << "the node name is not bound";
  EXPECT_FALSE(mac_equal(p, client_proof(a, cn, sn, "node1"))) << "nonces are interchangeable";
  EXPECT_FALSE(mac_equal(p, server_proof(a, cn, sn, "node1")))
      << "a server proof passes as a client proof";
}

TEST(Auth, FrameTagIsHmacOfSequenceAndFrame) {
  proto::Mac key{};
  key.fill(0x42);
  FrameMac sender(key), receiver(key);
  std::vector<std::uint8_t> frame{'D', 'Y', 'G', 'P', 0, 4, 0, 31, 0, 0,
                                  0,   8,   1,   2,   3, 4, 5, 6,  7, 8};
  for (std::uint64_t seq = 0; seq < 3; ++seq) {
    std::vector<std::uint8_t> msg(8);
    for (int i = 0; i < 8; ++i)
      msg[i] = static_cast<std::uint8_t>(seq >> (56 - 8 * i));
    msg.insert(msg.end(), frame.begin(), frame.end());
    auto tag = sender.seal(frame);
    EXPECT_TRUE(mac_equal(tag, hmac_sha256(key, msg))) << "frame " << seq;
    EXPECT_TRUE(receiver.check(frame, tag)) << "frame " << seq;
  }
  // A tag that was good once is not good again, and a bad one does not move the sequence.
  auto tag = sender.seal(frame);
  EXPECT_FALSE(receiver.check(frame, proto::Mac{}));
  EXPECT_TRUE(receiver.check(frame, tag));
  EXPECT_FALSE(receiver.check(frame, tag)) << "a replayed tag was accepted";
}

TEST(Auth, FrameKeysDifferByDirectionAndSession) {
  std::vector<std::uint8_t> raw(32, 5);
  auto s = Secret::from_bytes(raw);
  proto::Nonce cn{}, sn{}, sn2{};
  cn.fill(1);
  sn.fill(2);
  sn2.fill(3);
  auto k = frame_keys(s, cn, sn, "n0");
  EXPECT_FALSE(mac_equal(k.to_gangd, k.to_agent)) << "a frame could be reflected back";
  EXPECT_FALSE(mac_equal(k.to_gangd, frame_keys(s, cn, sn2, "n0").to_gangd))
      << "an earlier session's frames would replay into a new one";
}
