#!/usr/bin/env bash
# Installs what is missing, then builds the web console, the host and every guest
# component. Idempotent and quick when everything is already in place.
# --tests: also what only the tests need (Debian's Chromium for the console's browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
FOR_TESTS=0; [ "${1:-}" = --tests ] && FOR_TESTS=1

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { echo "setup: please install: ${missing[*]}" >&2; exit 1; }
  echo "setup: installing ${missing[*]}"
  if [ $apt_updated = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Installs a requirements file into a venv unless the same file was installed there before.
pip_sync() {
  local venv=$1 req=$2 stamp sum
  stamp="$venv/.tensoras-$(basename "$(dirname "$req")")-$(basename "$req").sha256"
  sum=$(sha256sum "$req" | cut -d' ' -f1)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && return 0
  echo "setup: installing Python packages from $req"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$sum" > "$stamp"
}

# Toolchain: Rust >= 1.96 for the host; C compiler for SQLite.
if ! CARGO=$(pick_cargo); then
  apt_install rustc-web cargo-web
  CARGO=$(pick_cargo) || { echo "setup: need cargo >= 1.96 (rustup update, or Debian's cargo-web)" >&2; exit 1; }
fi
command -v cc >/dev/null || apt_install gcc libc6-dev
# rustfmt and clippy for `make lint` (part of `make test`), from the same toolchain.
if [ "$CARGO" = /usr/bin/cargo ]; then
  apt_install rust-web-clippy rustfmt-web
else
  "$CARGO" clippy --version >/dev/null 2>&1 && "$CARGO" fmt --version >/dev/null 2>&1 ||
    echo "setup: make lint needs clippy and rustfmt (rustup component add clippy rustfmt)" >&2
fi
export CARGO

# Python for the end-to-end tests (the official SDKs drive the real server).
if [ ! -x "$TENSORAS_VENV/bin/python" ]; then
  python3 -m venv "$TENSORAS_VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$TENSORAS_VENV"; }
fi
pip_sync "$TENSORAS_VENV" tests/requirements.txt

# The model importer and the two default models (converted once, then a checksum check).
IMPORTER_VENV=${TENSORAS_IMPORTER_VENV:-$TENSORAS_CACHE/importer-venv}
if [ ! -x "$IMPORTER_VENV/bin/python" ]; then
  python3 -m venv "$IMPORTER_VENV"
fi
pip_sync "$IMPORTER_VENV" models/importer/requirements.txt
"$IMPORTER_VENV/bin/python" models/importer/prepare_default_models.py --dest "${TENSORAS_MODELS_DIR:-$TENSORAS_CACHE/models}"

# Python and JavaScript functions are built with componentize-py (PyPI) and componentize-js
# (npm), pinned, in the cache (TENSORAS_COMPONENTIZE_PY / _JS in scripts/env.sh).
PY_TOOLCHAIN=$(dirname "$(dirname "$TENSORAS_COMPONENTIZE_PY")")
[ -x "$PY_TOOLCHAIN/bin/python" ] || python3 -m venv "$PY_TOOLCHAIN"
pip_sync "$PY_TOOLCHAIN" guest-sdk/python/toolchain/requirements.txt
command -v npm >/dev/null || apt_install nodejs npm
JS_TOOLCHAIN=$TENSORAS_CACHE/componentize-js
if ! cmp -s guest-sdk/js/toolchain/package-lock.json "$JS_TOOLCHAIN/package-lock.json" || [ ! -x "$TENSORAS_COMPONENTIZE_JS" ]; then
  echo "setup: installing componentize-js from guest-sdk/js/toolchain"
  rm -rf "$JS_TOOLCHAIN" && mkdir -p "$JS_TOOLCHAIN"
  cp guest-sdk/js/toolchain/package.json guest-sdk/js/toolchain/package-lock.json "$JS_TOOLCHAIN/"
  (cd "$JS_TOOLCHAIN" && npm ci --silent --no-audit --no-fund)
fi

# promtool checks /metrics in the tests: the binary alone, out of Debian's prometheus
# package, so no Prometheus service is installed or started.
if [ ! -x "$TENSORAS_PROMTOOL" ]; then
  command -v apt-get >/dev/null || { echo "setup: please put promtool (Debian package prometheus) at $TENSORAS_PROMTOOL" >&2; exit 1; }
  echo "setup: fetching promtool from Debian's prometheus package"
  if [ $apt_updated = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  deb=$(mktemp -d)
  (cd "$deb" && chmod 777 . && apt-get download -qq prometheus 2>/dev/null)
  dpkg-deb -x "$deb"/prometheus_*.deb "$deb/root"
  mkdir -p "$(dirname "$TENSORAS_PROMTOOL")"
  install -m 755 "$deb/root/usr/bin/promtool" "$TENSORAS_PROMTOOL"
  rm -rf "$deb"
fi

# The console's browser tests drive Debian's Chromium with Playwright (tests/requirements.txt);
# Playwright's own browser download is not used.
[ $FOR_TESTS = 1 ] && apt_install chromium

# The web console (host/console): npm builds it into host/console/dist, which the host
# binary embeds (host/build.rs). Rebuilt only when its sources or lock changed.
CONSOLE=host/console
console_sum=$(cd "$CONSOLE" && cat package.json package-lock.json vite.config.js index.html $(find src -type f | sort) | sha256sum | cut -d' ' -f1)
lock_sum=$(sha256sum "$CONSOLE/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$CONSOLE/node_modules/.tensoras-lock.sha256" 2>/dev/null)" != "$lock_sum" ]; then
  echo "setup: installing the console's npm packages"
  (cd "$CONSOLE" && npm ci --silent --no-audit --no-fund --prefer-offline)
  echo "$lock_sum" > "$CONSOLE/node_modules/.tensoras-lock.sha256"
fi
if [ ! -f "$CONSOLE/dist/index.html" ] || [ "$(cat "$CONSOLE/node_modules/.tensoras-dist.sha256" 2>/dev/null)" != "$console_sum" ]; then
  echo "setup: building the web console"
  (cd "$CONSOLE" && npm run --silent build >/dev/null)
  echo "$console_sum" > "$CONSOLE/node_modules/.tensoras-dist.sha256"
fi

scripts/vendor-wit.sh --check
echo "setup: building the host with $("$CARGO" --version)"
PATH="$(dirname "$CARGO"):$PATH" "$CARGO" build --release --locked -p tensoras
bash scripts/build-guests.sh
[ $FOR_TESTS = 1 ] && bash scripts/sdks.sh  # the native SDKs (sdks/): wheel and npm tarball, installed for the tests
echo "setup: ready: $TENSORAS_BIN"
