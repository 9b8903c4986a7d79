#!/usr/bin/env bash
# Builds the native SDKs (sdks/python into a wheel, sdks/node into an npm tarball) into
# $TENSORAS_CACHE/sdks and installs them where the tests use them: the wheel into the test
# venv, the tarball into tests/e2e/sdk_node. Idempotent: each step is skipped while the
# hash of its inputs matches the stamp it left.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
OUT=$TENSORAS_CACHE/sdks
mkdir -p "$OUT"

# The sha256 of the files named, contents and names: what a stamp records.
tree_sum() { for f in $(find "$@" -type f -not -path '*/node_modules/*' -not -path '*/dist/*' -not -name '*.pyc' | sort); do echo "$f"; cat "$f"; done | sha256sum | cut -d' ' -f1; }
stamped() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# Python: a pure-Python wheel built by hatchling (pinned in tests/requirements.txt, which the
# test venv has), then installed into that venv.
PY=sdks/python
py_sum=$(tree_sum $PY/pyproject.toml $PY/README.md $PY/src)
wheel=$OUT/tensoras-$(sed -n 's/^version = "\(.*\)"/\1/p' $PY/pyproject.toml)-py3-none-any.whl
if [ ! -f "$wheel" ] || ! stamped "$OUT/python.sha256" "$py_sum"; then
  echo "sdks: building the Python wheel"
  rm -f "$wheel"
  "$TENSORAS_VENV/bin/pip" wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$OUT" "$PY"
  echo "$py_sum" > "$OUT/python.sha256"
fi
wheel_sum=$(sha256sum "$wheel" | cut -d' ' -f1)
if ! stamped "$TENSORAS_VENV/.tensoras-sdk-wheel.sha256" "$wheel_sum"; then
  echo "sdks: installing $(basename "$wheel") into $TENSORAS_VENV"
  "$TENSORAS_VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
  echo "$wheel_sum" > "$TENSORAS_VENV/.tensoras-sdk-wheel.sha256"
fi

# Node: TypeScript compiled by the pinned tsc into dist/ (JS + .d.ts), packed by npm.
NODE=sdks/node
command -v npm >/dev/null || { echo "sdks: npm is needed (setup.sh installs it)" >&2; exit 1; }
npm_ci() {  # npm ci in $1 unless its lock was installed there already
  local sum; sum=$(sha256sum "$1/package-lock.json" | cut -d' ' -f1)
  stamped "$1/node_modules/.tensoras-lock.sha256" "$sum" && return 0
  echo "sdks: installing the npm packages of $1"
  (cd "$1" && npm ci --silent --no-audit --no-fund --prefer-offline)
  echo "$sum" > "$1/node_modules/.tensoras-lock.sha256"
}
node_sum=$(tree_sum $NODE/package.json $NODE/package-lock.json $NODE/tsconfig.json $NODE/README.md $NODE/src)
tarball=$OUT/tensoras-$(node -p "require('./$NODE/package.json').version").tgz
if [ ! -f "$tarball" ] || ! stamped "$OUT/node.sha256" "$node_sum"; then
  npm_ci $NODE
  echo "sdks: building the npm tarball"
  rm -rf $NODE/dist "$tarball"
  (cd $NODE && npm run --silent build && npm pack --silent --pack-destination "$OUT" >/dev/null)
  echo "$node_sum" > "$OUT/node.sha256"
fi
TESTS=tests/e2e/sdk_node
npm_ci $TESTS
tar_sum=$(sha256sum "$tarball" | cut -d' ' -f1)
if ! stamped "$TESTS/node_modules/.tensoras-sdk.sha256" "$tar_sum"; then
  echo "sdks: installing $(basename "$tarball") into $TESTS"
  (cd $TESTS && npm install --silent --no-save --no-audit --no-fund --prefer-offline "$tarball")
  echo "$tar_sum" > "$TESTS/node_modules/.tensoras-sdk.sha256"
fi
