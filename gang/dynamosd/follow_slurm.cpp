#include "gang/dynamosd/follow_slurm.hpp"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "base/log.hpp"
#include "base/units.hpp"
#include "gang/daemon_options.hpp"
#include "gang/dynamosd/follow_scan.hpp"
#include "kernelside/fs.hpp"
#include "kernelside/sched.hpp"

namespace po = boost::program_options;

namespace dynamos::gang::follow {

namespace {

using Clock = std::chrono::steady_clock;
using kernelside::UniqueFd;

struct Options {
  std::string dir, log_path, slurmstepd;
  std::chrono::nanoseconds poll{}, rescan{}, tick{}, settle{};
};

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Sleeps for `d` unless stop is requested first.
void nap(std::stop_token stop, std::chrono::nanoseconds d) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock l(m);
  cv.wait_for(l, stop, d, [] { return false; });
}

struct Followed {
  JobRecord record;  // paging "demand" when the job gave no option
  bool has_record = false;
  std::vector<pid_t> pids;
  bool suspended = false;
  std::optional<Clock::time_point> resumed_at;  // running again, resume not yet handled
  Clock::duration resume_window{};
  std::set<pid_t> idle;       // guest processes already at SCHED_IDLE
  std::string memory_cgroup;  // of its first process: the node's memory limit, if any
};

class Follower {
 public:
  Follower(Options o, core::ExtensionHost* host, std::string paging)
      : o_(std::move(o)), host_(host), paging_(std::move(paging)) {}

  // Opens the switch log for appending; its directory is made (0755) when missing, as
  // /run/dynamos is on a fresh boot.
  Result<void> open_log() {
    auto slash = o_.log_path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      auto dir = o_.log_path.substr(0, slash);
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return fail_errno("mkdir " + dir);
    }
    log_ = UniqueFd(
        ::open(o_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (log_.get() < 0) return fail_errno("--follow-log " + o_.log_path);
    return {};
  }

  void poll_loop(std::stop_token stop) {
    auto next_rescan = Clock::now();
    last_poll_ = Clock::now();
    while (!stop.stop_requested()) {
      if (Clock::now() >= next_rescan) {
        rescan();
        next_rescan = Clock::now() + o_.rescan;
      }
      poll();
      nap(stop, o_.poll);
    }
  }

  void tick_loop(std::stop_token stop) {
    std::string last_error;
    while (!stop.stop_requested()) {
      nap(stop, o_.tick);
      std::vector<core::Subject> running;
      {
        std::lock_guard l(mu_);
        for (auto& [id, j] : jobs_)
          if (!j.suspended) running.push_back(subject(id, j));
      }
      for (const auto& s : running)
        if (auto r = host_->tick(paging_, s); !r && r.error().message() != last_error) {
          last_error = r.error().message();
          log::warning("paging tick of Slurm job " + std::to_string(s.id) + ": " + last_error);
        }
    }
  }

 private:
  core::Subject subject(std::uint64_t id, const Followed& j) const {
    core::Subject s;
    s.kind = DYNAMOS_SUBJECT_JOB;
    s.id = id;
    s.name = "slurm-" + std::to_string(id);
    s.pids.assign(j.pids.begin(), j.pids.end());
    s.policy = j.record.paging;
    if (!j.memory_cgroup.empty()) s.attrs.emplace_back("node_cgroup", j.memory_cgroup);
    return s;
  }

  // The jobs of this node now, their records, guest priority; ended jobs go.
  void rescan() {
    std::map<std::string, std::string> bad;
    auto records = read_records(o_.dir, &bad);
    if (!records && records.error().message() != records_error_) {
      records_error_ = records.error().message();
      log::warning(records_error_ + " (jobs follow with demand paging)");
    }
    for (const auto& [name, why] : bad)
      if (reported_bad_.insert(name + why).second)
        log::warning("job record " + o_.dir + "/" + name + " ignored: " + why);
    auto scan = scan_jobs(o_.slurmstepd);
    std::lock_guard l(mu_);
    freezers_.forget_all();
    for (const auto& [id, pids] : scan.jobs)
      freezers_.learn(pids);
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      if (scan.jobs.count(it->first)) {
        ++it;
        continue;
      }
      event(it->first, it->second, "end", Clock::duration{});
      it = jobs_.erase(it);
    }
    for (auto& [id, pids] : scan.jobs) {
      auto [it, fresh] = jobs_.try_emplace(id);
      Followed& j = it->second;
      j.pids = std::move(pids);
      if (!j.pids.empty()) j.memory_cgroup = freezers_.memory_cgroup(j.pids.front());
      if (records)
        if (auto r = records->find(id); r != records->end()) {
          if (!j.has_record || fresh)
            log::info("Slurm job " + std::to_string(id) + ": paging " + r->second.paging +
                      (r->second.guest ? ", guest" : ""));
          j.record = r->second;
          j.has_record = true;
        }
      if (fresh && !started_) adopt(id, j);
      if (j.record.guest) make_idle(id, j);
    }
    started_ = true;
  }

