"""End to end: tool calling, JSON mode and structured outputs with the official `openai`
Python SDK, against the real binary and SmolLM2-135M.

A 135M model does not know how to call tools or write JSON on its own; these tests pass
because the chat handler enforces the shape by constrained decoding, which is the point.
"""

import json
from pathlib import Path

import openai
import pytest
import requests
from pydantic import BaseModel

from conftest import REPO, Server, new_key

CHAT = "smollm2-135m-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}, "hour24": {"type": "boolean"}},
            "required": ["timezone"],
        },
    },
}
PROMPTS = [
    "What is the weather like in Paris today?",
    "Tell me a joke.",
    "Is it raining in Tokyo? And what time is it there?",
]


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("tools-py") / "data", new_key()).start()
    calc = Path(REPO) / "build" / "functions" / "calc.wasm"
    r = requests.post(
        s.url + "/v1/functions",
        headers=s.headers(),
        files={"file": ("calc.wasm", calc.read_bytes()), "manifest": (None, json.dumps({"name": "calc", "kind": "tool"}))},
        timeout=120,
    )
    assert r.status_code == 201, r.text
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(module_server):
    return openai.OpenAI(base_url=module_server.url + "/v1", api_key=module_server.api_key, max_retries=0, timeout=180)


def valid_args(call, tool):
    """The call's arguments parse and satisfy the tool's schema (types, required, enum, no extras)."""
    args = json.loads(call.function.arguments)
    schema = tool["function"]["parameters"]
    assert isinstance(args, dict)
    assert set(schema["required"]) <= set(args), args
    assert set(args) <= set(schema["properties"]), args
    types = {"string": str, "boolean": bool, "integer": int, "number": (int, float)}
    for key, value in args.items():
        prop = schema["properties"][key]
        assert isinstance(value, types[prop["type"]]), (key, value)
        if "enum" in prop:
            assert value in prop["enum"], (key, value)
    return args


# --- structured outputs --------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int
    likes_cats: bool


def test_parse_with_a_pydantic_model_returns_a_parsed_object(client):
    for seed in (1, 2, 3):
        r = client.beta.chat.completions.parse(
            model=CHAT,
            messages=[{"role": "user", "content": "Describe Alice, a 30 year old who loves cats."}],
            response_format=Person,
            seed=seed,
            max_tokens=120,
        )
        person = r.choices[0].message.parsed
        assert isinstance(person, Person), r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop"


def test_json_object_mode_always_parses(client):
    # As with OpenAI, the prompt asks for JSON; the grammar guarantees it parses.
    prompts = ["List three fruits in JSON.", "Who wrote Hamlet? Answer in JSON.", "Describe a dog as JSON.", "hello, json"]
    for prompt in prompts:
        for seed in (1, 2):
            r = client.chat.completions.create(
                model=CHAT,
                messages=[{"role": "user", "content": prompt}],
                response_format={"type": "json_object"},
                seed=seed,
                temperature=0.7,
                max_tokens=200,
            )
            choice = r.choices[0]
            assert choice.finish_reason == "stop", choice.message.content
            assert isinstance(json.loads(choice.message.content), dict), choice.message.content


def test_json_schema_with_enums_and_arrays_is_followed(client):
    schema = {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["red", "green", "blue"]},
            "sizes": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
        },
        "required": ["colour", "sizes"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Pick a colour and some sizes."}],
        response_format={"type": "json_schema", "json_schema": {"name": "pick", "schema": schema, "strict": True}},
        seed=4,
        max_tokens=80,
    )
    value = json.loads(r.choices[0].message.content)
    assert value["colour"] in ("red", "green", "blue")
    assert all(isinstance(x, int) for x in value["sizes"]) and len(value["sizes"]) <= 3


# --- tool calls ----------------------------------------------------------------------------


def test_required_always_calls_a_tool_with_valid_arguments(client):
    tools = [WEATHER, TIME]
    for prompt in PROMPTS:
        for seed in (1, 2):
            r = client.chat.completions.create(
                model=CHAT,
                messages=[{"role": "user", "content": prompt}],
                tools=tools,
                tool_choice="required",
                parallel_tool_calls=False,
                seed=seed,
                max_tokens=150,
            )
            choice = r.choices[0]
            assert choice.finish_reason == "tool_calls", choice
            assert len(choice.message.tool_calls) == 1, choice
            for call in choice.message.tool_calls:
                assert call.id.startswith("call_") and call.type == "function"
                tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]
                valid_args(call, tool)


def test_named_choice_calls_that_tool(client):
    for prompt in PROMPTS:
        r = client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": prompt}],
            tools=[WEATHER, TIME],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            seed=3,
            max_tokens=100,
        )
        calls = r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "tool_calls"
        assert [c.function.name for c in calls] == ["get_time"]
        valid_args(calls[0], TIME)


def test_none_never_calls(client):
    for prompt in PROMPTS:
        r = client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": prompt}],
            tools=[WEATHER, TIME],
            tool_choice="none",
            seed=5,
            max_tokens=40,
        )
        assert not r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason in ("stop", "length")
        assert "<tool_call>" not in (r.choices[0].message.content or "")


