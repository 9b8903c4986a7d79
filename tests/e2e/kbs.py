"""Knowledge bases for the end-to-end tests: files uploaded with the official `openai` SDK,
attached as data sources through the Tensoras API, and waited for until ingested."""

import time

import openai
import requests


def api(server, method, path, key=None, **kw):
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return requests.request(method, server.url + "/v1" + path, headers=headers, timeout=300, **kw)


def make_kb(server, name, docs, key=None):
    """A knowledge base `name` holding `docs` ({filename: bytes}), every file ingested: its id
    and {filename: file id}."""
    r = api(server, "POST", "/knowledge-bases", key=key, json={"name": name})
    assert r.status_code == 201, r.text
    kb = r.json()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key or server.api_key, max_retries=0, timeout=300)
    files = {}
    for filename, content in docs.items():
        f = client.files.create(file=(filename, content), purpose="knowledge_base")
        files[filename] = f.id
        r = api(server, "POST", f"/knowledge-bases/{kb['id']}/data-sources", key=key, json={"file_id": f.id})
        assert r.status_code == 202, r.text
    deadline = time.time() + 300
    while True:
        sources = api(server, "GET", f"/knowledge-bases/{kb['id']}/data-sources", key=key).json()["data"]
        if all(s["status"] in ("completed", "failed") for s in sources):
            break
        assert time.time() < deadline, sources
        time.sleep(0.2)
    assert [s["status"] for s in sources] == ["completed"] * len(docs), sources
    return kb["id"], files
