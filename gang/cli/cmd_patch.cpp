// dynamos patch | revert | updates: live updates of another running process.
#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "core/engine.hpp"
#include "core/remote.hpp"
#include "core/symbols.hpp"
#include "gang/cli/command.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::core;

namespace {

Result<pid_t> parse_pid(const std::string& s) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v <= 0 || v > 1 << 22)
    return fail(Errc::invalid_argument, "'" + s + "' is not a process id");
  return static_cast<pid_t>(v);
}

// The dynamic linker hands out the already loaded object for a path it has seen,
// even when the file was rebuilt since. So each distinct build is loaded from its
// own content-named copy: the same build again reuses its copy (and handle), a new
// build gets a new one.
Result<std::string> content_named_copy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) return fail_errno("read " + path);
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : bytes)
    h = (h ^ c) * 1099511628211ull;
  const std::string dir = "/tmp/dynamos-patches-" + std::to_string(getuid());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(Errc::system, "create " + dir + ": " + ec.message());
  char name[32];
  std::snprintf(name, sizeof name, "%016lx", static_cast<unsigned long>(h));
  const std::string copy =
      dir + "/" + std::filesystem::path(path).stem().string() + "-" + name + ".so";
  if (!std::filesystem::exists(copy)) {
    const std::string tmp = copy + ".tmp" + std::to_string(getpid());
    std::ofstream out(tmp, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) return fail_errno("write " + tmp);
    std::filesystem::permissions(tmp, std::filesystem::perms(0644), ec);
    std::filesystem::rename(tmp, copy, ec);
    if (ec) return fail(Errc::system, "rename " + tmp + ": " + ec.message());
  }
  return copy;
}

// A patch object must exist and be an ELF shared object; say which it is not.
Result<std::string> check_patch_object(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  if (ec || !std::filesystem::exists(abs)) return fail(Errc::not_found, "no such file: " + path);
  int fd = open(abs.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno("open " + path);
  Elf64_Ehdr h{};
  ssize_t n = read(fd, &h, sizeof h);
  close(fd);
  if (n != sizeof h || std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0)
    return fail(Errc::invalid_argument, path + " is not an ELF file");
  if (h.e_type != ET_DYN)
    return fail(Errc::invalid_argument, path + " is not an ELF shared object");
  // A position-independent executable is ET_DYN too; it asks for an interpreter.
  if (std::ifstream f{abs, std::ios::binary}) {
    for (int i = 0; i < h.e_phnum; ++i) {
      Elf64_Phdr ph{};
      f.seekg(static_cast<std::streamoff>(h.e_phoff + i * h.e_phentsize));
      if (!f.read(reinterpret_cast<char*>(&ph), sizeof ph)) break;
      if (ph.p_type == PT_INTERP)
        return fail(Errc::invalid_argument, path + " is an executable, not an ELF shared object");
    }
  }
  return content_named_copy(abs.string());
}

struct Replace {
  std::string symbol;
  std::string object;  // the content-named copy that is loaded
  std::string new_symbol;
  std::string given;  // the path the operator gave
};

Result<Replace> parse_replace(const std::string& spec) {
  // SYM=PATCH.so[:NEWSYM]
  const auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    return fail(Errc::invalid_argument, "--replace '" + spec + "' is not SYM=PATCH.so[:NEWSYM]");
  Replace r;
  r.symbol = spec.substr(0, eq);
  std::string rest = spec.substr(eq + 1);
  const auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(".so", colon) == std::string::npos) {
    r.object = rest.substr(0, colon);
    r.new_symbol = rest.substr(colon + 1);
  } else {
    r.object = rest;
  }
  if (r.new_symbol.empty()) r.new_symbol = r.symbol;
  return r;
}

Result<std::unique_ptr<Engine>> attach_engine(pid_t pid, std::chrono::milliseconds timeout) {
  AttachOptions opts;
  opts.stop_timeout = timeout;
  auto target = RemoteTarget::attach(pid, opts);
  if (!target) return std::unexpected(target.error());
  return Engine::over(std::move(*target));
}

