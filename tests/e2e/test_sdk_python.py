"""End to end: the native Python SDK (`sdks/python`), as built into a wheel and installed into
the test venv by scripts/sdks.sh, against the real server: OpenAI calls unchanged, the RAG
flow with typed citations, deployed functions, usage, keys and models, sync and async; its
examples run as they are and pass `mypy --strict`."""

import asyncio
import datetime
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from conftest import FUNCTIONS, REPO, Server, new_key

tensoras = pytest.importorskip("tensoras", reason="scripts/sdks.sh installs the tensoras wheel (make setup-tests)")
from tensoras import AsyncTensoras, Tensoras, citations  # noqa: E402
from tensoras.types import Citation, DataSource, KnowledgeBase, Model  # noqa: E402

CHAT = "smollm2"
EXAMPLES = REPO / "sdks" / "python" / "examples"
DOCS = {
    "vault.txt": b"Security memo. The access code for the Zephyr vault is 4417. Only two people know it.",
    "ferry.md": b"# Ferry timetable\n\nThe ferry to Kelpie Island leaves from Pier 9 at 7:40 every morning.\n",
}
QUESTION = "What is the access code for the Zephyr vault?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("sdk-python") / "data", new_key()).start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(server):
    return Tensoras(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)


def aclient(server):
    return AsyncTensoras(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def kb(client):
    """A knowledge base with both DOCS, built and polled with the SDK: (kb, {filename: file_id})."""
    kb = client.knowledge_bases.create(name="facts", description="made-up facts", metadata={"team": "qa"})
    assert isinstance(kb, KnowledgeBase) and kb.data_source_counts.total == 0
    files = {}
    for name, content in DOCS.items():
        files[name] = client.files.create(file=(name, content), purpose="knowledge_base").id
    added = client.knowledge_bases.data_sources.create_many(kb.id, file_ids=list(files.values()))
    assert [s.file_id for s in added] == list(files.values()) and all(isinstance(s, DataSource) for s in added)
    ready = client.knowledge_bases.poll(kb.id, poll_interval=0.2)
    assert ready.ready and ready.data_source_counts.completed == len(DOCS), ready
    return ready, files


def test_the_sdk_is_the_installed_wheel():
    location = Path(tensoras.__file__).resolve()
    assert "site-packages" in location.parts, location
    assert (location.parent / "py.typed").is_file()
    assert importlib.metadata.version("tensoras") == tensoras.__version__ == "0.1.0"


def test_api_key_and_base_url_come_from_the_environment(server, monkeypatch):
    monkeypatch.delenv("TENSORAS_BASE_URL", raising=False)
    monkeypatch.setenv("TENSORAS_API_KEY", "tns_from_env")
    assert str(Tensoras().base_url) == tensoras.DEFAULT_BASE_URL + "/" == "http://127.0.0.1:8080/v1/"
    assert Tensoras().api_key == "tns_from_env"
    monkeypatch.setenv("TENSORAS_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("TENSORAS_API_KEY", server.api_key)
    for c in (Tensoras(max_retries=0), AsyncTensoras(max_retries=0)):
        assert str(c.base_url) == server.url + "/v1/" and c.api_key == server.api_key
    assert any(m.id == "smollm2-135m-instruct" for m in Tensoras(max_retries=0).models.list())
    # Explicit arguments win over the environment.
    assert Tensoras(api_key="tns_x", base_url="http://h:1/v1").api_key == "tns_x"


def test_openai_calls_work_unchanged(server, client):
    assert isinstance(client, openai.OpenAI)
    plain = openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)
    request = dict(model=CHAT, temperature=0, max_tokens=24, messages=[{"role": "user", "content": "What is the capital of France?"}])
    ours = client.chat.completions.create(**request)
    assert "Paris" in ours.choices[0].message.content
    assert ours.choices[0].message.content == plain.chat.completions.create(**request).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**request, stream=True) if c.choices)
    assert streamed == ours.choices[0].message.content
    e = client.embeddings.create(model="all-minilm-l6-v2", input=["cat", "kitten"])
    assert [len(d.embedding) for d in e.data] == [384, 384]
    # with_options keeps the class and its resources (the openai client's own copy).
    quick = client.with_options(timeout=60, max_retries=1)
    assert isinstance(quick, Tensoras) and quick.max_retries == 1
    assert quick.models.retrieve(CHAT).id == "smollm2-135m-instruct"


