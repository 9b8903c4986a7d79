"""End to end: a tenant replaces the built-in RAG handler with its own chat function
(issue #20, "functions as models"). `strict-rag` (functions/examples/strict-rag), deployed
with `"replaces": "rag"`, serves that tenant's chat completions that name
`knowledge_bases`, through the unchanged OpenAI SDK; other tenants keep the built-in handler,
and a function's own grounded model calls reach the built-in one, so the replacement can
delegate to it without calling itself."""

import json

import openai
import pytest

from conftest import FUNCTIONS, Server, assert_openai_error, new_key
from fnapi import api, call, deploy, kb_with, output

CHAT = "smollm2-135m-instruct"
DOC = "Security memo. The access code for the Zephyr vault is 4417. Only two people know it."
# What strict-rag answers, without a model call, when no chunk is relevant enough.
UNKNOWN = "I don't know: the knowledge bases say nothing about this."
RELEVANT = "What is the access code for the Zephyr vault?"
UNRELATED = "What is the boiling point of mercury?"
CITATION_KEYS = {"index", "source", "file_id", "knowledge_base_id", "chunk_index", "text", "score"}
REPLACEMENT = {"kind": "chat", "replaces": "rag", "grants": {"models": [CHAT], "knowledge_bases": ["*"]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("rag-replacement") / "data", new_key()).start()
    yield s
    s.kill()


def tenant(server, name):
    key = api(server, "POST", "/keys", json={"name": name, "tenant": name, "role": "admin"}).json()["key"]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=300)
    return key, client


@pytest.fixture(scope="module")
def owner(server):
    """A tenant with the replacement deployed and a knowledge base: (key, client, kb)."""
    key, client = tenant(server, "owner")
    kb, _ = kb_with(server, client, DOC, key=key)
    deploy(server, "strict-rag", wasm="strict-rag", key=key, **REPLACEMENT)
    return key, client, kb


def grounded(client, kb, question, **extra):
    return client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=40,
        extra_body={"knowledge_bases": [kb], **extra.pop("extra_body", {})},
        **extra,
    )


def test_the_replacement_answers_the_tenants_grounded_requests(owner):
    _, client, kb = owner
    r = grounded(client, kb, RELEVANT)
    citations = r.model_extra["citations"]
    assert citations and set(citations[0]) == CITATION_KEYS and "4417" in citations[0]["text"]
    assert r.model == CHAT and r.usage.completion_tokens > 0 and r.choices[0].message.content
    # Its own policy: nothing relevant, no model call.
    r = grounded(client, kb, UNRELATED)
    assert r.choices[0].message.content == UNKNOWN
    assert r.usage.completion_tokens == 0 and r.model_extra["citations"] == []


def test_streamed_and_whole_answers_agree_with_citations_on_the_first_chunk(owner):
    _, client, kb = owner
    for question in (RELEVANT, UNRELATED):
        whole = grounded(client, kb, question)
        chunks = list(grounded(client, kb, question, stream=True, stream_options={"include_usage": True}))
        assert chunks[0].model_extra["citations"] == whole.model_extra["citations"]
        assert all("citations" not in c.model_extra for c in chunks[1:])
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_other_tenants_keep_the_built_in_handler(server, owner):
    key, client = tenant(server, "bystander")
    kb, _ = kb_with(server, client, DOC, key=key)
    r = grounded(client, kb, UNRELATED)
    assert r.choices[0].message.content != UNKNOWN and r.usage.completion_tokens > 0
    assert r.model_extra["citations"], "the built-in handler cites what it put in the prompt, relevant or not"


def test_a_functions_grounded_model_call_reaches_the_built_in_handler(server, owner):
    key, _, kb = owner
    deploy(server, "probe", key=key, grants={"models": [CHAT], "knowledge_bases": ["*"]}, limits={"timeout_ms": 60000})
    req = {"model": CHAT, "messages": [{"role": "user", "content": UNRELATED}], "knowledge_bases": [kb], "max_tokens": 10}
    completion = output(call(server, "probe", key=key, op="chat", request=req))
    assert completion["choices"][0]["message"]["content"] != UNKNOWN
    assert completion["usage"]["completion_tokens"] > 0 and completion["citations"]


def test_one_replacement_per_tenant_and_only_by_chat_functions(server, owner):
    key, _, _ = owner
    got = api(server, "GET", "/functions/strict-rag", key=key).json()
    assert (got["replaces"], got["model"]) == ("rag", "fn:strict-rag")
    files = lambda manifest: {  # noqa: E731
        "file": ("strict-rag.wasm", (FUNCTIONS / "strict-rag.wasm").read_bytes()),
        "manifest": (None, json.dumps(manifest)),
    }
    r = api(server, "POST", "/functions", key=key, files=files({"name": "second", **REPLACEMENT}))
    err = assert_openai_error(r, 409, "handler_already_replaced")
    assert "strict-rag" in err["message"] and err["param"] == "replaces"
    # A new version of the replacement itself is no conflict.
    assert deploy(server, "strict-rag", wasm="strict-rag", key=key, **REPLACEMENT)["version"] == 2
    for manifest in ({**REPLACEMENT, "replaces": "chat"}, {**REPLACEMENT, "replaces": ""}, {**REPLACEMENT, "kind": "tool"}):
        r = api(server, "POST", "/functions", key=key, files=files({"name": "third", **manifest}))
        assert assert_openai_error(r, 400)["param"] == "replaces"


def test_deleting_the_replacement_restores_the_built_in_handler(server):
    key, client = tenant(server, "leaver")
    kb, _ = kb_with(server, client, DOC, key=key)
    deploy(server, "strict-rag", wasm="strict-rag", key=key, **REPLACEMENT)
    assert grounded(client, kb, UNRELATED).choices[0].message.content == UNKNOWN
    assert api(server, "DELETE", "/functions/strict-rag", key=key).status_code == 200
    assert grounded(client, kb, UNRELATED).choices[0].message.content != UNKNOWN
    # Another function may take the role now.
    deploy(server, "strict-rag-2", wasm="strict-rag", key=key, **REPLACEMENT)
    assert grounded(client, kb, UNRELATED).choices[0].message.content == UNKNOWN
