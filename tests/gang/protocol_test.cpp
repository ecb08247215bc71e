// The gang protocol: every message type survives a round trip, and the decoder turns
// every malformed, truncated, oversized or foreign input into an Error, never a crash,
// a hang or a huge allocation.
#include "gang/protocol.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>

using namespace dynamos;
using namespace dynamos::gang::proto;

namespace {

std::vector<std::uint8_t> frame_of(const Message& m) {
  auto f = encode(m);
  EXPECT_TRUE(f.has_value()) << f.error().message();
  return f.value_or(std::vector<std::uint8_t>{});
}

// One message of every type with non-trivial content.
std::vector<Message> samples(std::mt19937_64& rng) {
  auto word = [&](std::size_t max) {
    std::string s(rng() % (max + 1), 'x');
    for (auto& c : s)
      c = static_cast<char>('a' + rng() % 26);
    return s;
  };
  auto ids = [&] {
    std::vector<JobId> v(rng() % 5);
    for (auto& x : v)
      x = rng();
    return v;
  };
  Nonce n{};
  for (auto& b : n)
    b = static_cast<std::uint8_t>(rng());
  Mac mac{};
  for (auto& b : mac)
    b = static_cast<std::uint8_t>(rng());
  JobInfo info{rng(), word(10), 1000,  "frozen", 1, {word(5), word(5)}, "adaptive", 7, rng(),
               -9,    "why",    rng(), rng(),    5};
  NodeInfo node{word(8), "up", 4, ids(), rng(), rng(), "linger"};
  return {
      Hello{Role::agent, word(12), 4242, n},
      Challenge{n, mac},
      Auth{mac},
      Welcome{3, 1'000'000'000, 100'000'000, 17},
      JobAssign{5, word(9), 1000, 4, "selective", true},
      JobRelease{5, word(20)},
      SwitchOrder{rng(), rng(), ids(), ids()},
      SwitchAck{9, true, rng(), rng(), rng(), "", rng(), 1234, word(30)},
      MetricsReport{
          rng(), rng(), rng(), {JobMetrics{1, 2, 3, 4, 5, 6}, JobMetrics{7, 8, 9, 10, 11, 12}}},
      Heartbeat{rng()},
      ErrorMsg{static_cast<std::uint16_t>(Errc::not_found), word(40)},
      JobSubmit{word(6), 16, 4, "adaptive", {"/bin/true", word(3), ""}, "/tmp", word(7)},
      JobSubmitted{rng()},
      JobCancel{rng()},
      ListJobs{},
      JobList{{info, info}},
      ListNodes{},
      NodeList{{node}},
      SetQuantum{rng()},
      SetPaging{rng(), word(8)},
      Ok{word(10)},
      NodeRequest{rng(), 1000, "patch", {"7", word(12), ""}},
      NodeReply{rng(), false, word(50)},
      JobExited{rng(), -11, word(15)},
      NodeCommand{{word(4), word(4)}, "ext-set", {"paging.budget=2s"}, rng()},
      NodeCommandResult{{NodeResult{word(3), true, word(20)}, NodeResult{word(3), false, ""}}},
      SetCycleSteal{true, "pause"},
      RankAttach{rng()},
      JobControl{rng(), "hold"},
      NodeAdmin{word(4), "drain", word(12)},
      Reconfigure{},
      ListHistory{rng()},
  };
}

}  // namespace

TEST(Protocol, EveryMessageTypeRoundTrips) {
  std::mt19937_64 rng(1);
  auto all = samples(rng);
  EXPECT_EQ(all.size(), std::variant_size_v<Message>) << "a message type has no sample";
  for (const auto& m : all) {
    auto bytes = frame_of(m);
    auto back = decode_frame(bytes);
    ASSERT_TRUE(back.has_value()) << msg_type_name(type_of(m)) << ": " << back.error().message();
    EXPECT_EQ(back->index(), m.index());
    EXPECT_EQ(frame_of(*back), bytes) << msg_type_name(type_of(m)) << " changed in a round trip";
  }
}

// The bytes on the wire of one sample of every message (FNV-1a over every frame):
// a change here changes the protocol, and kProtocolVersion must change with it.
TEST(Protocol, WireBytesAreStable) {
  std::mt19937_64 rng(1);
  std::uint64_t hash = 14695981039346656037ull;
  for (const auto& m : samples(rng))
    for (std::uint8_t b : frame_of(m))
      hash = (hash ^ b) * 1099511628211ull;
  EXPECT_EQ(hash, 10644381907236047660ull);
  EXPECT_EQ(kProtocolVersion, 6)
      << "the bytes above are version 6's (a round is one switch_order with its deadline and "
         "one switch_ack: prepare_switch, prepare_ack and switch_at are gone; 5: "
         "MetricsReport and NodeInfo gained quantum_ns; 4: "
         "Hello gained frame_auth, frames after Auth carry a tag, see gang/auth.hpp; JobSubmit "
         "gained mem_per_rank, time_limit_s and hold; the scheduler's messages)";
}

TEST(Protocol, FieldsSurviveRoundTrip) {
  JobSubmit s{"lu", 8, 2, "adaptive", {"./lu.B.8", "-v"}, "/home/u", ""};
  auto back = decode_frame(frame_of(s));
  ASSERT_TRUE(back.has_value()) << back.error().message();
  auto& got = std::get<JobSubmit>(*back);
  EXPECT_EQ(got.name, "lu");
  EXPECT_EQ(got.ranks, 8u);
  EXPECT_EQ(got.nodes, 2u);
  EXPECT_EQ(got.paging, "adaptive");
  EXPECT_EQ(got.argv, (std::vector<std::string>{"./lu.B.8", "-v"}));
  EXPECT_EQ(got.cwd, "/home/u");

  JobInfo ji;
  ji.exit_code = -3;
  auto jl = decode_frame(frame_of(JobList{{ji}}));
  ASSERT_TRUE(jl.has_value());
  EXPECT_EQ(std::get<JobList>(*jl).jobs.at(0).exit_code, -3);
}

TEST(Protocol, HeaderErrorsAreClear) {
  auto f = frame_of(Heartbeat{1});
  auto bad = f;
  bad[0] = 'X';
  auto r = decode_frame(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol);
  EXPECT_NE(r.error().message().find("bad magic"), std::string::npos) << r.error().message();

  bad = f;
  bad[5] = 9;  // version 9
  r = decode_frame(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::version_mismatch) << r.error().message();
  EXPECT_NE(r.error().message().find("version 9"), std::string::npos) << r.error().message();

  bad = f;
  bad[6] = 0x7f;  // unknown type
  r = decode_frame(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("unknown message type"), std::string::npos);

  bad = f;
  bad[8] = 0x10;  // length 256 MiB + 8
  auto h = decode_header(bad);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message().find("exceeds"), std::string::npos) << h.error().message();

