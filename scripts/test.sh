#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test with ctest.
#   scripts/test.sh               all tests
#   scripts/test.sh --sanitize    all tests under AddressSanitizer + UBSan
#   scripts/test.sh -R REGEX      only tests matching REGEX (passed to ctest)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_args=()
ctest_args=()
build_dir="${BUILD_DIR:-$root/build}"
while (($#)); do
  case "$1" in
    --sanitize) build_args+=(--sanitize); build_dir="${BUILD_DIR:-$root/build-sanitize}" ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done

BUILD_DIR="$build_dir" "$root/scripts/build.sh" "${build_args[@]}"
cd "$build_dir"
# A failed test runs again, up to three attempts, before it counts as failed: the
# privileged tests run real clusters on a 2-core machine. Known causes: a guest started
# into a frozen guest class under outside load (NodeOps.GangdDrives...), and the memory
# controller's OOM killer taking a demand-paged rank at 1.3x overcommit when zram cannot
# compress fast enough (seen in Demo.QuickTour... at 1.4x, and in the comparison test at
# 1.3x, which now runs at 1.15x; the kernel log names the group). A test that fails
# three times fails the run; every failure stays in the log.
ctest --output-on-failure -j 1 --repeat until-pass:3 "${ctest_args[@]}"
