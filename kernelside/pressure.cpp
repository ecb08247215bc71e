#include "kernelside/pressure.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <charconv>

#include "kernelside/fs.hpp"

namespace dynamos::kernelside {

const char* resource_name(Resource r) {
  // In the order of enum class Resource.
  static constexpr std::array<const char*, 3> kNames = {"cpu", "memory", "io"};
  auto i = static_cast<size_t>(r);
  return i < kNames.size() ? kNames[i] : "?";
}

namespace {

std::string system_path(Resource r) {
  return std::string("/proc/pressure/") + resource_name(r);
}

Result<double> parse_double(std::string_view s, std::string_view line) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size())
    return fail(Errc::protocol, "bad number in pressure line '" + std::string(line) + "'");
  return v;
}

Result<PressureLine> parse_line(std::string_view line) {
  PressureLine out;
  auto words = split_words(line);
  bool seen[4] = {};
  for (size_t i = 1; i < words.size(); ++i) {
    auto w = words[i];
    size_t eq = w.find('=');
    if (eq == std::string_view::npos)
      return fail(Errc::protocol,
                  "expected key=value in pressure line '" + std::string(line) + "'");
    auto key = w.substr(0, eq), val = w.substr(eq + 1);
    if (key == "total") {
      auto v = parse_u64(val);
      if (!v) return fail(Errc::protocol, "bad total in pressure line '" + std::string(line) + "'");
      out.total_us = *v;
      seen[3] = true;
      continue;
    }
    auto v = parse_double(val, line);
    if (!v) return std::unexpected(v.error());
    if (key == "avg10")
      out.avg10 = *v, seen[0] = true;
    else if (key == "avg60")
      out.avg60 = *v, seen[1] = true;
    else if (key == "avg300")
      out.avg300 = *v, seen[2] = true;
  }
  for (bool s : seen)
    if (!s) return fail(Errc::protocol, "incomplete pressure line '" + std::string(line) + "'");
  return out;
}

}  // namespace

Result<Pressure> parse_pressure(std::string_view text) {
  Pressure p;
  bool have_some = false;
  for (auto line : split_lines(text)) {
    auto words = split_words(line);
    if (words.empty()) continue;
    auto parsed = parse_line(line);
    if (!parsed) return std::unexpected(parsed.error());
    if (words[0] == "some")
      p.some = *parsed, have_some = true;
    else if (words[0] == "full")
      p.full = *parsed;
    else
      return fail(Errc::protocol, "unknown pressure line '" + std::string(line) + "'");
  }
  if (!have_some) return fail(Errc::protocol, "pressure text has no 'some' line");
  return p;
}

bool psi_available() {
  return path_exists("/proc/pressure/cpu");
}

Result<Pressure> read_pressure_file(const std::string& path) {
  auto text = read_text(path);
  if (!text) {
    // With psi=0 the files exist in cgroups but reads fail with EOPNOTSUPP.
    if (text.error().sys_errno == ENOENT || text.error().sys_errno == EOPNOTSUPP)
      return fail(Errc::unsupported, "PSI not available (" + text.error().message() +
                                         "): the kernel needs CONFIG_PSI=y and, if built with "
                                         "CONFIG_PSI_DEFAULT_DISABLED, the boot option psi=1");
    return std::unexpected(text.error());
  }
  auto p = parse_pressure(*text);
  if (!p) return std::unexpected(with_context(p.error(), "parse " + path));
  return p;
}

Result<Pressure> read_pressure(Resource r) {
  return read_pressure_file(system_path(r));
}

Result<PressureSampler> PressureSampler::open(Resource r) {
  return open_file(system_path(r));
}

Result<PressureSampler> PressureSampler::open_file(std::string path) {
  PressureSampler s(std::move(path));
  auto p = read_pressure_file(s.path_);
  if (!p) return std::unexpected(p.error());
  s.last_ = *p;
  s.last_time_ = std::chrono::steady_clock::now();
  return s;
}

Result<PressureSampler::Sample> PressureSampler::sample() {
  auto p = read_pressure_file(path_);
  if (!p) return std::unexpected(p.error());
  auto now = std::chrono::steady_clock::now();
  Sample s;
  s.interval = now - last_time_;
  double us = std::chrono::duration<double, std::micro>(s.interval).count();
  if (us > 0) {
    s.some = static_cast<double>(p->some.total_us - last_.some.total_us) / us;
    if (p->full && last_.full)
      s.full = static_cast<double>(p->full->total_us - last_.full->total_us) / us;
    if (s.some > 1) s.some = 1;
    if (s.full > 1) s.full = 1;
  }
  last_ = *p;
  last_time_ = now;
  return s;
}

Result<PressureTrigger> PressureTrigger::open(Resource r, Kind kind,
                                              std::chrono::microseconds stall,
                                              std::chrono::microseconds window) {
  return open_file(system_path(r), kind, stall, window);
}

Result<PressureTrigger> PressureTrigger::open_file(const std::string& path, Kind kind,
                                                   std::chrono::microseconds stall,
                                                   std::chrono::microseconds window) {
  if (window < std::chrono::milliseconds(500) || window > std::chrono::seconds(10))
    return fail(Errc::invalid_argument, "PSI trigger window " + std::to_string(window.count()) +
                                            " us out of range 500 ms..10 s");
  if (stall.count() <= 0 || stall > window)
    return fail(Errc::invalid_argument, "PSI trigger stall " + std::to_string(stall.count()) +
                                            " us must be positive and at most the window");
  int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return fail(Errc::unsupported, "PSI not available: " + path + " does not exist");
    return fail_errno("open " + path + " for a PSI trigger");
  }
  std::string spec = std::string(kind == Kind::some ? "some " : "full ") +
                     std::to_string(stall.count()) + " " + std::to_string(window.count());
  // The trigger string must go in one write, with its terminating NUL.
  if (::write(fd, spec.c_str(), spec.size() + 1) < 0) {
    int err = errno;
    ::close(fd);
    std::string hint = err == EINVAL && window.count() % 2000000 != 0
                           ? " (without CAP_SYS_RESOURCE the window must be a multiple of 2 s)"
                           : "";
    return fail_errno(err, "register PSI trigger '" + spec + "' on " + path + hint);
  }
  return PressureTrigger(fd, path);
}

Result<bool> PressureTrigger::wait(std::chrono::milliseconds timeout) {
  pollfd p{fd_.get(), POLLPRI, 0};
  int n;
  do {
    n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail_errno("poll PSI trigger on " + path_);
  if (p.revents & POLLERR)
    return fail(Errc::state, "PSI trigger on " + path_ + " was invalidated (cgroup removed?)");
  return (p.revents & POLLPRI) != 0;
}

}  // namespace dynamos::kernelside