  r = decode_frame(std::span(f).first(5));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("truncated"), std::string::npos) << r.error().message();
}

TEST(Protocol, PayloadErrorsNameMessageAndField) {
  auto f = frame_of(JobSubmit{"a", 1, 0, "demand", {"x"}, "", ""});
  // Cut the payload but keep the header consistent with what is left.
  std::vector<std::uint8_t> cut(f.begin(), f.end() - 3);
  std::uint32_t len = static_cast<std::uint32_t>(cut.size() - kHeaderSize);
  for (int i = 0; i < 4; ++i)
    cut[8 + i] = static_cast<std::uint8_t>(len >> (24 - 8 * i));
  auto r = decode_frame(cut);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol);
  EXPECT_NE(r.error().message().find("job_submit"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("truncated"), std::string::npos) << r.error().message();

  // Trailing garbage after a complete payload.
  auto hb = frame_of(Heartbeat{1});
  hb.push_back(0);
  hb[11] += 1;
  r = decode_frame(hb);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("trailing"), std::string::npos) << r.error().message();

  // A list count far beyond the bytes that follow allocates nothing and fails.
  Writer w;
  w.u64(1);
  w.u64(2);
  w.u32(0xffffffff);
  auto pr = decode_payload(MsgType::switch_order, w.buffer());
  ASSERT_FALSE(pr);
  EXPECT_NE(pr.error().message().find("outgoing"), std::string::npos) << pr.error().message();

  // A boolean that is neither 0 nor 1.
  Writer b;
  b.u64(1);
  b.u8(7);
  auto pa = decode_payload(MsgType::switch_ack, b.buffer());
  ASSERT_FALSE(pa);
  EXPECT_NE(pa.error().message().find("boolean"), std::string::npos) << pa.error().message();

  // A role that does not exist.
  auto hello = frame_of(Hello{Role::agent, "n", 1, {}});
  hello[kHeaderSize] = 9;
  r = decode_frame(hello);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("role"), std::string::npos) << r.error().message();
}

