#!/usr/bin/env bash
# ctest SlurmTestbed.SpankOptionsReachFollowingDynamosd (tests/slurm/CMakeLists.txt):
#   spank_follow_test.sh SLURM_TESTBED_SH BIN_DIR LIB_DIR
# A one-node test bed with Slurm's gang scheduler (time slice 5 s, one CPU, two jobs)
# and dynamos_spank.so in its plugstack.conf:
# - srun --help and sbatch --help list --dynamos-paging and --dynamos-guest; a bad value
#   is refused by srun and by sbatch, naming the value and the choices
# - dynamosd --follow slurm (paging extension loaded, swap on zram) follows a job
#   submitted --dynamos-paging=adaptive and a --dynamos-paging=aggressive --dynamos-guest
#   job (48 MiB each): the records reach it; dynamosd is restarted while Slurm holds the
#   second job suspended and adopts it; then the switch records at Slurm's next suspend
#   and resumes show the policies at work: the aggressive job's resume pages the adaptive
#   job out, the adaptive job's resume prefetches its working set; each job runs again
#   once Slurm resumed it; every detection within 100 ms; the guest runs SCHED_IDLE
# - hostile input: a record symlinked elsewhere, a record writable by others and a fake
#   "slurmstepd" (a copy of sleep named so) are ignored; the symlink's target is untouched
# Not root: skip (77), or fail under CI=true.
set -uo pipefail

testbed="${1:?usage: spank_follow_test.sh SLURM_TESTBED_SH BIN_DIR LIB_DIR}"
bin="${2:?usage: spank_follow_test.sh SLURM_TESTBED_SH BIN_DIR LIB_DIR}"
lib="${3:?usage: spank_follow_test.sh SLURM_TESTBED_SH BIN_DIR LIB_DIR}"
state="${DYNAMOS_SLURM_TESTBED_DIR:-/run/dynamos-slurm-testbed}"

# shellcheck source=tests/slurm/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

((EUID == 0)) || unavailable "needs root (network namespaces, slurmd/slurmctld/munged)"
for f in "$bin/dynamosd" "$lib/dynamos_spank.so" "$lib/libdynamos_ext_paging.so"; do
  [[ -e "$f" ]] || {
    echo "SlurmTestbed: $f missing: cmake --build build --target dynamosd dynamos_spank dynamos_ext_paging" >&2
    exit 1
  }
done

scratch="$(mktemp -d)"
# bad follow-mode options: refused, naming what was wrong
out="$("$bin/dynamosd" --follow pbs 2>&1)"
check "dynamosd --follow pbs is refused (exit $?): $out" grep -q "unknown scheduler 'pbs'" <<<"$out"
out="$("$bin/dynamosd" --follow slurm --follow-poll 0ms 2>&1)"
check "a zero --follow-poll is refused: $out" grep -q -- "--follow-poll must be positive" <<<"$out"
out="$("$bin/dynamosd" --follow slurm --slurmstepd /nonexistent/slurmstepd 2>&1)"
check "a missing --slurmstepd is refused: $out" grep -q -- "--slurmstepd /nonexistent" <<<"$out"
zram="$(dirname "$testbed")/zram-swap.sh"
dpid=""
fake=""
cleanup() {
  [[ -n "$dpid" ]] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  [[ -n "$fake" ]] && kill "$fake" 2>/dev/null
  "$testbed" down >/dev/null 2>&1
  "$zram" down --holder $$ >/dev/null 2>&1
  rm -rf "$scratch"
}
trap cleanup EXIT

out="$("$testbed" up --nodes 1 --cpus-per-node 1 --gang --timeslice 5 \
  --spank "$lib/dynamos_spank.so" --timeout 30 2>&1)"
rc=$?
check "up --gang --spank exits 0" test "$rc" -eq 0
((rc == 0)) || { echo "$out"; finish; }
# shellcheck source=/dev/null
source "$state/env.sh"
# swap, so that page-out and prefetch have somewhere to go (removed again at the end)
"$zram" up --size 512M --holder $$ >/dev/null
check "swap is active" test -n "$(swapon --noheadings --show)"
records="$state/spank"
swlog="$scratch/switches.jsonl"

