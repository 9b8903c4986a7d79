"""End to end: the real binary driven by the official `openai` Python SDK.

One server for the module, started with `--openai-aliases`. Every generation is
deterministic: temperature 0 (greedy) or a fixed seed.
"""

import base64
import json
import math
import struct
import subprocess

import openai
import pytest
import requests

from conftest import Server, new_key

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
# SmolLM2-135M-Instruct's greedy answer to FRANCE.
FRANCE_ANSWER = "The capital of France is Paris."


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("openai-py") / "data", new_key(), "--openai-aliases").start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(module_server):
    server = module_server
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=120)


def assert_usage(usage):
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def collect(stream):
    chunks = list(stream)
    assert chunks, "the stream sent no chunks"
    return chunks


def stream_text(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- chat completions ---------------------------------------------------------------------


def test_chat_answers_the_capital_of_france(client):
    r = client.chat.completions.create(model=CHAT, messages=FRANCE, temperature=0, max_tokens=30)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == CHAT
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert_usage(r.usage)


def test_greedy_answer_is_the_known_sentence(client):
    # The stop-sequence tests below rely on this exact greedy output.
    r = client.chat.completions.create(model=CHAT, messages=FRANCE, temperature=0, max_tokens=30)
    assert r.choices[0].message.content == FRANCE_ANSWER


def test_device_cuda_without_a_gpu_falls_back_to_the_cpu_with_a_warning(tmp_path):
    # The set-up installs the CPU onnxruntime wheel, which has no CUDA execution provider:
    # asking for it must still serve (on the CPU) and must say so, not fail or stay silent.
    s = Server(tmp_path / "data", new_key(), "--device", "cuda").start()
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=s.api_key, max_retries=0, timeout=120)
        r = c.chat.completions.create(model=CHAT, messages=FRANCE, temperature=0, max_tokens=30)
        assert r.choices[0].message.content == FRANCE_ANSWER
        log = s.log()
        assert "CUDA execution provider unavailable" in log and "running on CPU" in log, log[-2000:]
    finally:
        s.kill()


def test_openai_alias_resolves_to_the_local_chat_model(client):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=FRANCE, temperature=0, max_tokens=30)
    assert r.choices[0].message.content == FRANCE_ANSWER


def test_streaming_with_a_seed_equals_the_non_streamed_answer(client):
    args = dict(model=CHAT, messages=FRANCE, temperature=0.7, seed=42, max_tokens=40)
    full = client.chat.completions.create(**args)
    chunks = collect(client.chat.completions.create(**args, stream=True))

    assert stream_text(chunks) == full.choices[0].message.content
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1, "every chunk of one stream carries the same id"
    assert chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {CHAT}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(ch.index == 0 for c in chunks for ch in c.choices)
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == [full.choices[0].finish_reason], "exactly one chunk carries the finish reason"
    assert chunks[-1].choices[0].finish_reason is not None
    # Without stream_options.include_usage no chunk carries usage.
    assert all(c.usage is None for c in chunks)


def test_streaming_is_greedy_deterministic_too(client):
    args = dict(model=CHAT, messages=FRANCE, temperature=0, max_tokens=30)
    chunks = collect(client.chat.completions.create(**args, stream=True))
    assert stream_text(chunks) == FRANCE_ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_include_usage_ends_with_a_usage_chunk(client):
    args = dict(model=CHAT, messages=FRANCE, temperature=0, max_tokens=30)
    full = client.chat.completions.create(**args)
    chunks = collect(client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == full.usage.prompt_tokens
    assert last.usage.completion_tokens == full.usage.completion_tokens
    assert last.usage.total_tokens == full.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1]), "only the last chunk carries usage"
    assert stream_text(chunks) == full.choices[0].message.content
    assert len({c.id for c in chunks}) == 1


def test_n_returns_that_many_choices(client):
    r = client.chat.completions.create(model=CHAT, messages=FRANCE, temperature=1, seed=7, n=2, max_tokens=10)
    assert [c.index for c in r.choices] == [0, 1]
    for c in r.choices:
        assert c.message.role == "assistant"
        assert c.message.content
        assert c.finish_reason in ("stop", "length")
    # Usage counts the prompt once and the completion tokens of every choice.
    assert_usage(r.usage)


@pytest.mark.parametrize(
    "stop, expected",
    [
        ([" is"], "The capital of France"),  # one token
        ([" France is"], "The capital of"),  # spans two tokens
        (["ance i"], "The capital of Fr"),  # starts and ends inside tokens
        (["nowhere", " Paris"], "The capital of France is"),  # the second of two sequences
        (" is", "The capital of France"),  # a plain string, not a list
    ],
)
def test_stop_sequences_cut_the_output(client, stop, expected):
    r = client.chat.completions.create(model=CHAT, messages=FRANCE, temperature=0, max_tokens=30, stop=stop)
    assert r.choices[0].message.content == expected
    assert r.choices[0].finish_reason == "stop"


