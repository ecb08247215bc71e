// The gang protocol: every message between gangd, the node agents (dynamosd) and the
// CLI is one frame, a fixed header followed by a payload.
//
//   offset 0  u32 magic     "DYGP" (0x44594750)
//   offset 4  u16 version   kProtocolVersion; a peer with another version is refused
//   offset 6  u16 type      MsgType
//   offset 8  u32 length    payload bytes that follow, at most kMaxPayload
//
// Between gangd and an agent, every frame after the handshake's Auth is followed by a
// 32-byte tag (kMacSize, not counted in `length`): HMAC-SHA256 under a per-session,
// per-direction key of the frame's sequence number and bytes (see gang/auth.hpp).
//
// All integers are big-endian. A string is a u32 length and its bytes, a list a u32
// count and its elements. Decoding never trusts its input: every length is checked
// against the bytes that remain and against the limits below before anything is
// allocated, a payload must be consumed exactly, and any violation is an Error with
// code Errc::protocol (Errc::version_mismatch for a foreign version) that names the
// message and the field. Decoding has no side effect besides its result.
//
// Each message is a plain struct that lists its fields once, in wire order
// (DYNAMOS_WIRE_FIELDS), and one entry of DYNAMOS_GANG_MESSAGES; that drives both the
// encoder and the decoder.
#pragma once

#include <array>
#include <boost/preprocessor/seq/for_each.hpp>
#include <boost/preprocessor/stringize.hpp>
#include <boost/preprocessor/variadic/to_seq.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/error.hpp"

