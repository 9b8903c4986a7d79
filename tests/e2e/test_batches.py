"""End to end: the Batch API (issue #22, part 1) through the official `openai` SDK.

A batch's lines must answer exactly what the same requests answer when sent directly; a
file with bad lines is refused with each line's problem; cancel stops it part way with the
lines that ran in the output; a `kill -9` mid-batch loses and duplicates no line; batches
and their files are their tenant's only; usage counts batch tokens apart.

Nothing here depends on timing: "part way" is made sure of by a batch far longer than the
few polls it takes to see its first result, run one line at a time."""

import io
import json
import time

import openai
import pytest
import requests

from conftest import Server, assert_openai_error, new_key
from fnapi import api

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def client_for(server, key=None):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key or server.api_key, max_retries=0, timeout=300)


def jsonl(lines) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def chat_line(custom_id, prompt, **extra):
    body = {"model": CHAT, "messages": [{"role": "user", "content": prompt}], "max_tokens": 12, "temperature": 0, **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def upload(client, lines, name="batch.jsonl"):
    data = lines if isinstance(lines, bytes) else jsonl(lines)
    return client.files.create(file=(name, io.BytesIO(data)), purpose="batch")


def wait(client, batch_id, done=("completed", "failed", "cancelled", "expired"), until=None, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = client.batches.retrieve(batch_id)
        if b.status in done or (until and until(b)):
            return b
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} still {b.status} after {timeout} s: {b}")


def read_lines(client, file_id):
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("batches") / "data", new_key()).start()
    yield s
    s.kill()


PROMPTS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write a haiku about the sea.",
    "What is 2 + 2?",
    "Say hello in Spanish.",
    "Give me a word that rhymes with cat.",
    "What colour is the sky?",
]


