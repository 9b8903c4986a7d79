#!/usr/bin/env bash
# rustfmt and clippy over the host and the guest workspace, with the workspaces'
# deny-lints (unwrap/expect/panic, unsafe code) enforced and every other warning an error.
# Run by `make test` before the test suites; `make fmt` rewrites the files instead.
#
# Toolchain: the cargo scripts/env.sh picks (clippy and rustfmt from the same toolchain:
# Debian's rust-web-clippy and rustfmt-web, installed by scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
CARGO=$(pick_cargo)
export PATH="$(dirname "$CARGO"):$PATH"

status=0
step() {
  local label=$1; shift
  if "$@"; then echo "lint: $label: ok"; else echo "lint: $label: FAILED" >&2; status=1; fi
}

step "rustfmt (host)" cargo fmt -p tensoras --check
step "rustfmt (guests)" bash -c 'cd functions && cargo fmt --all --check'
# --release shares the dependency builds' profile with `cargo build --release`.
step "clippy (host)" cargo clippy --release --locked -p tensoras --all-targets -q -- -D warnings
step "clippy (guests)" bash -c 'cd functions && CARGO_TARGET_DIR="${TENSORAS_GUEST_TARGET_DIR:-$HOME/.cache/tensoras/guest-target}/native" \
  cargo clippy --release --locked --workspace --all-targets -q -- -D warnings'
exit $status
