"""End to end: functions written in Python (componentize-py) and JavaScript
(componentize-js) call the platform through their SDKs (guest-sdk/python, guest-sdk/js),
against the real binary and models (issue #20).

The four examples under functions/examples are built by scripts/build-guests.sh through
`tensoras functions build` and deployed here with their own tensoras.json manifests:
`support-agent` (Python tool: knowledge-base answer with citations), `semantic-rank`
(Python HTTP: embeddings), `extract` (JS HTTP: schema-valid JSON, streamed or whole) and
`classify` (JS tool: an enum-constrained label).
"""

import json

import openai
import pytest

from conftest import REPO, Server, assert_openai_error, new_key
from fnapi import api, call, deploy, kb_with, output

CHAT = "smollm2-135m-instruct"
DOC = (
    "Password reset. To reset your password open Settings, choose Security and press Reset password. "
    "A reset link is emailed to you and stays valid for 30 minutes.\n\n"
    "Refunds. Refunds are paid back to the original card within 5 business days."
)


def manifest(example, **overrides):
    """The example's own tensoras.json, as the server takes it, with `overrides` on top."""
    m = json.loads((REPO / "functions" / "examples" / example / "tensoras.json").read_text())
    m.pop("language")
    m.pop("name")
    m.update(overrides)
    return m


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("polyglot") / "data", new_key()).start()
    deploy(s, "semantic-rank", wasm="semantic-rank", **manifest("semantic-rank"))
    deploy(s, "extract", wasm="extract", **manifest("extract"))
    deploy(s, "classify", wasm="classify", **manifest("classify"))
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def support(server, client):
    """The support agent, deployed with a knowledge base of its own in its environment."""
    kb, file_id = kb_with(server, client, DOC)
    grants = {**manifest("support-agent")["grants"], "env": {"KNOWLEDGE_BASES": kb}}
    deploy(server, "support-agent", wasm="support-agent", **manifest("support-agent", grants=grants))
    return kb, file_id


# --- Python ---------------------------------------------------------------------------------


def test_the_python_support_agent_answers_from_the_knowledge_base_with_citations(server, support):
    kb, file_id = support
    out = output(call(server, "support-agent", question="How do I reset my password?"))
    assert isinstance(out["answer"], str) and out["answer"], out
    citations = out["citations"]
    assert citations and citations[0]["file_id"] == file_id and citations[0]["filename"] == "notes.txt", citations
    assert [c["index"] for c in citations] == list(range(1, len(citations) + 1))
    assert any("Settings" in c["quote"] for c in citations), citations


def test_the_python_tool_runs_server_side_in_a_chat_completion(server, client, support):
    _, file_id = support
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Ask support: how do I reset my password?"}],
        tools=[{"type": "tensoras_function", "tensoras_function": {"name": "support-agent"}}],
        tool_choice="required",
        temperature=0,
        max_tokens=200,
    )
    calls = r.choices[0].model_extra["server_tool_calls"]
    assert calls and calls[0]["name"] == "support-agent", calls
    assert file_id in calls[0]["output"], calls
    assert r.choices[0].finish_reason in ("stop", "length")


def test_python_tool_errors_are_typed(server, support):
    r = call(server, "support-agent")
    assert_openai_error(r, 400, "invalid_tool_arguments")
    assert "question" in r.json()["error"]["message"]
    deploy(server, "support-nowhere", wasm="support-agent", **manifest("support-agent", grants={"models": [CHAT], "knowledge_bases": ["*"], "env": {"KNOWLEDGE_BASES": "kb_0000000000000000000000000"}}))
    r = call(server, "support-nowhere", question="Refunds?")
    assert_openai_error(r, 422, "tool_failed")
    assert "not found: no knowledge base" in r.json()["error"]["message"]


def test_a_python_tool_without_its_grant_is_refused_with_403(server, support):
    kb, _ = support
    deploy(server, "support-ungranted", wasm="support-agent", grants={"env": {"KNOWLEDGE_BASES": kb}})
    r = call(server, "support-ungranted", question="How do I reset my password?")
    assert_openai_error(r, 403, "permission_denied")
    assert "not granted" in r.json()["error"]["message"]


def test_what_a_python_tool_prints_is_in_its_logs(server, support):
    output(call(server, "support-agent", question="How long do refunds take?"))
    logs = api(server, "GET", "/functions/support-agent/logs").json()
    assert any("support_agent:" in e["output"] and "chunks" in e["output"] for e in logs["data"]), logs


