#!/usr/bin/env bash
# Install.PrefixHoldsProgramsSdkUnitsAndManuals: `cmake --install BUILD --prefix DIR`
# leaves the programs, the extensions, the SDK (CMake package and pkg-config file), the
# systemd units (which systemd-analyze verifies), man pages and bash completion, and an
# extension written outside the tree builds against DIR, loads and answers.
#   install_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$1" build="$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
p="$tmp/prefix"
for f in bin/dynamos bin/gangd bin/dynamosd bin/dynamos-launch bin/dynamos-rank bin/dynamos-zram-swap \
         lib/libdynamos_ext_paging.so lib/libdynamos_ext_cyclesteal.so \
         lib/cmake/DynAMOS/DynAMOSConfig.cmake lib/pkgconfig/dynamos.pc \
         include/dynamos/core/extension_abi.h include/dynamos/base/error.hpp \
         share/man/man1/dynamos.1 share/man/man1/gangd.1 share/man/man1/dynamosd.1 \
         lib/systemd/system/gangd.service lib/systemd/system/dynamosd.service \
         lib/systemd/system/dynamos-zram-swap.service etc/dynamos/gangd.conf \
         share/bash-completion/completions/dynamos share/dynamos/kernel-module/main.c; do
  [[ -e "$p/$f" ]] || fail "missing $f under the prefix"
done
echo "ok: every expected file is installed"

# The installed programs run from the prefix and find their siblings there.
"$p/bin/dynamos" --help | grep '^commands:' >/dev/null || fail "installed dynamos --help"
grep -q "ExecStart=$p/bin/gangd --config $p/etc/dynamos/gangd.conf" "$p/lib/systemd/system/gangd.service" \
  || fail "gangd.service does not start the installed gangd with its config"
grep -q '^Delegate=yes' "$p/lib/systemd/system/dynamosd.service" || fail "dynamosd.service lacks Delegate=yes"
MANPATH="$p/share/man" systemd-analyze verify "$p"/lib/systemd/system/*.service \
  || fail "systemd-analyze verify refused a unit"
echo "ok: systemd-analyze verify passes the units"
man -l "$p/share/man/man1/gangd.1" 2>/dev/null | grep -- '--hostfile' >/dev/null || fail "gangd(1) lacks the options"
bash -n "$p/share/bash-completion/completions/dynamos" || fail "completion script does not parse"

# An extension outside the tree, through the CMake package...
CMAKE_C_COMPILER_LAUNCHER= CMAKE_CXX_COMPILER_LAUNCHER= \
  cmake -S "$src/packaging/example-extension" -B "$tmp/ext" -DCMAKE_PREFIX_PATH="$p" >"$tmp/ext.log" 2>&1 \
  || { cat "$tmp/ext.log"; fail "find_package(DynAMOS) against the prefix"; }
cmake --build "$tmp/ext" >>"$tmp/ext.log" 2>&1 || { cat "$tmp/ext.log"; fail "building the example extension"; }
out="$("$tmp/ext/hello-host" "$tmp/ext/hello.so")"
[[ "$out" == "hi, world" ]] || fail "the example extension answered '$out', expected 'hi, world'"
echo "ok: an extension built against the prefix loads through DynAMOS::core and answers"
# ...and through pkg-config.
PKG_CONFIG_PATH="$p/lib/pkgconfig" cc -shared -fPIC -o "$tmp/hello-pc.so" "$src/packaging/example-extension/hello.c" \
  $(PKG_CONFIG_PATH="$p/lib/pkgconfig" pkg-config --cflags dynamos) || fail "building with pkg-config's flags"
echo "ok: pkg-config dynamos gives working flags"
