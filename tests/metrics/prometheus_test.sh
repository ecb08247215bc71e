#!/usr/bin/env bash
# Metrics.PrometheusScrapesAVirtualCluster: a virtual cluster of gangd and two agents
# runs two alternating MPI jobs; every daemon's /metrics endpoint (listed by
# `dynamos cluster status --json`) passes `promtool check metrics`, and a real
# Prometheus server from Debian scrapes them and answers a query for the median switch
# latency (decision to every incoming rank running). The agents export the live-update
# counters and the cycle-stealing host wait series.
#   prometheus_test.sh BUILD_BIN_DIR
set -euo pipefail
bin="$1"
fail() { echo "FAIL: $*" >&2; exit 1; }
if ((EUID != 0)) || ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  [[ "${CI:-}" == true ]] && fail "needs root, prometheus and promtool (scripts/setup.sh installs them)"
  echo "SKIP: needs root, prometheus and promtool"; exit 77
fi
tmp="$(mktemp -d /tmp/dynamos-prom-test.XXXXXX)"
state="$tmp/cluster" parent="dynamos-prom-test-$$"
prom_pid=""
cleanup() {
  [[ -n "$prom_pid" ]] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
  "$bin/dynamos" cluster down --state-dir "$state" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$state"

echo "== cluster up"
"$bin/dynamos" cluster up --nodes 2 --mem-per-node 256M --quantum 300ms --slots 2 \
  --state-dir "$state" --cgroup-parent "$parent" >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log"; fail "cluster up"; }
export DYNAMOS_SOCKET="$state/gangd.sock"
for name in one two; do
  (cd "$tmp" && "$bin/dynamos" submit --ranks 4 --name "$name" -- "$bin/dynamos-mpi-stencil" -q --mem 16M --seconds 12) \
    >>"$tmp/submit.log" 2>&1 || { cat "$tmp/submit.log"; fail "submit $name"; }
done

status="$("$bin/dynamos" cluster status --state-dir "$state" --json)"
mapfile -t urls < <(jq -r '.metrics[]' <<<"$status")
((${#urls[@]} == 3)) || fail "cluster status --json lists ${#urls[@]} metrics URLs, expected 3: $status"

echo "== promtool check metrics on every endpoint"
sleep 2
for url in "${urls[@]}"; do
  curl -sf "$url" >"$tmp/scrape.txt" || fail "no answer from $url"
  promtool check metrics <"$tmp/scrape.txt" >"$tmp/promtool.log" 2>&1 || { cat "$tmp/promtool.log"; fail "promtool refused $url"; }
done
grep -q '^dynamos_gang_switch_round_seconds_bucket{phase="running",le="+Inf"}' < <(curl -sf "${urls[0]}") \
  || fail "gangd's metrics have no switch-round histogram"
# Every agent counts live updates and reports the host's wait under cycle stealing
# (tests/cli/json_cluster_test.sh checks their values after a patch and under a guest).
for url in "${urls[@]:1}"; do
  scrape="$(curl -sf "$url")"
  for series in 'dynamos_live_updates_total{.*action="applied"' 'dynamos_live_updates_total{.*action="reverted"' \
      'dynamos_live_update_failures_total{.*action="patch"' 'dynamos_cyclesteal_host_seconds_total{.*state="running"' \
      'dynamos_cyclesteal_host_seconds_total{.*state="waiting"' 'dynamos_cyclesteal_host_wait_share{'; do
    grep -q "^$series" <<<"$scrape" || fail "$url has no $series series"
  done
done

echo "== a Prometheus server scrapes the cluster"
targets="$(printf "'%s'," "${urls[@]#http://}" | sed 's#/metrics##g; s/,$//')"
cat >"$tmp/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: dynamos
    static_configs:
      - targets: [$targets]
YML
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || shuf -i 20000-60000 -n 1)"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$port" >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
query='histogram_quantile(0.5, sum by (le) (rate(dynamos_gang_switch_round_seconds_bucket{phase="running"}[5s])))'
value=""
for _ in $(seq 1 40); do
  sleep 0.5
  answer="$(curl -sf --get "http://127.0.0.1:$port/api/v1/query" --data-urlencode "query=$query" || true)"
  value="$(jq -r 'select(.status=="success") | .data.result[0].value[1] // empty' <<<"$answer" 2>/dev/null || true)"
  [[ -n "$value" && "$value" != "NaN" ]] && break
done
[[ -n "$value" && "$value" != "NaN" ]] || { tail -5 "$tmp/prometheus.log"; fail "Prometheus gave no switch-latency median (last answer: ${answer:-none})"; }
awk -v v="$value" 'BEGIN { exit !(v > 0 && v < 10) }' || fail "median switch latency $value s is not plausible"
echo "ok: Prometheus scraped 3 daemons; median switch latency (decision to incoming running) ${value} s"
