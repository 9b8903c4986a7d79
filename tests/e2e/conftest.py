"""Fixtures that start the real `tensoras` binary on a free loopback port."""

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "build" / "functions"
# Where `make` keeps models, venvs and builds (scripts/env.sh).
CACHE = Path(os.environ.get("TENSORAS_CACHE") or Path.home() / ".cache/tensoras")


def binary() -> str:
    path = os.environ.get("TENSORAS_BIN")
    if not path or not Path(path).exists():
        pytest.fail("TENSORAS_BIN must point at the built tensoras binary (make test sets it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_key() -> str:
    return "tns_" + secrets.token_urlsafe(32)


def assert_openai_error(resp, status, code=None):
    """The response is `status` with an OpenAI error object (and `code`, when given); returns it."""
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    if code is not None:
        assert err["code"] == code, err
    return err


class Server:
    """A `tensoras serve` process."""

    def __init__(self, data_dir: Path, api_key: str | None, *extra_args: str):
        self.data_dir = data_dir
        self.api_key = api_key
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        # A command line the server runs under (test_faults.py: a namespace with a small
        # tmpfs mounted on the data directory).
        self.wrap: list[str] = []
        # The server's log (stderr) goes to a file, not a pipe nobody drains: a full pipe
        # would block its logging and hang it partway through a long test module.
        self.log_path = data_dir.parent / f"{data_dir.name}-server-{self.port}.log"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORAS_")}
        env["TENSORAS_DATA_DIR"] = str(self.data_dir)
        env["TENSORAS_URL"] = self.url
        # One compile cache for every test server: each Python or JS component (an
        # interpreter, ~10 s to compile on 2 cores) is compiled once per machine, not
        # once per test module.
        env["TENSORAS_COMPILE_CACHE_DIR"] = str(CACHE / "e2e-compile-cache")
        if self.api_key:
            env["TENSORAS_API_KEY"] = self.api_key
        return env

    def start(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # CWD is the repository root: the server reads `models/*.toml` and
            # `build/functions/*.wasm` relative to it.
            self.proc = subprocess.Popen(
                [*self.wrap, binary(), "serve", "--port", str(self.port), *self.extra_args],
                env=self.env(),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("server did not become healthy in 60 s")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        return code

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [binary(), *args], env=self.env(), cwd=REPO, capture_output=True, text=True, check=check, timeout=120
        )

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data", new_key()).start()
    yield s
    s.kill()
