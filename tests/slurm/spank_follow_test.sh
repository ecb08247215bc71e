#!/usr/bin/env bash
# ctest SlurmTestbed.SpankOptionsReachFollowingDynamosd (tests/slurm/CMakeLists.txt):
#   spank_follow_test.sh SLURM_TESTBED_SH BIN_DIR LIB_DIR
# A one-node test bed with Slurm's gang scheduler (time slice 5 s, one CPU, two jobs)
# and dynamos_spank.so in its plugstack.conf:
# - srun --help and sbatch --help list --dynamos-paging and --dynamos-guest; a bad value
#   is refused by srun and by sbatch, naming the value and the choices
# - dynamosd --follow slurm (paging extension loaded) finds both jobs with the policies
#   they were submitted with, writes switch records at Slurm's suspend and resume of the
#   adaptive job, detected within two polls; the guest job's processes run SCHED_IDLE
# - dynamosd restarted while that job is suspended adopts it (adopt-suspended) and
#   records its next resume; the job runs after Slurm resumes it (no process stopped)
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
dpid=""
fake=""
cleanup() {
  [[ -n "$dpid" ]] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  [[ -n "$fake" ]] && kill "$fake" 2>/dev/null
  "$testbed" down >/dev/null 2>&1
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
a="$(sbatch --parsable --dynamos-paging=adaptive -n 1 --wrap 'while :; do :; done')"
b="$(sbatch --parsable --dynamos-paging=demand --dynamos-guest -n 1 --wrap 'while :; do :; done')"
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
count_event() { grep -c "\"job\":$1,\"event\":\"$2\"" "$swlog" 2>/dev/null; }

wait_for 10 "the record of job $a says paging=adaptive" grep -qsx 'paging=adaptive' "$records/$a"
wait_for 10 "the record of job $b says guest=1" grep -qsx 'guest=1' "$records/$b"
check "the symlinked record's target is untouched" test "$(cat "$scratch/victim")" == precious
wait_for 25 "job $a has a suspend record (Slurm's gang scheduler stopped it)" has_event "$a" suspend
grep "\"job\":$a,\"event\":\"suspend\"" "$swlog" | head -1
check "its record carries policy adaptive and the extension's working set" grep -q \
  "\"job\":$a,\"event\":\"suspend\",\"policy\":\"adaptive\".*\"ws_pages\":" "$swlog"
# restart while job $a is suspended
kill "$dpid" && wait "$dpid"
check "dynamosd stops on SIGTERM with exit 0" test $? -eq 0
check "job $a is still suspended by Slurm" test "$(squeue -h -j "$a" -o %t)" == S
start_dynamosd "$scratch/d2.log"
wait_for 5 "the restarted dynamosd adopts the suspended job $a" has_event "$a" adopt-suspended
wait_for 12 "job $a has a resume record after the restart" has_event "$a" resume
check "the resume pages with policy adaptive (the extension's switch record)" grep -q \
  "\"job\":$a,\"event\":\"resume\",\"policy\":\"adaptive\".*\"paging\":{.*\"policy\":\"adaptive\"" "$swlog"
check "the restarted dynamosd knows job $b as a guest" grep -q "Slurm job $b: paging demand, guest" "$scratch/d2.log"

stepd="$(pgrep -f "^slurmstepd: \[$a\.batch\]")"
task="$(pgrep -P "$stepd" | head -1)"
sleep 0.3
check "job $a runs after Slurm resumed it (state $(awk '{print $3}' "/proc/$task/stat"))" \
  test "$(awk '{print $3}' "/proc/$task/stat")" != T
bstep="$(pgrep -f "^slurmstepd: \[$b\.batch\]")"
btask="$(pgrep -P "$bstep" | head -1)"
check "guest job $b's task runs SCHED_IDLE" grep -q 'SCHED_IDLE' <(chrt -p "$btask")
check "job $a's task keeps SCHED_OTHER" grep -q 'SCHED_OTHER' <(chrt -p "$task")

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
