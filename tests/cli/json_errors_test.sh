#!/usr/bin/env bash
# CliJson.ErrorsStayOnStderrAndLeaveStdoutEmpty: with --json, a command that fails (gangd
# unreachable, a bad argument) prints nothing on standard output, one line naming the
# command on standard error, and exits non-zero; --help of every such command offers
# --json (bash completion reads the options from there).
#   json_errors_test.sh DYNAMOS
set -euo pipefail
cli="$1"
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v jq >/dev/null || { [[ "${CI:-}" == true ]] && fail "needs jq"; echo "SKIP: needs jq"; exit 77; }
tmp="$(mktemp -d /tmp/dynamos-json-errors.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
export DYNAMOS_SOCKET="$tmp/no-gangd.sock"

# refused NAME ARGS...: `dynamos NAME --json ARGS...` fails cleanly.
refused() {
  local name="$1" rc=0
  shift
  "$cli" "$name" --json "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  ((rc != 0)) || fail "dynamos $name --json $* exited 0"
  [[ ! -s "$tmp/out" ]] || fail "dynamos $name --json $* printed on stdout: $(cat "$tmp/out")"
  grep -q "^dynamos $name: " "$tmp/err" || fail "dynamos $name $*: no 'dynamos $name:' error: $(cat "$tmp/err")"
  (($(wc -l <"$tmp/err") == 1)) || fail "dynamos $name $*: more than one error line: $(cat "$tmp/err")"
}
refused submit -- /bin/true
refused submit -- /no/such/program
refused cancel 7
refused cancel seven
refused wait seven
refused policy paging adaptive --job 7
refused set quantum=100ms
refused set quantum=fast
refused cyclesteal on --node n0
refused cyclesteal on --idle
refused patch --job 7 --replace compute=/no/such.so
refused patch 0 --replace compute=/no/such.so
refused revert 0 1
refused revert --job 7 1
refused updates notapid
refused ext set paging.prefetch_budget=256M

for name in submit wait cancel policy set cyclesteal patch revert updates jobs nodes ext; do
  "$cli" "$name" --help | grep -q -- '--json' || fail "dynamos $name --help does not offer --json"
done
echo "ok: every --json command fails with stdout empty and one error line"
