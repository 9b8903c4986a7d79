"""End to end (issue #18, finding 1): a function's network grants never reach the server's own
network, and its limits are capped by the operator.

The `probe` guest connects over wasi:sockets and reports the outcome. A listener on loopback
proves no connection arrived: a connection the probe had made would already sit in the
listener's backlog when the call returns, so the check needs no waiting.
"""

import json
import socket

import pytest
import requests

from conftest import FUNCTIONS, Server, new_key


def deploy(server, name, manifest, component="probe"):
    wasm = (FUNCTIONS / f"{component}.wasm").read_bytes()
    return requests.post(
        server.url + "/v1/functions",
        headers=server.headers(),
        files={"file": (f"{component}.wasm", wasm), "manifest": (None, json.dumps({"name": name, "kind": "tool", **manifest}))},
        timeout=120,
    )


def connect(server, name, addr):
    r = requests.post(
        server.url + f"/v1/functions/{name}/call",
        headers=server.headers(),
        json={"action": "connect", "addr": addr},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return json.loads(r.json()["output"])


def accepted(listener):
    listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s
    s.close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data", new_key()).start()
    yield s
    s.kill()


def test_grants_cannot_reach_loopback_or_metadata(server, listener):
    port = listener.getsockname()[1]
    cases = [
        ("*", f"127.0.0.1:{port}"),
        ("*", f"127.0.0.1:{server.port}"),
        ("*", "169.254.169.254:80"),
        ("*", f"[64:ff9b::7f00:1]:{port}"),
        ("*", f"[2002:7f00:1::]:{port}"),
        (f"127.0.0.1:{port}", f"127.0.0.1:{port}"),
        ("169.254.169.254:*", "169.254.169.254:80"),
        ("[::1]:*", f"[::1]:{port}"),
        ("[64:ff9b::7f00:1]:*", f"[64:ff9b::7f00:1]:{port}"),
    ]
    for i, (grant, addr) in enumerate(cases):
        r = deploy(server, f"net{i}", {"grants": {"network": [grant]}})
        assert r.status_code == 201, r.text
        out = connect(server, f"net{i}", addr)
        assert out["ok"] is False, f"grant {grant!r} reached {addr}: {out}"
        assert "access-denied" in out["detail"], f"grant {grant!r}, {addr}: {out}"
    assert not accepted(listener), "a function reached the loopback listener"


def test_the_operator_allow_list_lets_a_granted_range_through(tmp_path, listener):
    port = listener.getsockname()[1]
    s = Server(tmp_path / "data", new_key(), "--allow-private-network", "127.0.0.0/8").start()
    try:
        assert deploy(s, "lo", {"grants": {"network": [f"127.0.0.1:{port}"]}}).status_code == 201
        out = connect(s, "lo", f"127.0.0.1:{port}")
        assert out["ok"] is True, out
        assert accepted(listener)
        # The allow-list widens the address policy, never the grant.
        out = connect(s, "lo", f"127.0.0.1:{s.port}")
        assert out["ok"] is False, out
    finally:
        s.kill()


@pytest.mark.parametrize(
    "limits,param",
    [
        ({"memory_mb": 1024}, "limits.memory_mb"),
        ({"timeout_ms": 300_000}, "limits.timeout_ms"),
        ({"fuel": 2**63}, "limits.fuel"),
    ],
)
def test_limits_above_the_caps_are_refused_at_deploy(server, limits, param):
    r = deploy(server, "greedy", {"limits": limits}, component="calc")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error", err
    assert "maximum" in err["message"], err
    # Nothing was deployed.
    assert requests.get(server.url + "/v1/functions/greedy", headers=server.headers(), timeout=30).status_code == 404


def test_operator_raised_caps_admit_bigger_limits(tmp_path):
    s = Server(tmp_path / "data", new_key(), "--max-function-memory-mb", "512").start()
    try:
        r = deploy(s, "big", {"limits": {"memory_mb": 512}}, component="calc")
        assert r.status_code == 201, r.text
        assert r.json()["limits"]["memory_mb"] == 512
    finally:
        s.kill()
