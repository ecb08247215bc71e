#!/usr/bin/env bash
# ctest entry of the kernel suite (tests/kernel/CMakeLists.txt):
#   run.sh build OUT_DIR DYNAMOS_CLI     build modules + initramfs (the fixture)
#   run.sh boot OUT_DIR SCENARIO         boot the VM, run one scenario
# The host kernel cannot load modules: everything runs in a qemu VM (TCG).
# Missing prerequisites skip (exit 77) on a developer machine and FAIL under CI=true.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mode="${1:?usage: run.sh build|boot OUT_DIR ...}"
out="${2:?usage: run.sh build|boot OUT_DIR ...}"

unavailable() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "kernel tests cannot run under CI: $* (scripts/setup.sh installs scripts/deps/kernel.txt)" >&2
    exit 1
  fi
  echo "kernel tests skipped: $* (run scripts/setup.sh)" >&2
  exit 77
}

source "$root/scripts/kernel-env.sh"
for tool in qemu-system-x86_64 cpio gzip make gcc; do
  command -v "$tool" >/dev/null || unavailable "$tool not installed"
done
[[ -x /bin/busybox ]] || unavailable "busybox-static not installed"
dk_find_kernel 2>/dev/null || unavailable "no Debian cloud kernel image with matching headers"

case "$mode" in
  build) exec "$root/scripts/kernel-build.sh" "$out" "${3:?run.sh build OUT_DIR DYNAMOS_CLI}" ;;
  boot)
    [[ -f "$out/initramfs.cpio.gz" ]] || { echo "run.sh: $out/initramfs.cpio.gz missing: kernel_build failed" >&2; exit 1; }
    exec "$root/scripts/kernel-boot.sh" "$out" "${3:?run.sh boot OUT_DIR SCENARIO}" "${DK_BOOT_TIMEOUT:-90}" ;;
  *) echo "run.sh: unknown mode $mode" >&2; exit 2 ;;
esac
