"""End to end: deployed functions call models, embeddings, knowledge bases and their
key-value store (issue #20), against the real binary, SmolLM2-135M and MiniLM.

The fixture `ai-probe` (functions/fixtures/ai-probe) makes the platform calls its arguments
describe; `summarize` (functions/examples/summarize) is the HTTP example that streams a
model's summary as server-sent events.
"""

import json
import time

import openai
import pytest

from conftest import FUNCTIONS, Server, assert_openai_error, new_key
from fnapi import api, call, deploy, kb_with, output

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
FULL = {"models": [CHAT, EMBED], "knowledge_bases": ["*"], "kv": True, "files": True}


def ask(content, **extra):
    return {"model": CHAT, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("ai-fn") / "data", new_key()).start()
    # Model calls wait on a loaded machine's decoder: room to spare under the maximum.
    deploy(s, "probe", grants=FULL, limits={"timeout_ms": 60000})
    deploy(s, "bare")
    deploy(s, "looper", grants={"models": [CHAT]}, limits={"max_model_calls": 3, "max_generated_tokens": 12})
    deploy(s, "slow", grants={"models": [CHAT]}, limits={"timeout_ms": 1500, "max_model_calls": 1000, "max_generated_tokens": 1000000})
    deploy(
        s,
        "recurser",
        grants={"models": [CHAT], "env": {"SELF": "recurser", "MODEL": CHAT}},
        limits={"timeout_ms": 60000},
        parameters={"type": "object", "properties": {"op": {"type": "string", "enum": ["recurse"]}}, "required": ["op"]},
    )
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{"temperature": 0}, {"temperature": 0.8, "seed": 3}, {"temperature": 1.0, "seed": 11}])
def test_a_function_chats_exactly_as_the_endpoint_does(server, client, extra):
    req = ask("Name three colours.", max_tokens=24, **extra)
    from_function = output(call(server, "probe", op="chat", request=req))
    direct = client.chat.completions.create(**req)
    assert from_function["object"] == "chat.completion"
    assert from_function["choices"][0]["message"]["content"] == direct.choices[0].message.content
    assert from_function["usage"]["completion_tokens"] == direct.usage.completion_tokens


def test_a_streamed_model_call_yields_the_same_text_and_usage(server):
    req = ask("What is the capital of France?", max_tokens=20, temperature=0)
    whole = output(call(server, "probe", op="chat", request=req))
    streamed = output(call(server, "probe", op="stream", request=req))
    assert streamed["text"] == whole["choices"][0]["message"]["content"]
    assert streamed["chunks"] >= 2
    assert streamed["usage"] == [whole["usage"]["prompt_tokens"], whole["usage"]["completion_tokens"]]


def test_structured_output_from_a_function_follows_the_schema(server):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    req = ask(
        "Paris has about 2 million people. Extract the city and population.",
        max_tokens=60,
        seed=5,
        temperature=0.7,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )
    value = json.loads(output(call(server, "probe", op="chat", request=req))["choices"][0]["message"]["content"])
    assert set(value) == {"city", "population"} and isinstance(value["population"], int)


def test_function_embeddings_equal_the_endpoints(server, client):
    texts = ["a cat sat on the mat", "quarterly revenue grew"]
    vectors = output(call(server, "probe", op="embed", model=EMBED, input=texts))["vectors"]
    direct = client.embeddings.create(model=EMBED, input=texts)
    assert len(vectors) == 2
    for mine, theirs in zip(vectors, direct.data):
        assert len(mine) == len(theirs.embedding)
        assert max(abs(a - b) for a, b in zip(mine, theirs.embedding)) < 1e-4


def test_a_chat_model_is_no_embedding_model(server):
    r = call(server, "probe", op="embed", model=CHAT, input=["x"])
    assert_openai_error(r, 422, "tool_failed")
    assert "invalid request" in r.json()["error"]["message"]


# --- grants and tenancy --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,refused",
    [
        ({"op": "chat", "request": ask("hi")}, "grants.models"),
        ({"op": "embed", "model": EMBED, "input": ["x"]}, "grants.models"),
        ({"op": "kv", "set": {"a": "1"}}, "grants.kv"),
        ({"op": "retrieve", "knowledge_bases": ["kb_123"], "query": "x"}, "grants.knowledge_bases"),
        ({"op": "file", "id": "file-123"}, "grants.files"),
    ],
)
def test_without_a_grant_the_call_is_refused_and_passed_on_as_a_403(server, args, refused):
    err = assert_openai_error(call(server, "bare", **args), 403, "permission_denied")
    assert refused in err["message"] and "not permitted" in err["message"], err