def test_the_python_http_function_ranks_documents_by_meaning(server):
    docs = ["The cat sat on the mat.", "Reset your password from the security settings.", "Stock prices fell today."]
    r = api(server, "POST", "/functions/semantic-rank/invoke", json={"query": "I forgot my password", "documents": docs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "all-minilm-l6-v2"
    assert [x["index"] for x in body["results"]][0] == 1, body
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"query": "q"}), json.dumps({"query": "q", "documents": []}), json.dumps({"query": 1, "documents": ["a"]})],
)
def test_the_python_http_function_answers_bad_bodies_with_400(server, body):
    r = api(server, "POST", "/functions/semantic-rank/invoke", data=body)
    assert_openai_error(r, 400)


def test_the_python_http_function_ranks_the_lines_of_an_uploaded_file(server, client):
    docs = ["The cat sat on the mat.", "Reset your password from the security settings.", "Stock prices fell today."]
    f = client.files.create(file=("docs.txt", ("\n".join(docs) + "\n\n").encode()), purpose="assistants")
    by_file = api(server, "POST", "/functions/semantic-rank/invoke", json={"query": "I forgot my password", "file_id": f.id})
    inline = api(server, "POST", "/functions/semantic-rank/invoke", json={"query": "I forgot my password", "documents": docs})
    assert by_file.status_code == 200, by_file.text
    assert by_file.json() == inline.json()
    # Another tenant's file is no file at all.
    b_key = api(server, "POST", "/keys", json={"name": "other", "tenant": "other", "role": "admin"}).json()["key"]
    deploy(server, "semantic-rank", wasm="semantic-rank", key=b_key, **manifest("semantic-rank"))
    r = api(server, "POST", "/functions/semantic-rank/invoke", key=b_key, json={"query": "password", "file_id": f.id})
    err = assert_openai_error(r, 404)
    assert f.id in err["message"] and "Reset" not in r.text
    # Without the grant, a refusal.
    deploy(server, "rank-no-files", wasm="semantic-rank", kind="http", grants={"models": ["all-minilm-l6-v2"]})
    r = api(server, "POST", "/functions/rank-no-files/invoke", json={"query": "password", "file_id": f.id})
    assert "grants.files" in assert_openai_error(r, 403)["message"]


def test_a_python_http_function_without_its_grant_answers_403(server):
    deploy(server, "rank-ungranted", wasm="semantic-rank", kind="http")
    r = api(server, "POST", "/functions/rank-ungranted/invoke", json={"query": "q", "documents": ["a"]})
    assert_openai_error(r, 403)
    assert "not permitted" in r.json()["error"]["message"]


# --- JavaScript -----------------------------------------------------------------------------

TEXT = "Please contact Ada Lovelace at ada@example.com; she works for Analytical Engines Ltd."


def events(resp):
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    return [line[len("data: ") :] for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def test_the_js_http_function_returns_schema_valid_json(server):
    r = api(server, "POST", "/functions/extract/invoke", json={"text": TEXT})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) == {"name", "email", "company"} and all(isinstance(v, str) for v in data.values()), data
    assert r.json()["usage"]["completion_tokens"] > 0


def test_the_js_http_function_streams_the_same_json_it_answers_whole(server):
    whole = api(server, "POST", "/functions/extract/invoke", json={"text": TEXT}).json()["data"]
    with api(server, "POST", "/functions/extract/invoke?stream=1", json={"text": TEXT}, stream=True) as r:
        received = events(r)
    assert received[-1] == "[DONE]"
    pieces = [json.loads(e)["text"] for e in received[:-1]]
    assert len(pieces) > 3, pieces
    assert json.loads("".join(pieces)) == whole


def test_the_js_http_function_extracts_from_an_uploaded_file(server, client):
    f = client.files.create(file=("contact.txt", TEXT.encode()), purpose="assistants")
    by_file = api(server, "POST", "/functions/extract/invoke", json={"file_id": f.id})
    assert by_file.status_code == 200, by_file.text
    assert by_file.json()["data"] == api(server, "POST", "/functions/extract/invoke", json={"text": TEXT}).json()["data"]
    err = assert_openai_error(api(server, "POST", "/functions/extract/invoke", json={"file_id": "file-nope"}), 404)
    assert "file-nope" in err["message"]
    deploy(server, "extract-no-files", wasm="extract", kind="http", grants={"models": [CHAT]})
    r = api(server, "POST", "/functions/extract-no-files/invoke", json={"file_id": f.id})
    assert "grants.files" in assert_openai_error(r, 403)["message"]


