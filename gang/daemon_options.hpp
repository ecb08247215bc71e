// Command lines of the gang daemons (gangd, dynamosd): options from the command line
// and from a `--config` file of `key = value` lines, and address:port values.
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "base/error.hpp"
#include "base/file.hpp"
#include "base/log.hpp"
#include "base/units.hpp"

namespace dynamos::gang {

// Parses the command line, then the file named by --config (if any; the command line
// wins), then notifies. The error's message is ready to print after "PROGRAM: ".
inline Result<void> parse_daemon_options(int argc, char** argv,
                                         const boost::program_options::options_description& opts,
                                         boost::program_options::variables_map& vm) {
  namespace po = boost::program_options;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    if (vm.count("config")) {
      auto path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) return fail(Errc::not_found, "cannot open config file " + path);
      po::store(po::parse_config_file(in, opts), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    return fail(Errc::invalid_argument, std::string(e.what()) + " (try --help)");
  }
  return {};
}

// Prints "PROGRAM: message" to standard error; returns the exit status 1.
inline int daemon_error(const char* program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program, message.c_str());
  return 1;
}

// The start of a daemon's main: parses the options (parse_daemon_options; an error is
// printed as "PROGRAM: message") and answers --help. Returns the exit status when the
// program is done, nullopt when it goes on.
inline std::optional<int> parse_daemon_command_line(
    const char* program, int argc, char** argv,
    const boost::program_options::options_description& opts,
    boost::program_options::variables_map& vm) {
  (void)close_on_exec_from_3();  // nothing the daemon inherited reaches its children
  if (auto parsed = parse_daemon_options(argc, argv, opts, vm); !parsed)
    return daemon_error(program, parsed.error().message());
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  return std::nullopt;
}

// Names the program in log lines and sets the level given by --log-level.
inline Result<void> set_daemon_log(const char* program,
                                   const boost::program_options::variables_map& vm) {
  log::set_program(program);
  auto level = log::parse_level(vm["log-level"].as<std::string>());
  if (!level) return std::unexpected(level.error());
  log::set_level(*level);
  return {};
}

// The duration option `--name` (base/units.hpp syntax); the error names the option.
inline Result<std::chrono::nanoseconds> duration_option(
    const boost::program_options::variables_map& vm, const char* name) {
  auto d = parse_duration(vm[name].as<std::string>());
  if (!d) return std::unexpected(with_context(d.error(), std::string("--") + name));
  return d;
}

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
};

// "address:port" given to `option` (for messages); port 0 only when `allow_zero`
// (a listener taking any free port).
inline Result<Endpoint> parse_endpoint(const std::string& text, const std::string& option,
                                       bool allow_zero) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos)
    return fail(Errc::invalid_argument, option + ": expected address:port, got '" + text + "'");
  std::string port_text = text.substr(colon + 1);
  int port = -1;
  try {
    std::size_t used = 0;
    port = std::stoi(port_text, &used);
    if (used != port_text.size()) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < (allow_zero ? 0 : 1) || port > 65535)
    return fail(Errc::invalid_argument, option + ": '" + port_text + "' is not a port number");
  return Endpoint{text.substr(0, colon), static_cast<std::uint16_t>(port)};
}

}  // namespace dynamos::gang
