// The remote target's implementation, shared by its files:
//   target_remote.cpp     attach, memory, the state region, stopping the world
//   remote_call.cpp       remote calls (a thread sent through a stub), dlopen, dlsym
//   remote_bootstrap.cpp  the first remote call: creating the call area and state region
// with remote_threads (seizing, stopping, resuming), remote_stubs (the stubs' code),
// remote_state (the state region's layout and checks), elf_slack (where the first stub runs).
// See core/remote.hpp for the guarantees.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/engine.hpp"
#include "core/remote.hpp"
#include "core/remote_identity.hpp"
#include "core/remote_lock.hpp"
#include "core/remote_state.hpp"
#include "core/remote_stubs.hpp"
#include "core/remote_threads.hpp"
#include "core/symbols.hpp"

namespace dynamos::core::remote {

class RemoteTargetImpl final : public RemoteTarget {
 public:
  RemoteTargetImpl(pid_t pid, AttachOptions options, TargetLock lock)
      : pid_(pid), options_(options), lock_(std::move(lock)), threads_(pid) {}
  ~RemoteTargetImpl() override { detach(); }

  // Seizes the threads, opens the memory, re-checks the process against `checked` (its
  // identity read before the seize) and `who`'s rights, finds an existing state region.
  Result<void> init(const Requester& who, const ProcessIdentity& checked);

  pid_t pid() const override { return pid_; }
  Result<std::vector<Mapping>> mappings() override;
  Result<void> read(Address address, std::span<std::uint8_t> out) override;
  Result<void> write(Address address, std::span<const std::uint8_t> bytes) override;
  Result<void> store_word(Address address, std::uint64_t value) override;
  Result<std::uint64_t> load_word(Address address) override;
  Result<Address> map_fixed(Address address, std::size_t length, int prot) override;
  Result<std::unique_ptr<StoppedWorld>> stop_world(const StopOptions& options) override;
  pid_t calling_thread() const override { return 0; }
  ThreadState own_state(bool) const override { return {}; }
  bool always_stop() const override { return true; }

  Result<std::string> load_state() override;
  void stage_state(std::string blob) override { staged_ = std::move(blob); }
  void drop_staged_state() override {
    staged_.reset();
    pending_.clear();
  }

  Result<std::uint64_t> call(Address fn, std::initializer_list<std::uint64_t> args) override;
  Result<void> register_unwind_info(Address eh_frame) override;
  Result<Address> runtime_address(std::string_view name) override;
  Result<Address> load_library(const std::string& path) override;
  Result<Address> put_bytes(const void* data, std::size_t size) override;
  Error explain(Error e) override;
  void detach() override;

  // ---- used by RemoteWorld ----
  // Writes the pending slot stores and the header naming the staged state (all threads
  // stopped; the state itself was written by write_staged_blob before they stopped).
  Result<void> flush_pending();
  bool world_open_ = false;  // slot stores wait in pending_ until the world resumes

 private:
  // Whether a pread or pwrite of the target's memory moved all `size` bytes.
  Result<void> transferred(ssize_t n, std::size_t size, const char* verb, Address address) const;
  Result<void> write_words(const std::vector<std::pair<Address, std::uint64_t>>& words);
  Result<void> find_state_region();
  Result<void> write_staged_blob();
  // Fails once the process executed a new program: reported by ptrace, or the memory
  // opened at the attach (bound to the old program's address space) reads nothing.
  Result<void> same_image();
  // The target's symbols, read through /proc/PID/root. That path needs the main thread:
  // when it is gone (another thread executing a new program, or the process exiting),
  // objects read as missing. Waits a moment for the outcome and says what happened
  // rather than reporting a function as missing.
  Result<Symbols> symbols();
  // Each thread's stack, scanned for return addresses (with_frames).
  Result<void> scan_stacks(std::vector<ThreadState>& states,
                           std::vector<std::vector<Address>>& frames);

  // Remote calls (remote_call.cpp).
  Result<std::vector<std::uint64_t>> syscalls(const std::vector<SyscallStep>& steps);
  // Stops `t` where a stub may take it over (not inside our stubs, nor, with
  // check_locks, inside malloc or the dynamic loader), retrying until `deadline`.
  Result<ResumeGuard> stop_for_call(Thread& t, Clock::time_point deadline, bool check_locks);
  // Sends `t` through `stub` (made for the address it resumes at) and waits for the
  // mailbox's done flag.
  using MakeStub = std::function<std::vector<std::uint8_t>(Address resume)>;
  Result<void> run_on_thread(Thread& t, Address stub_at, Address done_at, const MakeStub& make_stub,
                             bool check_locks);
  Result<bool> inside_locked_code(const Thread& t);
  bool in_our_code(Address ip) const {
    return (call_area_ && ip >= call_area_ && ip < call_area_ + kCallArea) ||
           (slack_ && ip >= slack_ && ip < slack_ + slack_size_);
  }

  // The first remote call (remote_bootstrap.cpp).
  Result<void> bootstrap();
  void restore_slack(Thread& t, Address at, const std::vector<std::uint8_t>& saved);

  pid_t pid_;
  AttachOptions options_;
  std::optional<TargetLock> lock_;  // released at detach
  int mem_fd_ = -1;
  int maps_fd_ = -1;      // opened with mem_fd_: the same address space, never a newer one
  Address probe_at_ = 0;  // a mapped address of the attached program, for same_image()
  SeizedThreads threads_;
  Address state_ = 0;      // the state region, once it exists
  Address call_area_ = 0;  // RX memory for call stubs
  Address slack_ = 0;      // where the bootstrap stub ran, while it may still run
  std::size_t slack_size_ = 0;
  std::uint64_t generation_ = 0;
  int current_blob_ = 0;
  std::optional<std::string> staged_;
  bool staged_written_ = false;  // staged_ is in the idle buffer
  std::vector<std::pair<Address, std::uint64_t>> pending_;
  std::vector<AddressRange> lock_ranges_;  // malloc family and the dynamic loader
  bool lock_ranges_ready_ = false;
};

}  // namespace dynamos::core::remote
