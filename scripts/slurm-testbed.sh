#!/usr/bin/env bash
# A real multi-node Slurm cluster on this one machine (Debian's slurm-wlm 22.05):
# per node a network namespace (veth pair to a bridge, own address on a private subnet)
# and a UTS namespace (host name n1..nN) running `slurmd -N nK`; slurmctld and munged
# (as user munge, a key made for this test bed) in the root namespace. Needs root.
#
#   slurm-testbed.sh up --nodes N [--cpus-per-node C] [--mem-per-node MB]
#                       [--partition-opts 'KEY=VALUE ...'] [--gang [--timeslice S]]
#                       [--spank PLUGIN] [--limit-memory] [--timeout S]
#       builds the cluster, waits until every node is idle; the last line printed is
#       SLURM_CONF=PATH. STATE/env.sh also sets Open MPI's TCP interfaces to the subnet.
#   slurm-testbed.sh down      stops everything it started, removes namespaces, veths,
#                              bridge, state; idempotent, also after a half-failed up
#   slurm-testbed.sh status    what is up
#
# --gang turns on Slurm's own gang scheduler (PreemptMode=GANG, OverSubscribe=FORCE:2,
# SchedulerTimeSlice=S, default 30, minimum 5); without it the partition is plain.
# --spank PLUGIN installs a SPANK plugin (dynamos_spank.so) through STATE/plugstack.conf;
# its job records go to STATE/spank (where dynamosd --follow slurm --follow-dir reads).
# --limit-memory holds each node (its slurmd and all it starts) to --mem-per-node in a
# memory cgroup dynslurm-nK, so that jobs can overcommit a node's memory and swap.
# Environment: DYNAMOS_SLURM_TESTBED_DIR (state dir, default /run/dynamos-slurm-testbed),
# DYNAMOS_SLURM_TESTBED_SUBNET (first three octets, default 10.199.77; the bridge is .1,
# node K is .(10+K); the subnet exists only on the bridge and inside the namespaces).
# One test bed per machine: names of namespaces (dynslurm-nK), veths (dynslurm-vK) and
# bridge (dynslurm0) are fixed. docs/slurm-testbed.md says more.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${DYNAMOS_SLURM_TESTBED_DIR:-/run/dynamos-slurm-testbed}"
state="${state%/}"
subnet="${DYNAMOS_SLURM_TESTBED_SUBNET:-10.199.77}"
bridge=dynslurm0
ns_prefix=dynslurm-n
veth_prefix=dynslurm-v
ctld_port=6917
slurmd_port=6918

