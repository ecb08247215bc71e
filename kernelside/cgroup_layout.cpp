// Layout detection: which hierarchy serves which controller.
#include <array>
#include <fstream>

#include "kernelside/cgroup.hpp"
#include "kernelside/fs.hpp"

namespace dynamos::kernelside {

const char* controller_name(Controller c) {
  // In the order of enum class Controller.
  static constexpr std::array<const char*, kControllerCount> kNames = {
      "cpu", "cpuacct", "cpuset", "memory", "freezer", "pids"};
  auto i = static_cast<unsigned>(c);
  return i < kNames.size() ? kNames[i] : "?";
}

std::string Controllers::names() const {
  std::string out;
  for (unsigned i = 0; i < kControllerCount; ++i) {
    auto c = static_cast<Controller>(i);
    if (!has(c)) continue;
    if (!out.empty()) out += ',';
    out += controller_name(c);
  }
  return out.empty() ? "none" : out;
}

namespace {

std::optional<Controller> controller_from_name(std::string_view name) {
  for (unsigned i = 0; i < kControllerCount; ++i) {
    auto c = static_cast<Controller>(i);
    if (name == controller_name(c)) return c;
  }
  return std::nullopt;
}

bool is_octal(char c) {
  return c >= '0' && c <= '7';
}

// mountinfo escapes blanks and backslashes in paths as \ooo.
std::string unescape_octal(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && is_octal(s[i + 1]) && is_octal(s[i + 2]) &&
        is_octal(s[i + 3])) {
      int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out += static_cast<char>(v);
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

Result<Layout> Layout::parse(std::string_view mountinfo, std::string_view v2_controllers) {
  Layout layout;
  for (auto line : split_lines(mountinfo)) {
    auto words = split_words(line);
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    size_t sep = 0;
    for (size_t i = 6; i < words.size(); ++i)
      if (words[i] == "-") {
        sep = i;
        break;
      }
    if (words.empty()) continue;
    if (sep == 0 || sep + 1 >= words.size()) {
      return fail(Errc::protocol, "malformed mountinfo line '" + std::string(line) + "'");
    }
    auto fstype = words[sep + 1];
    std::string mountpoint = unescape_octal(words[4]);
    if (fstype == "cgroup2") {
      if (layout.v2_root_.empty()) layout.v2_root_ = mountpoint;
    } else if (fstype == "cgroup" && sep + 3 < words.size()) {
      std::string_view opts = words[sep + 3];
      while (!opts.empty()) {
        size_t comma = opts.find(',');
        auto opt = opts.substr(0, comma);
        if (auto c = controller_from_name(opt); c && !layout.v1_roots_.contains(*c))
          layout.v1_roots_[*c] = mountpoint;
        if (comma == std::string_view::npos) break;
        opts.remove_prefix(comma + 1);
      }
    }
  }
  if (!layout.v2_root_.empty()) {
    for (auto w : split_words(v2_controllers))
      if (auto c = controller_from_name(w)) layout.v2_controllers_.add(*c);
    // Core v2 features, present in every group whatever controllers are enabled.
    layout.v2_controllers_.add(Controller::cpuacct);
    layout.v2_controllers_.add(Controller::freezer);
  }
  if (layout.v2_root_.empty() && layout.v1_roots_.empty())
    return fail(Errc::unsupported,
                "no cgroup hierarchy is mounted (no cgroup or cgroup2 in mountinfo)");
  return layout;
}

Result<Layout> Layout::detect() {
  auto mountinfo = read_text("/proc/self/mountinfo");
  if (!mountinfo) return std::unexpected(mountinfo.error());
  auto first = parse(*mountinfo, "");
  if (!first) return first;
  if (first->v2_root_.empty()) return first;
  auto controllers = read_text(first->v2_root_ + "/cgroup.controllers");
  if (!controllers) return std::unexpected(controllers.error());
  return parse(*mountinfo, *controllers);
}

Layout::Kind Layout::kind() const {
  if (v2_root_.empty()) return Kind::v1;
  return v1_roots_.empty() ? Kind::v2 : Kind::hybrid;
}

std::optional<std::string> Layout::v1_root(Controller c) const {
  auto it = v1_roots_.find(c);
  if (it == v1_roots_.end()) return std::nullopt;
  return it->second;
}

bool Layout::v2_has(Controller c) const {
  return !v2_root_.empty() && v2_controllers_.has(c);
}

std::optional<CgroupVersion> Layout::serving(Controller c) const {
  if (v1_roots_.contains(c)) return CgroupVersion::v1;
  if (v2_has(c)) return CgroupVersion::v2;
  return std::nullopt;
}

std::string Layout::root_of(Controller c) const {
  auto v = serving(c);
  if (!v) return "";
  return *v == CgroupVersion::v1 ? v1_roots_.at(c) : v2_root_;
}

Controllers Layout::available() const {
  Controllers out;
  for (unsigned i = 0; i < kControllerCount; ++i)
    if (serving(static_cast<Controller>(i))) out.add(static_cast<Controller>(i));
  return out;
}

Layout Layout::prefer_v2(Controllers which) const {
  Layout copy = *this;
  for (unsigned i = 0; i < kControllerCount; ++i) {
    auto c = static_cast<Controller>(i);
    if (which.has(c) && v2_has(c)) copy.v1_roots_.erase(c);
  }
  return copy;
}

std::string Layout::describe() const {
  static const char* kinds[] = {"v1", "v2", "hybrid"};
  std::string out = kinds[static_cast<int>(kind())];
  out += ":";
  for (auto& [c, root] : v1_roots_)
    out += std::string(" v1 ") + controller_name(c) + "@" + root;
  if (!v2_root_.empty()) {
    Controllers real;
    for (auto c : {Controller::cpu, Controller::cpuset, Controller::memory, Controller::pids})
      if (v2_controllers_.has(c)) real.add(c);
    out += "; v2@" + v2_root_ + " (controllers: " + real.names() + ")";
  }
  return out;
}

Result<std::string> process_cgroup(const Layout& layout, pid_t pid, Controller c) {
  auto version = layout.serving(c);
  if (!version)
    return fail(Errc::unsupported, std::string("no cgroup hierarchy serves ") + controller_name(c));
  std::string path = "/proc/" + std::to_string(pid) + "/cgroup";
  auto text = read_text(path);
  if (!text) return std::unexpected(text.error());
  for (auto line : split_lines(*text)) {
    // hierarchy-id:controller-list:path
    size_t a = line.find(':');
    size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    auto id = line.substr(0, a);
    auto list = line.substr(a + 1, b - a - 1);
    auto cg = line.substr(b + 1);
    if (*version == CgroupVersion::v2) {
      if (id == "0" && list.empty()) return std::string(cg);
      continue;
    }
    while (!list.empty()) {
      size_t comma = list.find(',');
      if (list.substr(0, comma) == controller_name(c)) return std::string(cg);
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return fail(Errc::not_found, std::string("no ") + controller_name(c) + " line in " + path);
}

}  // namespace dynamos::kernelside
