// dynamos kernel: the operator's side of the kernel engine (kernelside/module/).
// It talks to /dev/dynamos, a transaction file: write one command, read its
// reply on the same descriptor; a failed command fails the write with an errno
// and leaves "error: <why>" as the reply. Loading update modules stays insmod.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "cli/command.hpp"

namespace po = boost::program_options;

namespace {

using dynamos::Errc;
using dynamos::Result;

constexpr const char* kDefaultDevice = "/dev/dynamos";

// One open descriptor on the control device; every command is a write + read.
class KernelControl {
 public:
  static Result<KernelControl> open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT)
        return dynamos::fail(Errc::not_found,
                             "open " + path + ": no such device (is dynamos_kernel.ko loaded?)");
      return dynamos::fail_errno("open " + path);
    }
    return KernelControl(fd, path);
  }
  KernelControl(KernelControl&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  KernelControl(const KernelControl&) = delete;
  KernelControl& operator=(const KernelControl&) = delete;
  ~KernelControl() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Runs one command and returns the reply; on failure the kernel's reason.
  Result<std::string> run(const std::string& command) {
    ssize_t n = ::write(fd_, command.data(), command.size());
    int err = errno;
    auto reply = read_all();
    if (n < 0) {
      std::string why = reply && reply->starts_with("error: ") ? trim(reply->substr(7)) : "";
      if (why.empty()) return dynamos::fail_errno(err, "write '" + command + "' to " + path_);
      return std::unexpected(dynamos::Error{errc_of(err), err, why});
    }
    if (!reply) return reply;
    return trim(*reply);
  }

  Result<std::string> status() {
    auto reply = run("status");
    if (reply && !reply->empty()) *reply += "\n";
    return reply;
  }

 private:
  KernelControl(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  static Errc errc_of(int err) {
    switch (err) {
      case ENOENT:
        return Errc::not_found;
      case EBUSY:
        return Errc::busy;
      case EINVAL:
        return Errc::invalid_argument;
      case EALREADY:
        return Errc::state;
      case EPERM:
      case EACCES:
        return Errc::not_permitted;
      default:
        return Errc::system;
    }
  }

  static std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
      s.pop_back();
    return s;
  }

  Result<std::string> read_all() {
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n < 0) return dynamos::fail_errno("read " + path_);
      if (n == 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }

  int fd_;
  std::string path_;
};

struct ProbeFigures {
  long long calls = 0, total_ns = 0, missed = 0;
};

// "probe NAME calls=N total_ns=N missed=N" lines of the status.
std::map<std::string, ProbeFigures> parse_probes(const std::string& status) {
  std::map<std::string, ProbeFigures> out;
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string kind, name, field;
    words >> kind >> name;
    if (kind != "probe") continue;
    ProbeFigures f;
    while (words >> field) {
      auto eq = field.find('=');
      if (eq == std::string::npos) continue;
      long long value = std::stoll(field.substr(eq + 1));
      auto key = field.substr(0, eq);
      if (key == "calls") f.calls = value;
      if (key == "total_ns") f.total_ns = value;
      if (key == "missed") f.missed = value;
    }
    out[name] = f;
  }
  return out;
}

// Waits `seconds`, returning early on SIGINT or SIGTERM so that probes are removed.
void wait_interruptibly(double seconds) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  timespec ts{static_cast<time_t>(seconds),
              static_cast<long>((seconds - static_cast<time_t>(seconds)) * 1e9)};
  sigtimedwait(&set, nullptr, &ts);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

const char* kUsage =
    "usage: dynamos kernel status\n"
    "       dynamos kernel switch FUNC VERSION [FUNC VERSION...]\n"
    "       dynamos kernel revert ID\n"
    "       dynamos kernel probe FUNC... [--seconds S]\n\n"
    "Drives the DynAMOS kernel engine (dynamos_kernel.ko) through its control device.\n"
    "switch: one update, all functions or none; VERSION 'original' restores the\n"
    "original; prints the update's id. revert: restores what update ID replaced.\n"
    "probe: counts and times calls of kernel functions for S seconds.\n"
    "Update modules that provide versions are loaded with insmod/modprobe.\n\n";

