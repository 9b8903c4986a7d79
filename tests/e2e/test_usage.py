"""End to end: usage metering (issue #21, part 1; issue #20's attribution). Every model
execution counts for the key it was made for, per day and model: direct requests, streams,
embeddings, and the model calls of a function, which count for the key that invoked the
function (not its deployer), once, whether it is a tool or a chat function (`fn:NAME`).
`GET /v1/usage` shows a tenant its own usage and an operator everyone's; the counts survive a
restart and a crash after a read, and are never counted twice."""

import datetime
import json
import os
import subprocess
import time

import openai
import pytest
import requests

from conftest import Server, assert_openai_error, binary, new_key
from fnapi import api, call, deploy, output

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def today():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def make_key(server, name, tenant, role="member"):
    return api(server, "POST", "/keys", json={"name": name, "tenant": tenant, "role": role}).json()


def client_for(server, key):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=300)


def usage(server, as_key, **params):
    r = api(server, "GET", "/usage", key=as_key, params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("usage") / "data", new_key()).start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def traffic(server):
    """A known sequence of requests; returns the keys and the usage the responses reported."""
    alice = make_key(server, "alice", "acme")
    admin = make_key(server, "acme-admin", "acme", role="admin")
    carol = make_key(server, "carol", "other")
    expected = {"chat": [0, 0, 0], "embed": [0, 0]}  # [requests, input, output]

    def add(kind, u, completion=True):
        expected[kind][0] += 1
        expected[kind][1] += u["prompt_tokens"]
        if completion:
            expected[kind][2] += u["completion_tokens"]

    a = client_for(server, alice["key"])
    ask = {"model": CHAT, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}
    add("chat", a.chat.completions.create(**ask, temperature=0).usage.model_dump())
    chunks = list(a.chat.completions.create(**ask, temperature=0.9, seed=4, stream=True, stream_options={"include_usage": True}))
    add("chat", chunks[-1].usage.model_dump())
    # A stream that asks for no usage still counts.
    list(a.chat.completions.create(**ask, temperature=0, stream=True))
    same = a.chat.completions.create(**ask, temperature=0).usage.model_dump()
    add("chat", same)
    add("chat", same)  # the stream above: the same request, so the same tokens
    add("embed", a.embeddings.create(model=EMBED, input=["one text", "and another"]).usage.model_dump(), completion=False)
    # Functions deployed by the tenant admin, invoked by alice: their model calls are alice's.
    deploy(server, "probe", key=admin["key"], grants={"models": [CHAT, EMBED]}, limits={"timeout_ms": 60000})
    completion = output(call(server, "probe", key=alice["key"], op="chat", request=ask))
    add("chat", completion["usage"])
    # A function's embeddings are computed on the host; they count all the same.
    output(call(server, "probe", key=alice["key"], op="embed", model=EMBED, input=["one text", "and another"]))
    add("embed", {"prompt_tokens": expected["embed"][1]}, completion=False)  # the same texts as above
    deploy(server, "concise", wasm="concise", kind="chat", key=admin["key"], grants={"models": [CHAT]})
    add("chat", a.chat.completions.create(**dict(ask, model="fn:concise")).usage.model_dump())
    # Another tenant's traffic.
    client_for(server, carol["key"]).chat.completions.create(**ask)
    return {"alice": alice, "admin": admin, "carol": carol, "expected": expected}


def buckets(report, **match):
    return [b for b in report["data"] if all(b.get(k) == v for k, v in match.items())]


def test_usage_matches_what_the_responses_reported(server, traffic):
    alice, expected = traffic["alice"], traffic["expected"]
    report = usage(server, alice["key"], group_by="day,key,model")
    assert (report["start"], report["end"]) <= (today(), today()) and report["end"] == today()
    (chat,) = buckets(report, key_id=alice["id"], model=CHAT)
    assert chat["day"] == today()
    assert [chat["requests"], chat["input_tokens"], chat["output_tokens"]] == expected["chat"]
    (embed,) = buckets(report, key_id=alice["id"], model=EMBED)
    assert [embed["requests"], embed["input_tokens"], embed["output_tokens"]] == expected["embed"] + [0]
    # The seed prices of these models are 0 (their catalogue entries name none).
    assert chat["cost_usd"] == 0 and report["total"]["cost_usd"] == 0
    # The deployer of the functions made no model call of its own.
    assert not buckets(report, key_id=traffic["admin"]["id"])


def test_a_chat_function_counts_under_the_model_it_called_not_its_own_name(server, traffic):
    report = usage(server, traffic["alice"]["key"], group_by="model")
    assert {b["model"] for b in report["data"]} == {CHAT, EMBED}
    assert report["total"]["requests"] == traffic["expected"]["chat"][0] + traffic["expected"]["embed"][0]


