# The kernel demonstrations, one function a scenario, run inside the test VM by
# init.sh. A scenario returns non-zero after printing "DYNAMOS-FAIL: why".
M=/modules

fail() { echo "DYNAMOS-FAIL: $*"; return 1; }
param() { cat "/sys/module/$1/parameters/$2"; }
# wait_for SECONDS COMMAND...: retries COMMAND every 0.1 s until it succeeds.
wait_for() {
  local tries=$(($1 * 10)); shift
  while ! "$@" 2>/dev/null; do
    tries=$((tries - 1)); [ "$tries" -gt 0 ] || return 1
    usleep 100000
  done
}
load() { for m in "$@"; do insmod "$M/$m.ko" || { fail "insmod $m"; return 1; }; done; }
# The update id from "update N: ..." printed by dynamos kernel switch.
update_id() { echo "$1" | sed -n 's/^update \([0-9]*\):.*/\1/p'; }
held_some() { [ "$(param dk_ab held_calls)" -ge 1 ]; }
# ns per getppid() call, as measured by dk_stress (which fails on a wrong answer).
bench() { local o; o=$(dk_stress bench "$1") || { echo "$o" >&2; return 1; }; echo "$o" | sed -n 's/^ns_per_call=\([0-9.]*\) .*/\1/p'; }

# A security fix applied live to a faulty function while two kernel threads call it.
scenario_fix() {
  load dynamos_kernel dk_target || return 1
  sleep 1
  leaks=$(param dk_target leaks)
  [ "$leaks" -gt 0 ] || { fail "the faulty dk_target_read_slot leaked nothing before the fix"; return 1; }
  load dk_fix || return 1
  out=$(dynamos kernel switch dk_target_read_slot fixed) || { fail "switch to fixed: $out"; return 1; }
  echo "$out"; id=$(update_id "$out")
  usleep 300000 # calls begun before the switch finish in the faulty version (drain)
  l1=$(param dk_target leaks); c1=$(param dk_target slot_calls)
  sleep 2
  l2=$(param dk_target leaks); c2=$(param dk_target slot_calls)
  echo "DYNAMOS-FIGURE fix: leaks before=$leaks at-switch=$l1 after-2s=$l2 calls-in-2s=$((c2 - c1))"
  [ "$l2" -eq "$l1" ] || { fail "the secret leaked after the fix: $l1 -> $l2"; return 1; }
  [ $((c2 - c1)) -gt 1000 ] || { fail "callers stalled under the fix: $((c2 - c1)) calls in 2 s"; return 1; }
  dynamos kernel status | grep -q "version dk_target_read_slot fixed module=dk_fix state=installed" ||
    { fail "status does not show the fix installed"; dynamos kernel status; return 1; }
  rmmod dk_fix 2>/dev/null && { fail "dk_fix unloaded while its version is installed"; return 1; }
  dynamos kernel revert "$id" || { fail "revert $id"; return 1; }
  sleep 1
  l3=$(param dk_target leaks)
  [ "$l3" -gt "$l2" ] || { fail "after revert the original (faulty) version does not run"; return 1; }
  wait_for 10 rmmod dk_fix || { fail "dk_fix cannot be unloaded after revert and drain"; return 1; }
  rmmod dk_target && rmmod dynamos_kernel
}

slot_of() { dynamos kernel status | sed -n "s/^function $1 hijacked=[01] slot=\(.*\)/\1/p"; }

