#!/usr/bin/env bash
# Plots lost time per switch by policy from dynamos-bench-switch --json output.
#   bench/paging/plot.sh RESULTS.jsonl OUT.png
# Needs gnuplot (Debian: gnuplot-nox) and python3.
set -euo pipefail
in="${1:?usage: plot.sh RESULTS.jsonl OUT.png}"
out="${2:?usage: plot.sh RESULTS.jsonl OUT.png}"
data=$(mktemp)
trap 'rm -f "$data"' EXIT
python3 - "$in" >"$data" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    print(r["policy"], r["lost_s_per_switch"], r["lost_s_per_switch_without_cpu_wait"], r["switch_s"])
PY
gnuplot <<GP
set terminal pngcairo size 800,480 noenhanced
set output "$out"
set title "Lost time per switch by paging policy (dynamos-bench-switch)"
set ylabel "seconds per switch"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set key outside bottom center horizontal
set grid ytics
plot "$data" using 2:xtic(1) title "lost time (run-queue wait included)", \
     "" using 3 title "lost time without run-queue wait", \
     "" using 4 title "switch time (median)"
GP
echo "wrote $out"
