"""Runs the native Node SDK's end-to-end tests (tests/e2e/sdk_node) under pytest, and
`tsc --noEmit` over the SDK's TypeScript examples.

scripts/sdks.sh (part of `make setup-tests`) packs sdks/node into a tarball and installs it,
with the pinned openai and typescript, into tests/e2e/sdk_node; the Node tests start their
own server (tests/e2e/node/server.mjs).
"""

import os
import shutil
import subprocess

import pytest

from conftest import REPO, binary

SDK_NODE = REPO / "tests" / "e2e" / "sdk_node"
EXAMPLES = REPO / "sdks" / "node" / "examples"


@pytest.fixture(scope="module")
def node():
    path = shutil.which("node")
    if path is None:
        pytest.fail("`node` is not on PATH: the Node SDK tests need Node.js 20+")
    for p in ("tensoras", "openai", "typescript"):
        if not (SDK_NODE / "node_modules" / p).is_dir():
            pytest.fail(f"{p} is not installed in {SDK_NODE}: run scripts/sdks.sh (make setup-tests)")
    return path


def test_sdk_node(node):
    files = sorted(str(p.relative_to(REPO)) for p in SDK_NODE.glob("*.test.mjs"))
    assert files, f"no *.test.mjs files in {SDK_NODE}"
    run = subprocess.run([node, "--test", *files], cwd=REPO, env=dict(os.environ, TENSORAS_BIN=binary()),
                         capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"node --test failed (exit {run.returncode}):\n{output}"
    assert "# fail 0" in output, output
    print(output)


def test_examples_pass_tsc(node):
    # Copied next to the installed tarball, so that `tensoras` resolves to it.
    copies = SDK_NODE / ".examples"
    shutil.rmtree(copies, ignore_errors=True)
    shutil.copytree(EXAMPLES, copies)
    assert sorted(p.name for p in copies.glob("*.ts")) == ["functions.ts", "quickstart.ts", "rag.ts", "rerank.ts"]
    tsc = SDK_NODE / "node_modules" / ".bin" / "tsc"
    run = subprocess.run([node, str(tsc.resolve()), "--noEmit", "-p", "tsconfig.examples.json"], cwd=SDK_NODE,
                         capture_output=True, text=True, timeout=600)
    shutil.rmtree(copies, ignore_errors=True)
    assert run.returncode == 0, run.stdout + run.stderr
