// The rank socket binds a request to the process that connected (RankPeer): a client
// that connects, passes the socket to a child and exits must not have its request served
// for whatever process holds its pid afterwards. Pid reuse cannot be forced cheaply, so
// the tests show the two signs the socket acts on: the connecting process exited, and
// the pid's start time differs from the one read at accept.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "gang/dynamosd/rank_socket.hpp"
#include "kernelside/procfs.hpp"

using namespace dynamos;
using namespace dynamos::gang;

namespace {

// A listening unix socket in a fresh directory.
struct Listener {
  std::string dir, path;
  int fd = -1;
  Listener() {
    char tmpl[] = "/tmp/dynamos-rankpeer-XXXXXX";
    dir = mkdtemp(tmpl);
    path = dir + "/s";
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd, 4);
  }
  ~Listener() {
    close(fd);
    unlink(path.c_str());
    rmdir(dir.c_str());
  }
  int connect_to() const {
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    return ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? c : -1;
  }
};

}  // namespace

TEST(RankSocketPeer, RequestOfAClientThatConnectedAndExitedIsRefused) {
  Listener l;
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  // The client connects, forks a child that keeps the socket (it would send the request
  // later), and exits when told to.
  const pid_t client = fork();
  if (client == 0) {
    const int c = l.connect_to();
    if (c < 0) _exit(1);
    if (fork() == 0) {
      char b;
      (void)!read(go[0], &b, 1);  // holds the socket until the test ends
      _exit(0);
    }
    char b;
    (void)!read(go[0], &b, 1);
    _exit(0);
  }
  const int s = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(s, 0);
  auto peer = RankPeer::of_socket(s);
  ASSERT_TRUE(peer) << peer.error().message();
  EXPECT_EQ(peer->pid(), client);
  EXPECT_TRUE(peer->still_there()) << "a live client's request refused";

  ASSERT_EQ(write(go[1], "x", 1), 1);  // the client exits; its child holds the socket
  waitpid(client, nullptr, 0);
  auto r = peer->still_there();
  ASSERT_FALSE(r) << "the request of a client that exited would be served";
  EXPECT_EQ(r.error().code, Errc::state);
  EXPECT_NE(r.error().message().find("has exited"), std::string::npos) << r.error().message();
  ASSERT_EQ(write(go[1], "x", 1), 1);  // the child may go
  close(s);
  close(go[0]);
  close(go[1]);
}

TEST(RankSocketPeer, PidWhoseStartTimeDiffersFromTheConnectingProcessIsRefused) {
  auto self = RankPeer::of_process(getpid(), getuid());
  ASSERT_TRUE(self) << self.error().message();
  EXPECT_TRUE(self->still_there());
  auto st = kernelside::read_stat(getpid());
  ASSERT_TRUE(st);
  // The pidfd is alive, but the pid's process started at another time than the one
  // that connected: another process holds the pid.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  ASSERT_GE(pidfd, 0);
  RankPeer other(getpid(), getuid(), pidfd, st->starttime_ticks + 1);
  auto r = other.still_there();
  ASSERT_FALSE(r) << "a pid whose start time changed was trusted";
  EXPECT_NE(r.error().message().find("start time changed"), std::string::npos)
      << r.error().message();
}
