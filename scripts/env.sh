# Sourced by the other scripts: picks the toolchain and the cache locations.
# Build outputs live outside the checkout (under ~/.cache by default) so a fresh
# clone on the same machine reuses earlier builds.
TENSORAS_CACHE=${TENSORAS_CACHE:-$HOME/.cache/tensoras}
export CARGO_TARGET_DIR=${TENSORAS_TARGET_DIR:-$TENSORAS_CACHE/target}
TENSORAS_VENV=${TENSORAS_VENV:-$TENSORAS_CACHE/venv}
TENSORAS_BIN=$CARGO_TARGET_DIR/release/tensoras

# The host needs Rust >= 1.96 (qdrant-edge, wasmtime 49). A newer rustup toolchain is
# used as is; otherwise Debian's rustc-web/cargo-web 1.96 (installed by setup.sh).
rust_minor() { "$1" --version 2>/dev/null | sed -n 's/^cargo 1\.\([0-9]*\).*/\1/p'; }
pick_cargo() {
  local c
  for c in "$(command -v cargo 2>/dev/null)" /usr/bin/cargo; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    local m; m=$(rust_minor "$c")
    if [ -n "$m" ] && [ "$m" -ge 96 ]; then echo "$c"; return 0; fi
  done
  return 1
}
