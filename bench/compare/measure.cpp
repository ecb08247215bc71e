#include "bench/compare/measure.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>

namespace dynamos::compare {

std::vector<std::pair<double, double>> frozen_quanta(const std::vector<JobSample>& s) {
  std::vector<std::pair<double, double>> quanta;
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    if (!(s[i].running && !s[i - 1].running && s[i - 1].computing)) continue;
    std::size_t k = i;
    while (k + 1 < s.size() && s[k + 1].running)
      ++k;
    if (k + 1 >= s.size()) break;  // still running at the end: it ended in this quantum
    const auto& before = s[i - 1];
    const auto& after = s[k + 1];
    double q = (s[k].t + after.t) / 2 - (before.t + s[i].t) / 2;
    double work = static_cast<double>(after.work - before.work);
    if (q > 0) quanta.emplace_back(q, work);
    i = k;
  }
  return quanta;
}

double best_rate(const std::vector<JobSample>& s, double window_s) {
  double best = 0;
  for (std::size_t a = 0; a < s.size(); ++a) {
    if (!s[a].running || !s[a].computing) continue;
    for (std::size_t b = a + 1; b < s.size() && s[b].running; ++b)
      if (s[b].t - s[a].t >= window_s) {
        best = std::max(best, (s[b].work - s[a].work) / (s[b].t - s[a].t));
        break;
      }
  }
  return best;
}

std::vector<double> lost_per_quantum(const std::vector<std::pair<double, double>>& quanta,
                                     double r0) {
  std::vector<double> lost;
  if (!(r0 > 0)) return lost;
  for (const auto& [q, work] : quanta)
    lost.push_back(q - work / r0);
  return lost;
}

double lost_per_switch(const std::vector<std::pair<double, double>>& quanta, double r0) {
  auto lost = lost_per_quantum(quanta, r0);
  if (lost.empty()) return NAN;
  double sum = 0;
  for (double l : lost)
    sum += l;
  return sum / static_cast<double>(lost.size());
}

std::vector<double> switch_gaps(const std::vector<JobSample>& a, const std::vector<JobSample>& b,
                                double idle_s) {
  const std::vector<JobSample>* s[2] = {&a, &b};
  const std::size_t n = std::min(a.size(), b.size());
  double last[2] = {NAN, NAN};  // each job's last progress (or its first look)
  int progressing = -1;         // the job that progressed last
  std::vector<double> gaps;
  for (std::size_t k = 0; k < n; ++k)
    for (int i = 0; i < 2; ++i) {
      const JobSample& x = (*s[i])[k];
      if (x.updated <= 0) continue;
      const bool moved = k > 0 && (*s[i])[k - 1].updated > 0 && x.work > (*s[i])[k - 1].work;
      if (!moved) {
        if (std::isnan(last[i])) last[i] = x.updated;
        continue;
      }
      const int other = 1 - i;
      if (!std::isnan(last[i]) && !std::isnan(last[other]) && x.updated - last[i] >= idle_s &&
          progressing == other)
        gaps.push_back(x.updated - last[other]);
      progressing = i;
      last[i] = x.updated;
    }
  return gaps;
}

double overlap_share(const std::vector<JobSample>& a, const std::vector<JobSample>& b) {
  const std::size_t n = std::min(a.size(), b.size());
  unsigned both = 0, any = 0;
  for (std::size_t k = 1; k < n; ++k) {
    const bool ma = a[k - 1].updated > 0 && a[k].work > a[k - 1].work;
    const bool mb = b[k - 1].updated > 0 && b[k].work > b[k - 1].work;
    both += ma && mb;
    any += ma || mb;
  }
  return any ? static_cast<double>(both) / any : 0.0;
}

double makespan_s(std::uint64_t first_submit_ns, std::uint64_t last_end_ns, double fallback_s) {
  if (first_submit_ns == 0 || first_submit_ns == UINT64_MAX || last_end_ns <= first_submit_ns)
    return fallback_s;
  return static_cast<double>(last_end_ns - first_submit_ns) / 1e9;
}

double ratio(double a, double b) {
  return b > 0 ? a / b : NAN;
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::string output_marker(std::string_view run) {
  return "# dynamos bench compare: output of run " + std::string(run) + "\n";
}

bool start_output(const std::string& path, std::string_view run) {
  std::ofstream f(path, std::ios::out | std::ios::trunc);
  f << output_marker(run);
  return static_cast<bool>(f.flush());
}

std::optional<std::string> this_runs_output(std::string_view text, std::string_view run) {
  const std::string marker = output_marker(run);
  if (!text.starts_with(marker)) return std::nullopt;
  return std::string(text.substr(marker.size()));
}

}  // namespace dynamos::compare
