#include "bench/compare/json.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace dynamos::compare {

namespace {

const Json& null_json() {
  static const Json n;
  return n;
}

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {}

  Result<Json> document() {
    auto v = value(0);
    if (!v) return v;
    space();
    if (i_ != t_.size()) return error("text after the value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;

  std::unexpected<Error> error(const std::string& what) const {
    return fail(Errc::invalid_argument, "JSON: " + what + " at offset " + std::to_string(i_));
  }
  void space() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r'))
      ++i_;
  }
  bool literal(std::string_view word) {
    if (t_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  Result<Json> value(int depth) {
    if (depth > kMaxDepth) return error("nesting too deep");
    space();
    if (i_ >= t_.size()) return error("unexpected end");
    char c = t_[i_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') {
      auto s = string();
      if (!s) return std::unexpected(s.error());
      return Json(std::move(*s));
    }
    if (literal("true")) return Json(true);
    if (literal("false")) return Json(false);
    if (literal("null")) return Json();
    return number();
  }

  Result<Json> number() {
    std::size_t start = i_;
    if (i_ < t_.size() && (t_[i_] == '-' || t_[i_] == '+')) ++i_;
    while (i_ < t_.size() && (std::isdigit(static_cast<unsigned char>(t_[i_])) || t_[i_] == '.' ||
                              t_[i_] == 'e' || t_[i_] == 'E' || t_[i_] == '-' || t_[i_] == '+'))
      ++i_;
    if (i_ == start) return error("unexpected character '" + std::string(1, t_[i_]) + "'");
    std::string text(t_.substr(start, i_ - start));
    char* end = nullptr;
    double d = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !std::isfinite(d))
      return error("bad number '" + text + "'");
    return Json(d);
  }

  Result<std::string> string() {
    ++i_;  // opening quote
    std::string out;
    while (i_ < t_.size()) {
      char c = t_[i_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= t_.size()) break;
      char e = t_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          if (i_ + 4 > t_.size()) return error("short \\u escape");
          unsigned cp = 0;
          for (int k = 0; k < 4; ++k) {
            char h = t_[i_++];
            cp <<= 4;
            if (h >= '0' && h <= '9')
              cp |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f')
              cp |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F')
              cp |= static_cast<unsigned>(h - 'A' + 10);
            else
              return error("bad \\u escape");
          }
          // UTF-8 (surrogate pairs are kept as two 3-byte sequences: good enough here).
          if (cp < 0x80) {
            out += static_cast<char>(cp);
          } else if (cp < 0x800) {
            out += static_cast<char>(0xc0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3f));
          } else {
            out += static_cast<char>(0xe0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
          }
          break;
        }
        default:
          return error(std::string("bad escape \\") + e);
      }
    }
    return error("unterminated string");
  }

  Result<Json> array(int depth) {
    ++i_;
    Json::Array a;
    space();
    if (i_ < t_.size() && t_[i_] == ']') {
      ++i_;
      return Json(std::move(a));
    }
    for (;;) {
      auto v = value(depth + 1);
      if (!v) return v;
      a.push_back(std::move(*v));
      space();
      if (i_ >= t_.size()) return error("unterminated array");
      if (t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (t_[i_] == ']') {
        ++i_;
        return Json(std::move(a));
      }
      return error("expected ',' or ']'");
    }
  }

  Result<Json> object(int depth) {
    ++i_;
    Json::Object o;
    space();
    if (i_ < t_.size() && t_[i_] == '}') {
      ++i_;
      return Json(std::move(o));
    }
    for (;;) {
      space();
      if (i_ >= t_.size() || t_[i_] != '"') return error("expected a key");
      auto k = string();
      if (!k) return std::unexpected(k.error());
      space();
      if (i_ >= t_.size() || t_[i_] != ':') return error("expected ':'");
      ++i_;
      auto v = value(depth + 1);
      if (!v) return v;
      o.insert_or_assign(std::move(*k), std::move(*v));
      space();
      if (i_ >= t_.size()) return error("unterminated object");
      if (t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (t_[i_] == '}') {
        ++i_;
        return Json(std::move(o));
      }
      return error("expected ',' or '}'");
    }
  }

  std::string_view t_;
  std::size_t i_ = 0;
};

}  // namespace

double Json::number(double fallback) const {
  if (auto* d = std::get_if<double>(&v_)) return *d;
  return fallback;
}
bool Json::boolean(bool fallback) const {
  if (auto* b = std::get_if<bool>(&v_)) return *b;
  return fallback;
}
std::string Json::string(std::string fallback) const {
  if (auto* s = std::get_if<std::string>(&v_)) return *s;
  return fallback;
}
const Json::Array& Json::array() const {
  static const Array empty;
  if (auto* a = std::get_if<std::shared_ptr<Array>>(&v_)) return **a;
  return empty;
}
const Json::Object& Json::object() const {
  static const Object empty;
  if (auto* o = std::get_if<std::shared_ptr<Object>>(&v_)) return **o;
  return empty;
}
const Json& Json::operator[](std::string_view key) const {
  const auto& o = object();
  auto it = o.find(key);
  return it == o.end() ? null_json() : it->second;
}
bool Json::has(std::string_view key) const {
  return object().contains(key);
}

Result<Json> parse_json(std::string_view text) {
  return Parser(text).document();
}

Result<std::vector<Json>> parse_json_lines(std::string_view text) {
  std::vector<Json> out;
  std::size_t start = 0, line = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    auto l = text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    ++line;
    if (l.find_first_not_of(" \t\r") != std::string_view::npos) {
      auto v = parse_json(l);
      if (!v) return std::unexpected(with_context(v.error(), "line " + std::to_string(line)));
      out.push_back(std::move(*v));
    }
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

}  // namespace dynamos::compare