def test_a_batch_answers_what_direct_requests_answer(shared):
    client = client_for(shared)
    chat = [chat_line(f"chat-{i}", p, **({"seed": 7} if i % 2 else {})) for i, p in enumerate(PROMPTS * 2)]
    texts = ["a cat sat on the mat", "batches run in the background", "the sea is blue", "tensoras", "hello", "x"]
    embed = [
        {"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings", "body": {"model": EMBED, "input": t}}
        for i, t in enumerate(texts)
    ]
    chat_batch = client.batches.create(
        input_file_id=upload(client, chat).id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    embed_batch = client.batches.create(
        input_file_id=upload(client, embed).id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert chat_batch.status == "validating" and chat_batch.metadata == {"job": "nightly"}
    assert chat_batch.expires_at - chat_batch.created_at == 24 * 3600

    for batch, lines in [(chat_batch, chat), (embed_batch, embed)]:
        done = wait(client, batch.id)
        assert done.status == "completed", done
        assert done.request_counts.total == done.request_counts.completed == len(lines), done.request_counts
        assert done.request_counts.failed == 0 and done.error_file_id is None
        assert None not in (done.in_progress_at, done.finalizing_at, done.completed_at)
        out = read_lines(client, done.output_file_id)
        # One line per request, in input order.
        assert [o["custom_id"] for o in out] == [line["custom_id"] for line in lines]
        for o, line in zip(out, lines):
            assert o["error"] is None and o["response"]["status_code"] == 200, o
            assert o["id"].startswith("batch_req_") and o["response"]["request_id"]
            body = o["response"]["body"]
            if line["url"] == "/v1/embeddings":
                direct = client.embeddings.create(**line["body"]).data[0].embedding
                got = body["data"][0]["embedding"]
                assert len(got) == len(direct)
                assert max(abs(a - b) for a, b in zip(got, direct)) < 1e-4
            else:
                direct = client.chat.completions.create(**line["body"])
                assert body["object"] == "chat.completion" and body["model"] == direct.model
                assert body["choices"][0]["message"]["content"] == direct.choices[0].message.content, line
                assert body["usage"]["completion_tokens"] == direct.usage.completion_tokens
        meta = client.files.retrieve(done.output_file_id)
        assert meta.purpose == "batch_output" and meta.filename == f"{batch.id}_output.jsonl"

    listed = client.batches.list(limit=1)
    assert [b.id for b in listed.data] == [embed_batch.id] and listed.has_more
    assert [b.id for b in client.batches.list(after=embed_batch.id).data][0] == chat_batch.id

    # Usage counts what the batches ran, apart as well as in the totals.
    usage = api(shared, "GET", "/usage", params={"group_by": "model"}).json()["data"]
    by_model = {row["model"]: row for row in usage}
    assert by_model[CHAT]["batch"]["requests"] == len(chat), by_model[CHAT]
    assert by_model[CHAT]["batch"]["output_tokens"] > 0
    assert by_model[CHAT]["requests"] >= 2 * len(chat)  # the batch's and the direct ones
    assert by_model[EMBED]["batch"]["requests"] == len(embed)


def test_line_failures_go_to_the_error_file(shared):
    client = client_for(shared)
    lines = [
        chat_line("ok-1", "Say yes."),
        {"custom_id": "no-model", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "nope", "messages": []}},
        chat_line("bad-temp", "Say no.", temperature=7),
        chat_line("stream", "Say maybe.", stream=True),
        chat_line("ok-2", "Say yes again."),
    ]
    batch = client.batches.create(input_file_id=upload(client, lines).id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait(client, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 3)
    assert [o["custom_id"] for o in read_lines(client, done.output_file_id)] == ["ok-1", "ok-2"]
    errors = {o["custom_id"]: o["response"] for o in read_lines(client, done.error_file_id)}
    assert list(errors) == ["no-model", "bad-temp", "stream"]
    assert errors["no-model"]["status_code"] == 404
    assert errors["no-model"]["body"]["error"]["code"] == "model_not_found"
    assert errors["bad-temp"]["status_code"] == 400 and errors["bad-temp"]["body"]["error"]["param"] == "temperature"
    assert errors["stream"]["status_code"] == 400 and errors["stream"]["body"]["error"]["param"] == "stream"


def test_a_bad_input_file_is_refused_line_by_line(shared):
    client = client_for(shared)
    good = chat_line("a", "hi")
    raw = b"\n".join(
        [
            json.dumps(good).encode(),
            b"{not json",
            json.dumps(good).encode(),  # the same custom_id again
            json.dumps({**good, "custom_id": "b", "url": "/v1/embeddings"}).encode(),
            json.dumps({**good, "custom_id": "c", "method": "GET"}).encode(),
            json.dumps({"custom_id": "d", "method": "POST", "url": "/v1/chat/completions"}).encode(),
        ]
    )
    batch = client.batches.create(input_file_id=upload(client, raw).id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait(client, batch.id)
    assert done.status == "failed" and done.failed_at is not None
    got = [(e.code, e.line) for e in done.errors.data]
    assert got == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("mismatched_url", 4),
        ("invalid_method", 5),
        ("missing_required_parameter", 6),
    ], done.errors
    assert done.output_file_id is None and done.request_counts.total == 0
    empty = client.batches.create(
        input_file_id=upload(client, b"\n").id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert [e.code for e in wait(client, empty.id).errors.data] == ["empty_file"]


def test_create_refuses_what_cannot_run(shared):
    client = client_for(shared)
    good = upload(client, [chat_line("a", "hi")]).id
    wrong_purpose = client.files.create(file=("x.jsonl", io.BytesIO(jsonl([chat_line("a", "hi")]))), purpose="assistants").id
    for kwargs, status, param in [
        ({"input_file_id": good, "endpoint": "/v1/images", "completion_window": "24h"}, 400, "endpoint"),
        ({"input_file_id": good, "endpoint": "/v1/chat/completions", "completion_window": "1h"}, 400, "completion_window"),
        ({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"}, 404, "input_file_id"),
        ({"input_file_id": wrong_purpose, "endpoint": "/v1/chat/completions", "completion_window": "24h"}, 400, "input_file_id"),
    ]:
        with pytest.raises(openai.APIStatusError) as e:
            client.batches.create(**kwargs)
        assert e.value.status_code == status and e.value.body["param"] == param, e.value.body
    r = api(shared, "POST", "/batches", json={"input_file_id": good, "endpoint": "/v1/chat/completions",
                                              "completion_window": "24h", "metadata": {"k": 1}})
    assert_openai_error(r, 400)
    assert_openai_error(api(shared, "GET", "/batches/batch_nope"), 404, "batch_not_found")
    assert_openai_error(api(shared, "GET", "/batches", params={"limit": "0"}), 400)


def test_cancel_part_way_keeps_what_ran(tmp_path):
    # One line at a time, 120 lines: the batch is far from done when its first result shows.
    server = Server(tmp_path / "data", new_key(), "--batch-concurrency", "1").start()
    try:
        client = client_for(server)
        lines = [chat_line(f"c-{i}", PROMPTS[i % len(PROMPTS)], max_tokens=16) for i in range(120)]
        batch = client.batches.create(input_file_id=upload(client, lines).id, endpoint="/v1/chat/completions", completion_window="24h")
        wait(client, batch.id, until=lambda b: b.request_counts.completed >= 1)
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at is not None
        done = wait(client, batch.id)
        assert done.status == "cancelled" and done.cancelled_at is not None
        out = read_lines(client, done.output_file_id)
        assert 1 <= len(out) == done.request_counts.completed < len(lines)
        # The lines that ran are the first ones, in order.
        assert [o["custom_id"] for o in out] == [f"c-{i}" for i in range(len(out))]
        # Cancelling again answers the batch as it is; an ended batch is not cancellable.
        assert client.batches.cancel(batch.id).status == "cancelled"
        quick = client.batches.create(
            input_file_id=upload(client, [chat_line("q", "hi", max_tokens=2)]).id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        assert wait(client, quick.id).status == "completed"
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(quick.id)
    finally:
        server.kill()


def test_kill_9_mid_batch_then_restart_runs_every_line_once(tmp_path):
    server = Server(tmp_path / "data", new_key(), "--batch-concurrency", "2").start()
    try:
        client = client_for(server)
        lines = [chat_line(f"k-{i}", PROMPTS[i % len(PROMPTS)], max_tokens=8) for i in range(60)]
        batch = client.batches.create(input_file_id=upload(client, lines).id, endpoint="/v1/chat/completions", completion_window="24h")
        seen = wait(client, batch.id, until=lambda b: b.request_counts.completed >= 3)
        assert seen.status == "in_progress", seen
        server.kill()
        server.start()
        client = client_for(server)
        done = wait(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == len(lines)
        out = read_lines(client, done.output_file_id)
        assert [o["custom_id"] for o in out] == [line["custom_id"] for line in lines]
        assert all(o["response"]["status_code"] == 200 for o in out)
        # One output file was made: none is left from before the kill.
        files = client.files.list(purpose="batch_output").data
        assert [f.id for f in files] == [done.output_file_id]
    finally:
        server.kill()


def test_batches_are_their_tenants_own(shared):
    client = client_for(shared)
    batch = client.batches.create(
        input_file_id=upload(client, [chat_line("t", "hi", max_tokens=2)]).id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = wait(client, batch.id)
    other_key = api(shared, "POST", "/keys", json={"name": "other", "tenant": "other-team", "role": "admin"}).json()["key"]
    other = client_for(shared, other_key)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(done.output_file_id)
    assert batch.id not in [b.id for b in other.batches.list().data]
    # Nor may its files feed another tenant's batch.
    with pytest.raises(openai.NotFoundError):
        other.batches.create(input_file_id=batch.input_file_id, endpoint="/v1/chat/completions", completion_window="24h")
    r = requests.get(shared.url + "/v1/batches", timeout=10)
    assert_openai_error(r, 401)