def test_a_tenant_sees_its_own_usage_and_an_operator_everyones(server, traffic):
    alice, carol = traffic["alice"], traffic["carol"]
    mine = usage(server, alice["key"], group_by="tenant")
    assert [b["tenant"] for b in mine["data"]] == ["acme"]
    theirs = usage(server, carol["key"], group_by="key")
    assert [b["key_id"] for b in theirs["data"]] == [carol["id"]]
    err = assert_openai_error(api(server, "GET", "/usage", key=alice["key"], params={"tenant": "other"}), 403)
    assert err["param"] == "tenant"
    everyone = usage(server, server.api_key, group_by="tenant")
    assert {b["tenant"] for b in everyone["data"]} == {"acme", "other"}
    only = usage(server, server.api_key, group_by="key", tenant="other")
    assert [b["key_id"] for b in only["data"]] == [carol["id"]]


def test_filters_narrow_the_report(server, traffic):
    alice = traffic["alice"]
    r = usage(server, alice["key"], model=EMBED, group_by="")
    assert r["total"]["requests"] == 2 and r["data"][0]["input_tokens"] == traffic["expected"]["embed"][1]
    assert usage(server, alice["key"], key="key_nobody")["data"] == []
    yesterday = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    assert usage(server, alice["key"], start=yesterday, end=yesterday)["data"] == []


@pytest.mark.parametrize(
    "params,param",
    [
        ({"start": "2026-02-30"}, "start"),
        ({"end": "tomorrow"}, "end"),
        ({"start": "2026-12-07", "end": "2026-12-01"}, "start"),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "start"),
        ({"group_by": "day,week"}, "group_by"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_parameters_are_400s_naming_them(server, params, param):
    err = assert_openai_error(api(server, "GET", "/usage", params=params), 400)
    assert err["param"] == param, err


def test_the_cli_prints_the_report(server, traffic):
    env = dict(os.environ, TENSORAS_URL=server.url, TENSORAS_API_KEY=traffic["alice"]["key"])
    r = subprocess.run([binary(), "usage", "--group-by", "model"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split()[:2] == ["model", "requests"] and lines[-1].startswith("total")
    assert any(line.startswith(CHAT) and line.split()[1] == str(traffic["expected"]["chat"][0]) for line in lines), r.stdout
    r = subprocess.run([binary(), "usage", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout)["object"] == "list"


def test_prompt_tokens_served_from_the_prefix_cache_count_as_cached(server):
    # A tenant of its own: cached prompt prefixes are shared only within a tenant, so its
    # first request finds none, and the same conversation again finds all but its tail.
    key = make_key(server, "cache", "cache-tenant")
    client = client_for(server, key["key"])
    messages = [
        {"role": "system", "content": "You answer questions about the Larkspur orchard in one short sentence."},
        {"role": "user", "content": "Which pear variety grows in the Larkspur orchard, and when is it picked?"},
    ]
    seen = []
    for seed in (1, 2):
        r = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=4, temperature=0.9, seed=seed)
        (b,) = buckets(usage(server, key["key"], group_by="key,model"), model=CHAT)
        seen.append((b["input_tokens"], b["cached_tokens"], r.usage.prompt_tokens))
    (first_input, first_cached, prompt), (both_input, both_cached, _) = seen
    assert first_cached == 0, seen
    assert both_input == 2 * prompt and first_input == prompt, seen
    # All of the second prompt but what must be computed to get its last logits.
    assert prompt // 2 < both_cached < prompt, seen


def test_a_stream_its_client_abandons_is_metered_for_what_it_generated(server):
    key = make_key(server, "quitter", "quitters")
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": 2000,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {key['key']}"}
    with requests.post(server.url + "/v1/chat/completions", json=body, headers=headers, stream=True, timeout=60) as r:
        assert r.status_code == 200, r.text
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith(b"data: ")
            if seen == 3:
                break
    # The handler notices at its next chunk and returns what it used; that is metered.
    deadline = time.time() + 60
    while not (report := usage(server, key["key"]))["data"]:
        assert time.time() < deadline, "the abandoned stream was never metered"
        time.sleep(0.1)
    total = report["total"]
    assert total["requests"] == 1 and 2 <= total["output_tokens"] < 2000, total


def test_usage_survives_a_restart_and_a_crash_without_counting_twice(tmp_path):
    s = Server(tmp_path / "data", new_key()).start()
    try:
        c = client_for(s, s.api_key)
        ask = {"model": CHAT, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4}
        tokens = c.chat.completions.create(**ask).usage.completion_tokens
        # Stopped straight after the request: the shutdown writes what is pending.
        assert s.stop() == 0
        s.start()
        first = usage(s, s.api_key)["total"]
        assert (first["requests"], first["output_tokens"]) == (1, tokens)
        tokens += c.chat.completions.create(**ask).usage.completion_tokens
        # A read writes what is pending; a crash after it loses nothing and counts nothing twice.
        assert usage(s, s.api_key)["total"]["requests"] == 2
        s.kill()
        s.start()
        after = usage(s, s.api_key)["total"]
        assert (after["requests"], after["output_tokens"]) == (2, tokens)
    finally:
        s.kill()