def test_a_model_outside_the_grant_is_refused(server):
    err = assert_openai_error(call(server, "looper", op="embed", model=EMBED, input=["x"]), 403, "permission_denied")
    assert EMBED in err["message"]


def test_a_grant_for_one_knowledge_base_does_not_open_another(server, client):
    granted, file_id = kb_with(server, client, "The lighthouse on Skerry Island was painted green in 1998.")
    other, _ = kb_with(server, client, "The bakery sells rye bread with caraway.")
    deploy(server, "one-kb", grants={"knowledge_bases": [granted]})
    hits = output(call(server, "one-kb", op="retrieve", knowledge_bases=[granted], query="lighthouse colour"))["chunks"]
    assert hits and hits[0]["file_id"] == file_id and "green" in hits[0]["text"]
    assert_openai_error(call(server, "one-kb", op="retrieve", knowledge_bases=[other], query="bread"), 403, "permission_denied")


def test_a_function_never_reaches_another_tenants_knowledge_base(server, client):
    b_key = api(server, "POST", "/keys", json={"name": "tenant-b", "tenant": "b", "role": "admin"}).json()["key"]
    b_kb, _ = kb_with(server, client, "Tenant B's secret: the vault code is 4711.", key=b_key)
    # Tenant A's function granted every knowledge base ("*") still only reaches A's.
    r = call(server, "probe", op="retrieve", knowledge_bases=[b_kb], query="vault code")
    err = assert_openai_error(r, 422, "tool_failed")
    assert "not found" in err["message"] and "4711" not in r.text
    # Nor through a grounded chat completion.
    r = call(server, "probe", op="chat", request=ask("What is the vault code?", knowledge_bases=[b_kb], max_tokens=10))
    assert r.status_code == 422 and "4711" not in r.text, r.text
    # Tenant B's own copy of the function reaches B's.
    deploy(server, "probe", key=b_key, grants=FULL)
    hits = output(call(server, "probe", key=b_key, op="retrieve", knowledge_bases=[b_kb], query="vault code"))["chunks"]
    assert "4711" in hits[0]["text"]


# --- files -----------------------------------------------------------------------------------


def test_a_function_reads_its_tenants_files_whole_and_in_pieces(server, client):
    text = "Invoice 17: three hammers, 41.50 EUR. " * 300  # ~11 KB, read whole and in pieces
    f = client.files.create(file=("invoice.txt", text.encode()), purpose="assistants")
    out = output(call(server, "probe", op="file", id=f.id, offset=8, length=2))
    assert out["text"] == text and out["piece"] == "17"
    info = out["info"]
    assert (info["id"], info["filename"], info["purpose"], info["bytes"]) == (f.id, "invoice.txt", "assistants", len(text))
    assert info["content_type"].startswith("text/plain") and info["created_at"] == f.created_at
    # Past the end there is nothing; at the end, what is left.
    assert output(call(server, "probe", op="file", id=f.id, offset=len(text) + 5, length=10))["piece"] == ""
    assert output(call(server, "probe", op="file", id=f.id, offset=len(text) - 5, length=100))["piece"] == "EUR. "


def test_a_function_never_reads_another_tenants_file(server, client):
    b_key = api(server, "POST", "/keys", json={"name": "tenant-b-files", "tenant": "b-files", "role": "admin"}).json()["key"]
    b = openai.OpenAI(base_url=server.url + "/v1", api_key=b_key, max_retries=0)
    secret = b.files.create(file=("secret.txt", b"the safe combination is 90210"), purpose="assistants")
    r = call(server, "probe", op="file", id=secret.id)
    err = assert_openai_error(r, 422, "tool_failed")
    assert "not found" in err["message"] and secret.id in err["message"] and "90210" not in r.text
    deploy(server, "probe", key=b_key, grants={"files": True})
    assert output(call(server, "probe", key=b_key, op="file", id=secret.id))["text"] == "the safe combination is 90210"
    # A deleted file is gone for functions too.
    b.files.delete(secret.id)
    assert_openai_error(call(server, "probe", key=b_key, op="file", id=secret.id), 422, "tool_failed")


# --- limits ---------------------------------------------------------------------------------


def test_a_function_looping_on_model_calls_stops_at_its_limit_and_others_keep_working(server, client):
    out = output(call(server, "looper", op="loop", request=ask("Say hi.", max_tokens=2)))
    assert out["calls"] == 3 and "limits.max_model_calls" in out["error"], out
    r = client.chat.completions.create(**ask("Say hi.", max_tokens=5))
    assert r.choices[0].message.content


def test_generated_tokens_are_capped_by_the_budget(server):
    out = output(call(server, "looper", op="chat", request=ask("Count from one to fifty in words.", max_tokens=400)))
    assert out["usage"]["completion_tokens"] <= 12, out["usage"]