TEST(Protocol, EncoderRefusesOversizedMessages) {
  JobSubmit s;
  s.argv.assign(40, std::string(kMaxString, 'a'));  // 40 x 64 KiB > 1 MiB
  auto r = encode(s);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("limit"), std::string::npos) << r.error().message();
  s.argv = {std::string(kMaxString + 1, 'a')};
  EXPECT_FALSE(encode(s));
}

// The long randomised decoder test: valid frames mutated every way a broken or hostile
// peer could (bit flips, truncation, extension, forged lengths and counts, random
// bytes). Every outcome must be a message that re-encodes identically or an Error
// with a message; sanitizer builds catch any out-of-bounds read.
TEST(Protocol, RandomisedDecoderNeverMisbehaves) {
  std::mt19937_64 rng(20261125);
  std::vector<std::vector<std::uint8_t>> corpus;
  for (int i = 0; i < 8; ++i)
    for (const auto& m : samples(rng))
      corpus.push_back(frame_of(m));

  // GANG_FUZZ_SECONDS runs it longer (a stand-in for a libFuzzer campaign).
  const char* env = std::getenv("GANG_FUZZ_SECONDS");
  int seconds = env ? std::max(1, std::atoi(env)) : 3;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  long iterations = 0, accepted = 0;
  while (std::chrono::steady_clock::now() < deadline || iterations < 20'000) {
    for (int batch = 0; batch < 1000; ++batch, ++iterations) {
      std::vector<std::uint8_t> f = corpus[rng() % corpus.size()];
      int mutations = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < mutations; ++k) {
        switch (rng() % 7) {
          case 0:  // flip a bit
            if (!f.empty()) f[rng() % f.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
            break;
          case 1:  // truncate
            f.resize(rng() % (f.size() + 1));
            break;
          case 2:  // append junk
            for (int j = static_cast<int>(rng() % 16); j > 0; --j)
              f.push_back(static_cast<std::uint8_t>(rng()));
            break;
          case 3:  // overwrite a 32-bit word (lengths, counts) with a hostile value
            if (f.size() >= 4) {
              std::size_t at = rng() % (f.size() - 3);
              std::uint32_t v =
                  std::array<std::uint32_t, 4>{0xffffffffu, 0x7fffffffu, kMaxPayload + 1,
                                               static_cast<std::uint32_t>(rng())}[rng() % 4];
              for (int i = 0; i < 4; ++i)
                f[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
            }
            break;
          case 4:  // fix the header length to match, so the payload decoder is reached
            if (f.size() >= kHeaderSize) {
              std::uint32_t len = static_cast<std::uint32_t>(f.size() - kHeaderSize);
              for (int i = 0; i < 4; ++i)
                f[8 + i] = static_cast<std::uint8_t>(len >> (24 - 8 * i));
            }
            break;
          case 5:  // change the type
            if (f.size() >= 8) f[7] = static_cast<std::uint8_t>(rng() % 64);
            break;
          case 6:  // pure noise behind a valid-looking header
            if (f.size() > kHeaderSize)
              for (std::size_t i = kHeaderSize; i < f.size(); ++i)
                f[i] = static_cast<std::uint8_t>(rng());
            break;
        }
      }
      auto r = decode_frame(f);
      if (r) {
        ++accepted;
        auto again = encode(*r);
        ASSERT_TRUE(again.has_value()) << again.error().message();
        auto r2 = decode_frame(*again);
        ASSERT_TRUE(r2.has_value()) << "a decoded message does not decode after re-encoding";
        ASSERT_EQ(encode(*r2).value(), *again);
      } else {
        ASSERT_FALSE(r.error().message().empty());
        ASSERT_TRUE(r.error().code == Errc::protocol || r.error().code == Errc::version_mismatch)
            << errc_name(r.error().code) << ": " << r.error().message();
      }
    }
  }
  RecordProperty("iterations", std::to_string(iterations));
  std::printf("randomised decoder: %ld inputs, %ld decoded, the rest refused\n", iterations,
              accepted);
}

namespace {

// Field names of a wire struct, in wire order.
struct FieldNames {
  std::vector<std::string> names;
  template <class F>
  void operator()(const F&, const char* name) {
    names.emplace_back(name);
  }
};

template <class T>
std::vector<std::string> field_names() {
  FieldNames v;
  T{}.wire_fields(v);
  return v.names;
}

// The field names of a "Fields" cell of docs/gang.md: comma-separated "name type"
// items, where parenthesised remarks (which may hold commas) are not fields.
std::vector<std::string> doc_field_names(const std::string& cell) {
  std::string plain;
  int depth = 0;
  for (char c : cell) {
    if (c == '(') ++depth;
    if (depth == 0) plain += c;
    if (c == ')' && depth > 0) --depth;
  }
  std::vector<std::string> names;
  std::size_t start = 0;
  while (start <= plain.size()) {
    std::size_t end = std::min(plain.find(',', start), plain.size());
    std::string item = plain.substr(start, end - start);
    auto b = item.find_first_not_of(" `");
    if (b != std::string::npos) names.push_back(item.substr(b, item.find_first_of(" `", b) - b));
    start = end + 1;
  }
  return names;
}

// The cells of the docs' table rows, keyed by the cell named `key_column`.
std::map<std::string, std::vector<std::string>> doc_rows(const std::string& text,
                                                         std::size_t key_column) {
  std::map<std::string, std::vector<std::string>> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("| ", 0) != 0) continue;
    std::vector<std::string> cells;
    std::size_t at = 1;
    for (std::size_t bar; (bar = line.find(" | ", at)) != std::string::npos; at = bar + 2)
      cells.push_back(line.substr(at + 1, bar - at - 1));
    cells.push_back(line.substr(at + 1, line.size() - at - 3));
    if (cells.size() > key_column) {
      std::string key = cells[key_column];
      key.erase(std::remove(key.begin(), key.end(), '`'), key.end());
      rows[key] = cells;
    }
  }
  return rows;
}