# Updates: all or none, stacked, reverted in order, errors that say why.
updates_semantics() {
  err=$(dynamos kernel switch dk_target_compute nope 2>&1) && { fail "switch to a missing version succeeded"; return 1; }
  echo "$err" | grep -q "no version named nope" || { fail "unhelpful error: $err"; return 1; }
  err=$(dynamos kernel switch dk_target_compute vA dk_target_wait nope 2>&1) && { fail "a set with a missing version succeeded"; return 1; }
  [ "$(slot_of dk_target_compute)" != vA ] || { fail "half of a failed set was applied"; return 1; }
  out=$(dynamos kernel switch dk_target_compute vA dk_target_wait hold) || { fail "set of two: $out"; return 1; }
  set_id=$(update_id "$out")
  [ "$(slot_of dk_target_compute)" = vA ] && [ "$(slot_of dk_target_wait)" = hold ] || { fail "set of two not applied"; return 1; }
  out=$(dynamos kernel switch dk_target_compute vB) || { fail "stacked switch: $out"; return 1; }
  top_id=$(update_id "$out")
  err=$(dynamos kernel revert "$set_id" 2>&1) && { fail "reverted an update below a later one"; return 1; }
  echo "$err" | grep -q "changed again by update $top_id" || { fail "unhelpful error: $err"; return 1; }
  dynamos kernel revert "$top_id" && dynamos kernel revert "$set_id" || { fail "revert in order"; return 1; }
  [ "$(slot_of dk_target_compute)" = "" ] || [ "$(slot_of dk_target_compute)" = original ] || { fail "compute not back to original"; return 1; }
  err=$(dynamos kernel revert 999 2>&1) && { fail "reverted a missing update"; return 1; }
  echo "DYNAMOS-FIGURE updates: sets all-or-none, stacking and revert order checked"
}

# 100,000 switches between two versions while two kernel threads call the function.
scenario_switch() {
  load dynamos_kernel dk_target dk_ab || return 1
  updates_semantics || return 1
  c0=$(param dk_target compute_calls)
  dk_stress switch dk_target_compute vA vB 50000 || { fail "dk_stress switch"; return 1; }
  c1=$(param dk_target compute_calls)
  bad=$(param dk_target invalid); t0=$(param dk_target tag0); t1=$(param dk_target tag1); t2=$(param dk_target tag2)
  echo "DYNAMOS-FIGURE switch: calls=$((c1 - c0)) original=$t0 vA=$t1 vB=$t2 invalid=$bad"
  [ "$bad" -eq 0 ] || { fail "$bad calls answered by no valid version"; return 1; }
  [ "$t1" -gt 0 ] && [ "$t2" -gt 0 ] || { fail "calls did not reach both versions (vA=$t1 vB=$t2)"; return 1; }
  dynamos kernel status | grep -q "^update" && { fail "updates left after the stress"; dynamos kernel status; return 1; }
  wait_for 10 rmmod dk_ab || { fail "dk_ab cannot be unloaded after the stress"; return 1; }
  rmmod dk_target && rmmod dynamos_kernel
}

# Performance monitoring injected into vfs_read and the openat path, read back.
scenario_probe() {
  load dynamos_kernel || return 1
  # Shell builtins only: every iteration opens and reads, no process is spawned.
  (while :; do read -r line </proc/version; done) &
  load_pid=$!
  out=$(dynamos kernel probe vfs_read do_sys_openat2 --seconds 2)
  status=$?
  kill "$load_pid"; wait "$load_pid" 2>/dev/null
  echo "$out"
  [ "$status" -eq 0 ] || { fail "dynamos kernel probe exited $status"; return 1; }
  for f in vfs_read do_sys_openat2; do
    calls=$(echo "$out" | awk -v f="$f" '$1 == f { print $2 }')
    avg=$(echo "$out" | awk -v f="$f" '$1 == f { print $4 }')
    echo "DYNAMOS-FIGURE probe: $f calls=$calls avg_ns=$avg"
    [ -n "$calls" ] && [ "$calls" -gt 100 ] || { fail "probe $f counted ${calls:-nothing}"; return 1; }
  done
  dynamos kernel status | grep -q "^probe" && { fail "probes left behind"; return 1; }
  dynamos kernel probe no_such_function_xyz --seconds 1 2>/dev/null && { fail "probing a missing function succeeded"; return 1; }
  rmmod dynamos_kernel
}