  // A job found at dynamosd's start: suspended ones get their working set recorded.
  void adopt(std::uint64_t id, Followed& j) {
    std::size_t live = 0;
    if (!job_suspended(j.pids, &live, &freezers_)) return;
    j.suspended = true;
    event(id, j, "adopt-suspended", Clock::duration{});
  }

  void make_idle(std::uint64_t id, Followed& j) {
    for (pid_t p : j.pids) {
      if (j.idle.count(p)) continue;
      auto r = kernelside::set_process_policy(p, kernelside::Policy::idle);
      if (r)
        j.idle.insert(p);
      else if (r.error().code != Errc::not_found)
        log::warning("guest Slurm job " + std::to_string(id) + ": " + r.error().message());
    }
  }

  // The state of every job's processes. Suspends are handled at once; a resume waits
  // (at most --follow-settle) until no other job runs, because Slurm may resume the
  // incoming job a poll or two before the outgoing one stops, and the incoming job's
  // switch_in pages out the job suspended in the same time slice.
  void poll() {
    auto t0 = Clock::now();
    std::lock_guard l(mu_);
    std::vector<std::uint64_t> suspended;
    for (auto& [id, j] : jobs_) {
      bool now = job_suspended(j.pids, nullptr, &freezers_);
      if (now && j.resumed_at) {
        j.resumed_at.reset();  // stopped again before its resume was handled
      } else if (now && !j.suspended) {
        suspended.push_back(id);
      } else if (!now && j.suspended) {
        j.suspended = false;
        j.resumed_at = Clock::now();
        j.resume_window = Clock::now() - last_poll_;
      }
    }
    auto window = Clock::now() - last_poll_;
    poll_cost_ = Clock::now() - t0;
    for (auto id : suspended) {
      jobs_[id].suspended = true;
      event(id, jobs_[id], "suspend", window);
    }
    for (auto& [id, j] : jobs_) {
      if (!j.resumed_at) continue;
      bool others_run = false;
      for (const auto& [other, o] : jobs_)
        others_run |= other != id && !o.suspended && !o.resumed_at;
      settle_ = Clock::now() - *j.resumed_at;
      if (others_run && settle_ < o_.settle) continue;
      j.resumed_at.reset();
      event(id, j, "resume", j.resume_window);
    }
    settle_ = {};
    last_poll_ = Clock::now();
  }

  // Queues one event for the hook thread: the poll thread never waits for paging.
  void event(std::uint64_t id, Followed& j, const char* what, Clock::duration window) {
    Event e{what, subject(id, j), Clock::now(), {}};
    e.record = {{"time", unix_now()},      {"job", id},
                {"event", what},           {"policy", j.record.paging},
                {"guest", j.record.guest}, {"processes", j.pids.size()},
                {"detect_ms", ms(window)}, {"poll_ms", ms(poll_cost_)},
                {"settle_ms", ms(settle_)}};
    log::info("Slurm job " + std::to_string(id) + " " + what + " (detected within " +
              std::to_string(ms(window)) + " ms)");
    std::lock_guard l(queue_mu_);
    queue_.push_back(std::move(e));
    queue_cv_.notify_one();
  }

 public:
  // Runs the paging extension for each event in order and writes its record; drains
  // what is queued before it stops.
  void hook_loop(std::stop_token stop) {
    for (;;) {
      Event e;
      {
        std::unique_lock l(queue_mu_);
        queue_cv_.wait(l, stop, [&] { return !queue_.empty(); });
        if (queue_.empty()) return;  // stopped
        e = std::move(queue_.front());
        queue_.pop_front();
      }
      run_hook(e);
    }
  }

 private:
  struct Event {
    std::string what;
    core::Subject subject;
    Clock::time_point queued;
    nlohmann::ordered_json record;
  };

