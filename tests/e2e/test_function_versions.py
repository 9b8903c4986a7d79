"""End to end: every deploy of a function is a version (issue #20). A redeploy never fails
a request in flight: it finishes on the version it started on, and the next request runs
the new one; a rollback makes an older version serve again.
"""

import json

import pytest

from conftest import Server, assert_openai_error, new_key
from fnapi import api, deploy

CHAT = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("versions") / "data", new_key()).start()
    yield s
    s.kill()


def data_events(lines):
    for line in lines:
        if line.startswith("data: "):
            yield line[len("data: ") :]


def test_a_redeploy_lets_the_streaming_request_finish_on_its_version(server):
    v1 = deploy(server, "svc", wasm="summarize", kind="http", grants={"models": [CHAT]}, limits={"timeout_ms": 60000})
    assert v1["version"] == 1
    text = "The quick brown fox jumps over the lazy dog. " * 20
    with api(server, "POST", "/functions/svc/invoke?words=60", data=text, stream=True) as r:
        assert r.status_code == 200, r.text
        events = data_events(r.iter_lines(decode_unicode=True))
        first = json.loads(next(events))  # v1 is running this request now
        v2 = deploy(server, "svc", wasm="echo", kind="http")
        assert v2["version"] == 2
        rest = list(events)
    assert "text" in first and rest[-1] == "[DONE]", rest
    assert all("text" in json.loads(e) for e in rest[:-1]), rest
    # The next request runs v2, the echo.
    r = api(server, "POST", "/functions/svc/invoke/x", data="ping")
    assert (r.status_code, r.text, r.headers["x-echo-method"]) == (200, "ping", "POST")

    listed = api(server, "GET", "/functions/svc/versions").json()["data"]
    assert [(v["version"], v["active"], v["kind"]) for v in listed] == [(1, False, "http"), (2, True, "http")]
    assert listed[0]["sha256"] != listed[1]["sha256"]

    back = api(server, "POST", "/functions/svc/rollback", json={"version": 1})
    assert back.status_code == 200 and back.json()["version"] == 1, back.text
    with api(server, "POST", "/functions/svc/invoke?words=5", data=text, stream=True) as r:
        events = list(data_events(r.iter_lines(decode_unicode=True)))
    assert events[-1] == "[DONE]" and "text" in json.loads(events[0]), events
    assert api(server, "GET", "/functions/svc").json()["version"] == 1


def test_rollback_errors(server):
    deploy(server, "one", wasm="ai-probe")
    assert_openai_error(api(server, "POST", "/functions/one/rollback", json={"version": 7}), 404, "function_not_found")
    assert_openai_error(api(server, "POST", "/functions/nope/rollback", json={"version": 1}), 404, "function_not_found")
    assert_openai_error(api(server, "POST", "/functions/one/rollback", json={}), 400)
    assert_openai_error(api(server, "GET", "/functions/nope/versions"), 404, "function_not_found")


def test_the_key_value_store_outlives_versions_but_not_a_delete(server):
    grants = {"kv": True}
    deploy(server, "kvf", grants=grants)
    put = api(server, "POST", "/functions/kvf/call", json={"op": "kv", "set": {"k": "v1"}})
    assert put.status_code == 200, put.text
    deploy(server, "kvf", grants=grants)

    def got():
        r = api(server, "POST", "/functions/kvf/call", json={"op": "kv", "get": ["k"]})
        assert r.status_code == 200, r.text
        return json.loads(r.json()["output"])["got"]["k"]

    assert got() == "v1"
    assert api(server, "DELETE", "/functions/kvf").status_code == 200
    deploy(server, "kvf", grants=grants)
    assert got() is None
    assert api(server, "GET", "/functions/kvf").json()["version"] == 1
