#!/usr/bin/env bash
# Boots the kernel built for by kernel-build.sh under qemu (TCG: no KVM needed),
# runs one scenario of tests/kernel/scenarios.sh in it, reads the serial console.
#   scripts/kernel-boot.sh OUT_DIR SCENARIO [TIMEOUT_SECONDS]
# Exit 0 only if the scenario printed PASS and the console shows no kernel
# warning, oops, BUG or panic. The console is kept in OUT_DIR/logs/SCENARIO.log.
set -euo pipefail

out="${1:?usage: kernel-boot.sh OUT_DIR SCENARIO [TIMEOUT]}"
scenario="${2:?usage: kernel-boot.sh OUT_DIR SCENARIO [TIMEOUT]}"
limit="${3:-150}"
# shellcheck disable=SC1091
source "$out/kernel.env"
mkdir -p "$out/logs"
log="$out/logs/$scenario.log"

start=$(date +%s)
# panic=-1 and -no-reboot: a panic ends qemu at once instead of hanging until the timeout.
# thread=single: both vCPUs on one host thread. With multi-threaded TCG a vCPU
# sometimes kept running a stale translation of an int3 that ftrace had already
# replaced by a call (text_poke_bp on another vCPU); the kernel's int3 handler then
# sees no int3 in memory and restarts the instruction, forever (observed 2 in ~20
# boots, both CPUs looping at the patched function's entry). Real CPUs are
# serialised by ftrace's IPIs; one host thread gives the same guarantee here, and
# leaves the second host core to the rest of CI.
timeout --kill-after=5 "$limit" qemu-system-x86_64 \
  -machine q35 -accel tcg,thread=single -cpu max -smp 2 -m 768 \
  -nographic -no-reboot -display none -monitor none -serial stdio \
  -kernel "$DK_VMLINUZ" -initrd "$out/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 oops=panic loglevel=5 dk.scenario=$scenario ${DK_APPEND:-}" \
  </dev/null >"$log" 2>&1 || status=$?
status="${status:-0}"
elapsed=$(( $(date +%s) - start ))

problems=$(grep -E "WARNING:|Oops|BUG:|Kernel panic|general protection|Call Trace:|DYNAMOS-FAIL" "$log" | head -20 || true)
if [[ "$status" == 124 || "$status" == 137 ]]; then
  problems="qemu killed after ${limit}s (scenario hung)${problems:+$'\n'$problems}"
fi
if [[ -z "$problems" ]] && grep -q "DYNAMOS-RESULT $scenario PASS" "$log"; then
  grep -E "^DYNAMOS-FIGURE" "$log" || true
  echo "kernel-boot: $scenario passed on $DK_KVER in ${elapsed}s"
  exit 0
fi
echo "kernel-boot: $scenario FAILED on $DK_KVER after ${elapsed}s (console: $log)" >&2
[[ -n "$problems" ]] && echo "$problems" >&2
echo "--- last console lines ---" >&2
tail -n 60 "$log" >&2
exit 1
