"""End to end: rate limits, plans and budgets (issue #21, part 2). A key's plan (its own,
else its tenant's, else the server's default) limits its requests and tokens per rolling
minute and its requests at once; every answer carries Tensoras' `X-RateLimit-*` headers and
OpenAI's `x-ratelimit-*-requests`/`-tokens` ones; past a limit the answer is a 429
`rate_limit_exceeded` with `Retry-After`, which the official SDK's own retry waits out. A
tenant's monthly budget, spent at the catalogue's prices, gives 429 `insufficient_quota`.
Plans also cap a tenant's knowledge bases and stored bytes. Only operators assign plans."""

import re
import threading
import time

import openai
import pytest
import requests

from conftest import REPO, Server, assert_openai_error, new_key
from fnapi import api

CHAT = "smollm2-135m-instruct"
# $1000 per million tokens: a thousandth of a dollar a token, so a few requests spend a budget.
PRICE_PER_MILLION = 1000.0

PLANS = """
[plans.three-rpm]
rpm = 3

[plans.tokens]
tpm = 600

[plans.one-at-a-time]
max_concurrent = 1

[plans.small]
knowledge_bases = 1
storage_mb = 1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ratelimits")
    plans = root / "plans.toml"
    plans.write_text(PLANS)
    # The catalogue with a price on the chat model (the seed's is 0).
    manifests = root / "manifests"
    manifests.mkdir()
    for m in (REPO / "models").glob("*.toml"):
        text = m.read_text()
        if m.stem == CHAT:
            text = re.sub(r"\[price\][^\[]*", f"[price]\ninput = {PRICE_PER_MILLION}\noutput = {PRICE_PER_MILLION}\n", text)
        (manifests / m.name).write_text(text)
    s = Server(root / "data", new_key(), "--plans", str(plans), "--manifests", str(manifests)).start()
    s.plans = plans
    yield s
    s.kill()


def make_key(server, name, tenant, plan=None, role="member"):
    body = {"name": name, "tenant": tenant, "role": role}
    if plan:
        body["plan"] = plan
    r = api(server, "POST", "/keys", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def client_for(server, key, retries=0):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=retries, timeout=300)


ASK = {"model": CHAT, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "temperature": 0}


def test_requests_per_minute_count_down_then_429_and_the_sdk_retry_waits_it_out(server):
    key = make_key(server, "three", "rpm", plan="three-rpm")
    assert key["plan"] == "three-rpm"
    client = client_for(server, key["key"])
    resets = []
    for remaining in (2, 1, 0):
        raw = client.chat.completions.with_raw_response.create(**{**ASK, "temperature": 0.8, "seed": remaining})
        h = raw.headers
        assert (h["x-ratelimit-limit"], h["x-ratelimit-remaining"]) == ("3", str(remaining))
        assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("3", str(remaining))
        assert re.fullmatch(r"\d+s", h["x-ratelimit-reset-requests"]), h["x-ratelimit-reset-requests"]
        assert "x-ratelimit-limit-tokens" not in h, "the plan does not limit tokens"
        resets.append(int(h["X-RateLimit-Reset"]))
        raw.parse()
    # The window rolls from the first request: the reset stays where that one leaves it.
    assert resets[0] == resets[1] == resets[2] and 0 < resets[0] - time.time() <= 61, resets

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(**ASK)
    r = refused.value.response
    assert r.status_code == 429
    assert refused.value.code == "rate_limit_exceeded" and refused.value.type == "rate_limit_error"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == ("3", "0")
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    # Every route counts and answers alike, not only inference.
    assert_openai_error(api(server, "GET", "/models", key=key["key"]), 429, "rate_limit_exceeded")

    # The SDK's own retry honours Retry-After (at most a minute) and then succeeds.
    start = time.monotonic()
    answer = client_for(server, key["key"], retries=3).chat.completions.create(**ASK)
    assert answer.choices[0].message.content is not None
    assert time.monotonic() - start >= 1
    # Another key of the same plan has its own window.
    other = make_key(server, "three-b", "rpm", plan="three-rpm")
    assert client_for(server, other["key"]).chat.completions.with_raw_response.create(**ASK).headers["x-ratelimit-remaining"] == "2"


def test_tokens_are_reserved_at_admission_and_corrected_when_the_request_ends(server):
    key = make_key(server, "tokens", "tpm", plan="tokens")
    client = client_for(server, key["key"])
    raw = client.chat.completions.with_raw_response.create(**{**ASK, "max_tokens": 400})
    used = raw.parse().usage.total_tokens
    h = raw.headers
    # Its reservation (prompt estimate + 400) ended with it: only what it used counts.
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("600", str(600 - used))
    assert re.fullmatch(r"\d+s", h["x-ratelimit-reset-tokens"])
    assert "x-ratelimit-limit" not in h, "the plan does not limit requests"

    # 560 more tokens and the prompt (about 30) fit in a minute, not in what is left: a
    # 429 to retry later.
    assert used > 15, "the chat template alone is more than that"
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(**{**ASK, "max_tokens": 560})
    assert refused.value.code == "rate_limit_exceeded"
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    assert refused.value.response.headers["x-ratelimit-remaining-tokens"] == str(600 - used)

    # More than a whole minute's tokens never fits: no Retry-After, and the SDK is told not to retry.
    with pytest.raises(openai.RateLimitError) as too_large:
        client_for(server, key["key"], retries=2).chat.completions.create(**{**ASK, "max_tokens": 5000})
    r = too_large.value.response
    assert "retry-after" not in r.headers and r.headers["x-should-retry"] == "false"
    assert "Request too large" in too_large.value.message

    # Streams and embeddings reserve and count alike.
    stream = client.chat.completions.create(**{**ASK, "max_tokens": 8}, stream=True, stream_options={"include_usage": True})
    streamed = [c for c in stream if c.usage][-1].usage.total_tokens
    after = client.embeddings.with_raw_response.create(model="all-minilm-l6-v2", input="tokens count")
    embedded = after.parse().usage.total_tokens
    assert after.headers["x-ratelimit-remaining-tokens"] == str(600 - used - streamed - embedded)


def test_requests_at_once_are_capped(server):
    key = make_key(server, "serial", "conc", plan="one-at-a-time")
    headers = {"Authorization": f"Bearer {key['key']}"}
    body = {**ASK, "max_tokens": 64, "stream": True}
    first = requests.post(server.url + "/v1/chat/completions", json=body, headers=headers, stream=True, timeout=300)
    assert first.status_code == 200
    lines = first.iter_lines()
    assert next(line for line in lines if line).startswith(b"data: ")
    # The stream is running: a second request of the key is refused at once.
    err = assert_openai_error(api(server, "POST", "/chat/completions", key=key["key"], json=ASK), 429, "rate_limit_exceeded")
    assert "at once" in err["message"]
    for _ in lines:  # the first finishes
        pass
    first.close()
    ok = client_for(server, key["key"]).chat.completions.create(**ASK)
    assert ok.choices
    # Requests of other keys never waited on it.
    assert client_for(server, server.api_key).models.list().data


def test_a_spent_monthly_budget_answers_insufficient_quota(server):
    key = make_key(server, "spender", "budgeted")
    r = api(server, "PATCH", "/tenants/budgeted", json={"monthly_budget_usd": 0.01})
    assert r.status_code == 200, r.text
    assert r.json()["monthly_budget_usd"] == 0.01 and r.json()["spent_this_month_usd"] == 0
    client = client_for(server, key["key"], retries=2)
    first = client.chat.completions.create(**ASK)
    cost = first.usage.total_tokens * PRICE_PER_MILLION / 1e6
    assert cost > 0.01, "one request spends the budget"
    start = time.monotonic()
    with pytest.raises(openai.RateLimitError) as spent:
        client.chat.completions.create(**ASK)
    assert spent.value.code == "insufficient_quota" and spent.value.type == "insufficient_quota"
    assert spent.value.response.headers["x-should-retry"] == "false"
    assert time.monotonic() - start < 5, "the SDK did not retry it"
    # The tenant's spending and its usage report agree with the catalogue price.
    t = api(server, "GET", "/tenants/budgeted").json()
    assert t["spent_this_month_usd"] == pytest.approx(cost)
    report = api(server, "GET", "/usage", key=key["key"]).json()
    assert report["total"]["cost_usd"] == pytest.approx(cost)
    # Raising the budget (or dropping it) lets the tenant go on.
    assert api(server, "PATCH", "/tenants/budgeted", json={"monthly_budget_usd": None}).status_code == 200
    assert client.chat.completions.create(**ASK).choices
    bad = api(server, "PATCH", "/tenants/budgeted", json={"monthly_budget_usd": -1})
    assert assert_openai_error(bad, 400)["param"] == "monthly_budget_usd"


def test_plans_are_assigned_by_operators_per_key_or_tenant(server):
    # No plan anywhere: the server's default, Tensoras' Enterprise plan.
    plain = make_key(server, "plain", "teamx")
    h = api(server, "GET", "/models", key=plain["key"]).headers
    assert h["x-ratelimit-limit"] == "10000" and "x-ratelimit-limit-tokens" not in h
    # The tenant's plan applies to its keys without one of their own.
    r = api(server, "PATCH", "/tenants/teamx", json={"plan": "developer"})
    assert r.status_code == 200 and r.json()["effective_plan"] == "developer"
    h = api(server, "GET", "/models", key=plain["key"]).headers
    assert (h["x-ratelimit-limit"], h["x-ratelimit-limit-tokens"]) == ("600", "1000000")
    # A key's own plan wins; PATCH sets or drops it.
    r = api(server, "PATCH", f"/keys/{plain['id']}", json={"plan": "pro"})
    assert r.status_code == 200 and r.json()["plan"] == "pro"
    assert api(server, "GET", "/models", key=plain["key"]).headers["x-ratelimit-limit"] == "3000"
    assert api(server, "PATCH", f"/keys/{plain['id']}", json={"plan": None}).json()["plan"] is None
    assert api(server, "GET", "/models", key=plain["key"]).headers["x-ratelimit-limit"] == "600"
    # `unlimited` limits nothing, and so sends no headers.
    api(server, "PATCH", "/tenants/teamx", json={"plan": "unlimited"})
    assert "x-ratelimit-limit" not in api(server, "GET", "/models", key=plain["key"]).headers

    # Only operators give plans; unknown plans are named.
    admin = make_key(server, "teamx-admin", "teamx", role="admin")
    body = {"name": "mine", "tenant": "teamx", "plan": "enterprise"}
    assert assert_openai_error(api(server, "POST", "/keys", key=admin["key"], json=body), 403)["param"] == "plan"
    err = assert_openai_error(api(server, "PATCH", f"/keys/{plain['id']}", key=admin["key"], json={"plan": None}), 403)
    assert err["param"] == "plan"
    assert_openai_error(api(server, "PATCH", "/tenants/teamx", key=admin["key"], json={"plan": "pro"}), 403)
    assert api(server, "GET", "/tenants/teamx", key=admin["key"]).json()["plan"] == "unlimited"
    assert_openai_error(api(server, "GET", "/tenants/other", key=admin["key"]), 403)
    err = assert_openai_error(api(server, "POST", "/keys", json={"name": "x", "plan": "gold"}), 400, "plan_not_found")
    assert err["param"] == "plan" and "three-rpm" in err["message"]
    assert_openai_error(api(server, "PATCH", "/keys/key_nobody", json={"plan": "pro"}), 404)
    assert_openai_error(api(server, "PATCH", "/tenants/teamx", json={"plan": "pro", "tier": 1}), 400)


def test_the_cli_assigns_plans_and_budgets(server):
    out = server.cli("keys", "create", "--name", "cli", "--tenant", "clitenant", "--plan", "three-rpm", "--plans", str(server.plans))
    secret = out.stdout.strip()
    assert api(server, "GET", "/models", key=secret).headers["x-ratelimit-limit"] == "3"
    refused = server.cli("keys", "create", "--name", "cli", "--plan", "gold", check=False)
    assert refused.returncode != 0 and "no plan named" in refused.stderr
    server.cli("tenants", "set", "clitenant", "--plan", "free", "--monthly-budget-usd", "12.5")
    t = api(server, "GET", "/tenants/clitenant").json()
    assert (t["plan"], t["monthly_budget_usd"]) == ("free", 12.5)
    assert "plan free, monthly budget $12.500000" in server.cli("tenants", "show", "clitenant").stdout
    key_id = next(k["id"] for k in api(server, "GET", "/keys", params={"tenant": "clitenant"}).json()["data"])
    server.cli("keys", "set-plan", key_id, "--inherit")
    assert api(server, "GET", "/models", key=secret).headers["x-ratelimit-limit"] == "30", "the tenant's plan, Free"


def test_plans_cap_knowledge_bases_and_stored_bytes(server):
    key = make_key(server, "small", "smalltenant", plan="small")
    first = api(server, "POST", "/knowledge-bases", key=key["key"], json={"name": "one"})
    assert first.status_code == 201, first.text
    err = assert_openai_error(api(server, "POST", "/knowledge-bases", key=key["key"], json={"name": "two"}), 403)
    assert err["code"] == "knowledge_base_limit_reached"
    assert api(server, "DELETE", f"/knowledge-bases/{first.json()['id']}", key=key["key"]).status_code == 200
    assert api(server, "POST", "/knowledge-bases", key=key["key"], json={"name": "two"}).status_code == 201

    def upload(size):
        files = {"file": ("a.txt", b"x" * size), "purpose": (None, "assistants")}
        return api(server, "POST", "/files", key=key["key"], files=files)

    kept = upload(700_000)
    assert kept.status_code == 200, kept.text
    err = assert_openai_error(upload(700_000), 413, "storage_limit_exceeded")
    assert err["param"] == "file"
    assert [f["id"] for f in api(server, "GET", "/files", key=key["key"]).json()["data"]] == [kept.json()["id"]]
    assert api(server, "DELETE", f"/files/{kept.json()['id']}", key=key["key"]).status_code == 200
    assert upload(700_000).status_code == 200


def test_concurrent_requests_beyond_the_limit_get_429s_never_hangs(server):
    key = make_key(server, "burst", "burst", plan="three-rpm")
    results = []

    def one():
        r = api(server, "GET", "/models", key=key["key"])
        results.append(r.status_code)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [200] * 3 + [429] * 9
