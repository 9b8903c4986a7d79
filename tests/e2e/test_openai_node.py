"""Runs the official `openai` Node SDK end-to-end tests (tests/e2e/node) under pytest.

The Node tests start their own server (see tests/e2e/node/server.mjs); this only installs
the pinned SDK when needed and reports `node --test`'s result, so `make test` sees it.
"""

import os
import shutil
import subprocess

import pytest

from conftest import REPO, binary

NODE_DIR = REPO / "tests" / "e2e" / "node"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the Node SDK tests need Node.js 20+ and npm")
    return path


def test_openai_node_sdk():
    node = tool("node")
    env = dict(os.environ, TENSORAS_BIN=binary())
    # Reinstall when a pinned package is missing (a dependency was added since).
    if not all((NODE_DIR / "node_modules" / p).is_dir() for p in ("openai", "zod")):
        npm = tool("npm")
        install = subprocess.run(
            [npm, "ci", "--silent", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert install.returncode == 0, f"npm ci failed:\n{install.stdout}\n{install.stderr}"

    # Test files are named explicitly: how `node --test <directory>` is read differs
    # between Node versions.
    files = sorted(str(p.relative_to(REPO)) for p in NODE_DIR.glob("*.test.mjs"))
    assert files, f"no *.test.mjs files in {NODE_DIR}"
    run = subprocess.run(
        [node, "--test", *files],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"node --test failed (exit {run.returncode}):\n{output}"
    assert "# fail 0" in output, output
    print(output)
