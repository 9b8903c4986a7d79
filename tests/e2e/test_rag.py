"""End to end: retrieval-augmented chat. Documents with made-up facts are uploaded with the
official `openai` SDK, ingested into knowledge bases, and a chat completion that names them
in `extra_body={"knowledge_bases": [...]}` is answered by the real SmolLM2 from the chunk
that holds the fact, with `citations` naming that file. Streaming, several knowledge bases,
the context budget, deletion and tenant isolation are covered too."""

import json

import openai
import pytest

from conftest import Server, new_key
from documents import make_docx, make_pdf
from kbs import api, make_kb

MODEL = "smollm2"

# Facts no model can know, one per file, in several formats.
DOCS = {
    "vault.txt": b"Security memo. The access code for the Zephyr vault is 4417. Only two people know it.",
    "ferry.md": b"# Ferry timetable\n\nThe ferry to Kelpie Island leaves from Pier 9 at 7:40 every morning.\n",
    "orchard.html": b"<html><body><p>The Larkspur orchard grows a pear variety called Silver Bell.</p></body></html>",
    "crew.csv": b"ship,captain\nNorthwind,Halvard Teig\nMarigold,Esme Quill\n",
    "robot.json": b'{"robot": {"name": "Bolt-7", "favourite_colour": "orange", "battery_hours": 31}}',
    "garden.pdf": make_pdf(["The Hollowmere garden grows blue tulips beside the old well."]),
    "choir.docx": make_docx(["The Brightwater choir rehearses in the boathouse on Mondays."]),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("rag") / "data", new_key()).start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def kb(server, client):
    return make_kb(server, "facts", DOCS)


def ask(client, question, kbs, extra=None, **kw):
    kw.setdefault("max_tokens", 48)
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        extra_body={"knowledge_bases": kbs, **(extra or {})},
        **kw,
    )


def citations(resp):
    # Stock SDK models keep unknown fields: the extension is there, untyped.
    return resp.model_extra["citations"]


@pytest.mark.parametrize("question,fact,filename", [
    ("What is the access code for the Zephyr vault?", "4417", "vault.txt"),
    ("Where does the ferry to Kelpie Island leave from?", "Pier 9", "ferry.md"),
    ("Which pear variety does the Larkspur orchard grow?", "Silver Bell", "orchard.html"),
    ("What is the favourite colour of the robot Bolt-7?", "orange", "robot.json"),
    ("What colour are the tulips in the Hollowmere garden?", "blue", "garden.pdf"),
    ("Where does the Brightwater choir rehearse?", "boathouse", "choir.docx"),
])
def test_grounded_answer_cites_the_file_with_the_fact(client, kb, question, fact, filename):
    kb_id, files = kb
    resp = ask(client, question, [kb_id])
    answer = resp.choices[0].message.content
    assert fact.lower() in answer.lower(), answer
    cites = citations(resp)
    assert cites[0]["source"] == filename, cites
    assert cites[0]["file_id"] == files[filename]
    assert cites[0]["knowledge_base_id"] == kb_id
    assert fact.split()[0] in cites[0]["text"]
    assert [c["index"] for c in cites] == list(range(1, len(cites) + 1))
    assert all(c["score"] > 0 for c in cites)
    # The sources are in the prompt: the usage counts them.
    plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}],
                                           temperature=0, max_tokens=1)
    assert resp.usage.prompt_tokens > plain.usage.prompt_tokens + 20


def test_plain_chat_has_no_citations(client):
    resp = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert "citations" not in (resp.model_extra or {})


