#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, runs the demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
exec "$root/build/bin/dynamos-demo" "$@"