def test_the_deadline_holds_while_a_function_waits_on_models(server, client):
    started = time.monotonic()
    r = call(server, "slow", op="loop", request=ask("Write a long story about the sea.", max_tokens=200))
    assert_openai_error(r, 504, "function_timeout")
    assert time.monotonic() - started < 30
    assert client.chat.completions.create(**ask("Say hi.", max_tokens=5)).choices[0].message.content


def test_recursion_through_chat_and_tools_stops_at_the_depth_limit(server):
    r = call(server, "recurser", op="recurse")
    assert r.status_code == 200, r.text
    assert "nested calls went deeper than" in r.text, r.text


# --- key-value store -------------------------------------------------------------------------


def test_kv_is_private_persistent_and_goes_with_the_function(server):
    out = output(call(server, "probe", op="kv", set={"user:1": "ada", "user:2": "bob", "other": "x"}, get=["user:1"], prefix="user:"))
    assert out["got"] == {"user:1": "ada"} and out["keys"] == ["user:1", "user:2"]
    out = output(call(server, "probe", op="kv", get=["user:2", "nope"], delete=["user:2", "nope"], prefix=""))
    assert out["got"] == {"user:2": "bob", "nope": None}
    assert out["deleted"] == {"user:2": True, "nope": False}
    assert out["keys"] == ["other", "user:1"]
    # Another function of the tenant has its own store.
    deploy(server, "probe2", grants={"kv": True})
    assert output(call(server, "probe2", op="kv", get=["user:1"], prefix=""))["keys"] == []
    # Deleting the function deletes its store.
    assert api(server, "DELETE", "/functions/probe2").status_code == 200
    deploy(server, "probe2", grants={"kv": True})
    output(call(server, "probe2", op="kv", set={"k": "v"}))
    assert api(server, "DELETE", "/functions/probe2").status_code == 200
    deploy(server, "probe2", grants={"kv": True})
    assert output(call(server, "probe2", op="kv", get=["k"]))["got"] == {"k": None}


def test_kv_limits_are_typed_errors(server):
    r = call(server, "probe", op="kv", set={"k" * 600: "v"})
    err = assert_openai_error(r, 422, "tool_failed")
    assert "too large" in err["message"]


# --- HTTP functions and manifests ------------------------------------------------------------


def test_the_summarizer_streams_a_models_words_as_server_sent_events(server):
    deploy(server, "summarize", wasm="summarize", kind="http", grants={"models": [CHAT]})
    text = "The meeting moved to Thursday. Alice will bring the budget report. Bob is on holiday until May."
    with api(server, "POST", "/functions/summarize/invoke?words=20", data=text, stream=True) as r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e) for e in events[:-1]]
    assert len(pieces) >= 2 and all("text" in p for p in pieces), pieces
    assert "".join(p["text"] for p in pieces).strip()


def test_the_summarizer_without_its_grant_answers_403(server):
    deploy(server, "summarize-bare", wasm="summarize", kind="http")
    r = api(server, "POST", "/functions/summarize-bare/invoke", data="Some text to summarise.")
    assert_openai_error(r, 403)


@pytest.mark.parametrize(
    "manifest,param",
    [
        ({"grants": {"models": [""]}}, "grants"),
        ({"grants": {"knowledge_bases": ["docs"]}}, "grants"),
        ({"limits": {"max_model_calls": 100000}}, "limits.max_model_calls"),
        ({"limits": {"max_generated_tokens": 10**9}}, "limits.max_generated_tokens"),
    ],
)
def test_bad_grants_and_budgets_are_400s_naming_the_field(server, manifest, param):
    files = {
        "file": ("ai-probe.wasm", (FUNCTIONS / "ai-probe.wasm").read_bytes()),
        "manifest": (None, json.dumps({"name": "bad", "kind": "tool", **manifest})),
    }
    err = assert_openai_error(api(server, "POST", "/functions", files=files), 400)
    assert err["param"] == param, err


# --- functions as models (fn:NAME) -----------------------------------------------------------


@pytest.fixture(scope="module")
def concise(server):
    deploy(server, "concise", wasm="concise", kind="chat", grants={"models": [CHAT]})
    return "fn:concise"


