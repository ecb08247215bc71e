// The remote target: another process, reached through ptrace and /proc/PID/mem.
// This file: attaching, memory, the engine's state region, stopping the world.
// See core/target_remote_impl.hpp for the other files and core/remote.hpp for the
// guarantees; the comments here explain the how.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <thread>

#include "core/target_remote_impl.hpp"

namespace dynamos::core {
namespace remote {

namespace {

// Every thread of the target stopped, until destroyed: then the pending slot stores
// and the staged state are written, and every thread resumes (guard), and the tool's
// priority goes back (boost, destroyed after the guard).
class RemoteWorld final : public StoppedWorld {
 public:
  RemoteWorld(RemoteTargetImpl& target, SeizedThreads& threads, PriorityBoost boost,
              ResumeGuard stopped, std::vector<ThreadState> states,
              std::vector<std::vector<Address>> frames)
      : target_(target),
        threads_(threads),
        boost_(std::move(boost)),
        stopped_(std::move(stopped)),
        states_(std::move(states)),
        frames_(std::move(frames)) {
    for (std::size_t i = 0; i < states_.size(); ++i)
      states_[i].frames = frames_[i];
    target_.world_open_ = true;
  }
  ~RemoteWorld() override {
    (void)target_.flush_pending();
    target_.world_open_ = false;
  }
  std::span<const ThreadState> threads() const override { return states_; }
  void set_ip(std::size_t i, Address ip) override {
    Thread& t = threads_.all().at(i);
    t.regs.rip = ip;
    t.regs_dirty = true;
  }

