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

// --- fields of every message, in wire order ------------------------------------------
// Each function lists a struct's fields once; the encoder and decoder visitors below
// walk them. The encoder passes const objects through const_cast and never writes.

template <class V>
void fields(V& v, Hello& m) {
  v(m.role, "role");
  v(m.node, "node");
  v(m.pid, "pid");
  v(m.client_nonce, "client_nonce");
}
template <class V>
void fields(V& v, Challenge& m) {
  v(m.server_nonce, "server_nonce");
  v(m.server_proof, "server_proof");
}
template <class V>
void fields(V& v, Auth& m) {
  v(m.client_proof, "client_proof");
}
template <class V>
void fields(V& v, Welcome& m) {
  v(m.node_index, "node_index");
  v(m.quantum_ns, "quantum_ns");
  v(m.heartbeat_ns, "heartbeat_ns");
  v(m.last_round, "last_round");
}
template <class V>
void fields(V& v, JobAssign& m) {
  v(m.job, "job");
  v(m.name, "name");
  v(m.uid, "uid");
  v(m.ranks_here, "ranks_here");
  v(m.paging, "paging");
  v(m.running, "running");
}
template <class V>
void fields(V& v, JobRelease& m) {
  v(m.job, "job");
  v(m.reason, "reason");
}
template <class V>
void fields(V& v, NodeRequest& m) {
  v(m.request, "request");
  v(m.uid, "uid");
  v(m.op, "op");
  v(m.args, "args");
}
template <class V>
void fields(V& v, NodeReply& m) {
  v(m.request, "request");
  v(m.ok, "ok");
  v(m.output, "output");
}
template <class V>
void fields(V& v, PrepareSwitch& m) {
  v(m.round, "round");
  v(m.outgoing, "outgoing");
  v(m.incoming, "incoming");
}
template <class V>
void fields(V& v, PrepareAck& m) {
  v(m.round, "round");
  v(m.ok, "ok");
  v(m.prepare_ns, "prepare_ns");
  v(m.error, "error");
}
template <class V>
void fields(V& v, SwitchAt& m) {
  v(m.round, "round");
  v(m.deadline_ns, "deadline_ns");
}
template <class V>
void fields(V& v, SwitchAck& m) {
  v(m.round, "round");
  v(m.ok, "ok");
  v(m.received_ns, "received_ns");
  v(m.switched_ns, "switched_ns");
  v(m.duration_ns, "duration_ns");
  v(m.error, "error");
  v(m.running_ns, "running_ns");
}
template <class V>
void fields(V& v, JobMetrics& m) {
  v(m.job, "job");
  v(m.cpu_ns, "cpu_ns");
  v(m.rss_bytes, "rss_bytes");
  v(m.pages_out, "pages_out");
  v(m.pages_in, "pages_in");
  v(m.major_faults, "major_faults");
}
template <class V>
void fields(V& v, MetricsReport& m) {
  v(m.time_ns, "time_ns");
  v(m.mem_total, "mem_total");
  v(m.mem_available, "mem_available");
  v(m.jobs, "jobs");
}
template <class V>
void fields(V& v, Heartbeat& m) {
  v(m.time_ns, "time_ns");
}
template <class V>
void fields(V& v, ErrorMsg& m) {
  v(m.code, "code");
  v(m.message, "message");
}
template <class V>
void fields(V& v, JobSubmit& m) {
  v(m.name, "name");
  v(m.ranks, "ranks");
  v(m.nodes, "nodes");
  v(m.paging, "paging");
  v(m.argv, "argv");
  v(m.cwd, "cwd");
  v(m.output, "output");
  v(m.mpi_args, "mpi_args");
  v(m.env, "env");
}
template <class V>
void fields(V& v, JobSubmitted& m) {
  v(m.job, "job");
}
template <class V>
void fields(V& v, JobCancel& m) {
  v(m.job, "job");
}
template <class V>
void fields(V&, ListJobs&) {}
template <class V>
void fields(V& v, JobInfo& m) {
  v(m.job, "job");
  v(m.name, "name");
  v(m.uid, "uid");
  v(m.state, "state");
  v(m.slot, "slot");
  v(m.nodes, "nodes");
  v(m.paging, "paging");
  v(m.switches, "switches");
  v(m.cpu_ns, "cpu_ns");
  v(m.exit_code, "exit_code");
  v(m.reason, "reason");
  v(m.submitted_ns, "submitted_ns");
  v(m.ended_ns, "ended_ns");
  v(m.major_faults, "major_faults");
}
template <class V>
void fields(V& v, JobList& m) {
  v(m.jobs, "jobs");
}
template <class V>
void fields(V&, ListNodes&) {}
template <class V>
void fields(V& v, NodeInfo& m) {
  v(m.name, "name");
  v(m.state, "state");
  v(m.slots, "slots");
  v(m.jobs, "jobs");
  v(m.mem_total, "mem_total");
  v(m.mem_available, "mem_available");
  v(m.guest_policy, "guest_policy");
}
template <class V>
void fields(V& v, NodeList& m) {
  v(m.nodes, "nodes");
}
template <class V>
void fields(V& v, SetQuantum& m) {
  v(m.quantum_ns, "quantum_ns");
}
template <class V>
void fields(V& v, SetPaging& m) {
  v(m.job, "job");
  v(m.policy, "policy");
}
template <class V>
void fields(V& v, Ok& m) {
  v(m.message, "message");
}
template <class V>
void fields(V& v, JobExited& m) {
  v(m.job, "job");
  v(m.exit_code, "exit_code");
  v(m.reason, "reason");
}
template <class V>
void fields(V& v, NodeCommand& m) {
  v(m.nodes, "nodes");
  v(m.op, "op");
  v(m.args, "args");
  v(m.timeout_ns, "timeout_ns");
}
template <class V>
void fields(V& v, NodeResult& m) {
  v(m.node, "node");
  v(m.ok, "ok");
  v(m.output, "output");
}
template <class V>
void fields(V& v, NodeCommandResult& m) {
  v(m.results, "results");
}
template <class V>
void fields(V& v, SetCycleSteal& m) {
  v(m.enable, "enable");
  v(m.policy, "policy");
}
template <class V>
void fields(V& v, RankAttach& m) {
  v(m.job, "job");
}

