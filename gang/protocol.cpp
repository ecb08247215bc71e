#include "gang/protocol.hpp"

#include <algorithm>
#include <concepts>
#include <cstdio>
#include <type_traits>
#include <utility>

namespace dynamos::gang::proto {

// --- Writer / Reader -----------------------------------------------------------------

void Writer::u16(std::uint16_t v) {
  u8(static_cast<std::uint8_t>(v >> 8));
  u8(static_cast<std::uint8_t>(v));
}
void Writer::u32(std::uint32_t v) {
  u16(static_cast<std::uint16_t>(v >> 16));
  u16(static_cast<std::uint16_t>(v));
}
void Writer::u64(std::uint64_t v) {
  u32(static_cast<std::uint32_t>(v >> 32));
  u32(static_cast<std::uint32_t>(v));
}
void Writer::str(std::string_view s) {
  if (s.size() > kMaxString) {
    overflow = true;
    return;
  }
  u32(static_cast<std::uint32_t>(s.size()));
  out_.insert(out_.end(), s.begin(), s.end());
}

bool Reader::need(std::size_t n, const char* field) {
  if (failed()) return false;
  if (remaining() < n) {
    fail(std::string("truncated at ") + field + " (needs " + std::to_string(n) + " bytes, " +
         std::to_string(remaining()) + " left)");
    return false;
  }
  return true;
}

void Reader::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
}

std::uint8_t Reader::u8() {
  if (!need(1, "an integer")) return 0;
  return in_[pos_++];
}
std::uint16_t Reader::u16() {
  if (!need(2, "an integer")) return 0;
  std::uint16_t v = static_cast<std::uint16_t>(in_[pos_] << 8 | in_[pos_ + 1]);
  pos_ += 2;
  return v;
}
std::uint32_t Reader::u32() {
  if (!need(4, "an integer")) return 0;
  std::uint32_t hi = u16();
  return hi << 16 | u16();
}
std::uint64_t Reader::u64() {
  if (!need(8, "an integer")) return 0;
  std::uint64_t hi = u32();
  return hi << 32 | u32();
}
bool Reader::boolean() {
  std::uint8_t b = u8();
  if (b > 1) fail("boolean byte " + std::to_string(b) + " is neither 0 nor 1");
  return b == 1;
}
std::string Reader::str(const char* field) {
  if (!need(4, field)) return {};
  std::uint32_t n = u32();
  if (n > kMaxString) {
    fail(std::string(field) + ": string of " + std::to_string(n) + " bytes exceeds the " +
         std::to_string(kMaxString) + "-byte limit");
    return {};
  }
  if (!need(n, field)) return {};
  std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
  pos_ += n;
  return s;
}
void Reader::bytes(std::span<std::uint8_t> out, const char* field) {
  if (!need(out.size(), field)) return;
  std::copy_n(in_.begin() + static_cast<std::ptrdiff_t>(pos_), out.size(), out.begin());
  pos_ += out.size();
}
std::uint32_t Reader::count(const char* field, std::size_t min_elem) {
  if (!need(4, field)) return 0;
  std::uint32_t n = u32();
  if (n > kMaxList) {
    fail(std::string(field) + ": list of " + std::to_string(n) + " elements exceeds the " +
         std::to_string(kMaxList) + "-element limit");
    return 0;
  }
  if (min_elem > 0 && n > remaining() / min_elem) {
    fail(std::string(field) + ": list of " + std::to_string(n) + " elements cannot fit in the " +
         std::to_string(remaining()) + " bytes left");
    return 0;
  }
  return n;
}
Result<void> Reader::finish() {
  if (failed()) return dynamos::fail(Errc::protocol, std::string(what_) + ": " + error_);
  if (remaining() != 0)
    return dynamos::fail(Errc::protocol, std::string(what_) + ": " + std::to_string(remaining()) +
                                             " unexpected trailing bytes");
  return {};
}

