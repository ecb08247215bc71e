// The gang protocol: every message between gangd, the node agents (dynamosd) and the
// CLI is one frame, a fixed header followed by a payload.
//
//   offset 0  u32 magic     "DYGP" (0x44594750)
//   offset 4  u16 version   kProtocolVersion; a peer with another version is refused
//   offset 6  u16 type      MsgType
//   offset 8  u32 length    payload bytes that follow, at most kMaxPayload
//
// All integers are big-endian. A string is a u32 length and its bytes, a list a u32
// count and its elements. Decoding never trusts its input: every length is checked
// against the bytes that remain and against the limits below before anything is
// allocated, a payload must be consumed exactly, and any violation is an Error with
// code Errc::protocol (Errc::version_mismatch for a foreign version) that names the
// message and the field. Decoding has no side effect besides its result.
//
// Each message is a plain struct; its fields are listed once, in wire order, in its
// `fields` function (protocol.cpp), which drives both the encoder and the decoder.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/error.hpp"

namespace dynamos::gang::proto {

inline constexpr std::uint32_t kMagic = 0x44594750;  // "DYGP"
inline constexpr std::uint16_t kProtocolVersion = 2;
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

enum class MsgType : std::uint16_t {
  // Handshake (TCP peers): hello -> challenge -> auth -> welcome.
  hello = 1,
  challenge = 2,
  auth = 3,
  welcome = 4,
  // Coordinator <-> agent.
  job_assign = 10,
  job_release = 11,
  node_request = 12,  // an operation on the node (cycle stealing, guests, extensions...)
  node_reply = 13,
  prepare_switch = 20,
  prepare_ack = 21,
  switch_at = 22,
  switch_ack = 23,
  metrics_report = 30,
  heartbeat = 31,
  error = 40,
  // CLI <-> coordinator over the local control socket.
  job_submit = 50,
  job_submitted = 51,
  job_cancel = 52,
  list_jobs = 53,
  job_list = 54,
  list_nodes = 55,
  node_list = 56,
  set_quantum = 57,
  set_paging = 58,
  ok = 59,
  job_exited = 60,  // from the job's launcher
  node_command = 61,
  node_command_result = 62,
  set_cyclesteal = 63,
  // A rank's exec wrapper <-> dynamosd's local socket.
  rank_attach = 70,
};

const char* msg_type_name(MsgType type);

enum class Role : std::uint8_t { agent = 1, cli = 2 };

// --- handshake -----------------------------------------------------------------------

// First message of a TCP peer. The client nonce lets the agent check the coordinator
// too (mutual authentication): a forged coordinator could otherwise freeze jobs.
struct Hello {
  Role role = Role::agent;
  std::string node;       // the agent's node name, as in the hostfile
  std::uint32_t pid = 0;  // of the agent, for logs
  Nonce client_nonce{};
};

// The coordinator's reply: its own nonce and its proof that it knows the secret.
struct Challenge {
  Nonce server_nonce{};
  Mac server_proof{};
};

// The agent's proof that it knows the secret (see gang/auth.hpp for what is signed).
struct Auth {
  Mac client_proof{};
};

struct Welcome {
  std::uint32_t node_index = 0;
  std::uint64_t quantum_ns = 0;
  std::uint64_t heartbeat_ns = 0;  // the agent treats 3 silent intervals as a lost link
  std::uint64_t last_round = 0;    // rounds before this one are stale
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
};

struct JobRelease {
  JobId job = 0;
  std::string reason;
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
};

struct NodeReply {
  std::uint64_t request = 0;
  bool ok = true;
  std::string output;  // the result (text or JSON), or the error when !ok
};

// --- switch rounds -------------------------------------------------------------------

// Phase 1: get ready to stop `outgoing` and run `incoming` (paging may start here).
struct PrepareSwitch {
  std::uint64_t round = 0;
  std::vector<JobId> outgoing;
  std::vector<JobId> incoming;
};

struct PrepareAck {
  std::uint64_t round = 0;
  bool ok = true;
  std::uint64_t prepare_ns = 0;  // time the agent spent preparing
  std::string error;             // why, when !ok
};

// Phase 2: switch when CLOCK_REALTIME reaches `deadline_ns` (all nodes at once).
struct SwitchAt {
  std::uint64_t round = 0;
  std::uint64_t deadline_ns = 0;
};

struct SwitchAck {
  std::uint64_t round = 0;
  bool ok = true;
  std::uint64_t received_ns = 0;  // CLOCK_REALTIME when SwitchAt arrived
  std::uint64_t switched_ns = 0;  // CLOCK_REALTIME when the switch started
  std::uint64_t duration_ns = 0;  // how long the switch took on this node
  std::string error;
  std::uint64_t running_ns = 0;  // CLOCK_REALTIME when the incoming jobs were thawed
};

// --- metrics, liveness, errors -------------------------------------------------------

struct JobMetrics {
  JobId job = 0;
  std::uint64_t cpu_ns = 0;
  std::uint64_t rss_bytes = 0;
  std::uint64_t pages_out = 0;
  std::uint64_t pages_in = 0;
  std::uint64_t major_faults = 0;
};

struct MetricsReport {
  std::uint64_t time_ns = 0;
  std::uint64_t mem_total = 0;
  std::uint64_t mem_available = 0;
  std::vector<JobMetrics> jobs;
};

struct Heartbeat {
  std::uint64_t time_ns = 0;
};

struct ErrorMsg {
  std::uint16_t code = 0;  // a dynamos::Errc
  std::string message;
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
};

struct JobSubmitted {
  JobId job = 0;
};

struct JobCancel {
  JobId job = 0;
};

struct ListJobs {};

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
};