def test_stop_sequences_cut_the_stream_too(client):
    args = dict(model=CHAT, messages=FRANCE, temperature=0, max_tokens=30, stop=[" France is"])
    chunks = collect(client.chat.completions.create(**args, stream=True))
    assert stream_text(chunks) == "The capital of"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs_with_top_logprobs(client):
    r = client.chat.completions.create(
        model=CHAT, messages=FRANCE, temperature=0, max_tokens=30, logprobs=True, top_logprobs=3
    )
    choice = r.choices[0]
    entries = choice.logprobs.content
    assert entries, "logprobs.content is empty"
    assert "".join(e.token for e in entries) == choice.message.content
    # Usage also counts the end-of-turn token, which has no text and no entry.
    assert len(entries) in (r.usage.completion_tokens, r.usage.completion_tokens - 1)
    for e in entries:
        assert e.logprob <= 0
        assert e.bytes is None or bytes(e.bytes).decode("utf-8", "replace") == e.token
        top = e.top_logprobs
        assert len(top) == 3
        values = [t.logprob for t in top]
        assert all(v <= 0 for v in values)
        assert values == sorted(values, reverse=True)
        assert len({t.token for t in top}) == 3
        # Greedy decoding picks the most likely token.
        assert top[0].token == e.token
        assert math.isclose(top[0].logprob, e.logprob, abs_tol=1e-5)


def test_logprobs_are_off_unless_asked(client):
    r = client.chat.completions.create(model=CHAT, messages=FRANCE, temperature=0, max_tokens=5)
    assert r.choices[0].logprobs is None


def test_max_tokens_ends_with_length(client):
    r = client.chat.completions.create(model=CHAT, messages=FRANCE, temperature=0, max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    assert r.choices[0].message.content == "The capital of"


def test_max_completion_tokens_ends_with_length(client):
    # Newer clients send max_completion_tokens instead of the deprecated max_tokens.
    r = client.chat.completions.create(model=CHAT, messages=FRANCE, temperature=0, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3


def test_system_and_multi_turn_messages_are_accepted(client):
    r = client.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            *FRANCE,
        ],
        temperature=0,
        max_tokens=20,
    )
    assert r.choices[0].message.content
    assert_usage(r.usage)


# --- errors -------------------------------------------------------------------------------


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=FRANCE, max_tokens=5)
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"


def test_empty_messages_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT, messages=[], max_tokens=5)
    assert info.value.status_code == 400
    assert info.value.param == "messages"


def test_temperature_out_of_range_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT, messages=FRANCE, temperature=5, max_tokens=5)
    assert info.value.status_code == 400
    assert info.value.param == "temperature"


def test_wrong_key_is_an_authentication_error(module_server):
    bad = openai.OpenAI(base_url=module_server.url + "/v1", api_key=new_key(), max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=CHAT, messages=FRANCE, max_tokens=5)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_embedding_model_cannot_chat(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=EMBED, messages=FRANCE, max_tokens=5)


# --- legacy completions -------------------------------------------------------------------


def test_legacy_completions_return_text(client):
    r = client.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert r.object == "text_completion"
    assert len(r.choices) == 1
    assert r.choices[0].index == 0
    assert r.choices[0].text
    assert "Paris" in r.choices[0].text
    assert r.choices[0].finish_reason in ("stop", "length")
    assert_usage(r.usage)
    assert r.usage.completion_tokens <= 5


