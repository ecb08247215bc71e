#!/usr/bin/env bash
# CliJson.EveryResultCommandPrintsParsableJson: against a virtual cluster (gangd and two
# agents, `dynamos cluster up`), every command that prints a result prints one JSON
# value with --json whose fields say what happened: set, submit, policy, cyclesteal
# (--node and --idle), patch --job, updates, revert --job, patch and revert of one
# process, ext set, wait, cancel. The agents' /metrics count the job's live updates
# (dynamos_live_updates_total) and the host's CPU and run-queue wait while a
# cycle-stealing guest runs (dynamos_cyclesteal_host_seconds_total). A quantum set at
# runtime reaches every agent (nodes --json, dynamos_node_quantum_seconds).
#   json_cluster_test.sh BUILD_BIN_DIR REMOTE_TARGET PATCH_SO
set -euo pipefail
bin="$1" target="$2" patch_so="$3"
fail() { echo "FAIL: $*" >&2; [[ -n "${state:-}" ]] && tail -n 5 "$state"/*.log >&2 2>/dev/null; exit 1; }
if ((EUID != 0)) || ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
  [[ "${CI:-}" == true ]] && fail "needs root, jq and curl"
  echo "SKIP: needs root, jq and curl"; exit 77
fi
tmp="$(mktemp -d /tmp/dynamos-cli-json.XXXXXX)"
chmod 755 "$tmp"
state="$tmp/cluster" parent="dynamos-cli-json-$$"
solo=""
cleanup() {
  if [[ -n "$solo" ]]; then kill "$solo" 2>/dev/null; wait "$solo" 2>/dev/null || true; fi
  "$bin/dynamos" cluster down --state-dir "$state" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
# A test killed by ctest's timeout (SIGTERM) still takes its cluster down.
trap 'exit 143' INT TERM HUP
mkdir -p "$state"
cd "$tmp"

# json WHAT FILTER COMMAND ARGS...: `dynamos COMMAND --json ARGS...` exits 0 and prints
# one JSON value on stdout of which the jq FILTER holds; prints that value. (--json
# right after the command: after submit's "--" it would be the program's.)
json() {
  local what="$1" filter="$2" command="$3" out rc=0
  shift 3
  out="$("$bin/dynamos" "$command" --json "$@" 2>"$tmp/err")" || rc=$?
  ((rc == 0)) || fail "$what: exit $rc: $(cat "$tmp/err")"
  (($(jq -s length <<<"$out") == 1)) || fail "$what: not one JSON value on stdout: $out"
  jq -e "$filter" <<<"$out" >/dev/null || fail "$what: '$filter' does not hold for: $out"
  printf '%s\n' "$out"
}
# metric URL SERIES: the value of one series (name and labels as printed), 0 if absent.
metric() {
  curl -sf "$1" | awk -v s="$2" 'index($0, s " ") == 1 { v = $2 } END { print v + 0 }'
}

"$bin/dynamos" cluster up --nodes 2 --mem-per-node 256M --quantum 300ms --slots 2 \
  --state-dir "$state" --cgroup-parent "$parent" >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log"; fail "cluster up"; }
export DYNAMOS_SOCKET="$state/gangd.sock"

json "set" '.setting == "quantum" and .quantum_ns == 250000000 and .value == "250ms"' set quantum=250ms >/dev/null
# The new quantum reaches every agent: each reports it back (nodes --json) within a
# few heartbeats, and shows it in its metrics (below).
for _ in $(seq 1 50); do
  nodes="$("$bin/dynamos" nodes --json)"
  jq -e 'length == 2 and all(.[]; .quantum_ns == 250000000)' <<<"$nodes" >/dev/null && break
  sleep 0.1
done
jq -e 'length == 2 and all(.[]; .quantum_ns == 250000000)' <<<"$nodes" >/dev/null \
  || fail "set quantum=250ms did not reach every agent within 5 s: $nodes"
job="$(json "submit" '.job > 0 and .name == "spin" and .ranks == 2 and .paging == "demand"' \
  submit --ranks 2 --name spin -- "$target" 1 | jq -r .job)"
json "policy" ".job == $job and .paging == \"adaptive\"" policy paging adaptive --job "$job" >/dev/null

# The job's ranks run once mpirun has started them; patch --job waits for the job's time
# slice, not for its start.
patched=""
for _ in $(seq 1 40); do
  patched="$("$bin/dynamos" patch --job "$job" --replace "compute=$patch_so" --json 2>"$tmp/err")" && break
  patched=""
  sleep 0.25
done
[[ -n "$patched" ]] || fail "patch --job: $(cat "$tmp/err")"
jq -e ".job == $job and (.ranks | length) == 2 and .ranks[0].update > 0 and .ranks[0].pid > 0 and
       (.revert | startswith(\"dynamos revert --job $job\")) and .mode == \"drain\"" <<<"$patched" >/dev/null \
  || fail "patch --job --json: $patched"
rank="$(jq -r '.ranks[0].pid' <<<"$patched")" update="$(jq -r '.ranks[0].update' <<<"$patched")"
node="$(jq -r '.ranks[0].node' <<<"$patched")"
json "updates" ".[-1].id == $update and .[-1].state == \"applied\" and .[-1].switches[0].function == \"compute\"" \
  updates "$rank" >/dev/null
json "revert --job" ".job == $job and (.ranks | length) == 2 and .ranks[0].update == $update" \
  revert --job "$job" "$update" >/dev/null
json "updates after revert" ".[-1].id == $update and .[-1].state == \"reverted\"" updates "$rank" >/dev/null

"$target" 1 >/dev/null &
solo=$!
sleep 0.2
one="$(json "patch PID" ".pid == $solo and .update > 0 and .functions == 1 and .stopped_ms >= 0" \
  patch "$solo" --replace "compute=$patch_so")"
json "revert PID" ".pid == $solo and .update == $(jq .update <<<"$one")" revert "$solo" "$(jq .update <<<"$one")" >/dev/null

json "cyclesteal --node" "length == 1 and .[0].node == \"$node\" and .[0].ok and .[0].policy == \"linger\" and .[0].error == null" \
  cyclesteal on --node "$node" >/dev/null
"$bin/dynamos" guest run --node "$node" -- /bin/sh -c 'while :; do :; done' >/dev/null 2>"$tmp/err" \
  || fail "guest run: $(cat "$tmp/err")"

# The agents' metrics: the job's two ranks patched and reverted; the host job's CPU
# while the guest ran.
status="$("$bin/dynamos" cluster status --state-dir "$state" --json)"
mapfile -t urls < <(jq -r '.metrics | to_entries[] | select(.key != "gangd") | .value' <<<"$status")
((${#urls[@]} == 2)) || fail "cluster status lists ${#urls[@]} agent metrics URLs, expected 2"
applied=0 reverted=0
for url in "${urls[@]}"; do
  curl -sf "$url" >"$tmp/scrape.txt" || fail "no answer from $url"
  promtool check metrics <"$tmp/scrape.txt" >"$tmp/promtool.log" 2>&1 || { cat "$tmp/promtool.log"; fail "promtool refused $url"; }
  n="$(awk -F'[{}]' '/^dynamos_live_updates_total\{/ && /action="applied"/ { s += $3 } END { print s + 0 }' "$tmp/scrape.txt")"
  applied=$((applied + n))
  n="$(awk -F'[{}]' '/^dynamos_live_updates_total\{/ && /action="reverted"/ { s += $3 } END { print s + 0 }' "$tmp/scrape.txt")"
  reverted=$((reverted + n))
  grep -Eq '^dynamos_node_quantum_seconds\{node="[^"]+"\} 0\.25$' "$tmp/scrape.txt" \
    || fail "$url: no dynamos_node_quantum_seconds 0.25 after set quantum=250ms"
done
((applied == 2 && reverted == 2)) || fail "dynamos_live_updates_total: applied $applied, reverted $reverted; expected 2 and 2"
host_url="$(jq -r --arg n "$node" '.metrics[$n]' <<<"$status")"
running=0
for _ in $(seq 1 20); do
  running="$(metric "$host_url" "dynamos_cyclesteal_host_seconds_total{node=\"$node\",state=\"running\"}")"
  awk -v v="$running" 'BEGIN { exit !(v > 0) }' && break
  sleep 0.25
done
awk -v v="$running" 'BEGIN { exit !(v > 0) }' \
  || fail "no host CPU while the guest ran: $(curl -sf "$host_url" | grep cyclesteal)"
scrape="$(curl -sf "$host_url")"  # whole, before grep -q (pipefail and SIGPIPE)
grep -q "^dynamos_cyclesteal_host_wait_share{node=\"$node\"} " <<<"$scrape" \
  || fail "no dynamos_cyclesteal_host_wait_share for $node"
json "ext set" 'length == 2 and all(.[]; .ok and (.result | type) == "string" and .error == null)' \
  ext set paging.prefetch_budget=256M >/dev/null
json "cyclesteal off" ".[0].ok and .[0].policy == \"off\"" cyclesteal off --node "$node" >/dev/null
json "cyclesteal --idle" '.idle and .enabled and .policy == "pause"' cyclesteal on --idle --policy pause >/dev/null
json "cyclesteal off --idle" '.idle and (.enabled | not) and .policy == "off"' cyclesteal off --idle >/dev/null

json "cancel" ".job == $job and .cancelled" cancel "$job" >/dev/null
quick="$(json "submit quick" '.job > 0' submit --name quick -- /bin/true | jq -r .job)"
json "wait" ".id == $quick and .state == \"done\" and .exit_code == 0" wait "$quick" --timeout 60 >/dev/null
rc=0
"$bin/dynamos" cancel 999999 --json >"$tmp/out" 2>"$tmp/err" || rc=$?
((rc != 0)) && [[ ! -s "$tmp/out" ]] && grep -q '^dynamos cancel: ' "$tmp/err" \
  || fail "cancelling no job: exit $rc, stdout '$(cat "$tmp/out")', stderr '$(cat "$tmp/err")'"
echo "ok: set, submit, policy, patch --job, updates, revert --job, patch, revert, cyclesteal, cancel, wait print JSON; the agents counted 2 live updates applied and 2 reverted and host CPU ${running} s under a guest"