def test_a_chat_function_is_a_model_for_the_openai_sdk(server, client, concise):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=concise, messages=question, temperature=0, max_tokens=24)
    assert r.model == concise and r.object == "chat.completion"
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0
    # What it does is what it says: the same request, with its instruction first.
    direct = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "system", "content": "Answer in one short sentence."}, *question],
        temperature=0,
        max_tokens=24,
    )
    assert r.choices[0].message.content == direct.choices[0].message.content
    # Streamed, with and without the usage chunk, it says the same.
    chunks = list(client.chat.completions.create(model=concise, messages=question, temperature=0, max_tokens=24, stream=True))
    assert all(c.model == concise for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    chunks = list(client.chat.completions.create(
        model=concise, messages=question, temperature=0, max_tokens=24, stream=True, stream_options={"include_usage": True}
    ))
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_fn_models_are_the_tenants_chat_functions_only(server, client, concise):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="fn:nope", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
    # A tool is not a model.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="fn:probe", messages=[{"role": "user", "content": "hi"}])
    # Another tenant's chat function does not exist for this one.
    c_key = api(server, "POST", "/keys", json={"name": "tenant-c", "tenant": "c"}).json()["key"]
    other = openai.OpenAI(base_url=server.url + "/v1", api_key=c_key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(model=concise, messages=[{"role": "user", "content": "hi"}])
    # /v1/models lists the tenant's chat functions, for that tenant only.
    assert concise in [m.id for m in client.models.list()]
    assert client.models.retrieve(concise).owned_by == "default"
    assert concise not in [m.id for m in other.models.list()]
    with pytest.raises(openai.NotFoundError):
        other.models.retrieve(concise)
    # The legacy endpoint gets the function's own error.
    r = api(server, "POST", "/completions", json={"model": concise, "prompt": "hi"})
    assert_openai_error(r, 400)
    # And a chat function is called as a model, not as a tool.
    assert_openai_error(call(server, "concise"), 400, "wrong_function_kind")


def test_a_function_may_call_a_chat_function_as_a_model(server, concise):
    req = {"model": concise, "messages": [{"role": "user", "content": "Name a colour."}], "temperature": 0, "max_tokens": 12}
    deploy(server, "caller", grants={"models": [concise]})
    out = output(call(server, "caller", op="chat", request=req))
    assert out["model"] == concise and out["choices"][0]["message"]["content"]


# --- logs ------------------------------------------------------------------------------------


def test_function_logs_keep_each_invocations_output_outcome_and_counts(server):
    deploy(server, "printer")
    output(call(server, "printer", op="print", text="hello one"))
    assert_openai_error(call(server, "printer", op="print", text="to stdout", err="to stderr", fail=True), 422, "tool_failed")
    # Far past the per-invocation cap: kept up to it, and the function does not fail.
    assert output(call(server, "printer", op="print", text="x" * 1000, times=40)) == {"printed": 40}
    logs = api(server, "GET", "/functions/printer/logs").json()
    first, failed, chatty = logs["data"]
    assert first["status"] == "ok" and first["output"] == "hello one\n" and first["error"] is None
    assert failed["status"] == "error" and "asked to fail" in failed["error"]
    assert failed["output"] == "to stdout\nto stderr\n"
    assert "more bytes dropped" in chatty["output"] and len(chatty["output"]) < 17 * 1024
    assert logs["stats"]["invocations"] == 3 and logs["stats"]["errors"] == 1
    assert first["id"] < failed["id"] < chatty["id"] and first["duration_ms"] > 0
    # A follower asks for what came after the last it saw.
    later = api(server, "GET", f"/functions/printer/logs?after={failed['id']}").json()["data"]
    assert [e["id"] for e in later] == [chatty["id"]]
    assert_openai_error(api(server, "GET", "/functions/printer/logs?limit=0"), 400)
    # Tenant-private: another tenant has no such function.
    d_key = api(server, "POST", "/keys", json={"name": "tenant-d", "tenant": "d"}).json()["key"]
    assert_openai_error(api(server, "GET", "/functions/printer/logs", key=d_key), 404, "function_not_found")
    # The CLI prints them.
    out = server.cli("functions", "logs", "printer").stdout
    assert "hello one" in out and "asked to fail" in out


def test_http_and_chat_function_invocations_are_logged_too(server, concise):
    deploy(server, "summarize-logged", wasm="summarize", kind="http", grants={"models": [CHAT]})
    r = api(server, "POST", "/functions/summarize-logged/invoke?words=5", data="One two three four five six.")
    assert r.status_code == 200
    # An HTTP function's invocation is recorded when its guest returns, which may come just
    # after the client has read the end of the body: wait for it (bounded).
    deadline = time.time() + 60
    while api(server, "GET", "/functions/summarize-logged/logs").json()["stats"]["invocations"] < 1:
        assert time.time() < deadline, "the HTTP function's invocation was never recorded"
        time.sleep(0.05)
    before = api(server, "GET", "/functions/concise/logs").json()["stats"]["invocations"]
    openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0).chat.completions.create(
        model=concise, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert api(server, "GET", "/functions/concise/logs").json()["stats"]["invocations"] == before + 1