def test_the_js_http_function_takes_a_schema_of_the_callers(server):
    schema = {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"], "additionalProperties": False}
    r = api(server, "POST", "/functions/extract/invoke", json={"text": TEXT, "schema": schema})
    assert r.status_code == 200, r.text
    assert list(r.json()["data"]) == ["email"]


def test_js_http_errors_are_openai_shaped(server):
    assert_openai_error(api(server, "POST", "/functions/extract/invoke", data="{"), 400)
    assert_openai_error(api(server, "POST", "/functions/extract/invoke", json={"text": TEXT, "max_tokens": 3}), 422)
    assert_openai_error(api(server, "GET", "/functions/extract/invoke"), 405)
    deploy(server, "extract-ungranted", wasm="extract", kind="http")
    r = api(server, "POST", "/functions/extract-ungranted/invoke?stream=1", json={"text": TEXT})
    assert_openai_error(r, 403)
    assert "not permitted" in r.json()["error"]["message"]


@pytest.mark.parametrize("text", ["The package arrived broken and nobody answers my emails.", "Thank you, the support was wonderful!"])
def test_the_js_tool_answers_with_one_of_the_labels(server, text):
    labels = ["praise", "complaint", "question"]
    out = output(call(server, "classify", text=text, labels=labels))
    assert out["label"] in labels, out


def test_js_tool_errors_are_typed(server):
    r = call(server, "classify", text="hi", labels=["only-one"])
    assert_openai_error(r, 400, "invalid_tool_arguments")
    deploy(server, "classify-ungranted", wasm="classify")
    r = call(server, "classify-ungranted", text="hi", labels=["a", "b"])
    assert_openai_error(r, 403, "permission_denied")


def test_the_js_tool_runs_server_side_in_a_chat_completion(client):
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Classify 'I love it' as praise or complaint."}],
        tools=[{"type": "tensoras_function", "tensoras_function": {"name": "classify"}}],
        tool_choice="required",
        temperature=0,
        max_tokens=200,
    )
    calls = r.choices[0].model_extra["server_tool_calls"]
    assert calls and calls[0]["name"] == "classify", calls
    assert r.choices[0].finish_reason in ("stop", "length")


# --- the three SDKs agree -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["one two  three\nfour héllo\n", "", "solo", "a\n\nb"])
def test_the_same_tool_in_three_languages_gives_the_same_answer(server, text):
    for name, wasm in (("wc-rust", "wordcount"), ("wc-python", "wordcount-py"), ("wc-js", "wordcount-js")):
        if api(server, "GET", f"/functions/{name}").status_code == 404:
            deploy(server, name, wasm=wasm)
    answers = {name: output(call(server, name, text=text)) for name in ("wc-rust", "wc-python", "wc-js")}
    assert len({json.dumps(a, sort_keys=True) for a in answers.values()}) == 1, answers
    r = call(server, "wc-python", words=3)
    assert_openai_error(r, 400, "invalid_tool_arguments")
    r = call(server, "wc-js", text=None)
    assert r.status_code in (400, 422), r.text


# --- chat functions without a model (the SDKs' reply) ----------------------------------------


@pytest.mark.parametrize("wasm", ["echo-chat-py", "echo-chat-js"])
def test_a_chat_function_replies_in_the_openai_shapes(server, client, wasm):
    deploy(server, wasm, wasm=wasm, kind="chat")
    ask = {"model": f"fn:{wasm}", "messages": [{"role": "user", "content": "hello there"}]}
    whole = client.chat.completions.create(**ask)
    assert whole.object == "chat.completion" and whole.model == f"fn:{wasm}" and whole.id.startswith("chatcmpl-")
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == ("You said: hello there", "stop")
    assert whole.usage.total_tokens == 0 and whole.model_extra["echo"] == {"chars": 11}
    chunks = list(client.chat.completions.create(**ask, stream=True))
    assert [c.object for c in chunks] == ["chat.completion.chunk"] * 2 and all(c.choices for c in chunks)
    assert chunks[0].model_extra["echo"] == {"chars": 11} and "echo" not in chunks[1].model_extra
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: hello there"
    assert chunks[-1].choices[0].finish_reason == "stop"
    with_usage = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert with_usage[-1].choices == [] and with_usage[-1].usage.total_tokens == 0
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=f"fn:{wasm}", messages=[{"role": "system", "content": "x"}])
    assert bad.value.body["param"] == "messages"
