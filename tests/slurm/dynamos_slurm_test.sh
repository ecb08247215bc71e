#!/usr/bin/env bash
# ctest SlurmTestbed.DynamosInsideAnAllocation (tests/slurm/CMakeLists.txt):
#   dynamos_slurm_test.sh SLURM_TESTBED_SH BINDIR
# On a 3-node test bed: salloc -N 3; dynamos cluster up --slurm; two 3-rank MPI jobs (one
# rank a node) alternate every quantum with all ranks of a job together (the job groups'
# freezer states on the three nodes, sampled; gangd's round log), both finish with exit
# 0, squeue shows the allocation, the submitter's environment and --mpi-args reach the
# ranks, a job whose verification fails ends with its exit code, a job whose rank is
# killed on one node ends, a node's dynamosd killed and started again (cluster
# restart-node) takes its jobs back and they finish; cluster down leaves no process,
# cgroup, socket or state dir.
# Then the allocation cancelled with scancel while two jobs run: everything stops, nothing
# frozen or left. Not root: skip (77), or fail under CI=true.
set -uo pipefail

testbed="${1:?usage: dynamos_slurm_test.sh SLURM_TESTBED_SH BINDIR}"
bin="${2:?usage: dynamos_slurm_test.sh SLURM_TESTBED_SH BINDIR}"
tb_state="${DYNAMOS_SLURM_TESTBED_DIR:-/run/dynamos-slurm-testbed}"

# shellcheck source=tests/slurm/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

# The freezer state of job $1's group on node $2 under parent $3: F(rozen), T(hawed), -.
group_state() {
  local v1="/sys/fs/cgroup/freezer/$3/$2/job$1" v2="/sys/fs/cgroup/$3/$2/job$1"
  if [[ -f "$v1/freezer.state" ]]; then
    [[ "$(cat "$v1/freezer.state" 2>/dev/null)" == FROZEN ]] && echo F || echo T
  elif [[ -f "$v2/cgroup.freeze" ]]; then
    [[ "$(cat "$v2/cgroup.freeze" 2>/dev/null)" == 1 ]] && echo F || echo T
  else
    echo -
  fi
}

# Processes whose command line names $1.
naming() {
  local d out=""
  for d in /proc/[0-9]*; do
    [[ "${d#/proc/}" == "$$" || "${d#/proc/}" == "$BASHPID" ]] && continue
    cmd="$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null)" || continue
    [[ "$cmd" == *"$1"* ]] && out+="${d#/proc/} "
  done
  echo "$out"
}

leaves_nothing() { # state dir, cgroup parent
  local procs
  procs="$(naming "$1/")"
  check "no process names $1/ (${procs:-none})" test -z "$procs"
  procs="$(naming "$bin/dynamos-mpi-stencil")"
  check "no rank is left (${procs:-none})" test -z "$procs"
  check "no cgroup $2" test -z "$(find /sys/fs/cgroup -maxdepth 2 -name "$2" 2>/dev/null)"
  check "no state dir, socket or secret in $1" test ! -e "$1"
}

