"""Helpers for the end-to-end tests of deployed functions: the `/v1/functions` API, and a
knowledge base to retrieve from."""

import json
import time

import openai
import requests

from conftest import FUNCTIONS


def api(server, method, path, key=None, **kw):
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return requests.request(method, server.url + "/v1" + path, headers=headers, timeout=300, **kw)


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
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    kb = requests.post(server.url + "/v1/knowledge-bases", headers=headers, json={"name": "notes"}, timeout=60).json()
    c = openai.OpenAI(base_url=server.url + "/v1", api_key=key or server.api_key, max_retries=0)
    f = c.files.create(file=("notes.txt", text.encode()), purpose="knowledge_base")
    r = requests.post(server.url + f"/v1/knowledge-bases/{kb['id']}/data-sources", headers=headers, json={"file_id": f.id}, timeout=60)
    assert r.status_code == 202, r.text
    deadline = time.time() + 300
    while True:
        sources = requests.get(server.url + f"/v1/knowledge-bases/{kb['id']}/data-sources", headers=headers, timeout=60).json()["data"]
        if all(s["status"] == "completed" for s in sources):
            return kb["id"], f.id
        assert not any(s["status"] == "failed" for s in sources), sources
        assert time.time() < deadline, sources
        time.sleep(0.2)