# --- the options ---------------------------------------------------------------------
check "srun --help lists --dynamos-paging" grep -q -- '--dynamos-paging=POLICY' <(srun --help 2>&1)
check "srun --help lists --dynamos-guest" grep -q -- '--dynamos-guest' <(srun --help 2>&1)
check "sbatch --help lists --dynamos-paging" grep -q -- '--dynamos-paging=POLICY' <(sbatch --help 2>&1)
bad="$(timeout 20 srun --dynamos-paging=sometimes true 2>&1)"
rc=$?
echo "$bad"
check "srun refuses --dynamos-paging=sometimes (exit $rc)" test "$rc" -ne 0
check "srun's message names the value and the choices" grep -q \
  "invalid --dynamos-paging 'sometimes': expected demand, selective, aggressive or adaptive" <<<"$bad"
bad="$(timeout 20 sbatch --dynamos-paging=sometimes --wrap true 2>&1)"
rc=$?
check "sbatch refuses --dynamos-paging=sometimes (exit $rc)" test "$rc" -ne 0
check "sbatch's message names the value" grep -q "invalid --dynamos-paging 'sometimes'" <<<"$bad"
check "no job was queued for a refused value" test -z "$(squeue -h)"

# --- hostile input, prepared before dynamosd starts ----------------------------------
mkdir -p "$records" && chmod 755 "$records"
echo precious >"$scratch/victim"
ln -s "$scratch/victim" "$records/1"                       # the first job's record
printf 'job=77\nuid=0\npaging=aggressive\nguest=0\n' >"$records/77"
chmod 666 "$records/77"                                      # writable by others
printf 'job=78\nuid=0\npaging=aggressive\nguest=0\n' >"$records/78"
mkdir -p "$scratch/fake" && cp "$(command -v sleep)" "$scratch/fake/slurmstepd"
(exec -a "slurmstepd: [78.0]" "$scratch/fake/slurmstepd" 60) &
fake=$!

start_dynamosd() { # log file
  "$bin/dynamosd" --follow slurm --follow-dir "$records" --follow-log "$swlog" \
    --paging-extension "$lib/libdynamos_ext_paging.so" --log-level info >"$1" 2>&1 &
  dpid=$!
}
start_dynamosd "$scratch/d1.log"

c="$(timeout 20 srun --dynamos-paging=selective -n 1 true 2>&1)"
rc=$?
echo "$c"
check "job 1 runs although its record's name is taken by a symlink (exit $rc)" test "$rc" -eq 0
check "the plugin says (slurmd's log) it leaves job 1 unfollowed" grep -q \
  "$records/1 exists and is not a record of this plugin; job 1 is not followed" "$state/logs/slurmd-n1.log"
# two jobs touching 48 MiB each in a loop; one CPU, so Slurm time-slices them
cat >"$scratch/touch.py" <<'PY'
b = bytearray(48 << 20)
while True:
    for i in range(0, len(b), 4096):
        b[i] = (b[i] + 1) & 255
PY
a="$(sbatch --parsable --dynamos-paging=adaptive -n 1 -o "$scratch/%j.out" --wrap "exec python3 $scratch/touch.py")"
b="$(sbatch --parsable --dynamos-paging=aggressive --dynamos-guest -n 1 -o "$scratch/%j.out" \
  --wrap "exec python3 $scratch/touch.py")"
check "jobs $a and $b submitted" test -n "$a" -a -n "$b"

# wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.1 s
wait_for() {
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || { check "$what" false; return 1; }
    sleep 0.1
  done
  check "$what" true
}
has_event() { grep -q "\"job\":$1,\"event\":\"$2\"" "$swlog" 2>/dev/null; }
event_line() { grep "\"job\":$1,\"event\":\"$2\"" "$swlog" | tail -1; }
# a job's processes (its slurmstepd's descendants): "pid state" lines
job_procs() {
  local stepd
  stepd="$(pgrep -f "^slurmstepd: \[$1\.batch\]")" || return
  ps -eo pid=,ppid=,stat= | awk -v root="$stepd" '
    {pid[NR] = $1; ppid[NR] = $2; st[NR] = substr($3, 1, 1)}
    END {in_job[root] = 1
         do {more = 0; for (i = 1; i <= NR; i++) if (in_job[ppid[i]] && !in_job[pid[i]]) {in_job[pid[i]] = 1; more = 1}} while (more)
         for (i = 1; i <= NR; i++) if (in_job[pid[i]] && pid[i] != root) print pid[i], st[i]}'
}
job_states() { job_procs "$1" | awk '{printf "%s ", $2}'; }
runs() { local s; s="$(job_states "$1")"; [[ -n "$s" && "$s" != *T* ]]; }

