#!/usr/bin/env bash
# Runs dynamos-bench-cyclesteal under the kernel's scheduler tracepoints, then says who
# ran on a host thread's CPU while it waited (bench/cyclesteal/who_ran.py):
#   sudo bench/cyclesteal/trace_run.sh OUTDIR [benchmark options...]
# e.g. sudo bench/cyclesteal/trace_run.sh /tmp/linger --policies linger --reps 2 --bursts 5
# OUTDIR gets the trace, the recorded pids and the benchmark's JSON. Needs tracefs
# (mounted here if it is not) and python3.
set -euo pipefail
(($# >= 1)) || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
bench=${BENCH:-$here/../../build/bin/dynamos-bench-cyclesteal}
T=/sys/kernel/tracing
[[ -e $T/trace ]] || mount -t tracefs nodev $T
events=(sched_switch sched_wakeup sched_wakeup_new sched_process_fork)
mkdir -p "$out"
stop_tracing() {
  echo 0 >$T/tracing_on
  for e in "${events[@]}"; do echo 0 >"$T/events/sched/$e/enable"; done
}
trap 'stop_tracing; echo >$T/trace; echo 1408 >$T/buffer_size_kb' EXIT
echo 0 >$T/tracing_on
echo >$T/trace
echo 200000 >$T/buffer_size_kb
for e in "${events[@]}"; do echo 1 >"$T/events/sched/$e/enable"; done
echo 1 >$T/tracing_on
"$bench" "$@" --json >"$out/bench.json" &
pid=$!
python3 "$here/who_ran.py" record "$out" "$pid" &
recorder=$!
wait "$pid"
wait "$recorder"
stop_tracing
cp $T/trace "$out/trace"
cat "$out/bench.json"
python3 "$here/who_ran.py" "$out"
