// dynamosd's local socket: a rank's exec wrapper (dynamos-rank) connects, sends
// RankAttach{job} and gets Ok once it is in the job's group: frozen right there when the
// job is not running, so a rank never runs outside its gang's time slice. The caller is
// identified by SO_PEERCRED (its pid and uid), never by what it says. The socket is
// mode 0666: any user's ranks connect; NodeAgent::attach_rank decides.
//
// The pid is bound to the process at accept (RankPeer): a client could connect, hand
// the socket to a child and exit, and send its request once its pid belongs to someone
// else's process, which would then move into the client's job. The request is served
// only while the process that connected still runs.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "base/error.hpp"
#include "gang/dynamosd/node_agent.hpp"
#include "gang/launch_path.hpp"

namespace dynamos::gang {

// The process at the other end of a rank's connection, bound when it is accepted: a
// pidfd of the connecting process (SO_PEERPIDFD, else pidfd_open of SO_PEERCRED's pid,
// then also checked by the start time read at accept).
class RankPeer {
 public:
  // The peer of connected socket `fd`. Errc::not_found when it has exited already.
  static Result<RankPeer> of_socket(int fd);
  // Process `pid` (of user `uid`) bound now, as of_socket does without SO_PEERPIDFD.
  static Result<RankPeer> of_process(pid_t pid, uid_t uid);
  // A peer from its parts (takes `pidfd`); for tests of still_there().
  RankPeer(pid_t pid, uid_t uid, int pidfd, std::uint64_t start_time)
      : pid_(pid), uid_(uid), pidfd_(pidfd), start_time_(start_time) {}
  RankPeer(RankPeer&& other) noexcept;
  RankPeer& operator=(RankPeer&&) = delete;
  ~RankPeer();

  // Whether the process that connected still runs under its pid: its pidfd does not
  // report an exit, and the pid's start time is the one read at accept. Errc::state
  // naming the pid otherwise: the request must be refused.
  Result<void> still_there() const;
  pid_t pid() const { return pid_; }
  uid_t uid() const { return uid_; }

 private:
  pid_t pid_;
  uid_t uid_;
  int pidfd_;
  std::uint64_t start_time_;
};

class RankSocket {
 public:
  // Binds `path` (a stale socket file left by a killed agent is replaced).
  static Result<std::unique_ptr<RankSocket>> create(boost::asio::any_io_executor ex,
                                                    std::string path, NodeAgent& agent);
  ~RankSocket();  // closes and unlinks the socket
  void start();
  void stop();  // stops accepting (the io_context can then run out of work)
  const std::string& path() const { return path_; }

 private:
  RankSocket(boost::asio::local::stream_protocol::acceptor acceptor, std::string path,
             NodeAgent& agent);
  boost::asio::awaitable<void> accept();
  boost::asio::awaitable<void> serve(boost::asio::local::stream_protocol::socket s,
                                     Result<RankPeer> peer);
  // The reply to one request: Ok once the caller is in its job's group, else the error.
  gang::proto::Message answer(const Result<RankPeer>& peer,
                              const Result<gang::proto::Message>& msg);

  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
  NodeAgent& agent_;
};

}  // namespace dynamos::gang
