#include "core/extension_gate.hpp"

#include <algorithm>
#include <thread>
#include <utility>

namespace dynamos::core::exthost {

// ---- Errors reported by hooks ----

namespace {
thread_local std::string t_error;
thread_local bool t_error_set = false;
}  // namespace

void set_error(const char* message) {
  t_error = message ? message : "";
  t_error_set = true;
}

void clear_error() {
  t_error.clear();
  t_error_set = false;
}

std::string take_error(int rc) {
  std::string m = t_error_set && !t_error.empty()
                      ? t_error
                      : "failed (returned " + std::to_string(rc) + ", no message)";
  clear_error();
  return m;
}

const std::string& last_error() {
  return t_error;
}

// ---- Versions the host itself provides ----

namespace {

// A hook that fails with `message`, for each of the two hook signatures.
template <const char* message>
int refuse_subject(const dynamos_ext_subject*, dynamos_ext_buffer*) {
  set_error(message);
  return -1;
}
template <const char* message>
int refuse_call(const char*, const char*, dynamos_ext_buffer*) {
  set_error(message);
  return -1;
}
constexpr char kUnloaded[] = "extension not loaded (its dispatch point has no build)";
constexpr char kMissing[] = "hook not implemented by the running build";
constexpr auto& unloaded_subject = refuse_subject<kUnloaded>;
constexpr auto& unloaded_call = refuse_call<kUnloaded>;
constexpr auto& missing_subject = refuse_subject<kMissing>;
constexpr auto& missing_call = refuse_call<kMissing>;

constexpr dynamos_subject_hook dynamos_extension::*kSubjectHooks[] = {
    &dynamos_extension::attach,    &dynamos_extension::detach, &dynamos_extension::switch_out,
    &dynamos_extension::switch_in, &dynamos_extension::tick,
};
static_assert(std::size(kSubjectHooks) == kCallHook && kCallHook + 1 == kHookCount);

}  // namespace

Address hook_code(const dynamos_extension* d, std::size_t h) {
  if (h < kCallHook) return reinterpret_cast<Address>(d->*kSubjectHooks[h]);
  return reinterpret_cast<Address>(d->call);
}

Address unloaded_code(std::size_t h) {
  return h < kCallHook ? reinterpret_cast<Address>(&unloaded_subject)
                       : reinterpret_cast<Address>(&unloaded_call);
}

Address missing_code(std::size_t h) {
  return h < kCallHook ? reinterpret_cast<Address>(&missing_subject)
                       : reinterpret_cast<Address>(&missing_call);
}

// ---- The handover gate ----

const dynamos_extension kNotLoaded = {DYNAMOS_EXTENSION_ABI,
                                      sizeof(dynamos_extension),
                                      "",
                                      "",
                                      "",
                                      nullptr,
                                      0,
                                      0,
                                      nullptr,
                                      nullptr,
                                      nullptr,
                                      nullptr,
                                      nullptr,
                                      &unloaded_subject,
                                      &unloaded_subject,
                                      &unloaded_subject,
                                      &unloaded_subject,
                                      &unloaded_subject,
                                      &unloaded_call};

const dynamos_extension* Gate::enter() {
  for (;;) {
    const dynamos_extension* d = target.load();
    if (!d) {
      target.wait(nullptr);  // closed: an upgrade is handing the state over
      continue;
    }
    holders.fetch_add(1);
    if (target.load() == d) return d;  // the partner is the store in retarget()
    holders.fetch_sub(1);
  }
}

Result<void> Gate::retarget(const dynamos_extension* d, Clock::time_point deadline) {
  target.store(d);
  if (d) target.notify_all();
  auto pause = std::chrono::microseconds(10);
  while (holders.load(std::memory_order_acquire) != 0) {
    if (Clock::now() > deadline)
      return fail(Errc::timed_out, std::to_string(holders.load()) +
                                       " call(s) through the handover gate still running");
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
  return {};
}

void Gate::open(const dynamos_extension* d) {
  target.store(d);
  target.notify_all();
}

namespace {

Gate g_gates[kSlots];

template <std::size_t S, std::size_t H>
int gate_subject(const dynamos_ext_subject* subject, dynamos_ext_buffer* report) {
  Gate& gate = g_gates[S];
  dynamos_subject_hook fn = gate.enter()->*kSubjectHooks[H];
  int rc = fn ? fn(subject, report) : missing_subject(subject, report);
  gate.leave();
  return rc;
}

template <std::size_t S>
int gate_call(const char* op, const char* args, dynamos_ext_buffer* reply) {
  Gate& gate = g_gates[S];
  dynamos_call_hook fn = gate.enter()->call;
  int rc = fn ? fn(op, args, reply) : missing_call(op, args, reply);
  gate.leave();
  return rc;
}

template <std::size_t S>
std::array<Address, kHookCount> gate_row() {
  return {reinterpret_cast<Address>(&gate_subject<S, 0>),
          reinterpret_cast<Address>(&gate_subject<S, 1>),
          reinterpret_cast<Address>(&gate_subject<S, 2>),
          reinterpret_cast<Address>(&gate_subject<S, 3>),
          reinterpret_cast<Address>(&gate_subject<S, 4>),
          reinterpret_cast<Address>(&gate_call<S>)};
}

template <std::size_t... S>
std::array<std::array<Address, kHookCount>, kSlots> gate_table(std::index_sequence<S...>) {
  return {gate_row<S>()...};
}

const std::array<std::array<Address, kHookCount>, kSlots> kGates =
    gate_table(std::make_index_sequence<kSlots>{});

}  // namespace

Gate& gate(std::size_t slot) {
  return g_gates[slot];
}

Address gate_code(std::size_t slot, std::size_t hook) {
  return kGates[slot][hook];
}

}  // namespace dynamos::core::exthost
