#!/usr/bin/env bash
# Builds what the kernel tests boot: the engine module (kernelside/module), the
# companion test modules (tests/kernel/modules), the dk_stress helper, and an
# initramfs with busybox, those, the dynamos CLI and its shared libraries.
#   scripts/kernel-build.sh OUT_DIR PATH_TO_DYNAMOS_CLI
#   scripts/kernel-build.sh OUT_DIR --engine-only     just OUT_DIR/engine/dynamos_kernel.ko
# Writes OUT_DIR/initramfs.cpio.gz and OUT_DIR/kernel.env (the kernel to boot).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:?usage: kernel-build.sh OUT_DIR DYNAMOS_CLI}"
cli="${2:?usage: kernel-build.sh OUT_DIR DYNAMOS_CLI}"
source "$root/scripts/kernel-env.sh"
dk_find_kernel

mkdir -p "$out"
out="$(cd "$out" && pwd)"
rm -rf "$out/engine" "$out/testmods" "$out/root"
mkdir -p "$out/engine" "$out/testmods" "$out/root"/{bin,modules,proc,sys,dev,tmp}

# kbuild writes objects beside the sources: build copies, never the source tree.
cp "$root"/kernelside/module/{*.c,*.h,Kbuild} "$out/engine/"
cp "$root"/tests/kernel/modules/{*.c,*.h,Kbuild} "$out/testmods/"
jobs="${DK_JOBS:-2}"
make -s -j"$jobs" -C "$DK_KHEADERS" M="$out/engine" modules 2>&1 | grep -v "Skipping BTF" || true
[[ -f "$out/engine/dynamos_kernel.ko" ]] || { echo "kernel-build: engine module did not build" >&2; exit 1; }
if [[ "$cli" == "--engine-only" ]]; then
  echo "kernel-build: $out/engine/dynamos_kernel.ko for $DK_KVER"
  exit 0
fi
make -s -j"$jobs" -C "$DK_KHEADERS" M="$out/testmods" DYNAMOS_ENGINE_DIR="$out/engine" \
  KBUILD_EXTRA_SYMBOLS="$out/engine/Module.symvers" modules 2>&1 | grep -v "Skipping BTF" || true
for m in dk_target dk_fix dk_ab dk_bench; do
  [[ -f "$out/testmods/$m.ko" ]] || { echo "kernel-build: test module $m did not build" >&2; exit 1; }
done
cp "$out/engine/dynamos_kernel.ko" "$out"/testmods/*.ko "$out/root/modules/"

gcc -static -O2 -Wall -Wextra -Werror -o "$out/root/bin/dk_stress" "$root/tests/kernel/dk_stress.c"
cp /bin/busybox "$out/root/bin/busybox"
if ldd /bin/busybox >/dev/null 2>&1; then
  echo "kernel-build: /bin/busybox is not static (install busybox-static)" >&2
  exit 1
fi

# The CLI and every library it loads, at the same paths, loader included.
cp "$cli" "$out/root/bin/dynamos"
for lib in $(ldd "$cli" | grep -o '/[^ ]*'); do
  mkdir -p "$out/root$(dirname "$lib")"
  cp -L "$lib" "$out/root$lib"
done

cp "$root/tests/kernel/init.sh" "$out/root/init"
cp "$root/tests/kernel/scenarios.sh" "$out/root/scenarios.sh"
chmod +x "$out/root/init"
(cd "$out/root" && find . | cpio -o -H newc --quiet | gzip -1 >"$out/initramfs.cpio.gz")
printf 'DK_KVER=%s\nDK_VMLINUZ=%s\n' "$DK_KVER" "$DK_VMLINUZ" >"$out/kernel.env"
echo "kernel-build: modules for $DK_KVER, initramfs $(du -h "$out/initramfs.cpio.gz" | cut -f1)"