say() { echo "slurm-testbed: $*"; }
elapsed() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'; }
die() {
  echo "slurm-testbed: error: $*" >&2
  exit 1
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

need_root() { ((EUID == 0)) || die "must run as root (namespaces, bridge, daemons)"; }

# --- processes, identified by pid plus start time (no reuse of a recycled pid) ---------
start_time() { # pid -> start time in clock ticks since boot; fails for a gone or zombie pid
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  local -a f
  read -ra f <<<"$stat"
  [[ "${f[0]}" != Z ]] || return 1 # exited, not yet reaped (our parent may be gone)
  echo "${f[19]}"
}

record_pid() { # name pid
  local t
  t="$(start_time "$2")" || die "$1 (pid $2) exited at once; see $state/logs"
  echo "$2 $t" >"$state/pids/$1.pid"
}

alive() { # pid [start_time]
  local t
  t="$(start_time "$1")" || return 1
  [[ -z "${2:-}" || "$t" == "$2" ]]
}

stop_pids() { # pids... : SIGTERM, up to 5 s, then SIGKILL; waits until gone
  local pid deadline
  (($# > 0)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  deadline=$((SECONDS + 5))
  for pid in "$@"; do
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
  done
  for pid in "$@"; do
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  for pid in "$@"; do
    while alive "$pid"; do sleep 0.05; done
  done
}

# pids the test bed started whose pid file is still there and which still run
recorded_pids() { # [glob of names, default all]
  local f pid t
  for f in "$state"/pids/${1:-*}.pid; do
    [[ -f "$f" ]] || continue
    read -r pid t <"$f" || continue
    alive "$pid" "$t" && echo "$pid"
  done
  return 0
}

# fallback when pid files are gone: our daemons and UTS holders carry the state dir in
# their command line (-f STATE/slurm.conf, --socket=STATE/..., argv0 STATE/uts-nK)
stray_pids() {
  local d pid comm
  local -a args
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    [[ "$pid" == "$$" ]] && continue
    read -r comm 2>/dev/null <"$d/comm" || continue
    case "$comm" in
      slurmctld | slurmd | slurmstepd | munged | sleep) ;;
      *) continue ;;
    esac
    mapfile -d '' args 2>/dev/null <"$d/cmdline" || continue
    [[ "${args[*]}" == *"$state/"* ]] && alive "$pid" && echo "$pid"
  done
  return 0
}

our_netns() { ip netns list 2>/dev/null | awk -v p="$ns_prefix" 'index($1, p) == 1 {print $1}'; }
our_veths() {
  ip -o link show 2>/dev/null | awk -F': ' -v p="$veth_prefix" '{sub(/@.*/, "", $2)} index($2, p) == 1 {print $2}'
}

# --- install ----------------------------------------------------------------------------
install_packages() {
  local -a wanted=() missing=()
  local pkg _rest status
  while read -r pkg _rest; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    wanted+=("$pkg")
  done <"$root/scripts/deps/slurm.txt"
  for pkg in "${wanted[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  # scripts/setup.sh keeps the packages' services from starting (policy-rc.d exit 101);
  # it installs every list of scripts/deps/, so only the Slurm list is installed here.
  say "installing ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  } >"/tmp/slurm-testbed-apt.$$.log" 2>&1 || rc=$?
  ((made_policy)) && rm -f "$policy"
  if ((rc != 0)); then
    tail -20 "/tmp/slurm-testbed-apt.$$.log" >&2
    die "apt-get install failed (log /tmp/slurm-testbed-apt.$$.log)"
  fi
  rm -f "/tmp/slurm-testbed-apt.$$.log"
}

# --- up ---------------------------------------------------------------------------------
write_conf() { # nodes cpus mem partition_opts gang timeslice spank_plugin
  local nodes="$1" cpus="$2" mem="$3" popts="$4" gang="$5" slice="$6" spank="$7" k
  local host
  host="$(hostname -s)"
  {
    echo "# slurm-testbed.sh: $nodes nodes in network + UTS namespaces on $host"
    echo "ClusterName=dynamos-testbed"
    # must be this host's own name, else slurmctld exits 'not a valid controller'
    echo "SlurmctldHost=$host($subnet.1)"
    echo "SlurmctldPort=$ctld_port"
    echo "SlurmdPort=$slurmd_port"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$state/munge-run/munge.socket"
    echo "StateSaveLocation=$state/ctld"
    echo "SlurmdSpoolDir=$state/spool/%n"
    echo "SlurmctldPidFile=$state/run/slurmctld.pid"
    echo "SlurmdPidFile=$state/run/slurmd-%n.pid"
    echo "SlurmctldLogFile=$state/logs/slurmctld.log"
    echo "SlurmdLogFile=$state/logs/slurmd-%n.log"
    echo "SlurmctldDebug=info"
    echo "SlurmdDebug=info"
    # no cgroups: nodes share the machine's cgroup tree and the project's tests use it
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/none"
    echo "SwitchType=switch/none"
    echo "MpiDefault=none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    # nodes claim the CPUs and memory given here, not what the machine has
    echo "SlurmdParameters=config_overrides"
    echo "ReturnToService=2"
    echo "SlurmdTimeout=30"
    echo "MessageTimeout=10"
    echo "KillWait=2"
    echo "MinJobAge=30"
    echo "MailProg=/bin/true"
    echo "InactiveLimit=0"
    [[ -n "$spank" ]] && echo "PlugStackConfig=$state/plugstack.conf"
    if ((gang)); then
      echo "PreemptMode=GANG"
      echo "SchedulerTimeSlice=$slice"
    fi
    for ((k = 1; k <= nodes; k++)); do
      echo "NodeName=n$k NodeAddr=$subnet.$((10 + k)) NodeHostname=n$k CPUs=$cpus RealMemory=$mem State=UNKNOWN"
    done
    local part="PartitionName=testbed Nodes=n[1-$nodes] Default=YES MaxTime=INFINITE State=UP"
    if [[ "$popts" != *OverSubscribe=* ]]; then
      if ((gang)); then part+=" OverSubscribe=FORCE:2"; else part+=" OverSubscribe=NO"; fi
    fi
    [[ -n "$popts" ]] && part+=" $popts"
    echo "$part"
  } >"$state/slurm.conf"
  if [[ -n "$spank" ]]; then
    echo "required $spank dir=$state/spank" >"$state/plugstack.conf"
  fi
  # cgroup.conf is read from beside slurm.conf; nothing is constrained or mounted
  {
    echo "CgroupAutomount=no"
    echo "ConstrainCores=no"
    echo "ConstrainRAMSpace=no"
    echo "ConstrainDevices=no"
  } >"$state/cgroup.conf"
  {
    echo "# source this: the test bed's Slurm and Open MPI over the namespaces' subnet"
    echo "export SLURM_CONF=$state/slurm.conf"
    echo "export OMPI_MCA_btl_tcp_if_include=$subnet.0/24"
    echo "export OMPI_MCA_oob_tcp_if_include=$subnet.0/24"
  } >"$state/env.sh"
}

# the first recorded daemon that is no longer running, if any
dead_daemon() {
  local f pid t
  for f in "$state"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    read -r pid t <"$f"
    alive "$pid" "$t" || { basename "$f" .pid; return 0; }
  done
  return 1
}

wait_for() { # timeout_s description command...
  local timeout="$1" what="$2" dead
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if dead="$(dead_daemon)"; then
      show_failure "$dead exited while waiting for: $what"
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
  say "$what ($(elapsed) s)"
}

munge_ok() { munge -n -S "$state/munge-run/munge.socket" | unmunge -S "$state/munge-run/munge.socket"; }
ctld_up() { SLURM_CONF="$state/slurm.conf" scontrol ping | grep -q 'is UP'; }
all_idle() {
  local n
  n="$(SLURM_CONF="$state/slurm.conf" sinfo -h -N -o '%N %T' | awk '$2 == "idle"' | sort -u | wc -l)"
  ((n == nodes))
}

show_failure() { # what
  echo "slurm-testbed: error: $1" >&2
  {
    echo "--- sinfo"
    SLURM_CONF="$state/slurm.conf" sinfo -N -o '%N %T %E' 2>&1 || true
    local f
    for f in "$state"/munge/munged.log "$state"/logs/*.log "$state"/logs/*.out; do
      [[ -s "$f" ]] || continue
      echo "--- $f (errors and last lines)"
      # (a fresh slurmctld always reports missing state files: not the problem)
      { grep -iE 'error|fatal|fail|denied|refused|drain|inval' "$f" |
        grep -vE 'state file|Trying backup state' | tail -8; tail -4 "$f"; } | awk '!seen[$0]++'
    done
    echo "--- state kept in $state; clean up with: $0 down"
  } >&2
  exit 1
}

up() {
  local cpus=2 mem=1024 popts="" gang=0 slice=30 timeout=60 spank="" limit=0
  nodes=""
  while (($#)); do
    case "$1" in
      --nodes) nodes="${2:?--nodes N}"; shift 2 ;;
      --cpus-per-node) cpus="${2:?--cpus-per-node C}"; shift 2 ;;
      --mem-per-node) mem="${2:?--mem-per-node MB}"; shift 2 ;;
      --partition-opts) popts="${2?--partition-opts 'KEY=VALUE ...'}"; shift 2 ;;
      --gang) gang=1; shift ;;
      --timeslice) slice="${2:?--timeslice S}"; shift 2 ;;
      --spank) spank="${2:?--spank PLUGIN}"; shift 2 ;;
      --limit-memory) limit=1; shift ;;
      --timeout) timeout="${2:?--timeout S}"; shift 2 ;;
      -h | --help) usage; exit 0 ;;
      *) die "up: unknown option '$1' (try --help)" ;;
    esac
  done
  [[ "$nodes" =~ ^[0-9]+$ ]] && ((nodes >= 1 && nodes <= 200)) || die "up: --nodes N with 1 <= N <= 200"
  [[ "$cpus" =~ ^[0-9]+$ ]] && ((cpus >= 1)) || die "up: --cpus-per-node must be a positive number"
  [[ "$mem" =~ ^[0-9]+$ ]] && ((mem >= 1)) || die "up: --mem-per-node must be megabytes"
  [[ "$slice" =~ ^[0-9]+$ ]] && ((slice >= 5)) || die "up: --timeslice is seconds, at least 5"
  [[ -z "$spank" || ("$spank" == /* && -f "$spank") ]] || die "up: --spank needs the plugin's absolute path (got '$spank')"
  [[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "DYNAMOS_SLURM_TESTBED_SUBNET must be three octets (e.g. 10.199.77)"
  need_root
  t0=$EPOCHREALTIME
  local k

  if [[ -e "$state" ]] || ip link show "$bridge" >/dev/null 2>&1 || [[ -n "$(our_netns)" ]]; then
    die "a test bed is already (partly) up ($state, $bridge, namespaces ${ns_prefix}*): run '$0 down' first"
  fi
  install_packages
  local tool
  for tool in slurmctld slurmd srun sinfo scontrol munged mungekey munge unmunge ip nsenter unshare setpriv; do
    command -v "$tool" >/dev/null || die "$tool not found after installing scripts/deps/slurm.txt"
  done
  id munge >/dev/null 2>&1 || die "user munge missing (package munge)"

  say "up: $nodes nodes, $cpus CPUs and $mem MB each, state in $state"
  mkdir -p "$state"/{pids,logs,run,ctld,spool,munge,munge-run}
  for ((k = 1; k <= nodes; k++)); do mkdir -p "$state/spool/n$k"; done
  chmod 755 "$state"
  # remembered so that down removes /run/netns only if this test bed created it
  mountpoint -q /run/netns 2>/dev/null || touch "$state/created-run-netns"

  # munge: a key for this test bed only; munged refuses keys and sockets others can write
  mungekey --create --bits=1024 --keyfile="$state/munge/munge.key"
  chown -R munge:munge "$state/munge" "$state/munge-run"
  chmod 700 "$state/munge"
  chmod 755 "$state/munge-run"
  chmod 600 "$state/munge/munge.key"

  # network: bridge in the root namespace, per node a netns with a veth pair
  ip link add "$bridge" type bridge
  ip addr add "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up
  local ns
  for ((k = 1; k <= nodes; k++)); do
    ns="$ns_prefix$k"
    ip netns add "$ns"
    ip link add "$veth_prefix$k" type veth peer name tb0 netns "$ns"
    ip link set "$veth_prefix$k" master "$bridge" up
    nsenter --net="/var/run/netns/$ns" ip link set lo up
    nsenter --net="/var/run/netns/$ns" ip addr add "$subnet.$((10 + k))/24" dev tb0
    nsenter --net="/var/run/netns/$ns" ip link set tb0 up
  done
  say "network: bridge $bridge $subnet.1/24, nodes n1..n$nodes at $subnet.11..$subnet.$((10 + nodes)) ($(elapsed) s)"

  # UTS namespaces, each held by a sleeping process whose argv0 names the state dir
  local pid
  for ((k = 1; k <= nodes; k++)); do
    unshare --uts bash -c 'hostname "$1" && exec -a "$2" sleep infinity' _ "n$k" "$state/uts-n$k" \
      </dev/null >/dev/null 2>&1 &
    pid=$!
    record_pid "uts-n$k" "$pid"
    local deadline=$((SECONDS + 5))
    until [[ "$(nsenter --uts="/proc/$pid/ns/uts" hostname 2>/dev/null)" == "n$k" ]]; do
      ((SECONDS < deadline)) || die "UTS namespace of n$k did not get its host name"
      sleep 0.02
    done
  done

  write_conf "$nodes" "$cpus" "$mem" "$popts" "$gang" "$slice" "$spank"

  setpriv --reuid=munge --regid=munge --clear-groups -- munged --foreground \
    --socket="$state/munge-run/munge.socket" --key-file="$state/munge/munge.key" \
    --pid-file="$state/munge-run/munged.pid" --log-file="$state/munge/munged.log" \
    --seed-file="$state/munge/munged.seed" </dev/null >"$state/logs/munged.out" 2>&1 &
  record_pid munged $!
  wait_for 10 "munged up as user munge" munge_ok || show_failure "munged did not start"

  slurmctld -D -c -f "$state/slurm.conf" </dev/null >"$state/logs/slurmctld.out" 2>&1 &
  record_pid slurmctld $!
  wait_for 20 "slurmctld up on $(hostname -s) ($subnet.1:$ctld_port)" ctld_up ||
    show_failure "slurmctld did not answer within 20 s"

  local holder cg
  for ((k = 1; k <= nodes; k++)); do
    read -r holder _ <"$state/pids/uts-n$k.pid"
    cg=""
    if ((limit)); then cg="$(node_memory_cgroup "n$k" "$mem")" || die "memory cgroup of n$k: $cg"; fi
    # the slurmd joins its node's memory cgroup (if any) before it starts
    nsenter --net="/var/run/netns/$ns_prefix$k" --uts="/proc/$holder/ns/uts" \
      bash -c '[[ -z "$1" ]] || echo $$ >"$1/cgroup.procs" || exit 1; shift; exec "$@"' _ "$cg" \
      slurmd -D -f "$state/slurm.conf" -N "n$k" </dev/null >"$state/logs/slurmd-n$k.out" 2>&1 &
    record_pid "slurmd-n$k" $!
  done
  wait_for "$timeout" "all $nodes nodes idle" all_idle ||
    show_failure "not every node became idle within $timeout s"

  say "ready in $(elapsed) s; for Open MPI: source $state/env.sh"
  echo "SLURM_CONF=$state/slurm.conf"
}

# node_memory_cgroup NODE MB: a memory cgroup dynslurm-NODE limited to MB (v1 memory
# hierarchy, else v2 with memory enabled at the root); prints its directory
node_memory_cgroup() {
  local d
  if [[ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]]; then
    d="/sys/fs/cgroup/memory/dynslurm-$1"
    mkdir -p "$d" && echo "$(($2 << 20))" >"$d/memory.limit_in_bytes" || return 1
  elif grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
    d="/sys/fs/cgroup/dynslurm-$1"
    mkdir -p "$d" && echo "$(($2 << 20))" >"$d/memory.max" || return 1
  else
    echo "no memory controller (v1 memory hierarchy, or memory in the v2 root's subtree_control)"
    return 1
  fi
  echo "$d"
}

# --- down -------------------------------------------------------------------------------
down() {
  need_root
  local -a pids=()
  local ns total=0
  # in order: slurmctld (it schedules and pings no more nodes), then every
  # process inside the nodes' network namespaces (slurmd, slurmstepd, job tasks), then
  # munged, the UTS holders and whatever else names the state dir
  local phase
  for phase in ctld nodes rest; do
    pids=()
    case "$phase" in
      nodes)
        for ns in $(our_netns); do
          mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$ns" 2>/dev/null)
        done
        mapfile -t -O "${#pids[@]}" pids < <(recorded_pids 'slurmd-*')
        ;;
      ctld) mapfile -t pids < <(recorded_pids slurmctld) ;;
      rest)
        mapfile -t pids < <(recorded_pids)
        mapfile -t -O "${#pids[@]}" pids < <(stray_pids)
        ;;
    esac
    mapfile -t pids < <(printf '%s\n' "${pids[@]}" | awk 'NF && !seen[$0]++')
    ((${#pids[@]})) || continue
    total=$((total + ${#pids[@]}))
    stop_pids "${pids[@]}"
  done
  ((total == 0)) || say "down: stopped $total processes"

  for ns in $(our_netns); do ip netns del "$ns" || true; done
  local v
  for v in $(our_veths); do ip link del "$v" 2>/dev/null || true; done
  if ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge" || true; fi

  # cgroups that slurmd may have made (cgroup/v1 names them slurm or slurm_NODE)
  local d
  for d in /sys/fs/cgroup/*/slurm_n[0-9]* /sys/fs/cgroup/slurm_n[0-9]*; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done

  # the nodes' memory cgroups (up --limit-memory)
  for d in /sys/fs/cgroup/memory/dynslurm-n[0-9]* /sys/fs/cgroup/dynslurm-n[0-9]*; do
    [[ -d "$d" ]] && { rmdir "$d" 2>/dev/null || true; }
  done

  if [[ -e "$state/created-run-netns" ]] && mountpoint -q /run/netns &&
    [[ -z "$(ls -A /run/netns 2>/dev/null)" ]]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
  rm -rf "$state"

  # what is left, if anything
  local -a left=()
  [[ -e "$state" ]] && left+=("state dir $state")
  [[ -n "$(our_netns)" ]] && left+=("namespaces $(our_netns | tr '\n' ' ')")
  [[ -n "$(our_veths)" ]] && left+=("veths $(our_veths | tr '\n' ' ')")
  ip link show "$bridge" >/dev/null 2>&1 && left+=("bridge $bridge")
  [[ -n "$(stray_pids)" ]] && left+=("processes $(stray_pids | tr '\n' ' ')")
  for d in /sys/fs/cgroup/memory/dynslurm-n[0-9]* /sys/fs/cgroup/dynslurm-n[0-9]*; do
    [[ -d "$d" ]] && left+=("cgroup $d")
  done
  ((${#left[@]} == 0)) || die "down: left behind: ${left[*]}"
  say "down: nothing left"
}

status() {
  local rc=0 f pid t
  if [[ -d "$state" ]]; then
    say "state: $state"
    for f in "$state"/pids/*.pid; do
      [[ -f "$f" ]] || continue
      read -r pid t <"$f"
      if alive "$pid" "$t"; then say "  $(basename "$f" .pid): pid $pid running"; else
        say "  $(basename "$f" .pid): pid $pid NOT running"
        rc=1
      fi
    done
    if [[ -f "$state/slurm.conf" ]]; then
      SLURM_CONF="$state/slurm.conf" sinfo -N -o '%N %T %C %m' 2>&1 | sed 's/^/  /' || rc=1
      echo "SLURM_CONF=$state/slurm.conf"
    fi
  else
    say "no state dir ($state): down"
    rc=3
  fi
  local ns
  ns="$(our_netns | tr '\n' ' ')"
  [[ -n "$ns" ]] && say "namespaces: $ns"
  ip link show "$bridge" >/dev/null 2>&1 && say "bridge: $bridge"
  return "$rc"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) shift; (($# == 0)) || die "down takes no options"; down ;;
  status) shift; status ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
