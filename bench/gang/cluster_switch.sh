#!/usr/bin/env bash
# Switch latency of a virtual cluster with separate processes: gangd and one dynamosd per
# node (dynamos cluster up), two jobs of busy ranks alternating on the same nodes, no memory
# pressure. gangd's round log gives, per round, the time from its decision until every
# incoming rank is thawed (running_ms), until the last node's acknowledgement
# (total_ms), and the skew between nodes. The ranks are dynamos-switch-probe, which
# record when they ran: from them bench/gang/switch_overlap.py gives the full switch
# (decision to every outgoing rank frozen and every incoming rank running, as the ranks
# saw it, with "running" read as runnable (thawed): full_switch_ms_p50/p99, and as first
# ran: first_ran_ms_p50/p99) and the overlap (share of the time around the switches
# in which ranks of both jobs ran on one node).
#
#   bench/gang/cluster_switch.sh [--nodes 4] [--quantum 200ms] [--seconds 20] [--build build]
#                                [--save DIR]   (keeps the round log and the probes' files there)
#
# Prints a summary and one JSON line (last line). Needs root; removes everything after.
set -euo pipefail
nodes=4 quantum=200ms seconds=20 build=build save=
while (($#)); do
  case "$1" in
    --nodes) nodes=$2; shift ;;
    --quantum) quantum=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --build) build=$2; shift ;;
    --save) save=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster_switch: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
((EUID == 0)) || { echo "cluster_switch: needs root" >&2; exit 1; }
bin=$(cd "$build/bin" && pwd)
state=$(mktemp -d /tmp/dynamos-switch-XXXXXX)
cleanup() {
  [[ -z $save ]] || { mkdir -p "$save" && cp -r "$state/probes" "$state/rounds.jsonl" "$save/" 2>/dev/null || true; }
  "$bin/dynamos" cluster down --state-dir "$state" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
export DYNAMOS_SOCKET=$state/gangd.sock
"$bin/dynamos" cluster up --nodes "$nodes" --slots 1 --mem-per-node 1G --quantum "$quantum" \
  --state-dir "$state" --cgroup-parent "dynamos-bench-switch-$$" >/dev/null
# Two jobs of one rank per node: they share every node and alternate every quantum.
mkdir -m 0755 "$state/probes"
for name in a b; do
  (cd "$state" && "$bin/dynamos" submit --ranks "$nodes" --name "$name" -- \
    "$bin/dynamos-switch-probe" --seconds "$seconds" --dir "$state/probes") >/dev/null
done
echo "cluster_switch: $nodes nodes, quantum $quantum, two $nodes-rank jobs alternating for ${seconds}s..." >&2
for id in 1 2; do "$bin/dynamos" wait "$id" --timeout $((seconds * 4 + 60)) >/dev/null; done
rounds=$state/rounds.jsonl
field() { sed -n "s/.*\"$1\":\([0-9.eE+-]*\).*/\1/p"; }
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {if (NR == 0) {print "nan"; exit} i=int((NR - 1) * p) + 1; print a[i]}'; }
full=$(grep "\"switched\":$nodes," "$rounds" | grep '"failed":0,' || true)
n=$(printf '%s\n' "$full" | grep -c . || true)
run_p50=$(printf '%s\n' "$full" | field running_ms | pct 0.5)
run_p90=$(printf '%s\n' "$full" | field running_ms | pct 0.9)
run_max=$(printf '%s\n' "$full" | field running_ms | pct 1)
tot_p50=$(printf '%s\n' "$full" | field total_ms | pct 0.5)
tot_p90=$(printf '%s\n' "$full" | field total_ms | pct 0.9)
tot_max=$(printf '%s\n' "$full" | field total_ms | pct 1)
skew_p50=$(printf '%s\n' "$full" | field skew_ms | pct 0.5)
skew_max=$(printf '%s\n' "$full" | field skew_ms | pct 1)
node_p50=$(printf '%s\n' "$full" | field max_switch_ms | pct 0.5)
load=$(cut -d' ' -f1 /proc/loadavg)
q_s=$(awk -v q="$quantum" 'BEGIN { if (q ~ /ms$/) print q / 1000; else print q + 0 }')
probe=$(python3 "$(dirname "$0")/switch_overlap.py" "$state/probes" "$rounds" "$q_s")
pfield() { sed -n "s/.*\"$1\": \([0-9.eE+-]*\|null\).*/\1/p" <<<"$probe"; }
echo "rounds on all $nodes nodes: $n" >&2
echo "decision to every incoming rank running: p50 $run_p50 ms, p90 $run_p90 ms, max $run_max ms" >&2
echo "decision to the last node's ack (switch done, paging bookkeeping included): p50 $tot_p50 ms, p90 $tot_p90 ms, max $tot_max ms" >&2
echo "slowest node's switch p50 $node_p50 ms; skew p50 $skew_p50 ms, max $skew_max ms; load $load" >&2
echo "full switch ($(pfield rounds_measured) rounds with probe data on every node): decision to every outgoing rank frozen and every incoming rank runnable (thawed) p50 $(pfield full_switch_ms_p50) ms, p99 $(pfield full_switch_ms_p99) ms; ... and every incoming rank first ran p50 $(pfield first_ran_ms_p50) ms, p99 $(pfield first_ran_ms_p99) ms; both jobs ran at once on a node $(pfield overlap_ms) ms (overlap $(pfield overlap))" >&2
echo "{\"nodes\":$nodes,\"quantum\":\"$quantum\",\"rounds\":$n,\"running_ms_p50\":$run_p50,\"running_ms_p90\":$run_p90,\"running_ms_max\":$run_max,\"total_ms_p50\":$tot_p50,\"total_ms_p90\":$tot_p90,\"total_ms_max\":$tot_max,\"slowest_node_ms_p50\":$node_p50,\"skew_ms_p50\":$skew_p50,\"skew_ms_max\":$skew_max,\"full_switch_rounds\":$(pfield rounds_measured),\"full_switch_ms_p50\":$(pfield full_switch_ms_p50),\"full_switch_ms_p99\":$(pfield full_switch_ms_p99),\"full_switch_ms_max\":$(pfield full_switch_ms_max),\"first_ran_ms_p50\":$(pfield first_ran_ms_p50),\"first_ran_ms_p99\":$(pfield first_ran_ms_p99),\"first_ran_ms_max\":$(pfield first_ran_ms_max),\"overlap_ms\":$(pfield overlap_ms),\"overlap\":$(pfield overlap),\"load\":$load}"