template <class T>
void expect_documented(const std::map<std::string, std::vector<std::string>>& rows,
                       const std::string& key, std::size_t fields_column) {
  auto it = rows.find(key);
  ASSERT_NE(it, rows.end()) << "docs/gang.md has no table row for " << key;
  ASSERT_GT(it->second.size(), fields_column) << key;
  auto doc = doc_field_names(it->second[fields_column]);
  if (doc == std::vector<std::string>{"none"}) doc.clear();
  EXPECT_EQ(doc, field_names<T>())
      << "docs/gang.md's fields of " << key << " are not the code's (gang/protocol.hpp)";
}

}  // namespace

// docs/gang.md's message table names every message with its code and its fields in
// wire order, and the list elements likewise: the reference an implementer reads.
TEST(Protocol, DocsTableMatchesTheWireFields) {
  std::ifstream f(std::string(DYNAMOS_SOURCE_DIR) + "/docs/gang.md");
  ASSERT_TRUE(f) << "cannot read docs/gang.md";
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto by_name = doc_rows(text, 1);
#define DYNAMOS_DOC_CHECK_(Type, name, code)                                           \
  expect_documented<Type>(by_name, #name, 3);                                          \
  if (auto it = by_name.find(#name); it != by_name.end()) {                            \
    EXPECT_EQ(it->second[0], std::to_string(code)) << "docs/gang.md's code of " #name; \
  }
  DYNAMOS_GANG_MESSAGES(DYNAMOS_DOC_CHECK_)
#undef DYNAMOS_DOC_CHECK_
  auto elements = doc_rows(text, 0);
  expect_documented<JobMetrics>(elements, "JobMetrics", 1);
  expect_documented<JobInfo>(elements, "JobInfo", 1);
  expect_documented<NodeInfo>(elements, "NodeInfo", 1);
  expect_documented<NodeResult>(elements, "NodeResult", 1);
  std::string version = "offset 4  u16 version  " + std::to_string(kProtocolVersion) + " ";
  EXPECT_NE(text.find(version), std::string::npos) << "docs/gang.md's header names another version";
}
