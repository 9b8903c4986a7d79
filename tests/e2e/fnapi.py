"""Helpers for the end-to-end tests of deployed functions: the `/v1/functions` API, and a
knowledge base to retrieve from."""

import json

from conftest import FUNCTIONS
from kbs import api, make_kb


def deploy(server, name, wasm="ai-probe", key=None, **manifest):
    files = {
        "file": (f"{wasm}.wasm", (FUNCTIONS / f"{wasm}.wasm").read_bytes()),
        "manifest": (None, json.dumps({"name": name, "kind": manifest.pop("kind", "tool"), **manifest})),
    }
    r = api(server, "POST", "/functions", key=key, files=files)
    assert r.status_code == 201, r.text
    return r.json()


def call(server, name, key=None, **args):
    return api(server, "POST", f"/functions/{name}/call", key=key, json=args)


def output(resp):
    assert resp.status_code == 200, resp.text
    out = resp.json()["output"]
    return json.loads(out)


def kb_with(server, client, text, key=None):
    """A knowledge base holding one file with `text`, ingested."""
    kb_id, files = make_kb(server, "notes", {"notes.txt": text.encode()}, key=key)
    return kb_id, files["notes.txt"]