# An update module cannot be unloaded while its version is in use.
scenario_unload() {
  load dynamos_kernel dk_target dk_ab || return 1
  echo 1 >/sys/module/dk_ab/parameters/hold
  out=$(dynamos kernel switch dk_target_wait hold) || { fail "switch to hold: $out"; return 1; }
  echo "$out"; id=$(update_id "$out")
  wait_for 5 held_some ||
    { fail "no call entered the holding version"; return 1; }
  rmmod dk_ab 2>/dev/null && { fail "dk_ab unloaded while its version is installed"; return 1; }
  dynamos kernel revert "$id" || { fail "revert $id"; return 1; }
  sleep 1
  dynamos kernel status
  dynamos kernel status | grep -q "version dk_target_wait hold module=dk_ab state=draining calls=1 inflight=1" ||
    { fail "status does not show one activation still inside the reverted version"; return 1; }
  rmmod dk_ab 2>/dev/null && { fail "dk_ab unloaded while an activation is inside its version"; return 1; }
  w1=$(param dk_target wait_calls)
  echo 0 >/sys/module/dk_ab/parameters/hold
  wait_for 10 rmmod dk_ab || { fail "dk_ab cannot be unloaded once drained"; return 1; }
  sleep 1
  w2=$(param dk_target wait_calls)
  [ "$w2" -gt "$w1" ] || { fail "the waiting thread did not resume"; return 1; }
  echo "DYNAMOS-FIGURE unload: refused twice (installed, in use), unloaded after drain"
  rmmod dk_target && rmmod dynamos_kernel
}

# What a redirect costs: getppid() with its handler redirected to an identical copy.
# Each measurement is relative to getpid(), never redirected, measured interleaved
# with it (dk_stress bench): the ratio getppid/getpid unredirected, then redirected.
# The host is shared, so rounds repeat and the median round is reported.
scenario_overhead() {
  load dynamos_kernel dk_bench || return 1
  blocks=200; rounds=5; rel0=""; rel1=""; abs0=""; abs1=""
  dk_stress bench 20 >/dev/null # warm up
  round=1
  while [ "$round" -le "$rounds" ]; do
    b=$(dk_stress bench $blocks) || { fail "bench original: $b"; return 1; }
    out=$(dynamos kernel switch __x64_sys_getppid copy) || { fail "switch getppid: $out"; return 1; }
    r=$(dk_stress bench $blocks) || { fail "bench redirected: $r"; return 1; }
    calls=$(dynamos kernel status | sed -n 's/^version __x64_sys_getppid copy .*calls=\([0-9]*\).*/\1/p')
    dynamos kernel revert "$(update_id "$out")" || { fail "revert"; return 1; }
    echo "round $round: original: $b / redirected: $r / copy calls so far $calls"
    [ "$calls" -ge $((round * blocks * 1000)) ] || { fail "the copy was not reached ($calls calls)"; return 1; }
    rel0="$rel0 $(echo "$b" | awk -F'[= ]' '{ print $2 / $4 }')"; abs0="$abs0 $(echo "$b" | awk -F'[= ]' '{ print $2 }')"
    rel1="$rel1 $(echo "$r" | awk -F'[= ]' '{ print $2 / $4 }')"; abs1="$abs1 $(echo "$r" | awk -F'[= ]' '{ print $2 }')"
    round=$((round + 1))
  done
  echo "$rel0|$rel1|$abs0|$abs1" | awk -F'|' '
    function median(s,   a, n, i, j, t) { n = split(s, a, " ");
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return a[int((n + 1) / 2)] }
    { r0 = median($1); r1 = median($2)
      printf "DYNAMOS-FIGURE overhead: getppid/getpid original=%.3f redirected=%.3f ratio=%.3f (+%.1f%%); getppid median ns %.1f -> %.1f; TCG, indicative only\n",
        r0, r1, r1 / r0, (r1 / r0 - 1) * 100, median($3), median($4) }'
  wait_for 10 rmmod dk_bench || { fail "dk_bench cannot be unloaded"; return 1; }
  rmmod dynamos_kernel
}