def test_parallel_calls_only_when_allowed(client):
    counts = {True: [], False: []}
    for parallel in (True, False):
        for seed in (1, 2, 3):
            r = client.chat.completions.create(
                model=CHAT,
                messages=[{"role": "user", "content": "What is the weather in Paris, in London and in Rome?"}],
                tools=[WEATHER],
                tool_choice="required",
                parallel_tool_calls=parallel,
                seed=seed,
                max_tokens=200,
            )
            calls = r.choices[0].message.tool_calls
            for call in calls:
                valid_args(call, WEATHER)
            counts[parallel].append(len(calls))
    assert counts[False] == [1, 1, 1]
    assert max(counts[True]) >= 2, counts


def test_two_turn_tool_conversation(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model=CHAT, messages=messages, tools=[WEATHER], tool_choice="required", seed=1, max_tokens=100
    )
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "sky": "sunny"})})
    second = client.chat.completions.create(
        model=CHAT, messages=messages, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=60
    )
    answer = second.choices[0].message
    assert answer.content and not answer.tool_calls


def test_streamed_tool_calls_reassemble_to_the_non_streamed_ones(client):
    kwargs = dict(
        model=CHAT,
        messages=[{"role": "user", "content": "Weather in Paris and the time in Tokyo, please."}],
        tools=[WEATHER, TIME],
        tool_choice="required",
        seed=7,
        max_tokens=200,
    )
    whole = client.chat.completions.create(**kwargs).choices[0]
    assert whole.finish_reason == "tool_calls"
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    calls = {}
    finish = None
    for chunk in chunks:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for d in choice.delta.tool_calls or []:
                if d.id:
                    # The first chunk of a call: id, type, name and empty arguments.
                    assert d.type == "function" and d.function.name and d.function.arguments == ""
                    calls[d.index] = {"name": d.function.name, "arguments": ""}
                else:
                    assert d.function.name is None
                    calls[d.index]["arguments"] += d.function.arguments
    assert finish == "tool_calls"
    streamed = [(calls[i]["name"], calls[i]["arguments"]) for i in sorted(calls)]
    assert streamed == [(c.function.name, c.function.arguments) for c in whole.message.tool_calls]


# --- server-side tools ---------------------------------------------------------------------


def test_a_deployed_calculator_runs_server_side(client):
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Use the calculator: what is 12345 * 678?"}],
        tools=[{"type": "tensoras_function", "tensoras_function": {"name": "calc"}}],
        tool_choice="required",
        temperature=0,
        max_tokens=100,
    )
    choice = r.choices[0]
    server_calls = choice.model_extra["server_tool_calls"]
    assert server_calls and server_calls[0]["name"] == "calc"
    assert "8369910" in server_calls[0]["output"], server_calls
    assert "8369910" in choice.message.content, choice.message.content
    assert not choice.message.tool_calls


def test_a_failing_server_tool_is_reported_to_the_model_not_as_an_error(client):
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Use the calculator to divide 1 by zero: 1 / 0"}],
        tools=[{"type": "tensoras_function", "tensoras_function": {"name": "calc"}}],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    calls = r.choices[0].model_extra["server_tool_calls"]
    assert calls, r
    assert r.choices[0].finish_reason in ("stop", "length")


def test_server_tool_progress_is_streamed(client):
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "Use the calculator: what is 2 + 3?"}],
            tools=[{"type": "tensoras_function", "tensoras_function": {"name": "calc"}}],
            tool_choice="required",
            temperature=0,
            max_tokens=60,
            stream=True,
        )
    )
    progress = [
        c.choices[0].delta.model_extra.get("server_tool_calls")
        for c in chunks
        if c.choices and c.choices[0].delta.model_extra
    ]
    progress = [p for p in progress if p]
    assert progress and progress[0][0]["name"] == "calc"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


# --- errors --------------------------------------------------------------------------------


def test_strict_schemas_name_what_cannot_be_enforced(client):
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}}
    fmt = lambda strict: {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": strict}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "tags"}], max_tokens=5, response_format=fmt(True))
    assert err.value.body["param"] == "response_format.json_schema.schema"
    assert "uniqueItems" in err.value.body["message"]
    # Not strict: the keyword is ignored and the rest is enforced.
    r = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "tags"}], max_tokens=60, response_format=fmt(False))
    assert r.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "frobnicate"}}}, "strict": True}}]}, "tools.[0].function.parameters"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.[0].function.name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}}, "response_format.json_schema.name"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {"type": "object", "properties": {"a": {"type": "wibble"}}}}}},
            "response_format.json_schema.schema",
        ),
        ({"tools": [{"type": "tensoras_function", "tensoras_function": {"name": "not_deployed"}}]}, "tools.[0].tensoras_function.name"),
    ],
)
def test_bad_tool_and_format_parameters_are_400s_naming_the_param(client, extra, param):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=5, extra_body=extra
        )
    assert err.value.status_code == 400
    assert err.value.body["param"] == param, err.value.body
    assert err.value.body["type"] == "invalid_request_error"