namespace dynamos::gang::proto {

inline constexpr std::uint32_t kMagic = 0x44594750;  // "DYGP"
inline constexpr std::uint16_t kProtocolVersion = 6;
inline constexpr std::size_t kHeaderSize = 12;
// A metrics report of a large node is the biggest message; 1 MiB leaves ample room and
// bounds what a hostile peer can make us buffer.
inline constexpr std::uint32_t kMaxPayload = 1u << 20;
inline constexpr std::uint32_t kMaxString = 64 * 1024;
inline constexpr std::uint32_t kMaxList = 100'000;
inline constexpr std::size_t kNonceSize = 32;
inline constexpr std::size_t kMacSize = 32;  // HMAC-SHA256

using JobId = std::uint64_t;
using Nonce = std::array<std::uint8_t, kNonceSize>;
using Mac = std::array<std::uint8_t, kMacSize>;

// Every message, once: its struct, its name on the wire (and in errors), its type code.
// The MsgType enum, the Message variant, msg_type_name, type_of and the codec all follow
// from this list; a new message is one line here plus its struct below (whose fields
// are listed in wire order by DYNAMOS_WIRE_FIELDS). Codes are the wire format: never
// reuse or renumber one.
#define DYNAMOS_GANG_MESSAGES(X)                                               \
  /* Handshake (TCP peers): hello -> challenge -> auth -> welcome. */          \
  X(Hello, hello, 1)                                                           \
  X(Challenge, challenge, 2)                                                   \
  X(Auth, auth, 3)                                                             \
  X(Welcome, welcome, 4)                                                       \
  /* Coordinator <-> agent. */                                                 \
  X(JobAssign, job_assign, 10)                                                 \
  X(JobRelease, job_release, 11)                                               \
  X(NodeRequest, node_request, 12)                                             \
  X(NodeReply, node_reply, 13)                                                 \
  /* 20-22 were the two-phase round of versions 1-5 (prepare, ack, switch). */ \
  X(SwitchAck, switch_ack, 23)                                                 \
  X(SwitchOrder, switch_order, 24)                                             \
  X(MetricsReport, metrics_report, 30)                                         \
  X(Heartbeat, heartbeat, 31)                                                  \
  X(ErrorMsg, error, 40)                                                       \
  /* CLI (and the launcher) <-> coordinator over the local control socket. */  \
  X(JobSubmit, job_submit, 50)                                                 \
  X(JobSubmitted, job_submitted, 51)                                           \
  X(JobCancel, job_cancel, 52)                                                 \
  X(ListJobs, list_jobs, 53)                                                   \
  X(JobList, job_list, 54)                                                     \
  X(ListNodes, list_nodes, 55)                                                 \
  X(NodeList, node_list, 56)                                                   \
  X(SetQuantum, set_quantum, 57)                                               \
  X(SetPaging, set_paging, 58)                                                 \
  X(Ok, ok, 59)                                                                \
  X(JobExited, job_exited, 60)                                                 \
  X(NodeCommand, node_command, 61)                                             \
  X(NodeCommandResult, node_command_result, 62)                                \
  X(SetCycleSteal, set_cyclesteal, 63)                                         \
  /* The scheduler's requests (issue 21: queue, history, nodes). */            \
  X(JobControl, job_control, 80)                                               \
  X(NodeAdmin, node_admin, 81)                                                 \
  X(Reconfigure, reconfigure, 82)                                              \
  X(ListHistory, list_history, 83)                                             \
  /* A rank's exec wrapper <-> dynamosd's local socket. */                     \
  X(RankAttach, rank_attach, 70)

#define DYNAMOS_GANG_MSG_ENUM_(Type, name, code) name = code,
enum class MsgType : std::uint16_t { DYNAMOS_GANG_MESSAGES(DYNAMOS_GANG_MSG_ENUM_) };
#undef DYNAMOS_GANG_MSG_ENUM_

// The message's name ("job_submit"), or nullptr for a code that is no message.
const char* msg_type_name(MsgType type);

// A struct's wire fields, in wire order: DYNAMOS_WIRE_FIELDS(job, name, uid) defines
// wire_fields(v), which calls v(job, "job"), v(name, "name"), v(uid, "uid"); the
// encoder and the decoder are such visitors (protocol.cpp).
#define DYNAMOS_WIRE_FIELD_(r, v, field) v(field, BOOST_PP_STRINGIZE(field));
#define DYNAMOS_WIRE_VISIT_(...) \
  BOOST_PP_SEQ_FOR_EACH(DYNAMOS_WIRE_FIELD_, v, BOOST_PP_VARIADIC_TO_SEQ(__VA_ARGS__))
#define DYNAMOS_WIRE_FIELDS(...)     \
  template <class V>                 \
  void wire_fields(V& v) {           \
    DYNAMOS_WIRE_VISIT_(__VA_ARGS__) \
  }                                  \
  template <class V>                 \
  void wire_fields(V& v) const {     \
    DYNAMOS_WIRE_VISIT_(__VA_ARGS__) \
  }
#define DYNAMOS_WIRE_NO_FIELDS() \
  template <class V>             \
  void wire_fields(V&) const {}

enum class Role : std::uint8_t { agent = 1, cli = 2 };

// --- handshake -----------------------------------------------------------------------

// First message of a TCP peer. The client nonce lets the agent check the coordinator
// too (mutual authentication): a forged coordinator could otherwise freeze jobs.
struct Hello {
  Role role = Role::agent;
  std::string node;       // the agent's node name, as in the hostfile
  std::uint32_t pid = 0;  // of the agent, for logs
  Nonce client_nonce{};
  // Every frame after Auth carries a tag (gang/auth.hpp). gangd refuses an agent whose
  // setting differs from its own; turning it off is for measuring its cost only.
  bool frame_auth = true;
  DYNAMOS_WIRE_FIELDS(role, node, pid, client_nonce, frame_auth)
};

// The coordinator's reply: its own nonce and its proof that it knows the secret.
struct Challenge {
  Nonce server_nonce{};
  Mac server_proof{};
  DYNAMOS_WIRE_FIELDS(server_nonce, server_proof)
};

// The agent's proof that it knows the secret (see gang/auth.hpp for what is signed).
struct Auth {
  Mac client_proof{};
  DYNAMOS_WIRE_FIELDS(client_proof)
};

struct Welcome {
  std::uint32_t node_index = 0;
  std::uint64_t quantum_ns = 0;
  std::uint64_t heartbeat_ns = 0;  // the agent treats 3 silent intervals as a lost link
  std::uint64_t last_round = 0;    // rounds before this one are stale
  DYNAMOS_WIRE_FIELDS(node_index, quantum_ns, heartbeat_ns, last_round)
};

// --- jobs on an agent ----------------------------------------------------------------

// A job gets ranks on this node. `running` says whether it runs in the current slot.
struct JobAssign {
  JobId job = 0;
  std::string name;
  std::uint32_t uid = 0;
  std::uint32_t ranks_here = 0;
  std::string paging;  // paging policy name
  bool running = false;
  DYNAMOS_WIRE_FIELDS(job, name, uid, ranks_here, paging, running)
};

struct JobRelease {
  JobId job = 0;
  std::string reason;
  DYNAMOS_WIRE_FIELDS(job, reason)
};

// An operation gangd forwards to a node on behalf of a CLI caller (NodeCommand). The
// agent answers every request with a NodeReply carrying the same id. `uid` is the
// caller's (gangd has already checked what they may do); `op` names the operation
// (see gang/node_ops.hpp), `args` are its arguments.
struct NodeRequest {
  std::uint64_t request = 0;
  std::uint32_t uid = 0;
  std::string op;
  std::vector<std::string> args;
  DYNAMOS_WIRE_FIELDS(request, uid, op, args)
};

struct NodeReply {
  std::uint64_t request = 0;
  bool ok = true;
  std::string output;  // the result (text or JSON), or the error when !ok
  DYNAMOS_WIRE_FIELDS(request, ok, output)
};

// --- switch rounds -------------------------------------------------------------------

// A round, in one message to each node concerned: get ready to stop `outgoing` and run
// `incoming` now (paging may start here), switch when CLOCK_REALTIME reaches
// `deadline_ns` (every node at once); one SwitchAck answers it.
struct SwitchOrder {
  std::uint64_t round = 0;
  std::uint64_t deadline_ns = 0;
  std::vector<JobId> outgoing;
  std::vector<JobId> incoming;
  DYNAMOS_WIRE_FIELDS(round, deadline_ns, outgoing, incoming)
};

struct SwitchAck {
  std::uint64_t round = 0;
  bool ok = true;
  std::uint64_t received_ns = 0;  // CLOCK_REALTIME when the SwitchOrder arrived
  std::uint64_t switched_ns = 0;  // CLOCK_REALTIME when the switch started
  std::uint64_t duration_ns = 0;  // how long the switch took on this node
  std::string error;              // why, when !ok
  std::uint64_t running_ns = 0;   // CLOCK_REALTIME when the incoming jobs were thawed
  std::uint64_t prepare_ns = 0;   // time the agent spent preparing
  std::string prepare_error;      // why preparing failed (the switch still followed)
  DYNAMOS_WIRE_FIELDS(round, ok, received_ns, switched_ns, duration_ns, error, running_ns,
                      prepare_ns, prepare_error)
};

// --- metrics, liveness, errors -------------------------------------------------------

struct JobMetrics {
  JobId job = 0;
  std::uint64_t cpu_ns = 0;
  std::uint64_t rss_bytes = 0;
  std::uint64_t pages_out = 0;
  std::uint64_t pages_in = 0;
  std::uint64_t major_faults = 0;
  DYNAMOS_WIRE_FIELDS(job, cpu_ns, rss_bytes, pages_out, pages_in, major_faults)
};

struct MetricsReport {
  std::uint64_t time_ns = 0;
  std::uint64_t mem_total = 0;
  std::uint64_t mem_available = 0;
  std::vector<JobMetrics> jobs;
  std::uint64_t quantum_ns{};  // the quantum the agent was last told (Welcome, SetQuantum)
  DYNAMOS_WIRE_FIELDS(time_ns, mem_total, mem_available, jobs, quantum_ns)
};

struct Heartbeat {
  std::uint64_t time_ns = 0;
  DYNAMOS_WIRE_FIELDS(time_ns)
};

struct ErrorMsg {
  std::uint16_t code = 0;  // a dynamos::Errc
  std::string message;
  DYNAMOS_WIRE_FIELDS(code, message)
};

// --- control requests (CLI) ----------------------------------------------------------

struct JobSubmit {
  std::string name;
  std::uint32_t ranks = 1;
  std::uint32_t nodes = 0;  // 0: as few nodes as the ranks fit on
  std::string paging = "demand";
  std::vector<std::string> argv;
  std::string cwd;
  std::string output;  // the job's output file; "" = <cwd>/dynamos-job<ID>.out
  // (initialised so that older brace lists of the fields above need not name them)
  std::string mpi_args{};          // extra mpirun options for this job, shell-quoted words
  std::vector<std::string> env{};  // the submitter's environment, NAME=VALUE (gangd/launch.hpp)
  std::uint64_t mem_per_rank{};    // bytes; 0: gangd's default (--mem-per-rank)
  std::uint64_t time_limit_s{};    // 0: no limit
  bool hold{};                     // submitted held (pending until released)
  DYNAMOS_WIRE_FIELDS(name, ranks, nodes, paging, argv, cwd, output, mpi_args, env, mem_per_rank,
                      time_limit_s, hold)
};

struct JobSubmitted {
  JobId job = 0;
  DYNAMOS_WIRE_FIELDS(job)
};

struct JobCancel {
  JobId job = 0;
  DYNAMOS_WIRE_FIELDS(job)
};

struct ListJobs {
  bool all{};  // also the ended jobs of the history journal
  DYNAMOS_WIRE_FIELDS(all)
};

struct JobInfo {
  JobId job = 0;
  std::string name;
  std::uint32_t uid = 0;
  std::string state;  // "running", "frozen", "cancelled", ...
  std::uint32_t slot = 0;
  std::vector<std::string> nodes;
  std::string paging;
  std::uint64_t switches = 0;
  std::uint64_t cpu_ns = 0;
  std::int32_t exit_code = -1;
  std::string reason;              // why a job failed
  std::uint64_t submitted_ns = 0;  // CLOCK_REALTIME at submission (0: before a gangd restart)
  std::uint64_t ended_ns = 0;      // CLOCK_REALTIME when it ended, 0 while it runs
  std::uint64_t major_faults = 0;  // summed over its nodes, from the agents' reports
  std::uint64_t started_ns{};      // CLOCK_REALTIME when it was placed, 0 while pending
  std::uint32_t ranks{};
  std::uint64_t mem_per_rank{};  // bytes
  std::uint64_t time_limit_s{};  // 0: none
  DYNAMOS_WIRE_FIELDS(job, name, uid, state, slot, nodes, paging, switches, cpu_ns, exit_code,
                      reason, submitted_ns, ended_ns, major_faults, started_ns, ranks, mem_per_rank,
                      time_limit_s)
};

struct JobList {
  std::vector<JobInfo> jobs;
  DYNAMOS_WIRE_FIELDS(jobs)
};

struct ListNodes {
  DYNAMOS_WIRE_NO_FIELDS()
};

struct NodeInfo {
  std::string name;
  std::string state;  // "up", "down"
  std::uint32_t slots = 0;
  std::vector<JobId> jobs;
  std::uint64_t mem_total = 0;
  std::uint64_t mem_available = 0;
  std::string guest_policy;       // cycle stealing: "off", "linger", "pause", "evict"
  std::string reason{};           // why it is drained or down
  std::uint64_t mem_committed{};  // bytes the jobs placed on it asked for
  std::uint64_t quantum_ns{};     // the agent's quantum as it last reported it (0: not yet)
  DYNAMOS_WIRE_FIELDS(name, state, slots, jobs, mem_total, mem_available, guest_policy, reason,
                      mem_committed, quantum_ns)
};

struct NodeList {
  std::vector<NodeInfo> nodes;
  DYNAMOS_WIRE_FIELDS(nodes)
};

struct SetQuantum {
  std::uint64_t quantum_ns = 0;
  DYNAMOS_WIRE_FIELDS(quantum_ns)
};

struct SetPaging {
  JobId job = 0;
  std::string policy;
  DYNAMOS_WIRE_FIELDS(job, policy)
};

struct Ok {
  std::string message;
  DYNAMOS_WIRE_FIELDS(message)
};

// The launcher's report that a job's mpirun ended (root or the job's owner only).
struct JobExited {
  JobId job = 0;
  std::int32_t exit_code = 0;
  std::string reason;  // "" when the job exited by itself
  DYNAMOS_WIRE_FIELDS(job, exit_code, reason)
};

// Job control of the queue: "hold" or "release" a pending job, "requeue" an ended
// (failed or cancelled) one under a new id. Answered with Ok (requeue: JobSubmitted).
struct JobControl {
  JobId job = 0;
  std::string action;
  DYNAMOS_WIRE_FIELDS(job, action)
};

// A node's administrative state: "drain" (no new jobs, running ones finish) or
// "resume" (root only).
struct NodeAdmin {
  std::string node;
  std::string action;
  std::string reason;
  DYNAMOS_WIRE_FIELDS(node, action, reason)
};

// Reread the hostfile (what SIGHUP does): nodes added and removed (root only).
struct Reconfigure {
  DYNAMOS_WIRE_NO_FIELDS()
};

// Ended jobs of the history journal since a time (CLOCK_REALTIME ns); a JobList.
struct ListHistory {
  std::uint64_t since_ns = 0;
  DYNAMOS_WIRE_FIELDS(since_ns)
};

// An operation on nodes: gangd checks the caller may (see node_ops.hpp), forwards it
// as a NodeRequest to each node and answers with every node's reply.
struct NodeCommand {
  std::vector<std::string> nodes;  // empty: every node that is up
  std::string op;
  std::vector<std::string> args;
  std::uint64_t timeout_ns = 0;  // 0: gangd's default (30 s)
  DYNAMOS_WIRE_FIELDS(nodes, op, args, timeout_ns)
};

struct NodeResult {
  std::string node;
  bool ok = true;
  std::string output;
  DYNAMOS_WIRE_FIELDS(node, ok, output)
};

struct NodeCommandResult {
  std::vector<NodeResult> results;
  DYNAMOS_WIRE_FIELDS(results)
};

// Cycle stealing driven by gangd: guests run on every node with no running job in the
// current slot, under `policy`; on nodes running a job they are paused.
struct SetCycleSteal {
  bool enable = false;
  std::string policy = "linger";
  DYNAMOS_WIRE_FIELDS(enable, policy)
};

// A rank's exec wrapper asks the node agent to put it (SO_PEERCRED's pid) into the
// job's group; the agent answers Ok (once the caller is frozen or may run) or an error.
struct RankAttach {
  JobId job = 0;
  DYNAMOS_WIRE_FIELDS(job)
};

namespace detail {
template <class Void, class... Ts>
struct MessageVariant {
  using type = std::variant<Ts...>;
};
}  // namespace detail
#define DYNAMOS_GANG_MSG_TYPE_(Type, name, code) , Type
using Message = detail::MessageVariant<void DYNAMOS_GANG_MESSAGES(DYNAMOS_GANG_MSG_TYPE_)>::type;
#undef DYNAMOS_GANG_MSG_TYPE_

MsgType type_of(const Message& m);

// The type code of a message struct.
template <class T>
inline constexpr MsgType kTypeOf = MsgType{};
#define DYNAMOS_GANG_MSG_KTYPE_(Type, name, code) \
  template <>                                     \
  inline constexpr MsgType kTypeOf<Type> = MsgType::name;
DYNAMOS_GANG_MESSAGES(DYNAMOS_GANG_MSG_KTYPE_)
#undef DYNAMOS_GANG_MSG_KTYPE_

// `m` as a T, else a protocol error "expected challenge, got error".
template <class T>
Result<T*> expect(Message& m) {
  if (auto* t = std::get_if<T>(&m)) return t;
  return fail(Errc::protocol, std::string("expected ") + msg_type_name(kTypeOf<T>) + ", got " +
                                  msg_type_name(type_of(m)));
}

struct Header {
  MsgType type{};
  std::uint32_t length = 0;
};

// Checks magic, version, type and length of the first kHeaderSize bytes.
Result<Header> decode_header(std::span<const std::uint8_t> bytes);

// Decodes a payload of the given type; the payload must be consumed exactly.
Result<Message> decode_payload(MsgType type, std::span<const std::uint8_t> payload);

// Decodes one whole frame (header + payload, nothing more).
Result<Message> decode_frame(std::span<const std::uint8_t> frame);

// Encodes a whole frame. Fails only when the payload would exceed kMaxPayload or a
// string or list exceeds its limit (the peer would refuse it anyway).
Result<std::vector<std::uint8_t>> encode(const Message& m);

// The error message sent to a peer before closing.
inline Message error_message(const Error& e) {
  return ErrorMsg{static_cast<std::uint16_t>(e.code), e.message()};
}

// --- byte-level codec, shared with the journal ---------------------------------------

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v);
  void u32(std::uint32_t v);
  void u64(std::uint64_t v);
  void boolean(bool v) { u8(v ? 1 : 0); }
  void str(std::string_view s);
  void bytes(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  // Set when a string or list exceeded its limit; encode() turns it into an Error.
  bool overflow = false;
  std::vector<std::uint8_t>& buffer() { return out_; }

 private:
  std::vector<std::uint8_t> out_;
};

// Reads with bounds checks. The first failure is remembered (error()) and every later
// read returns zero values, so a decoder can read all fields and check once.
class Reader {
 public:
  Reader(std::span<const std::uint8_t> in, const char* what) : in_(in), what_(what) {}
  std::uint8_t u8();
  std::uint16_t u16();
  std::uint32_t u32();
  std::uint64_t u64();
  bool boolean();
  std::string str(const char* field);
  void bytes(std::span<std::uint8_t> out, const char* field);
  // A list count, checked against kMaxList and against the bytes left, given the
  // smallest encoded size of one element (so a hostile count allocates nothing).
  std::uint32_t count(const char* field, std::size_t min_elem);
  void fail(std::string why);
  bool failed() const { return !error_.empty(); }
  std::size_t remaining() const { return in_.size() - pos_; }
  // The error, or a "trailing bytes" error if input remains.
  Result<void> finish();

 private:
  bool need(std::size_t n, const char* field);
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  const char* what_;
  std::string error_;
};

}  // namespace dynamos::gang::proto
