// Metrics in Prometheus's text exposition format (version 0.0.4): a registry of
// counters, gauges and histograms, each a family of series told apart by labels.
// Daemons keep one Registry, update it where things happen, refresh gauges that are
// read from the kernel in a collector run at scrape time, and serve render() on
// /metrics (gang/metrics_server.hpp).
//
// Names follow Prometheus's conventions: dynamos_ prefix, base units (seconds, bytes),
// counters end in _total. A family's type and help are fixed by its first use; a name
// used again with another type is a programming error and throws std::logic_error.
// Thread-safe: one mutex per registry (updates are rare next to the work they count).
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace dynamos::metrics {

// Label pairs, e.g. {{"job", "3"}, {"node", "n1"}}; order does not matter.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class Type { counter, gauge, histogram };

// Upper bounds of a histogram's buckets, in the metric's unit (+Inf is implied).
using Buckets = std::vector<double>;
// 0.5 ms .. 10 s, for latencies in seconds.
Buckets latency_buckets();

class Registry {
 public:
  // Counters only go up: `add` refuses (ignores) a negative amount.
  void add(const std::string& name, const std::string& help, double amount = 1,
           const Labels& labels = {});
  void set(const std::string& name, const std::string& help, double value,
           const Labels& labels = {});
  // A counter read from elsewhere (a kernel file) at scrape time: its current total.
  void set_counter(const std::string& name, const std::string& help, double total,
                   const Labels& labels = {});
  void observe(const std::string& name, const std::string& help, double value,
               const Buckets& buckets, const Labels& labels = {});
  // Forget every series of a gauge family (before a collector writes the current set).
  void clear(const std::string& name);

  // Runs at the start of every render(), outside the registry's lock.
  void add_collector(std::function<void(Registry&)> collect);

  // The whole registry in the text format, families sorted by name.
  std::string render();

 private:
  struct Series {
    double value = 0;                   // counter, gauge; histogram: sum
    std::vector<std::uint64_t> counts;  // histogram: per bucket (not cumulative)
    std::uint64_t count = 0;            // histogram: observations
  };
  struct Family {
    Type type;
    std::string help;
    Buckets buckets;
    std::map<Labels, Series> series;
  };
  Family& family(const std::string& name, Type type, const std::string& help,
                 const Buckets& buckets = {});

  std::mutex mutex_;
  std::map<std::string, Family> families_;
  std::vector<std::function<void(Registry&)>> collectors_;
};

// A label value or help text escaped for the text format.
std::string escape_label_value(const std::string& value);

}  // namespace dynamos::metrics