int run_patch(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos patch PID --replace SYM=PATCH.so[:NEWSYM] [--replace ...] [options]\n\n"
      "Loads each PATCH.so into the running process PID (a remote dlopen) and redirects\n"
      "every SYM to NEWSYM (default: SYM) in one update: all switch or none do. SYM is a\n"
      "function of the executable (static ones too when it has a symbol table) or of any\n"
      "loaded library. The process keeps running; its threads are stopped only while the\n"
      "entry jumps and version slots are written. Prints 'update ID' last.\n\noptions");
  std::vector<std::string> replaces;
  std::string mode = "drain";
  long timeout_ms = 2000;
  desc.add_options()("help,h", "show this help")("replace", po::value(&replaces)->composing(),
                                                 "SYM=PATCH.so[:NEWSYM], repeatable")(
      "mode", po::value(&mode)->default_value("drain"),
      "drain: switch now, running calls finish on the old code; quiescent: switch only when no "
      "thread is inside any of the functions")(
      "timeout-ms", po::value(&timeout_ms)->default_value(2000),
      "quiescent mode: give up after this long and name the blocking thread");
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto status = cli::parse_options("patch", args, desc, positional, vm)) return *status;
  if (positional.size() > 1)
    return cli::error("patch", "unexpected argument '" + positional[1] + "'", 2);
  const std::string pid_arg = positional.empty() ? "" : positional[0];
  if (pid_arg.empty()) return cli::error("patch", "missing PID (try --help)", 2);
  if (replaces.empty()) return cli::error("patch", "nothing to do: give at least one --replace", 2);
  auto pid = parse_pid(pid_arg);
  if (!pid) return cli::error("patch", pid.error().message(), 2);
  auto safety = parse_safety_mode(mode);
  if (!safety) return cli::error("patch", safety.error().message(), 2);
  if (timeout_ms <= 0) return cli::error("patch", "--timeout-ms must be positive", 2);

  std::vector<Replace> plan;
  for (const auto& spec : replaces) {
    auto r = parse_replace(spec);
    if (!r) return cli::error("patch", r.error().message(), 2);
    auto obj = check_patch_object(r->object);
    if (!obj) return cli::error("patch", obj.error().message());
    r->given = r->object;
    r->object = *obj;
    plan.push_back(*r);
  }

  cli::prefer_realtime();
  const auto t0 = std::chrono::steady_clock::now();
  auto engine = attach_engine(*pid, std::chrono::milliseconds(1000));
  if (!engine) return cli::error("patch", engine.error().message());
  auto& remote = dynamic_cast<RemoteTarget&>((*engine)->target());

  UpdateRequest req;
  req.mode = *safety;
  req.timeout = std::chrono::milliseconds(timeout_ms);
  std::map<std::string, bool> loaded;
  for (const auto& r : plan) {
    if (!loaded[r.object]) {
      auto h = remote.load_library(r.object);
      if (!h) return cli::error("patch", h.error().message());
      loaded[r.object] = true;
    }
  }
  auto syms = Symbols::load(remote);
  if (!syms) return cli::error("patch", syms.error().message());
  for (const auto& r : plan) {
    auto code = syms->find(r.new_symbol, r.object);
    if (!code)
      return cli::error("patch", "no function named '" + r.new_symbol + "' in " + r.object);
    const std::string version =
        std::filesystem::path(r.given).filename().string() + ":" + r.new_symbol;
    req.redirects.push_back({r.symbol, 0, code->address, version});
  }
  auto id = (*engine)->apply(req);
  if (!id) return cli::error("patch", id.error().message());
  const auto total = std::chrono::steady_clock::now() - t0;
  const double stop_ms = std::chrono::duration<double, std::milli>((*engine)->last_stop()).count();
  std::printf("patched %zu function%s in process %d (%s mode)\n", plan.size(),
              plan.size() == 1 ? "" : "s", *pid, safety_mode_name(*safety));
  std::printf("target stopped for %.3f ms; command took %.1f ms\n", stop_ms,
              std::chrono::duration<double, std::milli>(total).count());
  std::printf("update %lu\n", static_cast<unsigned long>(*id));
  return 0;
}

