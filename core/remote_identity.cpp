#include "core/remote_identity.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

namespace dynamos::core {

namespace {

// A /proc file in one read loop (an ifstream would hide the ESRCH of an exiting process).
Result<std::string> read_proc(pid_t pid, const char* name) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(Errc::not_found, "no such process " + std::to_string(pid));
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0)
    text.append(buf, static_cast<std::size_t>(n));
  const int err = errno;
  close(fd);
  if (n < 0)
    return fail(Errc::not_found,
                "process " + std::to_string(pid) + " is gone (" + std::strerror(err) + ")");
  return text;
}

Result<std::uint64_t> start_time_of(pid_t pid) {
  auto stat = read_proc(pid, "stat");
  if (!stat) return std::unexpected(stat.error());
  // The command name may hold spaces and parentheses: fields count from the last ')'.
  const auto close = stat->rfind(')');
  if (close == std::string::npos) return fail(Errc::protocol, "unreadable /proc/PID/stat");
  std::istringstream in(stat->substr(close + 1));
  std::string field;
  for (int i = 3; i < 22; ++i)  // fields 3 (state) to 21
    in >> field;
  std::uint64_t start = 0;
  if (!(in >> start)) return fail(Errc::protocol, "no start time in /proc/PID/stat");
  return start;
}

bool parse_status(const std::string& text, ProcessIdentity& id) {
  std::istringstream in(text);
  int seen = 0;
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    std::string key;
    s >> key;
    if (key == "Uid:" && s >> id.uid[0] >> id.uid[1] >> id.uid[2] >> id.uid[3]) ++seen;
    if (key == "Gid:" && s >> id.gid[0] >> id.gid[1] >> id.gid[2] >> id.gid[3]) ++seen;
    if (key == "CapPrm:" && s >> std::hex >> id.cap_prm) ++seen;
    if (key == "CapEff:" && s >> std::hex >> id.cap_eff) ++seen;
  }
  return seen == 4;
}

std::string ids_text(const char* what, const unsigned* ids) {
  return std::string(what) + " " + std::to_string(ids[0]) + "/" + std::to_string(ids[1]) + "/" +
         std::to_string(ids[2]) + "/" + std::to_string(ids[3]);
}

}  // namespace

Result<void> check_workable(pid_t pid, pid_t tid) {
  const std::string p = "process " + std::to_string(pid);
  auto stat = read_proc(pid, "stat");
  if (!stat) return std::unexpected(stat.error());
  const auto close = stat->rfind(')');
  if (close != std::string::npos && close + 2 < stat->size() && (*stat)[close + 2] == 'Z')
    return fail(Errc::unsupported,
                p +
                    " has a main thread that exited (pthread_exit) or is a zombie: its memory "
                    "cannot be reached through /proc/" +
                    std::to_string(pid) + "; not patched");
  const std::string name = tid ? "task/" + std::to_string(tid) + "/status" : "status";
  auto status = read_proc(pid, name.c_str());
  if (!status) return std::unexpected(status.error());
  const auto at = status->find("\nSeccomp:");
  const int mode = at == std::string::npos ? 0 : std::atoi(status->c_str() + at + 9);
  if (mode == 1)
    return fail(Errc::unsupported, p + " runs in seccomp strict mode: any system call the engine "
                                       "made there (mmap) would kill it; not patched");
  if (mode == 2)
    return fail(Errc::unsupported, p + " runs under a seccomp filter: the engine's system calls "
                                       "there (mmap, memfd_create, dlopen's) might kill it; "
                                       "not patched");
  return {};
}

Result<ProcessIdentity> read_process_identity(pid_t pid) {
  ProcessIdentity id;
  auto start = start_time_of(pid);
  if (!start) return std::unexpected(start.error());
  id.start_time = *start;
  auto status = read_proc(pid, "status");
  if (!status) return std::unexpected(status.error());
  if (!parse_status(*status, id))
    return fail(Errc::protocol, "unreadable /proc/" + std::to_string(pid) + "/status");
  const std::string dir = "/proc/" + std::to_string(pid);
  struct stat exe {};
  if (stat((dir + "/exe").c_str(), &exe) != 0) {
    if (errno == EACCES || errno == EPERM)
      return fail(Errc::not_permitted, "not permitted to inspect process " + std::to_string(pid) +
                                           " (another user's process)");
    return fail(Errc::not_permitted,
                "process " + std::to_string(pid) +
                    " has no readable executable (a kernel thread, exiting, or executing a new "
                    "program right now)");
  }
  id.exe_dev = exe.st_dev;
  id.exe_ino = exe.st_ino;
  // The kernel gives the files in /proc/PID to the process's effective ids while it is
  // dumpable, and to root otherwise (task_dump_owner): exact for every process not
  // running as root.
  struct stat d {};
  if (stat((dir + "/status").c_str(), &d) != 0)
    return fail(Errc::not_found, "no such process " + std::to_string(pid));
  id.dumpable = d.st_uid == id.uid[1] && d.st_gid == id.gid[1];
  return id;
}

Result<void> check_same_process(pid_t pid, const ProcessIdentity& before,
                                const ProcessIdentity& now) {
  const std::string p = "process " + std::to_string(pid);
  if (now.start_time != before.start_time)
    return fail(Errc::not_permitted,
                p + " is not the process that was checked (it exited and its pid was reused)");
  if (now.exe_dev != before.exe_dev || now.exe_ino != before.exe_ino)
    return fail(Errc::not_permitted,
                p + " executed another program since it was checked; refusing to attach");
  return {};
}

Result<void> check_may_attach(pid_t pid, const ProcessIdentity& id, const Requester& who) {
  if (who.uid == 0) return {};
  const std::string refused = "uid " + std::to_string(who.uid) +
                              " is not permitted to attach to process " + std::to_string(pid) +
                              ": ";
  for (uid_t x : id.uid)
    if (x != who.uid)
      return fail(Errc::not_permitted, refused + "it runs with " + ids_text("uids", id.uid) +
                                           " (real/effective/saved/fs; another user's process, "
                                           "or a setuid program)");
  const gid_t g = who.gid.value_or(id.gid[0]);
  for (gid_t x : id.gid)
    if (x != g)
      return fail(Errc::not_permitted, refused + "it runs with " + ids_text("gids", id.gid) +
                                           " (real/effective/saved/fs), not all " +
                                           std::to_string(g) + " (a setgid program?)");
  if (id.cap_prm != 0 || id.cap_eff != 0)
    return fail(Errc::not_permitted,
                refused + "it holds capabilities (a file-capability program?)");
  if (!id.dumpable)
    return fail(Errc::not_permitted, refused +
                                         "it is not dumpable (prctl PR_SET_DUMPABLE 0, or "
                                         "it ran a privileged program)");
  return {};
}

}  // namespace dynamos::core
