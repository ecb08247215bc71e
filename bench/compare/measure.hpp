// The comparison's arithmetic, pure: what the harness computes from the samples it took
// of a run (gangd's job states, rank 0's progress counters) and from the runs' results.
// No I/O here; tests/compare checks each function on hand-made samples.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dynamos::compare {

// One look at a job while it runs (every 50 ms).
struct JobSample {
  double t = 0;            // seconds, monotonic
  bool running = false;    // gangd: running (vs frozen)
  bool computing = false;  // the workload had set up its data (progress state running)
  std::uint64_t work = 0;  // rank 0's work counter
  std::uint64_t iterations = 0;
  double updated = 0;  // when the workload last counted work (s, same clock; 0: no file yet)
};

// The quanta of a job that began and ended with the job frozen: (Q seconds running, work
// done). Their work is exact, since nothing moves while frozen; Q is taken between the
// midpoints of the samples on either side of each edge. A quantum still running at the
// last sample (the job ended in it) is left out.
std::vector<std::pair<double, double>> frozen_quanta(const std::vector<JobSample>& samples);

// The best rate of rank 0 over a window of at least `window_s` inside one running stretch
// (work per second; 0 when no stretch is that long).
double best_rate(const std::vector<JobSample>& samples, double window_s = 0.9);

// Mean lost time per switch: the mean over quanta of Q - W/r0. NaN without quanta or r0.
double lost_per_switch(const std::vector<std::pair<double, double>>& quanta, double r0);
// The same per quantum.
std::vector<double> lost_per_quantum(const std::vector<std::pair<double, double>>& quanta,
                                     double r0);

// Switch gaps of two jobs sampled at the same times (a[k] and b[k] one look): a switch
// is a job progressing again after at least `idle_s` without (it was suspended) while the
// other one was the last to progress; its gap runs from the other's last progress to this
// job's first (the workloads' own time stamps, so to within one sample). Both jobs
// progressing for a moment is no switch.
std::vector<double> switch_gaps(const std::vector<JobSample>& a, const std::vector<JobSample>& b,
                                double idle_s);
// The share of looks at which both jobs progressed, of those at which either did (0
// when neither ever did).
double overlap_share(const std::vector<JobSample>& a, const std::vector<JobSample>& b);

// Makespan from gangd's times (ns): first submission to last end; `fallback_s` when
// either is unknown.
double makespan_s(std::uint64_t first_submit_ns, std::uint64_t last_end_ns, double fallback_s);

// a / b when b > 0, else NaN: makespans and lost times against the first policy's.
double ratio(double a, double b);

// Median of the values (NaN when there are none).
double median(std::vector<double> values);

// A job's output file holds this run's output only: `start_output` truncates it (or
// creates it) and writes a first line naming the run; the launcher then appends the job's
// output after it. `this_runs_output` is the text after that line, or nullopt when the
// file does not start with it (a stale file, or one another run wrote over).
std::string output_marker(std::string_view run);
bool start_output(const std::string& path, std::string_view run);
std::optional<std::string> this_runs_output(std::string_view text, std::string_view run);

}  // namespace dynamos::compare
