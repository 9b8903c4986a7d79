#!/usr/bin/env bash
# Vendors the WASI WIT packages our worlds use from the exact wasmtime crates the host is
# built with, so guest bindings and host implementations can never disagree.
#   scripts/vendor-wit.sh          copy them into wit/deps
#   scripts/vendor-wit.sh --check  fail if wit/deps drifted from the pinned crates
set -euo pipefail
cd "$(dirname "$0")/.."
WASMTIME_VERSION=$(grep -A2 'name = "wasmtime-wasi-http"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p' | head -1)
[ -n "$WASMTIME_VERSION" ] || { echo "vendor-wit: wasmtime-wasi-http not in Cargo.lock" >&2; exit 1; }
cargo_home=${CARGO_HOME:-$HOME/.cargo}
find_crate() {
  local d
  for d in "$cargo_home"/registry/src/*/"$1-$WASMTIME_VERSION"; do
    [ -d "$d" ] && { echo "$d"; return 0; }
  done
  return 1
}
http_dir=$(find_crate wasmtime-wasi-http) || { cargo fetch -q >/dev/null; http_dir=$(find_crate wasmtime-wasi-http); }
nn_dir=$(find_crate wasmtime-wasi-nn) || {
  # wasmtime-wasi-nn is not a host dependency yet; fetch it in a scratch project.
  tmp=$(mktemp -d)
  mkdir -p "$tmp/src" && echo 'fn main(){}' > "$tmp/src/main.rs"
  printf '[package]\nname="fetch"\nversion="0.0.0"\nedition="2021"\n[dependencies]\nwasmtime-wasi-nn = { version = "=%s", default-features = false }\n' "$WASMTIME_VERSION" > "$tmp/Cargo.toml"
  (cd "$tmp" && cargo fetch -q)
  rm -rf "$tmp"
  nn_dir=$(find_crate wasmtime-wasi-nn)
}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for f in cli clocks filesystem http io random sockets; do
  cp "$http_dir/wit/deps/$f.wit" "$stage/$f.wit"
done
cp "$nn_dir/wit/wasi-nn.wit" "$stage/nn.wit"
if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$stage" wit/deps >/dev/null; then
    echo "vendor-wit: wit/deps differs from wasmtime $WASMTIME_VERSION; run scripts/vendor-wit.sh" >&2
    diff -r "$stage" wit/deps | head -20 >&2
    exit 1
  fi
  echo "vendor-wit: wit/deps matches wasmtime $WASMTIME_VERSION"
else
  rm -rf wit/deps && mkdir -p wit/deps && cp "$stage"/*.wit wit/deps/
  echo "vendor-wit: vendored WASI packages from wasmtime $WASMTIME_VERSION into wit/deps"
fi