int run_kernel(std::span<const std::string> args) {
  const std::string cmd = "kernel";
  po::options_description opts("options");
  opts.add_options()("help,h", "show this help")(
      "device", po::value<std::string>()->default_value(kDefaultDevice), "control device")(
      "seconds", po::value<double>()->default_value(1.0), "probe: how long to count");
  po::options_description hidden;
  hidden.add_options()("words", po::value<std::vector<std::string>>()->default_value({}, ""), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("words", -1);

  po::variables_map vm;
  try {
    std::vector<std::string> argv(args.begin(), args.end());
    po::store(po::command_line_parser(argv).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    return dynamos::cli::error(cmd, e.what(), 2);
  }
  auto words = vm["words"].as<std::vector<std::string>>();
  if (vm.count("help")) {
    std::cout << kUsage << opts;
    return 0;
  }
  if (words.empty()) return dynamos::cli::error(cmd, "missing subcommand (try --help)", 2);
  const std::string sub = words[0];
  words.erase(words.begin());

  // Usage errors are reported before the device is touched.
  bool usage_ok = (sub == "status" && words.empty()) ||
                  (sub == "switch" && !words.empty() && words.size() % 2 == 0) ||
                  (sub == "revert" && words.size() == 1) || (sub == "probe" && !words.empty());
  if (!usage_ok) {
    if (sub != "status" && sub != "switch" && sub != "revert" && sub != "probe")
      return dynamos::cli::error(cmd, "unknown subcommand '" + sub + "' (try --help)", 2);
    return dynamos::cli::error(cmd, sub + ": wrong arguments (try --help)", 2);
  }
  auto control = KernelControl::open(vm["device"].as<std::string>());
  if (!control) return dynamos::cli::error(cmd, control.error().message());

  if (sub == "status") {
    if (!words.empty()) return dynamos::cli::error(cmd, "status takes no arguments", 2);
    auto status = control->status();
    if (!status) return dynamos::cli::error(cmd, status.error().message());
    std::cout << (status->empty() ? "nothing redirected, no probes\n" : *status);
    return 0;
  }
  if (sub == "switch") {
    if (words.empty() || words.size() % 2)
      return dynamos::cli::error(cmd, "switch needs FUNC VERSION pairs", 2);
    std::string line = "switch";
    for (const auto& w : words)
      line += " " + w;
    auto reply = control->run(line);
    if (!reply) return dynamos::cli::error(cmd, "switch: " + reply.error().message());
    auto at = reply->find("update=");
    if (at == std::string::npos)
      return dynamos::cli::error(cmd, "switch: unexpected reply '" + *reply + "'");
    std::cout << "update " << reply->substr(at + 7) << ":";
    for (size_t i = 0; i < words.size(); i += 2)
      std::cout << " " << words[i] << " -> " << words[i + 1];
    std::cout << "\n";
    return 0;
  }
  if (sub == "revert") {
    if (words.size() != 1) return dynamos::cli::error(cmd, "revert needs one update ID", 2);
    auto reply = control->run("revert " + words[0]);
    if (!reply)
      return dynamos::cli::error(cmd, "revert " + words[0] + ": " + reply.error().message());
    std::cout << "update " << words[0] << " reverted\n";
    return 0;
  }
  if (sub == "probe") {
    if (words.empty()) return dynamos::cli::error(cmd, "probe needs at least one FUNC", 2);
    double seconds = vm["seconds"].as<double>();
    if (!(seconds > 0)) return dynamos::cli::error(cmd, "--seconds must be positive", 2);
    std::vector<std::string> added;
    int status = 0;
    for (const auto& f : words) {
      auto reply = control->run("probe " + f);
      if (!reply) {
        status = dynamos::cli::error(cmd, "probe: " + reply.error().message());
        break;
      }
      added.push_back(f);
    }
    std::map<std::string, ProbeFigures> figures;
    if (status == 0) {
      wait_interruptibly(seconds);
      auto snapshot = control->status();
      if (!snapshot)
        status = dynamos::cli::error(cmd, snapshot.error().message());
      else
        figures = parse_probes(*snapshot);
    }
    for (const auto& f : added) {
      auto reply = control->run("unprobe " + f);
      if (!reply) status = dynamos::cli::error(cmd, "unprobe: " + reply.error().message());
    }
    if (status != 0) return status;
    std::printf("%-24s %12s %14s %12s %8s\n", "function", "calls", "calls/s", "avg ns", "missed");
    for (const auto& f : added) {
      const auto& p = figures[f];
      std::printf("%-24s %12lld %14.0f %12.0f %8lld\n", f.c_str(), p.calls, p.calls / seconds,
                  p.calls ? static_cast<double>(p.total_ns) / p.calls : 0.0, p.missed);
    }
    return 0;
  }
  return dynamos::cli::error(cmd, "unknown subcommand '" + sub + "' (try --help)", 2);
}

}  // namespace

DYNAMOS_COMMAND(kernel, "kernel", "switch, revert and probe kernel functions (kernel engine)",
                run_kernel);
