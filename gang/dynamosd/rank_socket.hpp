// dynamosd's local socket: a rank's exec wrapper (dynamos-rank) connects, sends
// RankAttach{job} and gets Ok once it is in the job's group: frozen right there when the
// job is not running, so a rank never runs outside its gang's time slice. The caller is
// identified by SO_PEERCRED (its pid and uid), never by what it says. The socket is
// mode 0666: any user's ranks connect; NodeAgent::attach_rank decides.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <memory>
#include <string>

#include "base/error.hpp"
#include "gang/dynamosd/node_agent.hpp"
#include "gang/launch_path.hpp"

namespace dynamos::gang {

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
  boost::asio::awaitable<void> serve(boost::asio::local::stream_protocol::socket s);
  // The reply to one request: Ok once the caller is in its job's group, else the error.
  gang::proto::Message answer(boost::asio::local::stream_protocol::socket& s,
                              const Result<gang::proto::Message>& msg);

  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
  NodeAgent& agent_;
};

}  // namespace dynamos::gang