def test_legacy_completions_stream_equals_non_streamed(client):
    args = dict(model=CHAT, prompt="The capital of France is", max_tokens=5, temperature=0)
    full = client.completions.create(**args)
    chunks = list(client.completions.create(**args, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text


# --- embeddings ---------------------------------------------------------------------------


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def norm(a):
    return math.sqrt(dot(a, a))


def test_embeddings_base64_default_decoded_by_the_sdk(client):
    r = client.embeddings.create(model=EMBED, input=["cat", "kitten", "stock market"])
    assert r.object == "list"
    assert [d.index for d in r.data] == [0, 1, 2]
    vecs = [d.embedding for d in r.data]
    for v in vecs:
        assert len(v) == 384
        assert all(isinstance(x, float) for x in v)
        assert math.isclose(norm(v), 1.0, abs_tol=1e-3)
    cat, kitten, stocks = vecs
    assert dot(cat, kitten) > dot(cat, stocks)
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens

    floats = client.embeddings.create(model=EMBED, input=["cat", "kitten", "stock market"], encoding_format="float")
    for a, b in zip(vecs, (d.embedding for d in floats.data)):
        assert len(a) == len(b)
        assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-6


def test_embeddings_wire_format_is_base64_little_endian_float32(module_server, client):
    server = module_server
    # What the SDK sends by default, checked on the wire.
    raw = client.embeddings.with_raw_response.create(model=EMBED, input=["cat"])
    assert json.loads(raw.http_request.content)["encoding_format"] == "base64"
    blob = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(blob, str)
    data = base64.b64decode(blob)
    assert len(data) == 384 * 4
    decoded = list(struct.unpack("<384f", data))
    floats = requests.post(
        server.url + "/v1/embeddings",
        json={"model": EMBED, "input": "cat", "encoding_format": "float"},
        headers=server.headers(),
        timeout=60,
    ).json()["data"][0]["embedding"]
    assert max(abs(x - y) for x, y in zip(decoded, floats)) <= 1e-6


def test_embeddings_single_string_alias_and_token_arrays(client):
    single = client.embeddings.create(model=EMBED, input="cat")
    assert len(single.data) == 1
    assert len(single.data[0].embedding) == 384

    aliased = client.embeddings.create(model="text-embedding-3-small", input="cat")
    assert len(aliased.data) == 1
    assert max(abs(x - y) for x, y in zip(single.data[0].embedding, aliased.data[0].embedding)) <= 1e-6

    # Token ids in the model's own vocabulary (BERT: 101 [CLS], 102 [SEP], 4937 "cat").
    # Token arrays are used as given, so [CLS] cat [SEP] is exactly what the string "cat"
    # tokenises to.
    tokens = client.embeddings.create(model=EMBED, input=[[101, 4937, 102], [4937]])
    assert [d.index for d in tokens.data] == [0, 1]
    for d in tokens.data:
        assert len(d.embedding) == 384
        assert math.isclose(norm(d.embedding), 1.0, abs_tol=1e-3)
    assert max(abs(x - y) for x, y in zip(single.data[0].embedding, tokens.data[0].embedding)) <= 1e-6

    one_array = client.embeddings.create(model=EMBED, input=[101, 4937, 102])
    assert len(one_array.data) == 1
    assert max(abs(x - y) for x, y in zip(single.data[0].embedding, one_array.data[0].embedding)) <= 1e-6


def test_embeddings_token_id_outside_the_vocabulary_is_a_bad_request(client):
    # all-MiniLM-L6-v2 has 30522 tokens.
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=EMBED, input=[[101, 999999, 102]])
    assert info.value.param == "input"


def test_chat_model_cannot_embed(client):
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=CHAT, input="cat")


# --- models -------------------------------------------------------------------------------


def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    assert CHAT in ids
    assert EMBED in ids
    m = client.models.retrieve(CHAT)
    assert m.id == CHAT
    assert m.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


# --- client disconnect --------------------------------------------------------------------


def test_client_disconnect_stops_generation(server):
    """Closing a stream early stops its generation (on a server of its own: it ends it).

    The server finishes in-flight requests before it exits on SIGTERM, so a generation
    that kept running after the client left (2000 tokens take minutes on CPU) would keep
    the server from exiting within the wait below.
    """
    url = server.url + "/v1/chat/completions"
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "temperature": 0,
        "max_tokens": 2000,
        "stream": True,
    }
    with requests.post(url, json=body, headers=server.headers(), stream=True, timeout=60) as r:
        assert r.status_code == 200, r.text
        seen = 0
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                seen += 1
                if seen == 2:
                    break
        assert seen == 2

    follow = openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=30)
    r = follow.chat.completions.create(model=CHAT, messages=FRANCE, temperature=0, max_tokens=30)
    assert r.choices[0].message.content == FRANCE_ANSWER

    server.proc.send_signal(15)
    try:
        code = server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the server still had work in flight 20 s after SIGTERM: the abandoned stream kept generating")
    assert code == 0


def test_every_answer_has_a_request_id_the_sdk_reads(module_server, client):
    """`x-request-id` as OpenAI sends it: the SDK exposes it as `_request_id`; a client's own
    id is echoed, a malformed one replaced, and errors carry one too."""
    completion = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=2, temperature=0)
    assert completion._request_id and completion._request_id.startswith("req_"), completion._request_id
    mine = client.with_options(default_headers={"X-Request-Id": "trace-4bf92f35.7b34"}).embeddings.create(model=EMBED, input="hi")
    assert mine._request_id == "trace-4bf92f35.7b34"
    url = module_server.url + "/v1/models"
    forged = requests.get(url, headers={**module_server.headers(), "X-Request-Id": "a b"}, timeout=30)
    assert forged.status_code == 200 and forged.headers["x-request-id"].startswith("req_"), forged.headers
    unauthorised = requests.get(url, timeout=30)
    assert unauthorised.status_code == 401 and unauthorised.headers["x-request-id"].startswith("req_")
    ids = {requests.get(url, headers=module_server.headers(), timeout=30).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