def test_models_carry_tensoras_fields(client):
    models = {m.id: m for m in client.models.list()}
    chat, emb = models["smollm2-135m-instruct"], models["all-minilm-l6-v2"]
    assert isinstance(chat, Model) and isinstance(chat, openai.types.Model)
    assert (chat.kind, emb.kind) == ("chat", "embedding")
    assert chat.context_length and chat.context_length > 1000 and "smollm2" in chat.aliases
    assert chat.pricing is not None and chat.pricing.input_per_million >= 0
    by_alias = client.models.retrieve("smollm2")
    assert (by_alias.id, by_alias.context_length) == (chat.id, chat.context_length)


def test_rag_flow_with_typed_citations(client, kb):
    kb, files = kb
    assert [kb.id == k.id for k in client.knowledge_bases.list()] == [True]
    sources = client.knowledge_bases.data_sources.list(kb.id).data
    assert sorted(s.file_id for s in sources) == sorted(files.values())
    one = client.knowledge_bases.data_sources.retrieve(kb.id, sources[0].id)
    assert one.status == "completed" and one.done and one.chunks_done >= 1

    found = client.knowledge_bases.search(kb.id, query="Zephyr vault access code", top_k=2)
    assert found.data[0].filename == "vault.txt" and "4417" in found.data[0].text

    answer = client.rag.create(model=CHAT, messages=[{"role": "user", "content": QUESTION}],
                               knowledge_bases=[kb.id], temperature=0, max_tokens=48)
    assert "4417" in answer.choices[0].message.content, answer.choices[0].message.content
    top = answer.citations[0]
    assert isinstance(top, Citation)
    assert (top.source, top.file_id, top.knowledge_base_id, top.index) == ("vault.txt", files["vault.txt"], kb.id, 1)
    assert "4417" in top.text and top.score > 0

    # Streamed: the first chunk carries the same citations, the text is the same.
    chunks = list(client.rag.create(model=CHAT, messages=[{"role": "user", "content": QUESTION}],
                                    knowledge_bases=[kb.id], temperature=0, max_tokens=48, stream=True))
    assert chunks[0].citations == answer.citations
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer.choices[0].message.content

    # The stock call with extra_body gives the same citations, read by `citations()`.
    stock = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": QUESTION}], temperature=0,
                                           max_tokens=48, extra_body={"knowledge_bases": [kb.id]})
    assert citations(stock) == answer.citations
    assert citations(client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)) == []

    narrowed = client.rag.create(model=CHAT, messages=[{"role": "user", "content": QUESTION}], knowledge_bases=[kb.id],
                                 retrieval_options={"top_k": 1, "search_type": "keyword"}, max_tokens=4)
    assert [c.source for c in narrowed.citations] == ["vault.txt"]


def test_knowledge_base_lifecycle(client):
    kb = client.knowledge_bases.create(name="temporary", chunking_strategy={"type": "fixed_size", "chunk_size": 200})
    assert (kb.chunking_strategy.type, kb.chunking_strategy.chunk_size) == ("fixed_size", 200)
    kb = client.knowledge_bases.update(kb.id, name="renamed", description=None)
    assert (kb.name, kb.description) == ("renamed", None)
    source = client.knowledge_bases.data_sources.upload_and_poll(
        kb.id, file=("owl.txt", b"The owl Bramble lives in the clock tower of Vell."), metadata={"year": 2025},
        poll_interval=0.2)
    assert (source.status, source.metadata["year"]) == ("completed", 2025)
    deleted = client.knowledge_bases.data_sources.delete(kb.id, source.id)
    assert deleted.deleted and deleted.id == source.id
    with pytest.raises(openai.NotFoundError):
        client.knowledge_bases.data_sources.retrieve(kb.id, source.id)
    assert client.knowledge_bases.delete(kb.id).deleted
    with pytest.raises(openai.NotFoundError) as e:
        client.knowledge_bases.retrieve(kb.id)
    assert e.value.body["code"] == "knowledge_base_not_found"


