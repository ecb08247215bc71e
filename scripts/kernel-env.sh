# Sourced by the kernel-*.sh scripts: finds the Debian cloud kernel to test against,
# the newest version whose image (/boot/vmlinuz-V) and headers (/usr/src/linux-headers-V)
# are both installed (scripts/deps/kernel.txt installs them). Sets:
#   DK_KVER       e.g. 6.1.0-56-cloud-amd64
#   DK_VMLINUZ    the kernel image qemu boots
#   DK_KHEADERS   the kbuild tree modules are built against
# Override with DK_KVER=... in the environment.
dk_find_kernel() {
  local v best=""
  if [[ -n "${DK_KVER:-}" ]]; then
    best="$DK_KVER"
  else
    for v in $(ls -d /usr/src/linux-headers-*-cloud-amd64 2>/dev/null | sed 's|.*/linux-headers-||' | sort -V); do
      [[ -r "/boot/vmlinuz-$v" ]] && best="$v"
    done
  fi
  if [[ -z "$best" || ! -r "/boot/vmlinuz-$best" || ! -d "/usr/src/linux-headers-$best" ]]; then
    echo "no Debian cloud kernel with matching headers installed (need linux-image-cloud-amd64 and linux-headers-cloud-amd64: scripts/setup.sh)" >&2
    return 1
  fi
  DK_KVER="$best"
  DK_VMLINUZ="/boot/vmlinuz-$best"
  DK_KHEADERS="/usr/src/linux-headers-$best"
}