 private:
  RemoteTargetImpl& target_;
  SeizedThreads& threads_;
  PriorityBoost boost_;
  ResumeGuard stopped_;
  std::vector<ThreadState> states_;
  std::vector<std::vector<Address>> frames_;
};

// The return addresses on a stack, conservatively: every word from `sp` up to the top
// of its mapping (at most 64 KiB) that points into executable memory (`exec`) counts.
// Never misses a frame (no unwind tables needed); may see an old pointer and wait
// longer than necessary. Complete only when the scan read up to the top of the stack
// mapping: a scan cut off by the size limit, or one that could not read, is not.
bool scan_stack(int mem_fd, Address sp, const std::vector<Mapping>& maps,
                const std::vector<Mapping>& exec, std::vector<Address>& frames) {
  constexpr std::size_t kMaxWords = 64 * 1024 / 8;
  const Mapping* stack = nullptr;
  for (const auto& m : maps)
    if (sp >= m.begin && sp < m.end) stack = &m;
  if (!stack) return false;
  const std::size_t to_top = (stack->end - sp) / 8;
  const std::size_t want = std::min(kMaxWords, to_top);
  std::vector<std::uint64_t> words(want);
  std::size_t got = 0;
  while (got < want) {
    ssize_t n =
        pread(mem_fd, words.data() + got, (want - got) * 8, static_cast<off_t>(sp + got * 8));
    if (n <= 0) break;
    got += static_cast<std::size_t>(n) / 8;
  }
  for (std::size_t k = 0; k < got; ++k) {
    const Address v = words[k];
    for (const auto& m : exec)
      if (v > m.begin && v <= m.end) {
        frames.push_back(v - 1);
        break;
      }
  }
  return got == to_top;
}

}  // namespace

// The order matters: seize (every later exec is reported), open the memory (bound to
// the program running now), then read the identity: an exec before the read shows in
// it, an exec after the seize is reported, and the memory of a new program is never
// reachable through mem_fd_.
Result<void> RemoteTargetImpl::init(const Requester& who, const ProcessIdentity& checked) {
  if (auto r = threads_.seize_new(); !r) return r;
  if (threads_.all().empty())
    return fail(Errc::not_found, "process " + std::to_string(pid_) + " has no threads");
  mem_fd_ = open(("/proc/" + std::to_string(pid_) + "/mem").c_str(), O_RDWR | O_CLOEXEC);
  if (mem_fd_ < 0) return fail_errno("open /proc/" + std::to_string(pid_) + "/mem");
  // /proc/PID/maps holds the address space it was opened on, as /proc/PID/mem does:
  // opened after mem, a read never lists a program executed later (it reads as empty
  // once the old address space is gone), and the probe below refuses one executed
  // between the two opens.
  maps_fd_ = open(("/proc/" + std::to_string(pid_) + "/maps").c_str(), O_RDONLY | O_CLOEXEC);
  if (maps_fd_ < 0) return fail_errno("open /proc/" + std::to_string(pid_) + "/maps");
  auto now = read_process_identity(pid_);
  if (!now) return std::unexpected(now.error());
  if (auto ok = check_same_process(pid_, checked, *now); !ok) return ok;
  if (auto ok = check_may_attach(pid_, *now, who); !ok) return ok;
  auto maps = mappings();
  if (!maps) return std::unexpected(maps.error());
  if (maps->empty())
    return fail(Errc::not_found, "process " + std::to_string(pid_) + " has no memory");
  probe_at_ = maps->front().begin;
  if (auto ok = same_image(); !ok) return ok;
  return find_state_region();
}

Result<void> RemoteTargetImpl::same_image() {
  threads_.pump_events();
  if (threads_.exec_seen()) return exec_refusal(pid_);
  std::uint8_t byte = 0;
  if (probe_at_ && pread(mem_fd_, &byte, 1, static_cast<off_t>(probe_at_)) != 1) {
    // The address space of the attached program is gone: the process exited, or it
    // executed a new program (its pid lives on).
    if (kill(pid_, 0) != 0 && errno == ESRCH)
      return fail(Errc::not_found, "process " + std::to_string(pid_) + " exited");
    return exec_refusal(pid_);
  }
  return {};
}

namespace {

// The thread ids of the process and whether its root is reachable: both change when a
// thread other than the main one executes a new program (it takes over the main
// thread's id once the others are gone; the exiting main thread lets go of its root).
struct Shape {
  std::vector<pid_t> tasks;
  bool rooted = false;
  bool operator==(const Shape&) const = default;
};

Shape shape_of(pid_t pid) {
  Shape s;
  const std::string proc = "/proc/" + std::to_string(pid);
  char link[PATH_MAX];
  s.rooted = readlink((proc + "/root").c_str(), link, sizeof link) > 0;
  if (DIR* d = opendir((proc + "/task").c_str())) {
    while (auto* e = readdir(d))
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9') s.tasks.push_back(std::atoi(e->d_name));
    closedir(d);
  }
  std::sort(s.tasks.begin(), s.tasks.end());
  return s;
}

}  // namespace

Result<Symbols> RemoteTargetImpl::symbols() {
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  for (;;) {
    const Shape before = shape_of(pid_);
    auto syms = Symbols::load(*this);
    if (auto same = same_image(); !same) return std::unexpected(same.error());
    if (!syms) return syms;
    auto workable = check_workable(pid_, 0);  // refuses a main thread that is a zombie
    const Shape after = shape_of(pid_);
    // Read while nothing moved: the objects are the attached program's, all of them.
    if (workable && after.rooted && before == after && !syms->objects().empty()) return syms;
    if (Clock::now() > deadline) {
      if (!workable) return std::unexpected(workable.error());
      return fail(Errc::unsupported, "the objects of process " + std::to_string(pid_) +
                                         " could not be read while its threads stayed put "
                                         "(main thread exiting, or threads coming and "
                                         "going); not patched");
    }
    // An exec under way ends within moments; same_image() then reports it.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Error RemoteTargetImpl::explain(Error e) {
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  for (;;) {
    if (auto same = same_image(); !same) return same.error();
    // Settled: the main thread holds its root and every thread seized is still there.
    const Shape now = shape_of(pid_);
    bool settled = now.rooted && check_workable(pid_, 0).has_value();
    for (const auto& t : threads_.all())
      if (t.tid > 0 && !std::binary_search(now.tasks.begin(), now.tasks.end(), t.tid))
        settled = false;
    if (settled || Clock::now() > deadline) return e;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void RemoteTargetImpl::detach() {
  threads_.detach_all();
  if (mem_fd_ >= 0) close(mem_fd_), mem_fd_ = -1;
  if (maps_fd_ >= 0) close(maps_fd_), maps_fd_ = -1;
  lock_.reset();
}

// ---- Memory ----

Result<std::vector<Mapping>> RemoteTargetImpl::mappings() {
  std::string text;
  char buf[16384];
  for (off_t at = 0;;) {
    const ssize_t n = pread(maps_fd_, buf, sizeof buf, at);
    if (n < 0) return fail_errno("read /proc/" + std::to_string(pid_) + "/maps");
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
  // Empty once the attached program's address space is gone (it exited or executed
  // another program): say which.
  if (auto same = same_image(); !same) return std::unexpected(same.error());
  return parse_maps(text);
}

Result<void> RemoteTargetImpl::transferred(ssize_t n, std::size_t size, const char* verb,
                                           Address address) const {
  if (n != static_cast<ssize_t>(size))
    return fail_errno(n < 0 ? errno : EIO, std::string(verb) + " " + std::to_string(size) +
                                               " bytes at " + hex(address) + " of process " +
                                               std::to_string(pid_));
  return {};
}

// A transfer that fails after the process executed a new program says so (the memory
// opened at the attach belongs to the old program: nothing reaches the new one).
Result<void> RemoteTargetImpl::read(Address address, std::span<std::uint8_t> out) {
  ssize_t n = pread(mem_fd_, out.data(), out.size(), static_cast<off_t>(address));
  auto r = transferred(n, out.size(), "read", address);
  if (!r)
    if (auto same = same_image(); !same) return same;
  return r;
}

Result<void> RemoteTargetImpl::write(Address address, std::span<const std::uint8_t> bytes) {
  ssize_t n = pwrite(mem_fd_, bytes.data(), bytes.size(), static_cast<off_t>(address));
  auto r = transferred(n, bytes.size(), "write", address);
  if (!r)
    if (auto same = same_image(); !same) return same;
  return r;
}

Result<void> RemoteTargetImpl::store_word(Address address, std::uint64_t value) {
  if (address % 8) return fail(Errc::invalid_argument, "unaligned slot " + hex(address));
  if (world_open_) {
    pending_.push_back({address, value});  // written with the state, before resuming
    return {};
  }
  return write_words({{address, value}});
}

Result<std::uint64_t> RemoteTargetImpl::load_word(Address address) {
  for (auto it = pending_.rbegin(); it != pending_.rend(); ++it)
    if (it->first == address) return it->second;
  std::uint64_t v = 0;
  if (auto r = read(address, {reinterpret_cast<std::uint8_t*>(&v), 8}); !r)
    return std::unexpected(r.error());
  return v;
}

// Through the memory opened at the attach, a word at a time: bound to the attached
// program's address space, so a store never lands in a program executed since (a write
// by pid would), and a failure after an exec says so.
Result<void> RemoteTargetImpl::write_words(
    const std::vector<std::pair<Address, std::uint64_t>>& words) {
  for (const auto& [address, value] : words)
    if (auto r = write(address, {reinterpret_cast<const std::uint8_t*>(&value), 8}); !r)
      return std::unexpected(with_context(r.error(), "write version slots"));
  return {};
}

Result<Address> RemoteTargetImpl::map_fixed(Address address, std::size_t length, int prot) {
  auto r = syscalls({{SYS_mmap,
                      {{address},
                       {length},
                       {static_cast<std::uint64_t>(prot)},
                       {MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE},
                       {~std::uint64_t{0}},
                       {0}}}});
  if (!r) return std::unexpected(r.error());
  const auto got = (*r)[0];
  if (got > ~std::uint64_t{4095})
    return fail_errno(static_cast<int>(-static_cast<long>(got)),
                      "mmap at " + hex(address) + " in process " + std::to_string(pid_));
  if (got != address) return fail(Errc::busy, "mmap at " + hex(address) + " was placed elsewhere");
  return address;
}

// ---- The state region ----

Result<void> RemoteTargetImpl::find_state_region() {
  auto maps = mappings();
  if (!maps) return std::unexpected(maps.error());
  for (const auto& m : *maps) {
    if (m.path.rfind(std::string("/memfd:") + kStateName, 0) != 0 || m.end - m.begin != kStateSize)
      continue;
    StateHeader h;
    if (auto r = read(m.begin, {reinterpret_cast<std::uint8_t*>(&h), sizeof h}); !r) return r;
    if (is_unwritten(h)) continue;  // a killed bootstrap never finished it: make a new one
    if (auto ok = check_state_header(h, pid_); !ok) return ok;
    if (auto ok = check_state_owner(h, pid_); !ok) return ok;
    if (auto ok = check_call_area(h, *maps, pid_); !ok) return ok;
    state_ = m.begin;
    call_area_ = h.call_area;
    generation_ = h.generation;
    current_blob_ = current_blob(h);
    return {};
  }
  return {};
}

Result<std::string> RemoteTargetImpl::load_state() {
  if (!state_) return std::string();
  StateHeader h;
  if (auto r = read(state_, {reinterpret_cast<std::uint8_t*>(&h), sizeof h}); !r)
    return std::unexpected(r.error());
  if (auto ok = check_state_header(h, pid_); !ok) return std::unexpected(ok.error());
  generation_ = h.generation;
  current_blob_ = current_blob(h);
  if (h.blob_length == 0) return std::string();
  std::string blob(h.blob_length, '\0');
  if (auto r =
          read(state_ + h.blob_offset, {reinterpret_cast<std::uint8_t*>(blob.data()), blob.size()});
      !r)
    return std::unexpected(r.error());
  return blob;
}

// The staged state goes into the idle buffer before the world stops (nothing reads that
// buffer: the current one is named by the header, and other tools wait for the lock).
Result<void> RemoteTargetImpl::write_staged_blob() {
  staged_written_ = false;
  if (!staged_ || !state_) return {};
  if (staged_->size() > kBlobMax) {
    staged_.reset();
    return fail(Errc::unsupported, "engine state too large for the state region");
  }
  const int next = 1 - current_blob_;
  if (auto r = write(state_ + kBlobOffset[next],
                     {reinterpret_cast<const std::uint8_t*>(staged_->data()), staged_->size()});
      !r)
    return r;
  staged_written_ = true;
  return {};
}

// Stores the update's slots and the header that makes the staged state current (the
// world is stopped).
Result<void> RemoteTargetImpl::flush_pending() {
  std::vector<std::pair<Address, std::uint64_t>> words = std::move(pending_);
  pending_.clear();
  if (staged_ && staged_written_) {
    const int next = 1 - current_blob_;
    words.push_back({state_ + offsetof(StateHeader, blob_offset), kBlobOffset[next]});
    words.push_back({state_ + offsetof(StateHeader, blob_length), staged_->size()});
    words.push_back({state_ + offsetof(StateHeader, generation), generation_ + 1});
    current_blob_ = next;
    ++generation_;
  }
  staged_.reset();
  staged_written_ = false;
  if (words.empty()) return {};
  return write_words(words);
}

// ---- Stopping the world ----

Result<void> RemoteTargetImpl::scan_stacks(std::vector<ThreadState>& states,
                                           std::vector<std::vector<Address>>& frames) {
  auto maps = mappings();
  if (!maps) return std::unexpected(maps.error());
  std::vector<Mapping> exec;
  for (const auto& m : *maps)
    if (m.executable()) exec.push_back(m);
  for (std::size_t i = 0; i < states.size(); ++i)
    states[i].frames_complete =
        scan_stack(mem_fd_, threads_.all()[i].regs.rsp, *maps, exec, frames[i]);
  return {};
}

Result<std::unique_ptr<StoppedWorld>> RemoteTargetImpl::stop_world(const StopOptions& options) {
  // The state region must exist before the world stops (creating it is a remote call).
  if (!state_)
    if (auto r = bootstrap(); !r) return std::unexpected(r.error());
  if (auto r = write_staged_blob(); !r) return std::unexpected(r.error());
  PriorityBoost boost;
  ResumeGuard stopped(threads_);
  if (auto r = threads_.stop_all(Clock::now() + options.timeout); !r)
    return std::unexpected(r.error());
  if (auto r = same_image(); !r) return std::unexpected(r.error());
  const auto& all = threads_.all();
  std::vector<ThreadState> states(all.size());
  std::vector<std::vector<Address>> frames(all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    states[i].tid = all[i].tid;
    states[i].ip = all[i].regs.rip;
  }
  if (options.with_frames)
    if (auto r = scan_stacks(states, frames); !r) return std::unexpected(r.error());
  return std::unique_ptr<StoppedWorld>(new RemoteWorld(
      *this, threads_, std::move(boost), std::move(stopped), std::move(states), std::move(frames)));
}

}  // namespace remote

Result<std::unique_ptr<RemoteTarget>> RemoteTarget::attach(pid_t pid,
                                                           const AttachOptions& options) {
  if (pid <= 0) return fail(Errc::invalid_argument, "invalid process id " + std::to_string(pid));
  if (pid == getpid()) return fail(Errc::invalid_argument, "use the local engine for this process");
  if (auto ok = check_workable(pid); !ok) return std::unexpected(ok.error());
  // The check: who the process is now. Re-checked once seized (init), against the
  // caller's own check when it made one.
  auto checked =
      options.expect ? Result<ProcessIdentity>(*options.expect) : read_process_identity(pid);
  if (!checked) return std::unexpected(checked.error());
  const Requester who = options.requester.value_or(Requester{getuid(), getgid()});
  if (auto ok = check_may_attach(pid, *checked, who); !ok) return std::unexpected(ok.error());
  // One dynamos at a time per target.
  auto lock = remote::TargetLock::take(pid);
  if (!lock) return std::unexpected(lock.error());
  auto t = std::make_unique<remote::RemoteTargetImpl>(pid, options, std::move(*lock));
  if (auto r = t->init(who, *checked); !r) return std::unexpected(r.error());
  return std::unique_ptr<RemoteTarget>(std::move(t));
}

}  // namespace dynamos::core
