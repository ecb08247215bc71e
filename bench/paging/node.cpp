#include "bench/paging/node.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "kernelside/memory.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::paging_bench {

Result<TempDir> TempDir::create(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return fail_errno("mkdtemp " + tmpl);
  return TempDir(tmpl);
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

OwnedGroup::~OwnedGroup() {
  if (auto r = group_.remove_tree(kernelside::Evict::kill); !r)
    std::fprintf(stderr, "removing cgroup %s: %s\n", group_.path().c_str(),
                 r.error().message().c_str());
}

Result<std::unique_ptr<Job>> Job::start(const JobSpec& spec, kernelside::Group group,
                                        const std::string& dir, const std::string& name) {
  std::unique_ptr<Job> job(new Job(std::move(group), name));
  job->progress_path_ = dir + "/" + name + ".progress";
  job->output_path_ = dir + "/" + name + ".out";
  std::vector<std::string> args = {
      spec.sweep,
      "--mem",
      std::to_string(spec.memory),
      spec.iterations ? "--iterations" : "--seconds",
      spec.iterations ? std::to_string(spec.iterations) : std::to_string(spec.seconds),
      "--pattern",
      spec.pattern,
      "--seed",
      std::to_string(spec.seed),
      "--progress-file",
      job->progress_path_,
      "--quiet"};
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return fail_errno("pipe for job " + name);
  pid_t pid = ::fork();
  if (pid < 0) return fail_errno("fork job " + name);
  if (pid == 0) {
    // Wait until the parent has put us into the job's cgroup: not a byte outside it.
    char c;
    ::close(go[1]);
    if (::read(go[0], &c, 1) != 1) ::_exit(127);
    int out = ::open(job->output_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out >= 0) ::dup2(out, 1);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "exec %s failed\n", argv[0]);
    ::_exit(127);
  }
  ::close(go[0]);
  job->pid_ = pid;
  auto attached = job->group_.attach(pid);
  if (!attached) {
    ::close(go[1]);
    return std::unexpected(with_context(attached.error(), "starting job " + name));
  }
  char c = 1;
  bool sent = ::write(go[1], &c, 1) == 1;
  ::close(go[1]);
  if (!sent) return fail_errno("starting job " + name);
  return job;
}

Job::~Job() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    (void)group_.thaw();
    ::waitpid(pid_, nullptr, 0);
  }
}

void Job::kill() {
  if (pid_ <= 0 || reaped_) return;
  ::kill(pid_, SIGKILL);
  (void)group_.thaw();
  ::waitpid(pid_, &status_, 0);
  reaped_ = true;
}

bool Job::exited() {
  if (reaped_) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = status;
  }
  return reaped_;
}

Result<void> Job::wait_running(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (exited()) return fail(Errc::state, "job " + name_ + " exited before running");
    if (!have_progress_) {
      if (auto r = workload::ProgressReader::open(progress_path_)) {
        progress_ = std::move(*r);
        have_progress_ = true;
      }
    }
    if (auto s = sample(); s && s->state == workload::ProgressState::running && s->pid == pid_)
      return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return fail(Errc::timed_out, "job " + name_ + " did not start running within " +
                                   std::to_string(timeout.count()) + " ms");
}

Result<workload::ProgressSample> Job::sample() const {
  return progress_.sample();
}

Result<workload::ResultFields> Job::finish(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exited()) {
    if (std::chrono::steady_clock::now() > deadline)
      return fail(Errc::timed_out, "job " + name_ + " did not finish in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::ifstream in(output_path_);
  std::stringstream text;
  text << in.rdbuf();
  auto r = workload::find_result_line(text.str());
  if (!r)
    return std::unexpected(
        with_context(r.error(), "job " + name_ + " (exit status " + std::to_string(status_) + ")"));
  return r;
}

uint64_t major_faults(pid_t pid) {
  auto s = kernelside::read_stat(pid);
  return s ? s->majflt : 0;
}

std::string program_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

namespace {
std::string run(const std::string& command) {
  std::string out;
  FILE* f = ::popen((command + " 2>&1").c_str(), "r");
  if (!f) return "cannot run " + command;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f))
    out += buf;
  int status = ::pclose(f);
  if (status != 0) out += "(exit status " + std::to_string(status) + ")";
  return out;
}
}  // namespace

SwapSetup::SwapSetup(const std::string& source_dir, const std::string& size)
    : script_(source_dir + "/scripts/zram-swap.sh") {
  // Always registered as a holder: swap set up by the script for someone else stays up
  // while we run; swap that was active before the script is never touched by it.
  message_ = run(script_ + " up --size " + size + " --holder " + std::to_string(::getpid()));
  created_ = true;
  auto swap = kernelside::swap_info();
  active_ = swap && swap->present;
}

SwapSetup::~SwapSetup() {
  if (created_) run(script_ + " down --holder " + std::to_string(::getpid()));
}

}  // namespace dynamos::paging_bench
