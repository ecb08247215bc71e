#!/usr/bin/env bash
# Switch latency inside a Slurm allocation on the test bed (scripts/slurm-testbed.sh):
# the same measurement as bench/gang/cluster_switch.sh (two MPI jobs of one rank a node
# alternating on the same nodes, no memory pressure; figures from gangd's round log),
# with gangd and one dynamosd per node started by `dynamos cluster up --slurm` inside
# `salloc -N N`, the ranks started by Open MPI's Slurm launcher in the nodes' network
# namespaces, and the agents talking to gangd over TCP on the test bed's bridge.
#
#   bench/gang/slurm_switch.sh [--nodes 3] [--quantum 200ms] [--seconds 20] [--build build]
#
# Brings the test bed up and down itself (none may be up). Prints a summary and one JSON
# line (last line). Needs root.
set -euo pipefail
nodes=3 quantum=200ms seconds=20 build=build
while (($#)); do
  case "$1" in
    --nodes) nodes=$2; shift ;;
    --quantum) quantum=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --build) build=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --inside) shift; break ;;
    *) echo "slurm_switch: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
((EUID == 0)) || { echo "slurm_switch: needs root" >&2; exit 1; }
bin=$(cd "$build/bin" && pwd)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if [[ "${1:-}" == run ]]; then # inside the allocation
  state=$2
  export DYNAMOS_SOCKET=$state/gangd.sock OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  "$bin/dynamos" cluster up --slurm --quantum "$quantum" --state-dir "$state" >/dev/null
  for name in a b; do
    (cd /tmp && "$bin/dynamos" submit --ranks "$nodes" --nodes "$nodes" --name "$name" \
      --output /dev/null -- "$bin/dynamos-mpi-stencil" -q --mem 16M --seconds "$seconds") >/dev/null
  done
  for id in 1 2; do "$bin/dynamos" wait "$id" --timeout $((seconds * 4 + 60)) >/dev/null; done
  cp "$state/rounds.jsonl" "$3"
  "$bin/dynamos" cluster down --state-dir "$state" >/dev/null
  exit 0
fi

cleanup() { "$root/scripts/slurm-testbed.sh" down >/dev/null 2>&1 || true; rm -f "$rounds"; }
rounds=$(mktemp /tmp/dynamos-slurm-switch-XXXXXX)
trap cleanup EXIT
"$root/scripts/slurm-testbed.sh" up --nodes "$nodes" >/dev/null
# shellcheck source=/dev/null
source /run/dynamos-slurm-testbed/env.sh
echo "slurm_switch: $nodes test-bed nodes, quantum $quantum, two $nodes-rank jobs for ${seconds}s of their own each..." >&2
salloc -N "$nodes" "$0" --nodes "$nodes" --quantum "$quantum" --seconds "$seconds" --build "$build" \
  --inside run "/run/dynamos-slurm-switch-$$" "$rounds" 2>/dev/null
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {if (NR == 0) {print "nan"; exit} i=int((NR - 1) * p) + 1; print a[i]}'; }
full=$(grep "\"switched\":$nodes," "$rounds" | grep '"failed":0,' || true)
n=$(printf '%s\n' "$full" | grep -c . || true)
stat3() { local f=$1; echo "$(printf '%s\n' "$full" | field "$f" | pct 0.5) $(printf '%s\n' "$full" | field "$f" | pct 0.9) $(printf '%s\n' "$full" | field "$f" | pct 1)"; }
read -r run_p50 run_p90 run_max <<<"$(stat3 running_ms)"
read -r tot_p50 tot_p90 tot_max <<<"$(stat3 total_ms)"
read -r skew_p50 _ skew_max <<<"$(stat3 skew_ms)"
read -r node_p50 _ _ <<<"$(stat3 max_switch_ms)"
load=$(cut -d' ' -f1 /proc/loadavg)
echo "rounds on all $nodes nodes: $n" >&2
echo "decision to every incoming rank running: p50 $run_p50 ms, p90 $run_p90 ms, max $run_max ms" >&2
echo "decision to the last node's ack (every outgoing rank frozen, paging bookkeeping included): p50 $tot_p50 ms, p90 $tot_p90 ms, max $tot_max ms" >&2
echo "slowest node's switch p50 $node_p50 ms; skew p50 $skew_p50 ms, max $skew_max ms; load $load" >&2
echo "{\"where\":\"slurm-testbed\",\"nodes\":$nodes,\"quantum\":\"$quantum\",\"rounds\":$n,\"running_ms_p50\":$run_p50,\"running_ms_p90\":$run_p90,\"running_ms_max\":$run_max,\"total_ms_p50\":$tot_p50,\"total_ms_p90\":$tot_p90,\"total_ms_max\":$tot_max,\"slowest_node_ms_p50\":$node_p50,\"skew_ms_p50\":$skew_p50,\"skew_ms_max\":$skew_max,\"load\":$load}"
