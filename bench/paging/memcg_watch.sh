#!/bin/bash
# Watches a running `dynamos bench compare` cluster's node groups (cgroup v1): every 200 ms
# one line a node: usage, active and inactive anon (MiB), swap, OOM kills, swappiness, and
# per job group its freezer state, usage and process count. Diagnoses the memory
# controller's OOM kills of demand-paged ranks (docs/paging.md, section 5).
# Usage: bench/paging/memcg_watch.sh > watch.log   (stop with Ctrl-C)
while true; do
  ts=$(date +%H:%M:%S.%N | cut -c1-12)
  for n in /sys/fs/cgroup/memory/dynamos-compare-*/n*; do
    [ -d "$n" ] || continue
    line="$ts ${n#/sys/fs/cgroup/memory/} use=$(( $(cat $n/memory.usage_in_bytes 2>/dev/null || echo 0) >> 20 ))M"
    line+=" aa=$(( $(awk '/^total_active_anon /{print $2}' $n/memory.stat 2>/dev/null || echo 0) >> 20 ))"
    line+=" ia=$(( $(awk '/^total_inactive_anon /{print $2}' $n/memory.stat 2>/dev/null || echo 0) >> 20 ))"
    line+=" sw=$(( $(awk '/^total_swap /{print $2}' $n/memory.stat 2>/dev/null || echo 0) >> 20 ))"
    line+=" oom=$(awk '/oom_kill /{print $2}' $n/memory.oom_control 2>/dev/null) swp=$(cat $n/memory.swappiness 2>/dev/null)"
    for j in $n/job*; do
      [ -d "$j" ] || continue
      fz=/sys/fs/cgroup/freezer/${j#/sys/fs/cgroup/memory/}
      line+=" ${j##*/}:$(cat $fz/freezer.state 2>/dev/null | cut -c1-4):$(( $(cat $j/memory.usage_in_bytes 2>/dev/null || echo 0) >> 20 ))M:$(wc -l < $j/cgroup.procs 2>/dev/null)p"
    done
    echo "$line"
  done
  sleep 0.2
done
