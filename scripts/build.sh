#!/usr/bin/env bash
# Installs what is missing, configures and builds into build/ (programs in build/bin/).
#   scripts/build.sh              release build with debug info
#   scripts/build.sh --sanitize   AddressSanitizer + UBSan build in build-sanitize/
#   BUILD_DIR=dir scripts/build.sh  another build folder
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sanitize=OFF
build_dir="${BUILD_DIR:-$root/build}"
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=ON; build_dir="${BUILD_DIR:-$root/build-sanitize}" ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "build: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

"$root/scripts/setup.sh"
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDYNAMOS_SANITIZE="$sanitize" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