namespace {

// A visitor that accepts any field: what a struct's wire_fields must take.
struct AnyField {
  template <class F>
  void operator()(F&, const char*) {}
};

template <class T>
concept Composite = std::is_class_v<T> && requires(T& t, AnyField& v) {
  t.wire_fields(v);
};

// Smallest encoded size of a list element, to bound list counts before allocating.
template <class T>
constexpr std::size_t min_size() {
  if constexpr (std::is_integral_v<T>)
    return sizeof(T);
  else if constexpr (std::is_same_v<T, std::string>)
    return 4;
  else
    return 4;  // every composite element holds at least a u32, u64 or string
}

struct Encoder {
  Writer& w;
  void operator()(const std::uint8_t& v, const char*) { w.u8(v); }
  void operator()(const std::uint16_t& v, const char*) { w.u16(v); }
  void operator()(const std::uint32_t& v, const char*) { w.u32(v); }
  void operator()(const std::uint64_t& v, const char*) { w.u64(v); }
  void operator()(const std::int32_t& v, const char*) { w.u32(static_cast<std::uint32_t>(v)); }
  void operator()(const bool& v, const char*) { w.boolean(v); }
  void operator()(const Role& v, const char*) { w.u8(static_cast<std::uint8_t>(v)); }
  void operator()(const std::string& v, const char*) { w.str(v); }
  template <std::size_t N>
  void operator()(const std::array<std::uint8_t, N>& v, const char*) {
    w.bytes(v);
  }
  template <class T>
  void operator()(const std::vector<T>& v, const char* f) {
    if (v.size() > kMaxList) {
      w.overflow = true;
      return;
    }
    w.u32(static_cast<std::uint32_t>(v.size()));
    for (const auto& e : v)
      (*this)(e, f);
  }
  template <Composite T>
  void operator()(const T& v, const char*) {
    v.wire_fields(*this);
  }
};

struct Decoder {
  Reader& r;
  void operator()(std::uint8_t& v, const char*) { v = r.u8(); }
  void operator()(std::uint16_t& v, const char*) { v = r.u16(); }
  void operator()(std::uint32_t& v, const char*) { v = r.u32(); }
  void operator()(std::uint64_t& v, const char*) { v = r.u64(); }
  void operator()(std::int32_t& v, const char*) { v = static_cast<std::int32_t>(r.u32()); }
  void operator()(bool& v, const char*) { v = r.boolean(); }
  void operator()(Role& v, const char* f) {
    std::uint8_t b = r.u8();
    if (!r.failed() && b != static_cast<std::uint8_t>(Role::agent) &&
        b != static_cast<std::uint8_t>(Role::cli))
      r.fail(std::string(f) + ": unknown role " + std::to_string(b));
    v = static_cast<Role>(b);
  }
  void operator()(std::string& v, const char* f) { v = r.str(f); }
  template <std::size_t N>
  void operator()(std::array<std::uint8_t, N>& v, const char* f) {
    r.bytes(v, f);
  }
  template <class T>
  void operator()(std::vector<T>& v, const char* f) {
    std::uint32_t n = r.count(f, min_size<T>());
    v.clear();
    if constexpr (std::is_integral_v<T>) v.reserve(n);  // bounded by the bytes left
    for (std::uint32_t i = 0; i < n && !r.failed(); ++i) {
      T e{};
      (*this)(e, f);
      v.push_back(std::move(e));
    }
  }
  template <Composite T>
  void operator()(T& v, const char*) {
    v.wire_fields(*this);
  }
};

template <class T>
Result<Message> decode_as(std::span<const std::uint8_t> payload) {
  Reader r(payload, msg_type_name(kTypeOf<T>));
  T m{};
  Decoder d{r};
  m.wire_fields(d);
  if (auto done = r.finish(); !done) return std::unexpected(done.error());
  return Message{std::move(m)};
}

}  // namespace

const char* msg_type_name(MsgType type) {
#define DYNAMOS_GANG_MSG_NAME_(Type, name, code) \
  case MsgType::name:                            \
    return #name;
  switch (type) { DYNAMOS_GANG_MESSAGES(DYNAMOS_GANG_MSG_NAME_) }
#undef DYNAMOS_GANG_MSG_NAME_
  return nullptr;
}

