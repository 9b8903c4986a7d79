# Sourced by the other scripts: picks the toolchain and the cache locations.
# Build outputs live outside the checkout (under ~/.cache by default) so a fresh
# clone on the same machine reuses earlier builds.
TENSORAS_CACHE=${TENSORAS_CACHE:-$HOME/.cache/tensoras}
export CARGO_TARGET_DIR=${TENSORAS_TARGET_DIR:-$TENSORAS_CACHE/target}
# The guests' target dir: wasm32-wasip2 builds at its top, native test builds in native/.
export TENSORAS_GUEST_TARGET_DIR=${TENSORAS_GUEST_TARGET_DIR:-$TENSORAS_CACHE/guest-target}
TENSORAS_VENV=${TENSORAS_VENV:-$TENSORAS_CACHE/venv}
# The Python and JS guest toolchains `tensoras functions build` runs (setup.sh installs both).
export TENSORAS_COMPONENTIZE_PY=${TENSORAS_COMPONENTIZE_PY:-$TENSORAS_CACHE/componentize-py/bin/componentize-py}
# Prometheus' own checker of /metrics (scripts/setup.sh takes it from Debian's package).
export TENSORAS_PROMTOOL=${TENSORAS_PROMTOOL:-$TENSORAS_CACHE/bin/promtool}
export TENSORAS_COMPONENTIZE_JS=${TENSORAS_COMPONENTIZE_JS:-$TENSORAS_CACHE/componentize-js/node_modules/.bin/componentize-js}
# A binary named in the environment (a benchmark of another build) is kept.
TENSORAS_BIN=${TENSORAS_BIN:-$CARGO_TARGET_DIR/release/tensoras}

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

# use_host_cargo: the cargo pick_cargo chose, first on PATH and in $CARGO, for the host
# workspace. Every host build goes through it: two toolchains sharing one target dir
# would rebuild each other's artefacts from scratch.
use_host_cargo() {
  CARGO=$(pick_cargo) || { echo "need cargo >= 1.96 (make setup installs Debian's)" >&2; return 1; }
  PATH="$(dirname "$CARGO"):$PATH"
  export CARGO PATH
}

# use_guest_cargo: native (host-target) builds of the functions/ workspace — tests, fuzzing,
# clippy — with Debian's cargo in /usr/bin when present, the 1.96 that
# scripts/build-guests.sh builds the components with, in the guests' native/ target dir.
use_guest_cargo() {
  if [ -x /usr/bin/cargo ]; then PATH="/usr/bin:$PATH"; else use_host_cargo || return 1; fi
  export PATH CARGO_TARGET_DIR="$TENSORAS_GUEST_TARGET_DIR/native"
}
