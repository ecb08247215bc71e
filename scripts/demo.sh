#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, runs `dynamos demo` (a
# virtual cluster, gang-scheduled MPI jobs under demand and adaptive paging, cycle
# stealing, a probe in a running rank, an extension upgraded in place; about 3 minutes,
# everything torn down at the end). Arguments go to the demo:
#   scripts/demo.sh --quick     about a minute
#   scripts/demo.sh --engine    the in-process engine demo (build/bin/dynamos-demo)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
sudo=()
if ((EUID != 0)); then
  for arg in "$@"; do [[ "$arg" == --engine ]] && exec "$root/build/bin/dynamos" demo "$@"; done
  command -v sudo >/dev/null || { echo "demo: the demo sets up cgroups and swap: run it as root" >&2; exit 1; }
  sudo=(sudo)
fi
exec "${sudo[@]}" "$root/build/bin/dynamos" demo "$@"
