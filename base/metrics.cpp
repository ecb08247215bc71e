#include "base/metrics.hpp"
#include "base/names.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace dynamos::metrics {

namespace {

const char* type_name(Type t) {
  static constexpr const char* kNames[] = {"counter", "gauge", "histogram"};  // in enum order
  return enum_name(kNames, t, "untyped");
}

Labels sorted(Labels labels) {
  std::sort(labels.begin(), labels.end());
  return labels;
}

// Go's strconv formatting that Prometheus reads: integers without a fraction,
// others with enough digits to read back, and +Inf/-Inf/NaN spelled its way.
std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else {
    // The shortest of 15..17 digits that reads back as the same double.
    for (int digits = 15; digits <= 17; ++digits) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
  }
  return buf;
}

// Backslash and newline escaped; double quotes too in label values.
std::string escape(const std::string& text, bool quotes) {
  std::string out;
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quotes)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

std::string escape_help(const std::string& help) {
  return escape(help, false);
}

std::string label_text(const Labels& labels, const std::string& extra_name = {},
                       const std::string& extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return {};
  std::string out = "{";
  bool first = true;
  auto put = [&](const std::string& k, const std::string& v) {
    if (!first) out += ',';
    first = false;
    out += k + "=\"" + escape_label_value(v) + "\"";
  };
  for (const auto& [k, v] : labels)
    put(k, v);
  if (!extra_name.empty()) put(extra_name, extra_value);
  return out + "}";
}

}  // namespace

Buckets latency_buckets() {
  return {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::string escape_label_value(const std::string& value) {
  return escape(value, true);
}

Registry::Family& Registry::family(const std::string& name, Type type, const std::string& help,
                                   const Buckets& buckets) {
  auto [it, fresh] = families_.try_emplace(name, Family{type, help, buckets, {}});
  if (!fresh && it->second.type != type)
    throw std::logic_error("metric " + name + " used as " + type_name(type) + " and as " +
                           type_name(it->second.type));
  return it->second;
}

void Registry::add(const std::string& name, const std::string& help, double amount,
                   const Labels& labels) {
  if (!(amount >= 0)) return;
  std::lock_guard lock(mutex_);
  family(name, Type::counter, help).series[sorted(labels)].value += amount;
}

void Registry::set_counter(const std::string& name, const std::string& help, double total,
                           const Labels& labels) {
  std::lock_guard lock(mutex_);
  auto& s = family(name, Type::counter, help).series[sorted(labels)];
  s.value = std::max(s.value, total);  // a counter never goes back
}

void Registry::set(const std::string& name, const std::string& help, double value,
                   const Labels& labels) {
  std::lock_guard lock(mutex_);
  family(name, Type::gauge, help).series[sorted(labels)].value = value;
}

void Registry::observe(const std::string& name, const std::string& help, double value,
                       const Buckets& buckets, const Labels& labels) {
  std::lock_guard lock(mutex_);
  Family& f = family(name, Type::histogram, help, buckets);
  Series& s = f.series[sorted(labels)];
  if (s.counts.empty()) s.counts.assign(f.buckets.size(), 0);
  auto bucket = std::lower_bound(f.buckets.begin(), f.buckets.end(), value);
  if (bucket != f.buckets.end()) ++s.counts[static_cast<std::size_t>(bucket - f.buckets.begin())];
  s.value += value;
  ++s.count;
}

void Registry::clear(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (auto it = families_.find(name); it != families_.end()) it->second.series.clear();
}

void Registry::add_collector(std::function<void(Registry&)> collect) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collect));
}

std::string Registry::render() {
  std::vector<std::function<void(Registry&)>> collectors;
  {
    std::lock_guard lock(mutex_);
    collectors = collectors_;
  }
  for (auto& collect : collectors)
    collect(*this);

  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + name + " " + type_name(f.type) + "\n";
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::histogram) {
        out += name + label_text(labels) + " " + number(s.value) + "\n";
        continue;
      }
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < f.buckets.size(); ++i) {
        cumulative += s.counts[i];
        out += name + "_bucket" + label_text(labels, "le", number(f.buckets[i])) + " " +
               std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket" + label_text(labels, "le", "+Inf") + " " + std::to_string(s.count) +
             "\n";
      out += name + "_sum" + label_text(labels) + " " + number(s.value) + "\n";
      out += name + "_count" + label_text(labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace dynamos::metrics
