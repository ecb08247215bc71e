#!/usr/bin/env bash
# Plots dynamos-bench-cyclesteal --json output (one object per policy per line):
#   bench/cyclesteal/plot.sh cpu.json [memory.json] out.png
# Left: host slowdown (median of paired ratios, with min..max) and the guest's share of
# the idle cycles per policy. Right (with a memory run): host major faults per policy.
set -euo pipefail
(($# >= 2)) || { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out="${!#}"
cpu="$1"
mem=""
(($# == 3)) && mem="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

num() { grep -o "\"$1\":[-0-9.e]*" <<<"$2" | head -1 | cut -d: -f2; }
str() { grep -o "\"$1\":\"[^\"]*\"" <<<"$2" | head -1 | cut -d'"' -f4; }

i=0
while IFS= read -r line; do
  [[ "$line" == \{* ]] || continue
  printf '%d %s %s %s %s %s %s\n' "$i" "$(str policy "$line")" "$(num host_slowdown "$line")" \
    "$(num host_slowdown_min "$line")" "$(num host_slowdown_max "$line")" \
    "$(num guest_idle_share "$line")" "$(num host_wait_share "$line")" >>"$tmp/cpu.dat"
  i=$((i + 1))
done <"$cpu"
if [[ -n "$mem" ]]; then
  i=0
  while IFS= read -r line; do
    [[ "$line" == \{* ]] || continue
    printf '%d %s %s\n' "$i" "$(str policy "$line")" "$(num host_majflt "$line")" >>"$tmp/mem.dat"
    i=$((i + 1))
  done <"$mem"
fi

{
  echo "set terminal pngcairo size $([[ -n "$mem" ]] && echo 1200 || echo 700),450 font 'sans,10'"
  echo "set output '$out'"
  [[ -n "$mem" ]] && echo "set multiplot layout 1,2"
  echo "set title 'Host slowdown and guest share of idle cycles, per policy'"
  echo "set style fill solid 0.6 border -1"
  echo "set boxwidth 0.35"
  echo "set yrange [-0.15:1.3]"
  echo "set grid ytics"
  echo "set key top left horizontal"
  echo "set ylabel 'fraction'"
  echo "plot '$tmp/cpu.dat' using (\$1-0.2):3:xtic(2) with boxes title 'host slowdown (median of pairs)', \\"
  echo "     '' using (\$1-0.2):3:4:5 with yerrorbars lc rgb 'black' pt 0 title 'min..max', \\"
  echo "     '' using (\$1+0.2):6 with boxes title 'guest share of idle CPU'"
  if [[ -n "$mem" ]]; then
    echo "set title 'Memory scenario: host major faults while growing into guest memory'"
    echo "set yrange [0:*]"
    echo "set ylabel 'host major faults'"
    echo "set boxwidth 0.5"
    echo "plot '$tmp/mem.dat' using 1:3:xtic(2) with boxes notitle, '' using 1:3:3 with labels offset 0,1 notitle"
    echo "unset multiplot"
  fi
} >"$tmp/plot.gp"
gnuplot "$tmp/plot.gp"
echo "wrote $out"