int run_revert(std::span<const std::string> args) {
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: dynamos revert PID ID [--mode drain|quiescent]\n\n"
                 "Reverts update ID of process PID: the functions it switched go back to the\n"
                 "versions they had before. Refused while a newer update on the same function\n"
                 "is applied (revert that first).\n";
    return 0;
  }
  if (args.size() != 2 && args.size() != 4)
    return cli::error("revert", "usage: dynamos revert PID ID [--mode drain|quiescent]", 2);
  auto pid = parse_pid(args[0]);
  if (!pid) return cli::error("revert", pid.error().message(), 2);
  char* end = nullptr;
  const unsigned long id = std::strtoul(args[1].c_str(), &end, 10);
  if (args[1].empty() || *end || id == 0)
    return cli::error("revert", "'" + args[1] + "' is not an update id", 2);
  SafetyMode mode = SafetyMode::drain;
  if (args.size() == 4) {
    if (args[2] != "--mode") return cli::error("revert", "unknown option '" + args[2] + "'", 2);
    auto m = parse_safety_mode(args[3]);
    if (!m) return cli::error("revert", m.error().message(), 2);
    mode = *m;
  }
  cli::prefer_realtime();
  auto engine = attach_engine(*pid, std::chrono::milliseconds(1000));
  if (!engine) return cli::error("revert", engine.error().message());
  if (auto r = (*engine)->revert(id, mode); !r) return cli::error("revert", r.error().message());
  std::printf("reverted update %lu in process %d; target stopped for %.3f ms\n", id, *pid,
              std::chrono::duration<double, std::milli>((*engine)->last_stop()).count());
  return 0;
}

int run_updates(std::span<const std::string> args) {
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: dynamos updates PID\n\n"
                 "Lists the updates applied to process PID, newest last: id, mode, state, and\n"
                 "for each function the version it left and the version it took. The list is\n"
                 "kept in the process itself, so any later invocation sees it.\n";
    return 0;
  }
  if (args.size() != 1) return cli::error("updates", "usage: dynamos updates PID", 2);
  auto pid = parse_pid(args[0]);
  if (!pid) return cli::error("updates", pid.error().message(), 2);
  cli::prefer_realtime();
  auto engine = attach_engine(*pid, std::chrono::milliseconds(1000));
  if (!engine) return cli::error("updates", engine.error().message());
  const auto points = (*engine)->patch_points();
  const auto updates = (*engine)->updates();
  if (updates.empty()) {
    std::printf("no updates in process %d\n", *pid);
    return 0;
  }
  std::printf("%-6s %-10s %-9s %s\n", "ID", "MODE", "STATE", "FUNCTION: FROM -> TO");
  for (const auto& u : updates) {
    std::string changes;
    for (const auto& s : u.switches) {
      if (s.point >= points.size()) continue;
      const auto& p = points[s.point];
      if (!changes.empty()) changes += ", ";
      changes += p.name + ": " + p.versions.at(s.from).name + " -> " + p.versions.at(s.to).name;
    }
    std::printf("%-6lu %-10s %-9s %s\n", static_cast<unsigned long>(u.id), safety_mode_name(u.mode),
                u.state == UpdateState::applied ? "applied" : "reverted", changes.c_str());
  }
  return 0;
}

}  // namespace

DYNAMOS_COMMAND(patch, "patch", "live-patch functions of a running process from a shared object",
                run_patch);
DYNAMOS_COMMAND(revert, "revert", "revert an update of a running process", run_revert);
DYNAMOS_COMMAND(updates, "updates", "list the updates applied to a running process", run_updates);
