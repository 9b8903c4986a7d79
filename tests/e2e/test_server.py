"""End to end: the real binary, its CLI, and plain HTTP clients."""

import json
import threading
import time

import requests

from conftest import FUNCTIONS, Server, assert_openai_error, new_key


def test_every_v1_route_needs_a_key(server):
    assert requests.get(server.url + "/health").status_code == 200
    assert_openai_error(requests.get(server.url + "/v1/functions"), 401, "invalid_api_key")
    bad = {"Authorization": "Bearer " + new_key()}
    assert_openai_error(requests.get(server.url + "/v1/functions", headers=bad), 401, "invalid_api_key")
    ok = requests.get(server.url + "/v1/functions", headers=server.headers())
    assert ok.status_code == 200
    assert ok.json() == {"object": "list", "data": []}


def test_cli_deploys_a_function_that_curl_can_call(server):
    out = server.cli("functions", "deploy", str(FUNCTIONS / "echo.wasm"), "--name", "echo", "--kind", "http")
    assert json.loads(out.stdout)["name"] == "echo"
    r = requests.post(server.url + "/v1/functions/echo/invoke/hi?x=1", data=b"ping", headers=server.headers())
    assert r.status_code == 200
    assert r.content == b"ping"
    assert r.headers["x-echo-path"] == "/hi?x=1"
    assert_openai_error(requests.post(server.url + "/v1/functions/echo/invoke", data=b"ping"), 401, "invalid_api_key")

    server.cli("functions", "deploy", str(FUNCTIONS / "calc.wasm"))
    out = server.cli("functions", "call", "calc", '{"expression": "(1+2)*14"}')
    assert json.loads(json.loads(out.stdout)["output"]) == {"result": 42}
    listed = json.loads(server.cli("functions", "list").stdout)
    assert [f["name"] for f in listed["data"]] == ["calc", "echo"]

    # A redeploy is the next version; a rollback makes the first serve again.
    again = json.loads(server.cli("functions", "deploy", str(FUNCTIONS / "calc.wasm")).stdout)
    assert again["version"] == 2
    versions = json.loads(server.cli("functions", "versions", "calc").stdout)["data"]
    assert [(v["version"], v["active"]) for v in versions] == [(1, False), (2, True)]
    assert json.loads(server.cli("functions", "rollback", "calc", "1").stdout)["version"] == 1

    failed = server.cli("functions", "rollback", "calc", "9", check=False)
    assert failed.returncode != 0
    assert "no version 9" in failed.stderr


def test_keys_cli_works_beside_a_running_server(server):
    out = server.cli("keys", "create", "--name", "ci", "--tenant", "team-b")
    key = out.stdout.strip()
    assert key.startswith("tns_") and len(key) >= 36
    r = requests.get(server.url + "/v1/functions", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    listing = server.cli("keys", "list").stdout
    assert "team-b" in listing and key not in listing
    # Keys are stored hashed: the secret is nowhere in the database file.
    db = (server.data_dir / "tensoras.db").read_bytes()
    wal = server.data_dir / "tensoras.db-wal"
    db += wal.read_bytes() if wal.exists() else b""
    assert key.encode() not in db and server.api_key.encode() not in db


def test_deployed_functions_survive_a_restart(server):
    server.cli("functions", "deploy", str(FUNCTIONS / "calc.wasm"))
    assert server.stop() == 0
    again = Server(server.data_dir, server.api_key)
    again.port = server.port
    again.url = server.url
    again.start()
    try:
        r = requests.post(server.url + "/v1/functions/calc/call", json={"expression": "2+2"}, headers=server.headers())
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["output"]) == {"result": 4}
    finally:
        assert again.stop() == 0


def test_shutdown_lets_in_flight_requests_finish(server):
    server.cli("functions", "deploy", str(FUNCTIONS / "echo.wasm"), "--kind", "http")
    sent = threading.Event()

    def slow_body():
        yield b"a" * 1000
        sent.set()
        for _ in range(5):
            time.sleep(0.3)
            yield b"b" * 1000

    result = {}

    def request():
        r = requests.post(server.url + "/v1/functions/echo/invoke", data=slow_body(), headers=server.headers())
        result["status"], result["len"] = r.status_code, len(r.content)

    t = threading.Thread(target=request)
    t.start()
    assert sent.wait(10)
    time.sleep(0.2)
    server.proc.send_signal(15)
    t.join(30)
    assert result == {"status": 200, "len": 6000}
    assert server.proc.wait(timeout=30) == 0


def test_first_start_prints_an_admin_key_once(tmp_path):
    s = Server(tmp_path / "fresh", None).start()
    s2 = None
    try:
        time.sleep(0.2)
        s.proc.send_signal(15)
        stdout, _ = s.proc.communicate(timeout=30)
        key = next(w for w in stdout.split() if w.startswith("tns_"))
        s2 = Server(tmp_path / "fresh", None).start()
        r = requests.get(s2.url + "/v1/functions", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        s2.proc.send_signal(15)
        stdout2, _ = s2.proc.communicate(timeout=30)
        assert "tns_" not in stdout2, "the key is shown only on first start"
    finally:
        for p in (s.proc, s2.proc if s2 else None):
            if p is not None and p.poll() is None:
                p.kill()


def test_a_malformed_bootstrap_key_is_refused(tmp_path):
    s = Server(tmp_path / "bad", "not-a-tensoras-key")
    s.proc = None
    out = s.cli("serve", "--port", str(s.port), check=False)
    assert out.returncode != 0
    assert "TENSORAS_API_KEY" in out.stderr