namespace {

template <class T>
concept Composite = std::is_class_v<T> && requires(Writer& w, T& t) {
  {fields(w, t)};
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
    fields(*this, const_cast<T&>(v));
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
    fields(*this, v);
  }
};

template <class T>
constexpr MsgType kType = MsgType{};
template <>
constexpr MsgType kType<Hello> = MsgType::hello;
template <>
constexpr MsgType kType<Challenge> = MsgType::challenge;
template <>
constexpr MsgType kType<Auth> = MsgType::auth;
template <>
constexpr MsgType kType<Welcome> = MsgType::welcome;
template <>
constexpr MsgType kType<JobAssign> = MsgType::job_assign;
template <>
constexpr MsgType kType<JobRelease> = MsgType::job_release;
template <>
constexpr MsgType kType<PrepareSwitch> = MsgType::prepare_switch;
template <>
constexpr MsgType kType<PrepareAck> = MsgType::prepare_ack;
template <>
constexpr MsgType kType<SwitchAt> = MsgType::switch_at;
template <>
constexpr MsgType kType<SwitchAck> = MsgType::switch_ack;
template <>
constexpr MsgType kType<MetricsReport> = MsgType::metrics_report;
template <>
constexpr MsgType kType<Heartbeat> = MsgType::heartbeat;
template <>
constexpr MsgType kType<ErrorMsg> = MsgType::error;
template <>
constexpr MsgType kType<JobSubmit> = MsgType::job_submit;
template <>
constexpr MsgType kType<JobSubmitted> = MsgType::job_submitted;
template <>
constexpr MsgType kType<JobCancel> = MsgType::job_cancel;
template <>
constexpr MsgType kType<ListJobs> = MsgType::list_jobs;
template <>
constexpr MsgType kType<JobList> = MsgType::job_list;
template <>
constexpr MsgType kType<ListNodes> = MsgType::list_nodes;
template <>
constexpr MsgType kType<NodeList> = MsgType::node_list;
template <>
constexpr MsgType kType<SetQuantum> = MsgType::set_quantum;
template <>
constexpr MsgType kType<SetPaging> = MsgType::set_paging;
template <>
constexpr MsgType kType<Ok> = MsgType::ok;
template <>
constexpr MsgType kType<NodeRequest> = MsgType::node_request;
template <>
constexpr MsgType kType<NodeReply> = MsgType::node_reply;
template <>
constexpr MsgType kType<JobExited> = MsgType::job_exited;
template <>
constexpr MsgType kType<NodeCommand> = MsgType::node_command;
template <>
constexpr MsgType kType<NodeCommandResult> = MsgType::node_command_result;
template <>
constexpr MsgType kType<SetCycleSteal> = MsgType::set_cyclesteal;
template <>
constexpr MsgType kType<RankAttach> = MsgType::rank_attach;

