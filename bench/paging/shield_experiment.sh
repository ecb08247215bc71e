#!/bin/bash
# Two dynamos-sweep processes alternating like gang-scheduled jobs under one memory limit
# (cgroup v1, root, swap active): what the running job's reclaim shield is worth.
#   shared            both processes in the limited group (one LRU, as on Slurm's test bed)
#   split             a child group each (as dynamosd places jobs), no shield
#   split-shielded    a child group each, the running one's memory.swappiness 1 (dynamosd)
# Prints the two processes' major faults. docs/paging.md ("the running job's memory is
# shielded") has figures.
# Usage: bench/paging/shield_experiment.sh MODE [QUANTUM_S (3)] [SWITCHES (6)] [SIZE (160M)]
#        [LIMIT_MIB (256)]
set -euo pipefail
mode="${1:?usage: shield_experiment.sh shared|split|split-shielded [quantum_s] [switches] [size] [limit_mib]}"
q="${2:-3}" n="${3:-6}" size="${4:-160M}" limit="${5:-256}"
case "$mode" in shared | split | split-shielded) ;; *) echo "unknown mode '$mode'" >&2; exit 2 ;; esac
[[ $EUID -eq 0 ]] || { echo "needs root" >&2; exit 2; }
[[ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]] || { echo "needs the cgroup v1 memory hierarchy" >&2; exit 2; }
[[ -n "$(swapon --noheadings)" ]] || { echo "needs active swap (scripts/zram-swap.sh up)" >&2; exit 2; }
sweep="$(dirname "$0")/../../build/bin/dynamos-sweep"
[[ -x "$sweep" ]] || { echo "build dynamos-sweep first ($sweep)" >&2; exit 2; }

top="/sys/fs/cgroup/memory/dynamos-shield-exp-$$"
x="" y=""
cleanup() {
  [[ -n "$x" ]] && kill -9 "$x" 2>/dev/null
  [[ -n "$y" ]] && kill -9 "$y" 2>/dev/null
  wait 2>/dev/null || true
  rmdir "$top/a" "$top/b" 2>/dev/null || true
  rmdir "$top" 2>/dev/null || true
}
trap cleanup EXIT
mkdir "$top"
echo $((limit << 20)) >"$top/memory.limit_in_bytes"
ga="$top" gb="$top"
if [[ "$mode" != shared ]]; then
  mkdir "$top/a" "$top/b"
  ga="$top/a" gb="$top/b"
fi
# Each process joins its group before it execs; the second starts stopped.
bash -c "echo \$\$ >$ga/cgroup.procs; exec $sweep -m $size -s 600 -q" >/dev/null 2>&1 &
x=$!
bash -c "echo \$\$ >$gb/cgroup.procs; kill -STOP \$\$; exec $sweep -m $size -s 600 -q" >/dev/null 2>&1 &
y=$!
shield() { # shield RUNNING_GROUP STOPPED_GROUP
  [[ "$mode" == split-shielded ]] || return 0
  echo 1 >"$1/memory.swappiness"
  cat "$top/memory.swappiness" >"$2/memory.swappiness"
}
shield "$ga" "$gb"
sleep "$q"
run=$x stop=$y grun=$ga gstop=$gb
for ((i = 1; i <= n; i++)); do
  kill -STOP "$run"
  shield "$gstop" "$grun"
  kill -CONT "$stop"
  read -r run stop <<<"$stop $run"
  read -r grun gstop <<<"$gstop $grun"
  sleep "$q"
done
fx=$(awk '{print $12}' "/proc/$x/stat") fy=$(awk '{print $12}' "/proc/$y/stat")
echo "$mode: $size each under ${limit} MiB, $n switches of ${q} s: major faults $fx + $fy = $((fx + fy))"
