// A minimal JSON object writer for the extension's reports (no dependency crosses the
// extension boundary; the host only appends the text).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace dynamos::cyclesteal {

class JsonObject {
 public:
  JsonObject& add(std::string_view key, std::string_view value) {
    key_(key);
    quote(value);
    return *this;
  }
  JsonObject& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  JsonObject& add(std::string_view key, bool value) {
    key_(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  JsonObject& add(std::string_view key, uint64_t value) {
    key_(key);
    out_ += std::to_string(value);
    return *this;
  }
  JsonObject& add(std::string_view key, int value) {
    key_(key);
    out_ += std::to_string(value);
    return *this;
  }
  JsonObject& add(std::string_view key, double value) {
    key_(key);
    if (!std::isfinite(value)) {
      out_ += "null";
      return *this;
    }
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.6g", value);
    out_ += buf;
    return *this;
  }
  JsonObject& add_null(std::string_view key) {
    key_(key);
    out_ += "null";
    return *this;
  }
  // A value that is JSON text already (a nested object or array).
  JsonObject& add_raw(std::string_view key, std::string_view json) {
    key_(key);
    out_ += json;
    return *this;
  }
  std::string str() const { return "{" + out_ + "}"; }

 private:
  void key_(std::string_view k) {
    if (!out_.empty()) out_ += ',';
    quote(k);
    out_ += ':';
  }
  void quote(std::string_view s) {
    out_ += '"';
    for (char c : s) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out_ += buf;
      } else {
        out_ += c;
      }
    }
    out_ += '"';
  }
  std::string out_;
};

}  // namespace dynamos::cyclesteal