MsgType type_of(const Message& m) {
  return std::visit([](const auto& v) { return kTypeOf<std::decay_t<decltype(v)>>; }, m);
}

Result<Header> decode_header(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kHeaderSize)
    return fail(Errc::protocol, "message header truncated: " + std::to_string(bytes.size()) +
                                    " of " + std::to_string(kHeaderSize) + " bytes");
  Reader r(bytes.first(kHeaderSize), "message header");
  std::uint32_t magic = r.u32();
  std::uint16_t version = r.u16();
  std::uint16_t type = r.u16();
  std::uint32_t length = r.u32();
  if (magic != kMagic) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", magic);
    return fail(Errc::protocol,
                std::string("bad magic ") + hex + " (the peer does not speak the gang protocol)");
  }
  if (version != kProtocolVersion)
    return fail(Errc::version_mismatch, "peer speaks gang protocol version " +
                                            std::to_string(version) + ", this build speaks " +
                                            std::to_string(kProtocolVersion));
  if (msg_type_name(static_cast<MsgType>(type)) == nullptr)
    return fail(Errc::protocol, "unknown message type " + std::to_string(type));
  if (length > kMaxPayload)
    return fail(Errc::protocol, std::string(msg_type_name(static_cast<MsgType>(type))) +
                                    " message of " + std::to_string(length) +
                                    " bytes exceeds the " + std::to_string(kMaxPayload) +
                                    "-byte limit");
  return Header{static_cast<MsgType>(type), length};
}

Result<Message> decode_payload(MsgType type, std::span<const std::uint8_t> payload) {
  if (payload.size() > kMaxPayload)
    return fail(Errc::protocol,
                "payload of " + std::to_string(payload.size()) + " bytes exceeds the limit");
#define DYNAMOS_GANG_MSG_DECODE_(Type, name, code) \
  case MsgType::name:                              \
    return decode_as<Type>(payload);
  switch (type) { DYNAMOS_GANG_MESSAGES(DYNAMOS_GANG_MSG_DECODE_) }
#undef DYNAMOS_GANG_MSG_DECODE_
  return fail(Errc::protocol,
              "unknown message type " + std::to_string(static_cast<unsigned>(type)));
}

Result<Message> decode_frame(std::span<const std::uint8_t> frame) {
  auto header = decode_header(frame);
  if (!header) return std::unexpected(header.error());
  std::size_t have = frame.size() - kHeaderSize;
  if (have != header->length)
    return fail(Errc::protocol, std::string(msg_type_name(header->type)) +
                                    " message: header says " + std::to_string(header->length) +
                                    " payload bytes, frame has " + std::to_string(have));
  return decode_payload(header->type, frame.subspan(kHeaderSize));
}

Result<std::vector<std::uint8_t>> encode(const Message& m) {
  Writer w;
  w.u32(kMagic);
  w.u16(kProtocolVersion);
  w.u16(static_cast<std::uint16_t>(type_of(m)));
  w.u32(0);  // length, patched below
  Encoder e{w};
  std::visit([&](const auto& v) { e(v, "message"); }, m);
  auto& buf = w.buffer();
  std::size_t length = buf.size() - kHeaderSize;
  if (w.overflow)
    return fail(Errc::invalid_argument, std::string("encoding ") + msg_type_name(type_of(m)) +
                                            ": a string or list exceeds the protocol limit");
  if (length > kMaxPayload)
    return fail(Errc::invalid_argument, std::string("encoding ") + msg_type_name(type_of(m)) +
                                            ": " + std::to_string(length) +
                                            " bytes exceed the message size limit");
  for (int i = 0; i < 4; ++i)
    buf[8 + i] = static_cast<std::uint8_t>(length >> (24 - 8 * i));
  return std::move(buf);
}

}  // namespace dynamos::gang::proto