def test_server_errors_are_the_openai_sdks_exceptions(client, kb):
    kb, _ = kb
    with pytest.raises(openai.NotFoundError) as e:
        client.rag.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}], knowledge_bases=["kb_doesnotexist"])
    assert (e.value.body["code"], e.value.body["param"]) == ("knowledge_base_not_found", "knowledge_bases")
    with pytest.raises(openai.BadRequestError) as e:
        client.rag.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}], knowledge_bases=[kb.id],
                          retrieval_options={"top_k": 0})
    assert e.value.body["param"] == "retrieval_options.top_k"
    with pytest.raises(openai.BadRequestError):
        client.knowledge_bases.create(name="")


def test_rerank_surfaces_the_servers_answer(client):
    # The server has no /v1/rerank yet: its 404 comes back as the openai SDK's NotFoundError.
    # (When the endpoint exists, this becomes a real rerank test.)
    for documents in (["a cat", "a dog"], [{"text": "a cat"}]):
        with pytest.raises(openai.NotFoundError) as e:
            client.rerank.create(model="all-minilm-l6-v2", query="cat", documents=documents, top_n=1, return_documents=True)
        assert e.value.status_code == 404 and e.value.request.url.path == "/v1/rerank"


def test_functions_flow(client):
    calc = FUNCTIONS / "calc.wasm"
    v1 = client.functions.deploy(calc, name="calc", limits={"timeout_ms": 10000})
    assert (v1.id, v1.name, v1.kind, v1.version, v1.size_bytes) == ("calc", "calc", "tool", 1, calc.stat().st_size)
    assert v1.parameters and v1.parameters["type"] == "object"
    result = client.functions.call("calc", {"expression": "6*7"})
    assert (result.name, result.output) == ("calc", '{"result":42}')
    with pytest.raises(openai.BadRequestError) as e:
        client.functions.call("calc", {"expression": "1 +"})
    assert e.value.body["code"] == "invalid_tool_arguments"

    v2 = client.functions.deploy(calc.read_bytes(), name="calc", description="Arithmetic.")
    assert (v2.version, v2.description, v2.sha256) == (2, "Arithmetic.", v1.sha256)
    assert [(v.version, v.active) for v in client.functions.versions("calc")] == [(1, False), (2, True)]
    assert client.functions.rollback("calc", version=1).version == 1
    assert client.functions.retrieve("calc").version == 1
    assert [f.name for f in client.functions.list()] == ["calc"]

    logs = client.functions.logs("calc")
    assert logs.stats.invocations >= 1 and logs.data and logs.data[-1].status in ("ok", "error")
    assert client.functions.logs("calc", after=logs.data[-1].id).data == []

    echo = client.functions.deploy(FUNCTIONS / "echo.wasm", name="echo", kind="http")
    assert echo.kind == "http" and echo.url
    r = client.functions.invoke("echo", "some/path", content="ping", params={"q": "1"})
    assert (r.status_code, r.text, r.headers["x-echo-method"]) == (200, "ping", "POST")
    assert client.functions.invoke("echo", method="PUT", json={"a": 1}).json() == {"a": 1}

    assert client.functions.delete("calc").deleted and client.functions.delete("echo").deleted
    with pytest.raises(openai.NotFoundError):
        client.functions.retrieve("calc")
    with pytest.raises(openai.NotFoundError):
        client.functions.call("calc", {"expression": "1"})


def test_usage_keys_and_tenants(server, client, kb):
    kb, _ = kb
    client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    report = client.usage.retrieve(group_by=["model"])
    chat = next(b for b in report.data if b.model == "smollm2-135m-instruct")
    assert chat.requests >= 1 and chat.output_tokens >= 1 and report.total.requests >= chat.requests
    assert report.group_by == ["model"]
    assert client.usage.retrieve(start=datetime.date(2000, 1, 1), end=datetime.date(2000, 1, 2)).total.requests == 0
    with pytest.raises(openai.BadRequestError):
        client.usage.retrieve(group_by="nope")

    key = client.keys.create(name="other", tenant="other-team")
    assert key.key and key.key.startswith("tns_") and (key.tenant, key.role) == ("other-team", "member")
    assert key.id in [k.id for k in client.keys.list(tenant="other-team")]
    assert client.tenants.retrieve("other-team").name == "other-team"
    theirs = Tensoras(base_url=server.url + "/v1", api_key=key.key, max_retries=0)
    with pytest.raises(openai.NotFoundError):  # another tenant's knowledge base
        theirs.knowledge_bases.retrieve(kb.id)
    assert client.keys.update(key.id, plan=None).plan is None
    assert client.keys.delete(key.id).deleted
    with pytest.raises(openai.AuthenticationError):
        theirs.models.list()


