#include "kernelside/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <climits>
#include <cstring>

namespace dynamos::kernelside {

namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back()))
    s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::string> read_text(const std::string& path) {
  UniqueFd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.get() < 0) return fail_errno("open " + path);
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(f.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<void> write_text(const std::string& path, std::string_view value) {
  UniqueFd f{::open(path.c_str(), O_WRONLY | O_CLOEXEC)};
  if (f.get() < 0) return fail_errno("open " + path + " for writing");
  ssize_t n;
  do {
    n = ::write(f.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail_errno("write '" + std::string(trim(value)) + "' to " + path);
  if (static_cast<size_t>(n) != value.size())
    return fail(Errc::system, "short write of '" + std::string(trim(value)) + "' to " + path);
  return {};
}

Result<uint64_t> read_u64(const std::string& path) {
  return read_parsed(path, parse_u64, "read");
}

Result<std::map<std::string, uint64_t>> read_flat_keyed(const std::string& path) {
  return read_parsed(path, parse_flat_keyed, "parse");
}

namespace {

// The names in a directory (without "." and "..") that keep(dir, entry) accepts.
template <typename Keep>
Result<std::vector<std::string>> names_in(const std::string& path, Keep keep) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return fail_errno("open directory " + path);
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0 && keep(d, *e))
      names.emplace_back(e->d_name);
    errno = 0;  // readdir reports an error only through errno
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return fail_errno(err, "read directory " + path);
  return names;
}

}  // namespace

Result<std::vector<std::string>> list_dir(const std::string& path) {
  return names_in(path, [](DIR*, const dirent&) { return true; });
}

Result<std::vector<std::string>> list_subdirs(const std::string& path) {
  return names_in(path, [](DIR* d, const dirent& e) {
    if (e.d_type != DT_UNKNOWN) return e.d_type == DT_DIR;
    struct stat st;
    return ::fstatat(::dirfd(d), e.d_name, &st, 0) == 0 && S_ISDIR(st.st_mode);
  });
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Result<uint64_t> parse_u64(std::string_view text) {
  std::string_view t = trim(text);
  if (t == "max") return UINT64_MAX;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc{} || p != t.data() + t.size())
    return fail(Errc::protocol, "expected a number, got '" + std::string(t) + "'");
  return v;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) {
      lines.push_back(text);
      break;
    }
    lines.push_back(text.substr(0, nl));
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::vector<std::string_view> split_words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_blank(text[i]))
      ++i;
    size_t start = i;
    while (i < text.size() && !is_blank(text[i]))
      ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

Result<std::map<std::string, uint64_t>> parse_flat_keyed(std::string_view text) {
  std::map<std::string, uint64_t> out;
  for (auto line : split_lines(text)) {
    auto w = split_words(line);
    if (w.empty()) continue;
    if (w.size() != 2)
      return fail(Errc::protocol, "expected 'key value', got '" + std::string(line) + "'");
    auto v = parse_u64(w[1]);
    if (!v) return fail(Errc::protocol, "expected 'key value', got '" + std::string(line) + "'");
    out[std::string(w[0])] = *v;
  }
  return out;
}

Result<std::map<std::string, uint64_t>> parse_colon_keyed(std::string_view text) {
  std::map<std::string, uint64_t> out;
  for (auto line : split_lines(text)) {
    if (trim(line).empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      return fail(Errc::protocol, "expected 'Key: value', got '" + std::string(line) + "'");
    auto w = split_words(line.substr(colon + 1));
    if (w.empty() || w.size() > 2 || (w.size() == 2 && w[1] != "kB")) continue;  // e.g. VmFlags
    auto v = parse_u64(w[0]);
    if (!v) continue;  // non-numeric fields (THPeligible in old kernels, names) are not counters
    out[std::string(trim(line.substr(0, colon)))] = w.size() == 2 ? *v * 1024 : *v;
  }
  return out;
}

}  // namespace dynamos::kernelside
