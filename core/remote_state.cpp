#include "core/remote_state.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace dynamos::core::remote {

namespace {

std::string malformed(pid_t pid, const std::string& why) {
  return "the dynamos-state region of process " + std::to_string(pid) + " is malformed (" + why +
         "); refusing to use it: restart the process to patch it again";
}

}  // namespace

bool is_unwritten(const StateHeader& h) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(&h);
  return std::all_of(bytes, bytes + sizeof h, [](unsigned char b) { return b == 0; });
}

Result<void> check_state_header(const StateHeader& h, pid_t pid) {
  if (std::memcmp(h.magic, kStateMagic, sizeof kStateMagic) != 0)
    return fail(Errc::version_mismatch, "the dynamos-state region of process " +
                                            std::to_string(pid) + " has an unknown format");
  if (h.blob_offset != kBlobOffset[0] && h.blob_offset != kBlobOffset[1])
    return fail(Errc::protocol,
                malformed(pid, "state blob offset " + hex(h.blob_offset) + " is neither " +
                                   hex(kBlobOffset[0]) + " nor " + hex(kBlobOffset[1])));
  if (h.blob_length > kBlobMax)
    return fail(Errc::protocol,
                malformed(pid, "state blob length " + std::to_string(h.blob_length) + " exceeds " +
                                   std::to_string(kBlobMax)));
  return {};
}

Result<void> check_state_owner(const StateHeader& h, pid_t pid) {
  if (h.owner_pid == 0 || h.owner_pid == static_cast<std::uint64_t>(pid)) return {};
  return fail(Errc::unsupported,
              "process " + std::to_string(pid) + " was forked from process " +
                  std::to_string(h.owner_pid) +
                  " after dynamos patched that one: it shares the parent's dynamos-state "
                  "region, and patching it would corrupt the parent's record of its updates; "
                  "not patched (the child runs the parent's updates as they were at the fork)");
}

Result<void> check_call_area(const StateHeader& h, const std::vector<Mapping>& maps, pid_t pid) {
  const Address begin = h.call_area;
  const bool fits =
      begin != 0 && begin % 4096 == 0 && begin + kCallArea > begin &&
      std::any_of(maps.begin(), maps.end(), [&](const Mapping& m) {
        return m.executable() && m.path.empty() && m.begin <= begin && begin + kCallArea <= m.end;
      });
  if (!fits)
    return fail(Errc::protocol,
                malformed(pid, "call area " + hex(begin) + " is not the engine's code mapping"));
  return {};
}

}  // namespace dynamos::core::remote