# --- inside the allocation: the scenario -------------------------------------------------
inside() {
  local dir="$1" scratch="$2" parent="dynamos-slurm-$SLURM_JOB_ID"
  export DYNAMOS_SOCKET="$dir/gangd.sock" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  cd "$scratch" || exit 1
  local out rc
  out="$("$bin/dynamos" cluster up --slurm --state-dir "$dir" --quantum 1s 2>&1)"
  rc=$?
  echo "$out"
  check "cluster up --slurm exits 0" test "$rc" -eq 0
  ((rc == 0)) || return
  check "squeue shows the allocation running on 3 nodes" \
    test "$(squeue -h -j "$SLURM_JOB_ID" -o '%T %D')" == "RUNNING 3"
  check "3 nodes up, each with the allocation's CPUs as slots" \
    test "$("$bin/dynamos" nodes | awk '$2 == "up" && $3 == 1' | wc -l)" -eq 3

  local stencil="$bin/dynamos-mpi-stencil -q --mem 16M --seconds 5"
  local a b
  a="$("$bin/dynamos" submit --ranks 3 --nodes 3 -- $stencil --progress-file "$scratch/a-%r" | awk '{print $2}')"
  b="$("$bin/dynamos" submit --ranks 3 --nodes 3 -- $stencil --progress-file "$scratch/b-%r" | awk '{print $2}')"
  # sample the job groups' freezer states on the three nodes
  local samples=0 together=0 a_ran=0 b_ran=0 i sa sb
  for ((i = 0; i < 60; i++)); do
    sa="$(group_state "$a" n1 "$parent")$(group_state "$a" n2 "$parent")$(group_state "$a" n3 "$parent")"
    sb="$(group_state "$b" n1 "$parent")$(group_state "$b" n2 "$parent")$(group_state "$b" n3 "$parent")"
    if [[ "$sa" != *-* && "$sb" != *-* ]]; then
      samples=$((samples + 1))
      [[ "$sa" == TTT && "$sb" == FFF ]] && together=$((together + 1)) a_ran=$((a_ran + 1))
      [[ "$sa" == FFF && "$sb" == TTT ]] && together=$((together + 1)) b_ran=$((b_ran + 1))
    fi
    sleep 0.07
  done
  echo "freezer samples: $samples with both jobs placed, $together with one job running on all 3 nodes and the other frozen on all 3 ($a_ran job $a, $b_ran job $b)"
  check "the two jobs alternate, all ranks of a job together (>= 80% of samples)" \
    test "$samples" -ge 10 -a $((together * 100)) -ge $((samples * 80)) -a "$a_ran" -gt 0 -a "$b_ran" -gt 0
  "$bin/dynamos" wait "$a" >/dev/null
  check "job $a ends with exit 0" test $? -eq 0
  "$bin/dynamos" wait "$b" >/dev/null
  check "job $b ends with exit 0" test $? -eq 0
  local f progressed=0
  for f in "$scratch"/a-0 "$scratch"/a-1 "$scratch"/a-2 "$scratch"/b-0 "$scratch"/b-1 "$scratch"/b-2; do
    [[ -s "$f" ]] && progressed=$((progressed + 1))
  done
  check "every rank of both jobs kept a progress file ($progressed of 6)" test "$progressed" -eq 6
  check "gangd switched all 3 nodes together, round after round" \
    test "$(grep -c '"nodes":3,"switched":3,"failed":0' "$dir/rounds.jsonl")" -ge 3

  export DYNAMOS_TEST_MARK="slurm-$$"
  local e
  e="$("$bin/dynamos" submit --ranks 3 --nodes 3 --mpi-args '--tag-output' -- /usr/bin/env | awk '{print $2}')"
  "$bin/dynamos" wait "$e" >/dev/null
  check "the submitter's environment reaches all 3 ranks, --mpi-args apply (--tag-output)" \
    test "$(grep -cE "^\[[0-9]+,[0-2]\]<stdout>:DYNAMOS_TEST_MARK=slurm-$$\$" "dynamos-job$e.out")" -eq 3

  local bad
  bad="$("$bin/dynamos" submit --ranks 3 --nodes 3 -- "$bin/dynamos-mpi-stencil" -q --mem 16M --iterations 4 --inject-error | awk '{print $2}')"
  "$bin/dynamos" wait "$bad" >/dev/null
  rc=$?
  check "a job whose verification fails ends with its exit code (got $rc)" test "$rc" -ne 0

  local long pid
  long="$("$bin/dynamos" submit --ranks 3 --nodes 3 -- "$bin/dynamos-mpi-stencil" -q --mem 16M --seconds 120 | awk '{print $2}')"
  for ((i = 0; i < 100; i++)); do
    pid="$(head -1 "/sys/fs/cgroup/freezer/$parent/n2/job$long/cgroup.procs" 2>/dev/null)"
    [[ -n "$pid" ]] && break
    sleep 0.1
  done
  sleep 1
  kill -KILL "$pid" 2>/dev/null
  timeout 60 "$bin/dynamos" wait "$long" >/dev/null
  rc=$?
  check "a job whose rank on n2 is killed ends (exit $rc, not a hang)" test "$rc" -ne 0 -a "$rc" -ne 124
  check "its groups are gone on every node" \
    test -z "$(find /sys/fs/cgroup/freezer/"$parent" -name "job$long" 2>/dev/null)"

  # a node's dynamosd killed (its task of the agents' step ends) and started again
  local r1 r2 agent
  r1="$("$bin/dynamos" submit --ranks 3 --nodes 3 -- $stencil | awk '{print $2}')"
  r2="$("$bin/dynamos" submit --ranks 3 --nodes 3 -- $stencil | awk '{print $2}')"
  sleep 2
  agent="$(pgrep -f "^$bin/dynamosd --node n2 ")"
  kill -KILL $agent
  sleep 1
  "$bin/dynamos" cluster restart-node n2 --state-dir "$dir"
  check "restart-node n2 exits 0 (dynamosd $agent was killed)" test $? -eq 0
  check "n2 is up again" test "$("$bin/dynamos" nodes | awk '$1 == "n2" {print $2}')" == up
  "$bin/dynamos" wait "$r1" >/dev/null
  check "job $r1 on the restarted node still ends with exit 0" test $? -eq 0
  "$bin/dynamos" wait "$r2" >/dev/null
  check "job $r2 on the restarted node still ends with exit 0" test $? -eq 0

  out="$("$bin/dynamos" cluster down --state-dir "$dir" 2>&1)"
  rc=$?
  echo "$out"
  check "cluster down exits 0" test "$rc" -eq 0
  leaves_nothing "$dir" "$parent"
}

