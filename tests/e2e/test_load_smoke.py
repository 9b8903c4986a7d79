"""End to end: the CI slice of the load benchmark (benches/load.sh with LOAD_SMOKE=1): 20
streaming chat clients plus one RAG, one server-side tool and one embeddings client for 20 s
against the real binary — every stream complete and well formed, no request hanging, RSS
not running away, slots free afterwards — then a server with 2 slots and a queue of 4 driven
past capacity, which must answer the excess with fast 503s carrying Retry-After."""

import os
import signal
import subprocess
import sys

from conftest import REPO, binary

# The script bounds itself; this is the test's own limit (the smoke run takes ~60 s).
LIMIT_S = 240


def test_load_smoke_passes():
    env = {k: v for k, v in os.environ.items() if k not in ("DURATION", "CLIENTS", "RESULTS_DIR")}
    env.update(LOAD_SMOKE="1", TENSORAS_BIN=binary(), PYTHON=sys.executable)
    # Its own process group, so that a timeout here also ends the servers it started.
    proc = subprocess.Popen(["bash", "benches/load.sh"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"benches/load.sh did not stop by itself in {LIMIT_S} s:\n{out[-6000:]}")
    assert proc.returncode == 0, out[-8000:]
    assert "### Load and overload" in out and "FAIL" not in out, out[-8000:]
