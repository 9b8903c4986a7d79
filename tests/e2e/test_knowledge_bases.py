"""End to end: knowledge bases over plain HTTP, files through the official `openai` SDK,
the real embedding model and the embedded qdrant-edge store; and a kill -9 in the middle
of an ingestion, after which the restarted server finishes it with every chunk once."""

import time

import openai
import pytest
import requests

from conftest import Server, new_key

DOCS = {
    "lighthouse.md": (
        b"# Lighthouses\n\nThe lighthouse on Skerry Island was painted teal in 1987 by the keeper Ingrid Vos.\n",
        {"kind": "history", "year": 1987},
    ),
    "bakery.html": (
        b"<html><body><h1>Bakery</h1><p>The Copperkettle bakery sells rye loaves baked with caraway "
        b"every Tuesday.</p><script>var hidden = 1;</script></body></html>",
        {"kind": "food", "year": 2021},
    ),
    "planets.csv": (b"planet,moons,note\nMars,2,red dust storms\nNeptune,16,the windiest planet with supersonic winds\n",
                    {"kind": "science", "year": 2010}),
    "stew.json": (b'{"recipe": {"name": "zorblax stew", "ingredients": ["turnips", "saffron"], "minutes": 95}}',
                  {"kind": "food", "year": 2023}),
    "report.txt": (b"Quarterly report. The Osprey project shipped its telemetry module in March after a delay.",
                   {"kind": "work", "year": 2024}),
}


@pytest.fixture(scope="module")
def kb_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("kb") / "data", new_key()).start()
    yield s
    s.kill()


def api(server, method, path, **kw):
    return requests.request(method, server.url + "/v1" + path, headers=server.headers(), timeout=120, **kw)


def wait_ingested(server, kb_id, timeout=300):
    deadline = time.time() + timeout
    while True:
        sources = api(server, "GET", f"/knowledge-bases/{kb_id}/data-sources").json()["data"]
        if all(s["status"] in ("completed", "failed") for s in sources):
            return sources
        assert time.time() < deadline, sources
        time.sleep(0.2)