wait_for 10 "the record of job $a says paging=adaptive" grep -qsx 'paging=adaptive' "$records/$a"
wait_for 10 "the record of job $b says guest=1" grep -qsx 'guest=1' "$records/$b"
check "the symlinked record's target is untouched" test "$(cat "$scratch/victim")" == precious

# Slurm suspends the second job first: restart dynamosd while it is suspended
wait_for 20 "job $b has a suspend record (Slurm's gang scheduler stopped it)" has_event "$b" suspend
kill "$dpid" && wait "$dpid"
check "dynamosd stops on SIGTERM with exit 0" test $? -eq 0
dpid=""
check "job $b is still suspended by Slurm" test "$(squeue -h -j "$b" -o %t)" == S
start_dynamosd "$scratch/d2.log"
wait_for 5 "the restarted dynamosd adopts the suspended job $b" has_event "$b" adopt-suspended
check "the restarted dynamosd knows job $b's choice" grep -q "Slurm job $b: paging aggressive, guest" \
  "$scratch/d2.log"

# next slice: job $a suspended, job $b resumed and paged with aggressive (all of $a out)
wait_for 12 "job $a has a suspend record with its working set" has_event "$a" suspend
event_line "$a" suspend
check "the suspend record says adaptive and carries the extension's working set" grep -q \
  "\"job\":$a,\"event\":\"suspend\",\"policy\":\"adaptive\".*\"ws_pages\":" "$swlog"
wait_for 3 "job $b has a resume record" has_event "$b" resume
event_line "$b" resume
check "job $b's resume paged job $a out (aggressive, pages_out > 0)" awk -v l="$(event_line "$b" resume)" \
  'BEGIN {exit !(l ~ /"policy":"aggressive"/ && l ~ /"out_job":'"$a"',/ && match(l, /"pages_out":[1-9]/))}'
wait_for 3 "job $b runs after Slurm resumed it (no process stopped)" runs "$b"

# next slice: job $a resumed and paged with adaptive (its working set prefetched)
wait_for 12 "job $a has a resume record" has_event "$a" resume
event_line "$a" resume
check "job $a's resume prefetched its working set (adaptive, pages_in > 0)" awk -v l="$(event_line "$a" resume)" \
  'BEGIN {exit !(l ~ /"paging":\{.*"policy":"adaptive"/ && match(l, /"pages_in":[1-9]/))}'
wait_for 3 "job $a runs after Slurm resumed it (no process stopped)" runs "$a"

btask="$(job_procs "$b" | awk 'NR == 1 {print $1}')"
atask="$(job_procs "$a" | awk 'NR == 1 {print $1}')"
check "guest job $b's task runs SCHED_IDLE" grep -q 'SCHED_IDLE' <(chrt -p "$btask")
check "job $a's task keeps SCHED_OTHER" grep -q 'SCHED_OTHER' <(chrt -p "$atask")

# detection: at most two polls (10 ms each) plus scheduling delay on a loaded machine
worst="$(grep -E "\"event\":\"(suspend|resume)\"" "$swlog" | sed -E 's/.*"detect_ms":([0-9.]+).*/\1/' |
  sort -g | tail -1)"
check "every suspend and resume detected within 100 ms (worst $worst ms)" \
  awk -v w="$worst" 'BEGIN {exit !(w != "" && w < 100)}'
check "no switch record has an error" test -z "$(grep -v '"error":""' "$swlog")"
check "the symlinked record was ignored, not followed" grep -q "job record $records/1 ignored" \
  "$scratch/d1.log"
check "the record writable by others was ignored" grep -q "job record $records/77 ignored" \
  "$scratch/d1.log"
check "the fake slurmstepd is no job" test -z "$(grep -E '"job":78,|Slurm job 78' "$swlog" \
  "$scratch/d1.log" "$scratch/d2.log")"

scancel "$a" "$b"
wait_for 10 "both jobs end in the switch log" bash -c \
  "grep -q '\"job\":$a,\"event\":\"end\"' '$swlog' && grep -q '\"job\":$b,\"event\":\"end\"' '$swlog'"
check "the plugin removed the jobs' records at their end" test ! -e "$records/$a" -a ! -e "$records/$b"
echo "--- switch log"
cat "$swlog"
echo "--- dynamosd"
cat "$scratch/d1.log" "$scratch/d2.log"
finish SpankOptionsReachFollowingDynamosd
