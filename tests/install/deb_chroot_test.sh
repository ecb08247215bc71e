#!/usr/bin/env bash
# Package.InstallsOnFreshDebianAndPurgesClean: the Debian package built by CPack
# installs with `apt-get install ./dynamos_*.deb` on a fresh Debian 12 (a minbase
# debootstrap; cached as a tarball under /var/cache/dynamos-test so later runs skip the
# download), its programs run there, and `apt-get purge dynamos` leaves none of its files.
#   deb_chroot_test.sh BUILD_DIR
set -euo pipefail
build="$1"
fail() { echo "FAIL: $*" >&2; exit 1; }
if ((EUID != 0)); then
  [[ "${CI:-}" == true ]] && fail "needs root (CI=true: a privileged test does not skip)"
  echo "SKIP: needs root"; exit 77
fi
for tool in debootstrap cpack dpkg-deb; do command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup.sh installs it)"; done

tmp="$(mktemp -d /var/tmp/dynamos-deb-test.XXXXXX)"
root="$tmp/root"
cleanup() {
  for m in dev/pts dev proc sys; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

echo "== cpack"
(cd "$build" && cpack -G DEB -B "$tmp/package" >"$tmp/cpack.log" 2>&1) || { tail -20 "$tmp/cpack.log"; fail "cpack"; }
deb="$(ls "$tmp"/package/dynamos_*.deb)"
info="$(dpkg-deb -I "$deb")"
grep -q 'Depends:.*openmpi-bin' <<<"$info" || fail "the package does not depend on openmpi-bin"

echo "== a fresh Debian 12 (minbase)"
cache=/var/cache/dynamos-test/bookworm-minbase.tar.gz
mkdir -p "$root" "$(dirname "$cache")"
if [[ -f "$cache" ]]; then
  tar -C "$root" -xzf "$cache"
else
  mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  debootstrap --variant=minbase bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >"$tmp/debootstrap.log" 2>&1 \
    || { tail -20 "$tmp/debootstrap.log"; fail "debootstrap"; }
  tar -C "$root" -czf "$cache.part" . && mv "$cache.part" "$cache"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
cp "$deb" "$root/tmp/"

echo "== apt-get install ./$(basename "$deb")"
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
in_root apt-get update -qq >"$tmp/apt.log" 2>&1 || { tail "$tmp/apt.log"; fail "apt-get update in the chroot"; }
in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")" >>"$tmp/apt.log" 2>&1 \
  || { tail -30 "$tmp/apt.log"; fail "apt-get install of the package"; }
in_root dynamos --help | grep '^commands:' >/dev/null || fail "dynamos does not run in the fresh system"
in_root gangd --help | grep -- '--hostfile' >/dev/null || fail "gangd does not run in the fresh system"
in_root dynamosd --help | grep -- '--node' >/dev/null || fail "dynamosd does not run in the fresh system"
[[ -f "$root/etc/dynamos/gangd.conf" && -f "$root/usr/lib/systemd/system/dynamosd.service" ]] \
  || fail "config or unit missing after install"
files="$(in_root dpkg -L dynamos)"

echo "== apt-get purge dynamos"
in_root apt-get purge -y -qq dynamos >>"$tmp/apt.log" 2>&1 || { tail -20 "$tmp/apt.log"; fail "apt-get purge"; }
left=""
while read -r f; do
  [[ -n "$f" && ! -d "$root$f" && -e "$root$f" ]] && left+=" $f"
done <<<"$files"
[[ -z "$left" ]] || fail "purge left files:$left"
[[ ! -e "$root/etc/dynamos" ]] || fail "purge left /etc/dynamos"
echo "ok: installed on a fresh Debian 12, ran, purged without a trace"
