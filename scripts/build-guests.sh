#!/usr/bin/env bash
# Builds every guest function into a WebAssembly component: the Rust crates of the
# functions/ workspace into build/functions/<crate>.wasm, then the Python and JS projects
# (functions/*/*/tensoras.json) into build/functions/<dir>.wasm through the host binary's
# `tensoras functions build` (so the host must be built first).
#
#   scripts/build-guests.sh
#
# Toolchain: the rustup target wasm32-wasip2 when it is installed; otherwise
# Debian's rustc-web 1.96 with -Zbuild-std (see TOOLCHAIN.md), whose packages
# this script installs when missing, because `rustup target add` cannot
# download on the project's machines.
#
# Environment:
#   TENSORAS_GUEST_TARGET_DIR  cargo target dir (default $TENSORAS_CACHE/guest-target,
#                              see scripts/env.sh); outside the checkout so fresh clones
#                              reuse earlier builds.
#
# Quiet on success apart from one line per component; prints cargo's output
# when the build fails (or warns).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out_dir="$repo/build/functions"
. "$repo/scripts/env.sh"
export CARGO_TARGET_DIR="$TENSORAS_GUEST_TARGET_DIR"
target=wasm32-wasip2

die() {
  echo "build-guests: $*" >&2
  exit 1
}

# Installs Debian's rustc-web toolchain pieces that are missing (a no-op when
# they are all present, so repeated runs never touch apt).
ensure_debian_toolchain() {
  local pkgs=(rustc-web cargo-web rust-web-src wasi-libc lld-16) missing=() p
  command -v dpkg >/dev/null 2>&1 ||
    die "no $target target in rustup and no dpkg for the Debian fallback; run: rustup target add $target"
  for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "build-guests: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  # Through `env` so sudo's environment reset cannot drop DEBIAN_FRONTEND.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

cargo_args=(build --release --target "$target")
# SIMD (wasm simd128, which wasmtime compiles to the host's vector unit): the
# chat handler converts and scans a whole logits row (49k floats for SmolLM2)
# every generated token, and those loops vectorise. Set through RUSTFLAGS on
# both toolchain paths, as RUSTFLAGS overrides any .cargo/config rustflags.
rustflags="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+simd128"
# Capture rather than pipe into `grep -q`: an early grep exit would SIGPIPE
# rustup and, under pipefail, hide a match.
installed=$(rustup target list --installed 2>/dev/null || true)
if grep -qx "$target" <<<"$installed"; then
  cargo_env=(RUSTFLAGS="$rustflags")
else
  ensure_debian_toolchain
  # /usr/bin first for Debian's cargo/rustc 1.96 (rustup's come first on a
  # default PATH); llvm-16 for wasm-ld. RUSTC_BOOTSTRAP allows -Zbuild-std on
  # this stable compiler, which builds std for the target from rust-web-src
  # (once per target dir); wasi-libc's objects live in /usr/lib/wasm32-wasi.
  cargo_env=(
    PATH="/usr/bin:/usr/lib/llvm-16/bin:$PATH"
    RUSTC_BOOTSTRAP=1
    RUSTFLAGS="$rustflags -L /usr/lib/wasm32-wasi"
  )
  cargo_args+=(-Zbuild-std=std,panic_abort)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! (cd "$repo/functions" && env "${cargo_env[@]}" cargo "${cargo_args[@]}") >"$log" 2>&1; then
  cat "$log" >&2
  die "cargo build failed"
fi
if grep -q '^warning' "$log"; then
  cat "$log" >&2
fi

# Every crate under functions/{handlers,examples,fixtures}/ that builds a cdylib
# is one component, named by its crate alone (the group is not in the path).
mkdir -p "$out_dir"
count=0
for manifest in "$repo"/functions/*/*/Cargo.toml; do
  grep -q 'cdylib' "$manifest" || continue
  name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)
  [ -n "$name" ] || die "no package name in $manifest"
  built="$CARGO_TARGET_DIR/$target/release/${name//-/_}.wasm"
  [ -f "$built" ] || die "$built was not produced"
  # A component starts with "\0asm" and layer/version 0d 00 01 00; a core
  # module (01 00 00 00) means componentisation did not happen.
  magic=$(od -An -tx1 -j4 -N4 "$built" | tr -d ' \n')
  [ "$magic" = "0d000100" ] || die "$built is not a component (header $magic)"
  dest="$out_dir/$name.wasm"
  # Copy only on change so unchanged components keep their mtime (and the
  # host's caches keyed on it stay valid); rename for an atomic replace.
  if cmp -s "$built" "$dest"; then
    state=unchanged
  else
    cp "$built" "$dest.tmp"
    mv -f "$dest.tmp" "$dest"
    state=updated
  fi
  printf '%-32s %8d bytes  %s\n' "build/functions/$name.wasm" "$(wc -c <"$dest")" "$state"
  count=$((count + 1))
done
[ "$count" -gt 0 ] || die "no guest crates found under functions/"

# Python and JavaScript functions (a tensoras.json naming the language) go through
# `tensoras functions build`, the route a user's project takes; it skips a build whose
# inputs are unchanged.
for project in "$repo"/functions/*/*/tensoras.json; do
  dir=$(dirname "$project")
  grep -Eq '"language" *: *"(python|js)"' "$project" || continue
  [ -x "$TENSORAS_BIN" ] || die "$TENSORAS_BIN is missing: build the host first (make setup)"
  name=$(basename "$dir")
  if ! "$TENSORAS_BIN" functions build "$dir" -o "$out_dir/$name.wasm" >"$log" 2>&1; then
    cat "$log" >&2
    die "building $dir failed"
  fi
  state=$(grep -q ': unchanged$' "$log" && echo unchanged || echo updated)
  printf '%-32s %8d bytes  %s\n' "build/functions/$name.wasm" "$(wc -c <"$out_dir/$name.wasm")" "$state"
done