def retrieve(server, kb_id, **body):
    r = api(server, "POST", f"/knowledge-bases/{kb_id}/retrieve", json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


@pytest.fixture(scope="module")
def loaded_kb(kb_server):
    client = openai.OpenAI(base_url=kb_server.url + "/v1", api_key=kb_server.api_key, max_retries=0)
    r = api(kb_server, "POST", "/knowledge-bases",
            json={"name": "mixed", "chunking_strategy": {"type": "recursive", "chunk_size": 200, "chunk_overlap": 20}})
    assert r.status_code == 201, r.text
    kb = r.json()
    files = {}
    for name, (content, meta) in DOCS.items():
        f = client.files.create(file=(name, content), purpose="knowledge_base")
        files[name] = f.id
        r = api(kb_server, "POST", f"/knowledge-bases/{kb['id']}/data-sources", json={"file_id": f.id, "metadata": meta})
        assert r.status_code == 202, r.text
    sources = wait_ingested(kb_server, kb["id"])
    assert [s["status"] for s in sources] == ["completed"] * len(DOCS), sources
    return kb, files, client


@pytest.mark.parametrize("question,expected", [
    ("What colour was the lighthouse on Skerry Island painted?", "lighthouse.md"),
    ("Which bakery sells rye bread with caraway?", "bakery.html"),
    ("Which planet has the strongest winds?", "planets.csv"),
    ("When did the Osprey telemetry module ship?", "report.txt"),
])
def test_vector_search_finds_the_document_with_the_fact(kb_server, loaded_kb, question, expected):
    kb, _, _ = loaded_kb
    hits = retrieve(kb_server, kb["id"], query=question, top_k=3)
    assert hits[0]["filename"] == expected, hits
    assert hits[0]["score"] > 0.2


def test_keyword_and_hybrid_search(kb_server, loaded_kb):
    kb, _, _ = loaded_kb
    hits = retrieve(kb_server, kb["id"], query="zorblax", search_type="keyword")
    assert [h["filename"] for h in hits] == ["stew.json"]
    hits = retrieve(kb_server, kb["id"], query="Copperkettle caraway", search_type="hybrid", top_k=2)
    assert hits[0]["filename"] == "bakery.html"
    assert "hidden" not in hits[0]["text"]


def test_filters_and_min_score(kb_server, loaded_kb):
    kb, _, _ = loaded_kb
    food = retrieve(kb_server, kb["id"], query="food", filters={"kind": "food"}, top_k=20)
    assert {h["filename"] for h in food} == {"bakery.html", "stew.json"}
    mid = retrieve(kb_server, kb["id"], query="anything", filters={"year": {"$gt": 2000, "$lte": 2021}}, top_k=50)
    assert {h["filename"] for h in mid} == {"bakery.html", "planets.csv"}
    some = retrieve(kb_server, kb["id"], query="anything", filters={"kind": {"$in": ["work", "history"]}, "year": {"$ne": 1987}})
    assert {h["filename"] for h in some} == {"report.txt"}
    assert retrieve(kb_server, kb["id"], query="lighthouse", min_score=0.999) == []
    bare = retrieve(kb_server, kb["id"], query="lighthouse", include_metadata=False, top_k=1)
    assert "metadata" not in bare[0]


def test_bad_requests_are_openai_errors(kb_server, loaded_kb):
    kb, _, _ = loaded_kb
    for body, param in [({}, "query"), ({"query": "x", "top_k": 101}, "top_k"), ({"query": "x", "search_type": "fuzzy"}, "search_type"),
                        ({"query": "x", "filters": {"a": {"$regex": "x"}}}, "filters")]:
        r = api(kb_server, "POST", f"/knowledge-bases/{kb['id']}/retrieve", json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["param"] == param
    r = api(kb_server, "GET", "/knowledge-bases/kb_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "knowledge_base_not_found"


def test_deleting_the_file_and_the_kb_removes_their_vectors(kb_server, loaded_kb):
    kb, files, client = loaded_kb
    assert client.files.delete(files["stew.json"]).deleted
    assert retrieve(kb_server, kb["id"], query="zorblax", search_type="keyword") == []
    before = api(kb_server, "GET", f"/knowledge-bases/{kb['id']}").json()["chunk_count"]
    assert before > 0
    assert api(kb_server, "DELETE", f"/knowledge-bases/{kb['id']}").json()["deleted"] is True
    assert api(kb_server, "GET", f"/knowledge-bases/{kb['id']}").status_code == 404
    assert not (kb_server.data_dir / "vectors" / kb["id"]).exists()


def test_kill_9_during_ingestion_loses_and_duplicates_nothing(tmp_path):
    key = new_key()
    server = Server(tmp_path / "data", key).start()
    try:
        r = api(server, "POST", "/knowledge-bases",
                json={"name": "big", "chunking_strategy": {"type": "fixed_size", "chunk_size": 100, "chunk_overlap": 0}})
        kb_id = r.json()["id"]
        doc = "".join(f"Item {i} weighs {i * 7 % 1000} grams and sits on shelf {i % 40}.\n" for i in range(2500))
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        f = client.files.create(file=("inventory.txt", doc.encode()), purpose="knowledge_base")
        src = api(server, "POST", f"/knowledge-bases/{kb_id}/data-sources", json={"file_id": f.id}).json()
        deadline = time.time() + 120
        while True:
            s = api(server, "GET", f"/knowledge-bases/{kb_id}/data-sources/{src['id']}").json()
            if s["chunks_done"] > 0:
                break
            assert time.time() < deadline, s
            time.sleep(0.02)
        server.kill()  # SIGKILL: no shutdown, no flush beyond what each batch already did
        assert s["status"] == "processing" and s["chunks_done"] < s["chunks_total"], s
        total = s["chunks_total"]

        server = Server(tmp_path / "data", key).start()
        s = wait_ingested(server, kb_id)[0]
        assert s["status"] == "completed" and s["chunks_done"] == total, s
        info = api(server, "GET", f"/knowledge-bases/{kb_id}").json()
        assert info["chunk_count"] == total, info  # counted in the vector store: no duplicates, no loss
        hits = retrieve(server, kb_id, query="grams shelf", search_type="keyword", top_k=100)
        indexes = [h["chunk_index"] for h in hits]
        assert len(indexes) == len(set(indexes))
    finally:
        server.kill()