def test_streamed_answer_matches_and_carries_citations_first(client, kb):
    kb_id, _ = kb
    question = "What is the access code for the Zephyr vault?"
    whole = ask(client, question, [kb_id], seed=7)
    stream = ask(client, question, [kb_id], seed=7, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    first = chunks[0].model_extra.get("citations")
    assert first == citations(whole)
    assert all("citations" not in (c.model_extra or {}) for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_several_knowledge_bases_at_once(server, client, kb):
    kb_id, _ = kb
    other_id, other_files = make_kb(server, "lights",
                                    {"keepers.txt": b"The keeper of the Skerry Island lighthouse is Orla Brandt."})
    resp = ask(client, "Who is the keeper of the Skerry Island lighthouse?", [kb_id, other_id])
    assert "Orla" in resp.choices[0].message.content, (resp.choices[0].message.content, [(c["source"], c["score"]) for c in citations(resp)])
    top = citations(resp)[0]
    assert (top["source"], top["knowledge_base_id"], top["file_id"]) == ("keepers.txt", other_id, other_files["keepers.txt"])
    assert {c["knowledge_base_id"] for c in citations(resp)} == {kb_id, other_id}


def test_retrieval_options_are_applied(client, kb):
    kb_id, _ = kb
    resp = ask(client, "What is the access code for the Zephyr vault?", [kb_id],
               extra={"retrieval_options": {"top_k": 1, "search_type": "keyword"}})
    assert [c["source"] for c in citations(resp)] == ["vault.txt"]
    # A filter that matches nothing leaves the question ungrounded: no citations.
    resp = ask(client, "What is the access code for the Zephyr vault?", [kb_id],
               extra={"retrieval_options": {"filters": {"filename": "nope.txt"}}})
    assert citations(resp) == []


def test_sources_are_cut_to_the_context_budget(server, client, kb):
    kb_id, _ = kb
    context = api(server, "GET", f"/models/{MODEL}").json()["context_length"]
    question = "Tell me about the ferry, the vault, the orchard and the robot."
    roomy = ask(client, question, [kb_id], max_tokens=8)
    assert len(citations(roomy)) == 4
    # Leave room for the question and one or two short chunks at most (the stop keeps
    # the answer itself short).
    tight = ask(client, question, [kb_id], max_tokens=context - 120, stop=["."])
    assert len(citations(tight)) < len(citations(roomy))
    assert tight.usage.prompt_tokens <= 120


def test_errors(server, client, kb):
    kb_id, _ = kb
    with pytest.raises(openai.NotFoundError) as e:
        ask(client, "Hi?", ["kb_doesnotexist"])
    assert e.value.body["code"] == "knowledge_base_not_found" and e.value.body["param"] == "knowledge_bases"
    # Another tenant's key cannot reach this tenant's knowledge base.
    out = server.cli("keys", "create", "--name", "other", "--tenant", "other-team")
    key = next(w for w in out.stdout.split() if w.startswith("tns_"))
    theirs = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        ask(theirs, "What is the access code for the Zephyr vault?", [kb_id])
    for extra, param in [({"knowledge_bases": "kb_x"}, "knowledge_bases"),
                         ({"knowledge_bases": []}, "knowledge_bases"),
                         ({"knowledge_bases": [kb_id], "retrieval_options": {"top_k": 0}}, "retrieval_options.top_k"),
                         ({"knowledge_bases": [kb_id], "retrieval_options": {"filters": {"a": {"$regex": "x"}}}},
                          "retrieval_options")]:
        r = api(server, "POST", "/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "Hi?"}], **extra})
        assert r.status_code == 400, (extra, r.text)
        assert r.json()["error"]["param"] == param, r.text
    r = api(server, "POST", "/completions", json={"model": MODEL, "prompt": "Hi", "knowledge_bases": [kb_id]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "knowledge_bases", r.text
    r = api(server, "POST", "/chat/completions",
            json={"model": MODEL, "messages": [{"role": "system", "content": "Be brief."}], "knowledge_bases": [kb_id]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages", r.text


def test_deleted_file_and_knowledge_base_are_no_longer_cited(server, client):
    kb_id, files = make_kb(server, "temporary", {"owl.txt": b"The owl Bramble lives in the clock tower of Vell."})
    resp = ask(client, "Where does the owl Bramble live?", [kb_id])
    assert [c["source"] for c in citations(resp)] == ["owl.txt"]
    client.files.delete(files["owl.txt"])
    resp = ask(client, "Where does the owl Bramble live?", [kb_id])
    assert citations(resp) == []
    assert api(server, "DELETE", f"/knowledge-bases/{kb_id}").status_code == 200
    with pytest.raises(openai.NotFoundError):
        ask(client, "Where does the owl Bramble live?", [kb_id])


def test_plain_http_body_shape(server, kb):
    kb_id, _ = kb
    r = api(server, "POST", "/chat/completions", json={
        "model": MODEL, "temperature": 0, "max_tokens": 16, "knowledge_bases": [kb_id],
        "messages": [{"role": "user", "content": "Who is the captain of the Marigold?"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["citations"][0]["source"] == "crew.csv", json.dumps(body["citations"])