# Inside a second allocation: two jobs run, then the allocation is cancelled.
inside_scancel() {
  local dir="$1" scratch="$2"
  export DYNAMOS_SOCKET="$dir/gangd.sock"
  cd "$scratch" || exit 1
  echo "$SLURM_JOB_ID" >"$scratch/jobid"
  "$bin/dynamos" cluster up --slurm --state-dir "$dir" --quantum 1s || exit 1
  "$bin/dynamos" submit --ranks 3 --nodes 3 -- "$bin/dynamos-mpi-stencil" -q --mem 16M --seconds 120
  "$bin/dynamos" submit --ranks 3 --nodes 3 -- "$bin/dynamos-mpi-stencil" -q --mem 16M --seconds 120
  sleep 4
  "$bin/dynamos" jobs
  echo "scancel $SLURM_JOB_ID"
  scancel "$SLURM_JOB_ID"
  sleep 60 # killed with the allocation
}

case "${3:-}" in
  --inside) inside "$4" "$5"; finish "inside the allocation" ;;
  --inside-scancel) inside_scancel "$4" "$5"; exit 0 ;;
esac

# --- outside: the test bed ------------------------------------------------------------------
((EUID == 0)) || unavailable "needs root (the test bed, cgroups, the agents)"
command -v mpirun >/dev/null || unavailable "mpirun missing (openmpi-bin, scripts/setup.sh)"
for p in dynamos gangd dynamosd dynamos-launch dynamos-rank dynamos-mpi-stencil; do
  [[ -x "$bin/$p" ]] || { echo "$bin/$p missing: build it" >&2; exit 1; }
done
went_down=0
cleanup() { ((went_down)) || "$testbed" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
if ! out="$("$testbed" up --nodes 3 --timeout 30 2>&1)"; then
  echo "$out" >&2
  echo "the test bed did not come up" >&2
  exit 1
fi
# shellcheck source=/dev/null
source "$tb_state/env.sh"
scratch="$(mktemp -d /tmp/dynamos-slurm-test.XXXXXX)"
dir="/run/dynamos-slurm-test-$$"

timeout 240 salloc -N 3 "$0" "$testbed" "$bin" --inside "$dir" "$scratch" 2>&1
rc=$?
check "the scenario inside salloc -N 3 passes (exit $rc)" test "$rc" -eq 0
[[ -d "$dir" ]] && "$bin/dynamos" cluster down --state-dir "$dir" >/dev/null 2>&1

# scancel while two jobs run
dir2="$dir-scancel"
timeout 120 salloc -N 3 "$0" "$testbed" "$bin" --inside-scancel "$dir2" "$scratch" 2>&1
jobid="$(cat "$scratch/jobid" 2>/dev/null)"
for ((i = 0; i < 150; i++)); do
  [[ ! -e "$dir2" && -z "$(naming "$dir2/")" && -z "$(naming "$bin/dynamos-mpi-stencil")" ]] && break
  sleep 0.1
done
echo "after scancel: $((i / 10)).$((i % 10)) s until the cluster was gone"
frozen="$(find /sys/fs/cgroup -path "*dynamos-slurm-$jobid*" -name freezer.state 2>/dev/null)"
check "after scancel nothing is frozen or left in a group (${frozen:-none})" test -z "$frozen"
check "sacct/squeue: allocation $jobid is no longer running" \
  test -z "$(squeue -h -j "$jobid" -t RUNNING 2>/dev/null)"
leaves_nothing "$dir2" "dynamos-slurm-$jobid"
[[ -d "$dir2" ]] && "$bin/dynamos" cluster down --state-dir "$dir2" >/dev/null 2>&1

"$testbed" down >/dev/null 2>&1
went_down=1
rm -rf "$scratch"
finish SlurmTestbed.DynamosInsideAnAllocation
