#!/usr/bin/env bash
# ctest SlurmTestbed.UpRunsMultiNodeJobsDownLeavesNothing (tests/slurm/CMakeLists.txt):
#   testbed_test.sh SLURM_TESTBED_SH MPI_HELLO
# up --nodes 3; `srun -N 3 hostname` gives n1 n2 n3; an MPI job under `salloc -N 2`
# (mpirun starting its daemons through srun, TCP only) has its two ranks on two hosts
# with addresses of the test bed's subnet; down leaves no daemon, namespace, veth,
# bridge, cgroup or state dir. Not root: skip (77), or fail under CI=true.
set -uo pipefail

testbed="${1:?usage: testbed_test.sh SLURM_TESTBED_SH MPI_HELLO}"
hello="${2:?usage: testbed_test.sh SLURM_TESTBED_SH MPI_HELLO}"
state="${DYNAMOS_SLURM_TESTBED_DIR:-/run/dynamos-slurm-testbed}"
subnet="${DYNAMOS_SLURM_TESTBED_SUBNET:-10.199.77}"

# shellcheck source=tests/slurm/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

((EUID == 0)) || unavailable "needs root (network namespaces, a bridge, slurmd/slurmctld/munged)"
[[ -x "$hello" ]] || { echo "SlurmTestbed: $hello missing: cmake --build build --target slurm_mpi_hello" >&2; exit 1; }
command -v mpirun >/dev/null || unavailable "mpirun missing (openmpi-bin, scripts/setup.sh)"

went_down=0
cleanup() { ((went_down)) || "$testbed" down >/dev/null 2>&1 || true; }
trap cleanup EXIT

t0=$EPOCHREALTIME
out="$("$testbed" up --nodes 3 --timeout 30 2>&1)"
rc=$?
echo "$out"
t_up="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')"
check "up exits 0 (took $t_up s)" test "$rc" -eq 0
check "last line of up is SLURM_CONF=$state/slurm.conf" \
  test "$(tail -n 1 <<<"$out")" == "SLURM_CONF=$state/slurm.conf"
((rc == 0)) || finish

# shellcheck source=/dev/null
source "$state/env.sh"
cd "$(mktemp -d)" || exit 1
scratch="$PWD"

hosts="$(timeout 30 srun -N 3 hostname 2>&1 | sort | tr '\n' ' ')"
check "srun -N 3 hostname gives n1 n2 n3 (got: $hosts)" test "$hosts" == "n1 n2 n3 "

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# in a --sanitize build, Open MPI's own allocations at exit are not this test's leaks
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
mpi="$(timeout 60 salloc -N 2 mpirun --oversubscribe --map-by node -np 2 --mca btl self,tcp \
  "$hello" 2>&1)"
rc=$?
echo "$mpi"
check "salloc -N 2 mpirun exits 0" test "$rc" -eq 0
check "MPI job: 2 ranks on 2 hosts" grep -qx 'hello: 2 ranks on 2 hosts' <<<"$mpi"
ranks="$(grep -E '^rank [01] of 2 on ' <<<"$mpi")"
check "each rank on a node of the test bed with its namespace address" \
  test "$(grep -cE "^rank [01] of 2 on n[123] $subnet\.1[1-3]\$" <<<"$ranks")" -eq 2
check "the ranks' hosts differ" \
  test "$(awk '{print $6}' <<<"$ranks" | sort -u | wc -l)" -eq 2

# everything up started, to look for after down
mapfile -t started < <(cat "$state"/pids/*.pid 2>/dev/null)
check "up recorded munged, slurmctld, 3 slurmd and 3 UTS holders" test "${#started[@]}" -eq 8

out="$("$testbed" down 2>&1)"
rc=$?
went_down=1
echo "$out"
check "down exits 0" test "$rc" -eq 0
still=()
for entry in "${started[@]}"; do
  read -r pid start <<<"$entry"
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
  rest="${stat##*) }"
  read -ra f <<<"$rest"
  # a zombie has exited: the daemons' parent is gone and init reaps it when it will
  [[ "${f[0]}" != Z && "${f[19]}" == "$start" ]] && still+=("$pid")
done
check "no process that up started is left (${still[*]:-none})" test "${#still[@]}" -eq 0
strays=""
for d in /proc/[0-9]*; do
  [[ "${d#/proc/}" == "$$" ]] && continue
  cmd="$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null)" || continue
  [[ "$cmd" == *"$state/"* ]] && strays+="${d#/proc/} "
done
check "no process names the state dir (${strays:-none})" test -z "$strays"
check "no network namespace dynslurm-*" test -z "$(ip netns list | grep '^dynslurm-')"
check "no bridge or veth dynslurm*" test -z "$(ip -o link show | grep dynslurm)"
check "no state dir $state" test ! -e "$state"
check "no slurm cgroup" test -z "$(find /sys/fs/cgroup -maxdepth 3 -name 'slurm*' 2>/dev/null)"
out="$("$testbed" down 2>&1)"
check "a second down is fine too" test $? -eq 0
rm -rf "$scratch"
finish
