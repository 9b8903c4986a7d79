"""End to end: `GET /metrics` (issue #21, part 4). After a known sequence of requests the
Prometheus text parses with Prometheus' own checker (`promtool check metrics`, from Debian's
prometheus package) and its counters say what happened: answers per route and status,
time to first token and between tokens of a stream, tokens per model, rate-limit refusals,
function invocations, the decoder's runs and ingestion."""

import os
import re
import subprocess

import openai
import pytest
import requests

from conftest import Server, new_key
from fnapi import api, call, deploy, kb_with

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? (\S+)$')


def promtool():
    path = os.environ.get("TENSORAS_PROMTOOL", "")
    if not os.access(path, os.X_OK):
        pytest.fail("TENSORAS_PROMTOOL must point at promtool (make test fetches it: scripts/setup.sh)")
    return path


def scrape(server):
    r = requests.get(server.url + "/metrics", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


def samples(text):
    """{(name, frozenset of label pairs): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(s, name, **labels):
    return s.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("metrics") / "data", new_key()).start()
    yield s
    s.kill()


def test_metrics_parse_with_promtool_and_count_what_happened(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)
    before = samples(scrape(server))
    ask = {"model": CHAT, "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 12}
    completion = 0
    for seed in (1, 2):
        completion += client.chat.completions.create(**ask, temperature=0.7, seed=seed).usage.completion_tokens
    chunks = list(client.chat.completions.create(**ask, temperature=0, stream=True, stream_options={"include_usage": True}))
    completion += chunks[-1].usage.completion_tokens
    # Events with output are tokens; the opening role chunk and the usage chunk are not.
    tokens = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    client.embeddings.create(model=EMBED, input="metrics")
    assert requests.get(server.url + "/v1/nope", headers=server.headers(), timeout=60).status_code == 404
    assert requests.get(server.url + "/v1/models", timeout=60).status_code == 401
    # A key on the published Free plan: its 31st request in a minute is refused.
    free = api(server, "POST", "/keys", json={"name": "free", "plan": "free"}).json()
    statuses = [api(server, "GET", "/models", key=free["key"]).status_code for _ in range(31)]
    assert statuses == [200] * 30 + [429]
    deploy(server, "calc", wasm="calc")
    assert call(server, "calc", expression="6*7").status_code == 200
    kb_with(server, client, "Metrics are counted.\n\nThey are scraped.")

    text = scrape(server)
    check = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and not check.stdout.strip(), (check.stdout, check.stderr)
    after = samples(text)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tensoras_http_requests_total", route="/v1/chat/completions", method="POST", status="200") == 3
    assert moved("tensoras_http_requests_total", route="/v1/embeddings", method="POST", status="200") == 1
    assert moved("tensoras_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert moved("tensoras_http_requests_total", route="/v1/models", method="GET", status="401") == 1
    assert moved("tensoras_http_requests_total", route="/v1/models", method="GET", status="429") == 1
    assert moved("tensoras_http_request_duration_seconds_count", route="/v1/chat/completions") == 3
    assert moved("tensoras_rate_limited_total", reason="requests") == 1
    # The stream: its first token, then one gap per later token.
    assert tokens >= 2
    assert moved("tensoras_time_to_first_token_seconds_count", model=CHAT) == 1
    assert moved("tensoras_inter_token_latency_seconds_count", model=CHAT) == tokens - 1
    assert value(after, "tensoras_time_to_first_token_seconds_bucket", model=CHAT, le="+Inf") == 1
    # Tokens as the responses reported them; the embeddings and ingestion count too.
    assert moved("tensoras_tokens_total", model=CHAT, kind="completion") == completion
    assert moved("tensoras_model_requests_total", model=CHAT) == 3
    assert moved("tensoras_tokens_total", model=EMBED, kind="prompt") > 0
    assert moved("tensoras_function_invocations_total", kind="tool", outcome="ok") == 1
    assert moved("tensoras_function_duration_seconds_count", kind="tool") == 1
    # The decoder ran prompts and batched steps; ingestion finished one data source.
    assert moved("tensoras_prefill_runs_total", model=CHAT) >= 1
    assert moved("tensoras_decode_steps_total", model=CHAT) >= moved("tensoras_decode_runs_total", model=CHAT)
    assert moved("tensoras_decode_steps_total", model=CHAT) + moved("tensoras_decode_direct_steps_total", model=CHAT) >= 3
    assert value(after, "tensoras_data_sources", status="completed") == 1
    assert value(after, "tensoras_ingestion_chunks_stored", status="completed") >= 1
    assert value(after, "tensoras_instance_slots") == 256 and value(after, "tensoras_queue_depth") == 0
    assert "tenant" not in text and free["id"] not in text, "no tenant or key labels"