  void run_hook(Event& e) {
    std::string error;
    nlohmann::json report;
    auto t0 = Clock::now();
    if (host_ && !paging_.empty()) {
      Result<std::string> r = e.what == "resume" ? host_->switch_in(paging_, e.subject)
                              : e.what == "end"  ? host_->detach(paging_, e.subject)
                                                 : host_->switch_out(paging_, e.subject);
      if (!r)
        error = r.error().message();
      else if (!r->empty())
        report = nlohmann::json::parse(*r, nullptr, false);
    }
    e.record["queue_ms"] = ms(t0 - e.queued);
    e.record["hook_ms"] = ms(Clock::now() - t0);
    e.record["paging"] = report.is_discarded() ? nlohmann::json() : report;
    e.record["error"] = error;
    if (!error.empty())
      log::warning("Slurm job " + std::to_string(e.subject.id) + " " + e.what + ": " + error);
    std::string line = e.record.dump() + "\n";
    if (::write(log_.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      log::warning("--follow-log " + o_.log_path + ": short write");
  }

  Options o_;
  core::ExtensionHost* host_;
  std::string paging_;
  UniqueFd log_;
  std::mutex mu_;
  std::map<std::uint64_t, Followed> jobs_;
  Freezers freezers_;
  bool started_ = false;
  Clock::time_point last_poll_;
  Clock::duration poll_cost_{};
  Clock::duration settle_{};  // how long the resume being handled waited
  std::string records_error_;
  std::set<std::string> reported_bad_;
  std::mutex queue_mu_;
  std::condition_variable_any queue_cv_;
  std::deque<Event> queue_;
};

Result<Options> options_of(const po::variables_map& vm) {
  Options o;
  if (auto mode = vm["follow"].as<std::string>(); mode != "slurm")
    return fail(Errc::invalid_argument, "--follow: unknown scheduler '" + mode + "' (slurm)");
  o.dir = vm["follow-dir"].as<std::string>();
  o.log_path = vm["follow-log"].as<std::string>();
  // /proc/PID/exe names the file itself (Debian: /usr/sbin/slurmstepd-wlm, through the
  // alternatives' symlinks)
  auto stepd = vm["slurmstepd"].as<std::string>();
  char real[PATH_MAX];
  if (!::realpath(stepd.c_str(), real)) return fail_errno("--slurmstepd " + stepd);
  o.slurmstepd = real;
  for (auto [name, out] : {std::pair{"follow-poll", &o.poll}, std::pair{"follow-rescan", &o.rescan},
                           std::pair{"tick", &o.tick}, std::pair{"follow-settle", &o.settle}}) {
    auto d = duration_option(vm, name);
    if (!d) return std::unexpected(d.error());
    if (d->count() <= 0)
      return fail(Errc::invalid_argument, std::string("--") + name + " must be positive");
    *out = *d;
  }
  return o;
}

}  // namespace

void add_options(po::options_description& opts) {
  // clang-format off
  opts.add_options()
      ("follow", po::value<std::string>(),
       "slurm: follow Slurm's own suspends and resumes of the jobs on this node and page "
       "at them (no gangd; --node and --secret are not needed)")
      ("follow-dir", po::value<std::string>()->default_value("/run/dynamos/slurm"),
       "where dynamos_spank.so writes the jobs' choices (its plugstack.conf dir=)")
      ("follow-log", po::value<std::string>()->default_value("/run/dynamos/follow-slurm.jsonl"),
       "switch records, one JSON line each")
      ("follow-poll", po::value<std::string>()->default_value("10ms"),
       "how often the jobs' process states are read")
      ("follow-settle", po::value<std::string>()->default_value("100ms"),
       "how long a resume waits for the job Slurm suspends in the same time slice")
      ("follow-rescan", po::value<std::string>()->default_value("250ms"),
       "how often the jobs, their processes and records are looked up")
      ("slurmstepd", po::value<std::string>()->default_value("/usr/sbin/slurmstepd"),
       "the slurmstepd program (a job's processes are its descendants)");
  // clang-format on
}

int run(const po::variables_map& vm, core::ExtensionHost* host, const std::string& paging) {
  auto o = options_of(vm);
  if (!o) return daemon_error("dynamosd", o.error().message());
  Follower f(*o, host, paging);
  if (auto r = f.open_log(); !r) return daemon_error("dynamosd", r.error().message());
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // the threads inherit it; sigwait below
  log::notice("following Slurm: records " + o->dir + ", switch log " + o->log_path +
              (paging.empty() ? ", no paging extension" : ", paging extension " + paging));
  // declared first, stopped last: it drains the events the poller queued
  std::jthread hooks([&f](std::stop_token s) { f.hook_loop(s); });
  std::jthread poller([&f](std::stop_token s) { f.poll_loop(s); });
  std::jthread ticker;
  if (host && !paging.empty()) ticker = std::jthread([&f](std::stop_token s) { f.tick_loop(s); });
  int sig = 0;
  sigwait(&set, &sig);
  log::notice("signal " + std::to_string(sig) + ", stopping (no job is stopped by dynamosd)");
  return 0;  // the jthreads stop and join here
}

}  // namespace dynamos::gang::follow
