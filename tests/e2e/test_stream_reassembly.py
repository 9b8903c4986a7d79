"""End to end: stream == non-stream at temperature > 0 with a seed, through the official
`openai` Python SDK against the real binary.

For several seeds at temperature 0.8, the streamed deltas must reassemble exactly to the
non-streamed answer: content, tool calls (id order, names, arguments) and finish_reason,
for free text (with a stop sequence too), for tool calls (`auto` and `required`) and for
a `json_schema` response format. The existing tests check one seed each; sampling makes
every seed a different path through the stop-sequence hold-back, the tool-call scanner
and the chunk writer, so several are run.
"""
import json

import openai
import pytest

from conftest import Server, new_key

CHAT = "smollm2-135m-instruct"
SEEDS = [1, 7, 23]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
    },
}
PICK = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3},
    },
    "required": ["name", "score", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("stream-reassembly") / "data", new_key()).start()
    yield openai.OpenAI(base_url=s.url + "/v1", api_key=s.api_key, max_retries=0, timeout=180)
    s.kill()


def reassemble(chunks):
    """Content, [(name, arguments)], finish_reason from a stream, as a client rebuilds them."""
    content = ""
    calls = {}
    finish = []
    for chunk in chunks:
        for choice in chunk.choices:
            assert choice.index == 0
            content += choice.delta.content or ""
            for d in choice.delta.tool_calls or []:
                if d.id:
                    assert d.index == len(calls), "calls are announced in order"
                    assert d.type == "function" and d.function.name
                    calls[d.index] = [d.function.name, d.function.arguments or ""]
                else:
                    assert d.function.name is None
                    calls[d.index][1] += d.function.arguments or ""
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert len(finish) == 1, f"exactly one chunk carries the finish reason: {finish}"
    return content, [tuple(calls[i]) for i in sorted(calls)], finish[0]


def whole(r):
    choice = r.choices[0]
    calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    return choice.message.content or "", calls, choice.finish_reason


def check_same(client, **kwargs):
    full = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    streamed = reassemble(chunks)
    assert streamed == whole(full), kwargs.get("seed")
    return full


@pytest.mark.parametrize("seed", SEEDS)
def test_free_text_stream_equals_non_stream(client, seed):
    messages = [{"role": "user", "content": "Write two sentences about the sea."}]
    check_same(client, model=CHAT, messages=messages, temperature=0.8, seed=seed, max_tokens=48)
    # A stop sequence made of common letters: cut mid-stream, held back across tokens.
    full = check_same(client, model=CHAT, messages=messages, temperature=0.8, seed=seed, max_tokens=48, stop=["e ", "\n"])
    text = full.choices[0].message.content
    assert "e " not in text and "\n" not in text, text


@pytest.mark.parametrize("seed", SEEDS)
def test_tool_calls_stream_equal_non_stream(client, seed):
    messages = [{"role": "user", "content": "Weather in Paris for 3 days, and the time in Tokyo?"}]
    for choice in ("required", "auto"):
        full = check_same(
            client, model=CHAT, messages=messages, tools=[WEATHER, TIME], tool_choice=choice,
            temperature=0.8, seed=seed, max_tokens=120,
        )
        if choice == "required":
            c = full.choices[0]
            assert c.finish_reason in ("tool_calls", "length"), c
            if c.finish_reason == "tool_calls":
                for call in c.message.tool_calls:
                    json.loads(call.function.arguments)


@pytest.mark.parametrize("seed", SEEDS)
def test_json_schema_stream_equals_non_stream(client, seed):
    fmt = {"type": "json_schema", "json_schema": {"name": "pick", "schema": PICK, "strict": True}}
    full = check_same(
        client, model=CHAT, messages=[{"role": "user", "content": "Describe a fruit as JSON."}],
        response_format=fmt, temperature=0.8, seed=seed, max_tokens=120,
    )
    c = full.choices[0]
    if c.finish_reason == "stop":
        data = json.loads(c.message.content)
        assert set(data) == {"name", "score", "tags"}, data
