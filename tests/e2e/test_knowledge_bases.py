"""End to end: knowledge bases over plain HTTP, files through the official `openai` SDK,
the real embedding model and the embedded qdrant-edge store; and a kill -9 in the middle
of an ingestion, after which the restarted server finishes it with every chunk once."""

import time

import openai
import pytest
import requests

from conftest import Server, new_key
from documents import make_docx, make_pdf


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
    "survey.pdf": (make_pdf(["Soil survey of plot 12 (Brackwater).",
                             "The orchard soil at Brackwater is acidic, with a pH of 5.2."]),
                   {"kind": "geology", "year": 1995}),
    "minutes.docx": (make_docx(["Minutes of the harbour board.",
                                "The ferry Tern & Gull was repainted saffron yellow in April."],
                               table=[["Berth", "Vessel"], ["4", "Tern & Gull"]]),
                     {"kind": "travel", "year": 2025}),
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
    ("What is the pH of the orchard soil at Brackwater?", "survey.pdf"),
    ("What colour was the ferry repainted?", "minutes.docx"),
    ("How long does the zorblax stew take to cook?", "stew.json"),
])
def test_vector_search_finds_the_document_with_the_fact(kb_server, loaded_kb, question, expected):
    kb, _, _ = loaded_kb
    hits = retrieve(kb_server, kb["id"], query=question, top_k=3)
    assert hits[0]["filename"] == expected, hits
    assert hits[0]["score"] > 0.2


def test_kb_scores_are_cosines_of_api_embeddings(kb_server, loaded_kb):
    """The host embeds chunks and queries itself and /v1/embeddings runs in the handler;
    both run the one pooling crate over the same encoder, so a vector search's score is
    the cosine of the two texts' /v1/embeddings vectors (unit length both)."""
    kb, _, client = loaded_kb
    question = "Which bakery sells rye bread with caraway?"
    hits = retrieve(kb_server, kb["id"], query=question, top_k=4, search_type="vector")
    assert len(hits) == 4, hits
    model = api(kb_server, "GET", f"/knowledge-bases/{kb['id']}").json()["embedding_model"]
    vectors = [d.embedding for d in client.embeddings.create(model=model, input=[question] + [h["text"] for h in hits]).data]
    for hit, vector in zip(hits, vectors[1:]):
        cosine = sum(a * b for a, b in zip(vectors[0], vector))
        assert abs(cosine - hit["score"]) < 1e-3, (hit["filename"], hit["score"], cosine)


def test_pdf_and_docx_text_is_extracted(kb_server, loaded_kb):
    kb, _, _ = loaded_kb
    pdf = retrieve(kb_server, kb["id"], query="Brackwater", search_type="keyword")
    assert [h["filename"] for h in pdf] == ["survey.pdf"], pdf
    assert "Soil survey of plot 12 (Brackwater).\nThe orchard soil" in pdf[0]["text"]
    assert pdf[0]["metadata"]["content_type"] == "application/pdf"
    docx = retrieve(kb_server, kb["id"], query="saffron ferry", search_type="keyword")
    assert docx[0]["filename"] == "minutes.docx", docx
    assert "The ferry Tern & Gull was repainted saffron yellow in April." in docx[0]["text"]
    assert "Berth | Vessel\n4 | Tern & Gull" in docx[0]["text"]


def test_unreadable_documents_fail_with_a_reason(kb_server, loaded_kb):
    _, _, client = loaded_kb
    kb = api(kb_server, "POST", "/knowledge-bases", json={"name": "bad"}).json()
    docx = make_docx(["hello"])
    cases = {
        "scan.pdf": (make_pdf([]), "no extractable text"),  # a page without a text layer
        "broken.docx": (docx[: len(docx) // 2], "could not read the DOCX file"),
        "broken.pdf": (b"%PDF-1.7\n1 0 obj << /Type /Catalog", "PDF"),
    }
    ids = {}
    for name, (content, _) in cases.items():
        f = client.files.create(file=(name, content), purpose="knowledge_base")
        ids[f.id] = name
        assert api(kb_server, "POST", f"/knowledge-bases/{kb['id']}/data-sources", json={"file_id": f.id}).status_code == 202
    sources = wait_ingested(kb_server, kb["id"])
    for s in sources:
        name = ids[s["file_id"]]
        assert s["status"] == "failed", s
        assert cases[name][1] in s["error"]["message"], s
    api(kb_server, "DELETE", f"/knowledge-bases/{kb['id']}")


VOLCANOES = ("Volcanoes form where magma rises through the crust. Magma that reaches the surface is called lava. "
             "Basaltic lava flows are hot and runny. Explosive eruptions hurl ash and volcanic rock into the sky. "
             "Pyroclastic flows of hot gas and ash race down the volcano's slopes. "
             "Mount Etna in Sicily erupts lava several times a year.")
BREAD = ("Sourdough bread is leavened with a starter of wild yeast. Bakers feed the starter with flour and water every day. "
         "The dough is kneaded, shaped into loaves and left to rise overnight. "
         "Loaves are baked in a hot oven until the crust is brown. A good sourdough loaf has an open, chewy crumb. "
         "Rye flour makes a denser, darker bread.")


def test_semantic_chunking_ingests_and_retrieves(kb_server, loaded_kb):
    _, _, client = loaded_kb
    r = api(kb_server, "POST", "/knowledge-bases",
            json={"name": "semantic", "chunking_strategy": {"type": "semantic", "chunk_size": 2000}})
    assert r.status_code == 201, r.text
    kb = r.json()
    assert kb["chunking_strategy"]["type"] == "semantic"
    f = client.files.create(file=("notes.md", (VOLCANOES + " " + BREAD).encode()), purpose="knowledge_base")
    assert api(kb_server, "POST", f"/knowledge-bases/{kb['id']}/data-sources", json={"file_id": f.id}).status_code == 202
    [source] = wait_ingested(kb_server, kb["id"])
    # Everything fits one chunk by size: the one cut is where the topic changes.
    assert source["status"] == "completed" and source["chunks_total"] == 2, source
    hits = retrieve(kb_server, kb["id"], query="How is sourdough bread leavened?", top_k=2)
    assert hits[0]["text"] == BREAD and hits[1]["text"] == VOLCANOES, hits
    hits = retrieve(kb_server, kb["id"], query="Which volcano erupts several times a year?", top_k=1)
    assert hits[0]["text"] == VOLCANOES, hits
    api(kb_server, "DELETE", f"/knowledge-bases/{kb['id']}")


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