template <std::size_t I = 0>
Result<Message> decode_as(MsgType type, std::span<const std::uint8_t> payload) {
  if constexpr (I == std::variant_size_v<Message>) {
    return fail(Errc::protocol,
                "unknown message type " + std::to_string(static_cast<unsigned>(type)));
  } else {
    using T = std::variant_alternative_t<I, Message>;
    if (kType<T> != type) return decode_as<I + 1>(type, payload);
    Reader r(payload, msg_type_name(type));
    T m{};
    Decoder d{r};
    fields(d, m);
    if (auto done = r.finish(); !done) return std::unexpected(done.error());
    return Message{std::move(m)};
  }
}

}  // namespace

const char* msg_type_name(MsgType type) {
  switch (type) {
    case MsgType::hello:
      return "hello";
    case MsgType::challenge:
      return "challenge";
    case MsgType::auth:
      return "auth";
    case MsgType::welcome:
      return "welcome";
    case MsgType::job_assign:
      return "job_assign";
    case MsgType::job_release:
      return "job_release";
    case MsgType::prepare_switch:
      return "prepare_switch";
    case MsgType::prepare_ack:
      return "prepare_ack";
    case MsgType::switch_at:
      return "switch_at";
    case MsgType::switch_ack:
      return "switch_ack";
    case MsgType::metrics_report:
      return "metrics_report";
    case MsgType::heartbeat:
      return "heartbeat";
    case MsgType::error:
      return "error";
    case MsgType::job_submit:
      return "job_submit";
    case MsgType::job_submitted:
      return "job_submitted";
    case MsgType::job_cancel:
      return "job_cancel";
    case MsgType::list_jobs:
      return "list_jobs";
    case MsgType::job_list:
      return "job_list";
    case MsgType::list_nodes:
      return "list_nodes";
    case MsgType::node_list:
      return "node_list";
    case MsgType::set_quantum:
      return "set_quantum";
    case MsgType::set_paging:
      return "set_paging";
    case MsgType::ok:
      return "ok";
    case MsgType::node_request:
      return "node_request";
    case MsgType::node_reply:
      return "node_reply";
    case MsgType::job_exited:
      return "job_exited";
    case MsgType::node_command:
      return "node_command";
    case MsgType::node_command_result:
      return "node_command_result";
    case MsgType::set_cyclesteal:
      return "set_cyclesteal";
    case MsgType::rank_attach:
      return "rank_attach";
  }
  return nullptr;
}

MsgType type_of(const Message& m) {
  return std::visit([](const auto& v) { return kType<std::decay_t<decltype(v)>>; }, m);
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
  return decode_as(type, payload);
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