struct JobList {
  std::vector<JobInfo> jobs;
};

struct ListNodes {};

struct NodeInfo {
  std::string name;
  std::string state;  // "up", "down"
  std::uint32_t slots = 0;
  std::vector<JobId> jobs;
  std::uint64_t mem_total = 0;
  std::uint64_t mem_available = 0;
  std::string guest_policy;  // cycle stealing: "off", "linger", "pause", "evict"
};

struct NodeList {
  std::vector<NodeInfo> nodes;
};

struct SetQuantum {
  std::uint64_t quantum_ns = 0;
};

struct SetPaging {
  JobId job = 0;
  std::string policy;
};

struct Ok {
  std::string message;
};

// The launcher's report that a job's mpirun ended (root or the job's owner only).
struct JobExited {
  JobId job = 0;
  std::int32_t exit_code = 0;
  std::string reason;  // "" when the job exited by itself
};

// An operation on nodes: gangd checks the caller may (see node_ops.hpp), forwards it
// as a NodeRequest to each node and answers with every node's reply.
struct NodeCommand {
  std::vector<std::string> nodes;  // empty: every node that is up
  std::string op;
  std::vector<std::string> args;
  std::uint64_t timeout_ns = 0;  // 0: gangd's default (30 s)
};

struct NodeResult {
  std::string node;
  bool ok = true;
  std::string output;
};

struct NodeCommandResult {
  std::vector<NodeResult> results;
};

// Cycle stealing driven by gangd: guests run on every node with no running job in the
// current slot, under `policy`; on nodes running a job they are paused.
struct SetCycleSteal {
  bool enable = false;
  std::string policy = "linger";
};

// A rank's exec wrapper asks the node agent to put it (SO_PEERCRED's pid) into the
// job's group; the agent answers Ok (once the caller is frozen or may run) or an error.
struct RankAttach {
  JobId job = 0;
};

using Message = std::variant<Hello, Challenge, Auth, Welcome, JobAssign, JobRelease, NodeRequest,
                             NodeReply, PrepareSwitch, PrepareAck, SwitchAt, SwitchAck,
                             MetricsReport, Heartbeat, ErrorMsg, JobSubmit, JobSubmitted, JobCancel,
                             ListJobs, JobList, ListNodes, NodeList, SetQuantum, SetPaging, Ok,
                             JobExited, NodeCommand, NodeCommandResult, SetCycleSteal, RankAttach>;

MsgType type_of(const Message& m);

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
