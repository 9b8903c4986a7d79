#!/usr/bin/env bash
# rustfmt and clippy over the host and the guest workspace, with the workspaces'
# deny-lints (unwrap/expect/panic, unsafe code) enforced and every other warning an error.
# Run by `make test` before the test suites; `make fmt` rewrites the files instead.
#
# Toolchains: scripts/env.sh's use_host_cargo for the host, use_guest_cargo for the guests
# (clippy and rustfmt from the same toolchain: Debian's rust-web-clippy and rustfmt-web,
# installed by scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
use_host_cargo

status=0
step() {
  local label=$1; shift
  if "$@"; then echo "lint: $label: ok"; else echo "lint: $label: FAILED" >&2; status=1; fi
}

step "rustfmt (host)" cargo fmt -p tensoras --check
guests() { (use_guest_cargo && cd functions && "$@"); }
step "rustfmt (guests)" guests cargo fmt --all --check
# --release shares the dependency builds' profile with `cargo build --release`.
step "clippy (host)" cargo clippy --release --locked -p tensoras --all-targets -q -- -D warnings
step "clippy (guests)" guests cargo clippy --release --locked --workspace --all-targets -q -- -D warnings
exit $status
