# Sourced by the tests of tests/slurm/: counted checks and the end of a test.
passed=0
failed=0

# Not runnable here: skip (77), or fail under CI=true where it must run.
unavailable() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "SlurmTestbed cannot run under CI: $*" >&2
    exit 1
  fi
  echo "SlurmTestbed skipped: $*" >&2
  exit 77
}

check() { # description, then the command that must succeed
  local what="$1"
  shift
  if "$@"; then
    echo "ok: $what"
    passed=$((passed + 1))
  else
    echo "FAILED: $what" >&2
    failed=$((failed + 1))
  fi
}

finish() { # [name]
  echo "${1:-SlurmTestbed}: $passed passed, $failed failed"
  ((failed == 0)) || exit 1
  exit 0
}
