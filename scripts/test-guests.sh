#!/usr/bin/env bash
# Runs the unit tests of the guest code natively (host target): every crate of
# the functions/ workspace, and the guest SDK (a path dependency of that
# workspace, tested through it so no stray Cargo.lock appears in guest-sdk/).
#
#   scripts/test-guests.sh [extra cargo test args...]
#
# The handlers keep their logic (request validation, sampling, stop-sequence
# and UTF-8 hold-back, response shaping, pooling) in plain Rust modules for
# exactly this: only the thin wasi:nn / tokenizer glue needs a component host.
#
# Toolchain and target dir: `use_guest_cargo` (scripts/env.sh): Debian's
# cargo in /usr/bin when present, the 1.96 the guests are built with, and the
# native/ subdirectory of the guests' target dir, so these builds never disturb
# the wasm32-wasip2 artefacts.
#
# Prints cargo's per-suite summary lines and a total; prints cargo's whole
# output when a test fails (exit status non-zero) or the build warns.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/scripts/env.sh"
use_guest_cargo

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

# Runs `cargo test` in functions/ with the given selection; appends to $log.
run_tests() {
  local label=$1
  shift
  local out
  out=$(mktemp)
  if (cd "$repo/functions" && cargo test "$@" --release -q) >"$out" 2>&1; then
    echo "test-guests: $label: ok"
  else
    echo "test-guests: $label: FAILED" >&2
    cat "$out" >&2
    status=1
  fi
  cat "$out" >>"$log"
  rm -f "$out"
}

run_tests "functions workspace" --workspace "$@"
run_tests "guest SDK" -p tensoras-guest "$@"

if [ "$status" -eq 0 ] && grep -q '^warning' "$log"; then
  cat "$log" >&2
fi
grep -E '^test result:' "$log" || true
# Total over all suites (unit tests and doctests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "test-guests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
