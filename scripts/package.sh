#!/usr/bin/env bash
# Builds the Debian package with CPack; its last line is the .deb's path.
#   scripts/package.sh              build/ (built first if needed), package in build/package/
#   BUILD_DIR=dir scripts/package.sh
# Install it with `apt-get install ./dynamos_VERSION_amd64.deb`; remove with
# `apt-get purge dynamos`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"
case "${1:-}" in -h|--help) sed -n '2,7p' "$0"; exit 0 ;; "") ;; *) echo "package: unknown option '$1'" >&2; exit 2 ;; esac

BUILD_DIR="$build_dir" "$root/scripts/build.sh" >&2
echo "package: cpack (DEB) in $build_dir/package" >&2
(cd "$build_dir" && cpack -G DEB -B "$build_dir/package" >&2)
deb="$(ls -t "$build_dir"/package/dynamos_*.deb | head -1)"
[[ -f "$deb" ]] || { echo "package: cpack made no .deb" >&2; exit 1; }
echo "$deb"