def test_async_client_flows(server, kb):
    kb, files = kb

    async def flows():
        client = aclient(server)
        assert isinstance(client, openai.AsyncOpenAI)
        kbs = [k.id async for k in client.knowledge_bases.list()]
        assert kbs == [kb.id]
        assert (await client.knowledge_bases.poll(kb.id)).ready
        answers = await asyncio.gather(*(
            client.rag.create(model=CHAT, messages=[{"role": "user", "content": q}], knowledge_bases=[kb.id],
                              temperature=0, max_tokens=48)
            for q in (QUESTION, "Where does the ferry to Kelpie Island leave from?")))
        assert "4417" in answers[0].choices[0].message.content
        assert "Pier 9" in answers[1].choices[0].message.content
        assert [a.citations[0].source for a in answers] == ["vault.txt", "ferry.md"]
        assert answers[1].citations[0].file_id == files["ferry.md"]
        stream = await client.rag.create(model=CHAT, messages=[{"role": "user", "content": QUESTION}],
                                         knowledge_bases=[kb.id], temperature=0, max_tokens=48, stream=True)
        chunks = [c async for c in stream]
        assert chunks[0].citations == answers[0].citations

        fn = await client.functions.deploy(FUNCTIONS / "calc.wasm", name="acalc")
        assert fn.version == 1
        assert (await client.functions.call("acalc", {"expression": "2+3"})).output == '{"result":5}'
        assert [v.version async for v in client.functions.versions("acalc")] == [1]
        assert (await client.functions.logs("acalc")).stats.invocations == 1
        assert (await client.functions.delete("acalc")).deleted
        await client.functions.deploy((FUNCTIONS / "echo.wasm").read_bytes(), name="aecho", kind="http")
        r = await client.functions.invoke("aecho", "x", content=b"pong")
        assert (r.status_code, r.text) == (200, "pong")
        assert (await client.functions.delete("aecho")).deleted

        models = [m async for m in client.models.list()]
        assert {m.kind for m in models} == {"chat", "embedding"}
        assert (await client.usage.retrieve(group_by=["day"])).total.requests >= 1
        with pytest.raises(openai.NotFoundError):
            await client.rerank.create(model="all-minilm-l6-v2", query="q", documents=["d"])
        with pytest.raises(openai.NotFoundError):
            await client.knowledge_bases.data_sources.retrieve(kb.id, "ds_nope")
        await client.close()

    asyncio.run(flows())


def test_examples_pass_mypy_strict(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(EXAMPLES)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues found in 5 source files" in run.stdout, run.stdout


@pytest.mark.parametrize("example,args,expect", [
    ("quickstart.py", [], ["Paris", "smollm2-135m-instruct chat"]),
    ("rag.py", [], ["completed", "4417", "[1] vault.txt"]),
    ("async_rag.py", [], ["Pier 9", "['ferry.md']"]),
    ("functions.py", [str(FUNCTIONS / "calc.wasm")], ['{"result":8369910}', "version 1 active"]),
])
def test_examples_run(server, client, example, args, expect):
    # Each example runs in a tenant of its own (an admin key may deploy functions).
    key = client.keys.create(name=f"example-{example}", tenant=f"ex-{example.split('.')[0].replace('_', '-')}", role="admin")
    env = dict(os.environ, TENSORAS_BASE_URL=server.url + "/v1", TENSORAS_API_KEY=key.key)
    run = subprocess.run([sys.executable, str(EXAMPLES / example), *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    for text in expect:
        assert text in run.stdout, run.stdout
