"""Fault injection (issue #17), the faults test_durability.py does not cover:

- a full disk under the data directory (a small tmpfs mounted there in a user and mount
  namespace): every write refused is a 507 `insufficient_storage` in OpenAI's error shape,
  nothing is half stored, and once files are deleted through the API everything works
  again and every acknowledged file still downloads whole (docs/design/007-durability.md);
- a guest trap and an ONNX Runtime error in the middle of a stream: the stream ends at once
  with an SSE error event `{"error": {...}}` and the connection closes; the server stays
  healthy, frees the request's slot and serves the next request.

Nothing here waits on a timer: a generation that cannot end on its own (stop tokens banned,
far from max_tokens) meets a CPU budget (deterministic: fuel counts instructions) or a
position the model's graph does not have."""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import openai
import pytest
import requests

from conftest import CACHE, FUNCTIONS, REPO, Server, new_key

CHAT = "smollm2-135m-instruct"
ENDLESS = {"0": -100, "2": -100}  # SmolLM2's stop tokens banned
CALC = (FUNCTIONS / "calc.wasm").read_bytes()
DISK_MB = 40


def assert_full(r):
    """A refusal for lack of space: 507, OpenAI's error shape, a message saying so."""
    assert r.status_code == 507, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["code"] == "insufficient_storage" and err["type"] == "server_error", err
    assert "storage is full" in err["message"], err
    return err


def api(server, method, path, **kw):
    return requests.request(method, server.url + "/v1" + path, headers=server.headers(), timeout=120, **kw)


def wait_for(cond, what, timeout=120):
    deadline = time.time() + timeout
    while not (found := cond()):
        assert time.time() < deadline, what
        time.sleep(0.05)
    return found


# --- a full disk ---------------------------------------------------------------------------


def unshare_refusal(tmp_path) -> str | None:
    """Why a tmpfs cannot be mounted in a user namespace here, or None."""
    probe = tmp_path / "probe"
    probe.mkdir()
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0"', str(probe)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "no unshare(1) on this machine"
    return None if r.returncode == 0 else f"unprivileged user+mount namespaces refused: {r.stderr.strip()}"


@pytest.fixture
def small_disk_server(tmp_path):
    """A server whose whole data directory (database, objects and their staging files,
    vectors, components, compile cache) is a DISK_MB tmpfs; the models stay outside."""
    if why := unshare_refusal(tmp_path):
        pytest.skip(why)
    s = Server(tmp_path / "data", new_key())
    s.data_dir.mkdir()
    s.wrap = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
              f'mount -t tmpfs -o size={DISK_MB}m tmpfs "$0" && exec "$@"', str(s.data_dir)]
    s.start()
    yield s
    s.kill()


def inside(server, *parts) -> Path:
    """A path of the server's data directory as its mount namespace sees it."""
    return Path(f"/proc/{server.proc.pid}/root") / str(server.data_dir).lstrip("/") / Path(*parts)


def free_bytes(server) -> int:
    st = os.statvfs(inside(server))
    return st.f_bavail * st.f_frsize


def content(name: str, size: int) -> bytes:
    block = hashlib.sha256(name.encode()).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


def upload(server, name, data, purpose="assistants"):
    return api(server, "POST", "/files", files={"file": (name, data)}, data={"purpose": purpose})


def deploy(server, name):
    return api(server, "POST", "/functions", files={"file": ("calc.wasm", CALC)},
               data={"manifest": json.dumps({"name": name, "kind": "tool"})})


def ingest(server, kb_id, file_id):
    """Adds a file to a knowledge base and waits for the source to finish: its record."""
    r = api(server, "POST", f"/knowledge-bases/{kb_id}/data-sources", json={"file_id": file_id})
    if r.status_code != 202:
        return r
    source = r.json()["data"][0]["id"] if "data" in r.json() else r.json()["id"]

    def settled():
        s = api(server, "GET", f"/knowledge-bases/{kb_id}/data-sources/{source}").json()
        return s if s["status"] in ("completed", "failed") else None

    return wait_for(settled, "the data source to settle")


def doc(i: int) -> bytes:
    return "".join(f"Crate {i}-{j} holds {j * 13 % 997} bolts in bay {j % 31}.\n" for j in range(300)).encode()


def test_a_full_disk_is_a_clear_error_and_recovers_when_space_returns(small_disk_server):
    s = small_disk_server
    acked = {}  # file id -> (name, bytes)
    kb = api(s, "POST", "/knowledge-bases", json={"name": "bays"}).json()
    for i in range(2):
        r = upload(s, f"doc{i}.txt", doc(i), "knowledge_base")
        assert r.status_code == 200, r.text
        acked[r.json()["id"]] = (f"doc{i}.txt", doc(i))
    docs = list(acked)
    first = ingest(s, kb["id"], docs[0])
    assert first["status"] == "completed", first
    assert deploy(s, "calc").status_code == 201

    # Fill the disk: large uploads, then smaller and smaller ones, until even the smallest
    # is refused. Every refusal is the same clear 507.
    refused = 0
    for size in (4 << 20, 256 << 10, 16 << 10, 1):
        while True:
            name = f"fill-{len(acked)}-{size}.bin"
            r = upload(s, name, content(name, size))
            if r.status_code != 200:
                assert_full(r)
                refused += 1
                break
            acked[r.json()["id"]] = (name, content(name, size))
    assert refused == 4
    assert free_bytes(s) < 64 << 10, free_bytes(s)

    # Everything that needs space is refused the same way, and nothing is half there.
    assert_full(deploy(s, "calc2"))
    second = ingest(s, kb["id"], docs[1])
    if isinstance(second, requests.Response):
        assert_full(second)  # the data source's record itself found no room
    else:
        assert second["status"] == "failed" and "storage is full" in second["error"], second
    print("ingestion on the full disk:", second if isinstance(second, dict) else second.json())
    assert requests.get(s.url + "/health", timeout=60).status_code == 200
    listed = {f["id"]: f for f in api(s, "GET", "/files").json()["data"]}
    assert set(listed) == set(acked), "a refused upload left a record, or an acknowledged one is gone"
    assert {f["name"] for f in api(s, "GET", "/functions").json()["data"]} == {"calc"}
    leftovers = [p.name for p in inside(s, "objects").rglob("*") if "#" in p.name]
    leftovers += [p.name for p in inside(s, "functions").rglob("*.tmp")]
    assert leftovers == [], leftovers

    # Free space through the API: the deletes themselves must get through a full disk.
    big = [i for i, (n, _) in acked.items() if n.endswith(f"-{4 << 20}.bin")]
    assert len(big) >= 4, "the disk filled before the large uploads did"
    for file_id in big:
        r = api(s, "DELETE", f"/files/{file_id}")
        assert r.status_code == 200, r.text
        del acked[file_id]
    assert free_bytes(s) > 8 << 20

    # Uploads, deploys and ingestion work again.
    r = upload(s, "after.bin", content("after.bin", 1 << 20))
    assert r.status_code == 200, r.text
    acked[r.json()["id"]] = ("after.bin", content("after.bin", 1 << 20))
    r = deploy(s, "calc2")
    assert r.status_code == 201, r.text
    r = api(s, "POST", "/functions/calc2/call", json={"expression": "6*7"})
    assert r.status_code == 200 and "42" in json.dumps(r.json()["output"]), r.text
    if not isinstance(second, requests.Response):  # the failed source goes, as a user would do
        assert api(s, "DELETE", f"/knowledge-bases/{kb['id']}/data-sources/{second['id']}").status_code == 200
    again = ingest(s, kb["id"], docs[1])
    assert not isinstance(again, requests.Response), again.text
    assert again["status"] == "completed", again
    hits = api(s, "POST", f"/knowledge-bases/{kb['id']}/retrieve",
               json={"query": "crate 1-7 bolts", "search_type": "keyword", "top_k": 3}).json()["data"]
    assert hits, "the re-ingested source is not searchable"

    # Every acknowledged file is listed and downloads whole; the database is sound.
    listed = {f["id"]: f for f in api(s, "GET", "/files").json()["data"]}
    assert set(listed) == set(acked)
    for file_id, (name, data) in acked.items():
        body = api(s, "GET", f"/files/{file_id}/content").content
        assert body == data, f"{name}: {len(body)} bytes back of {len(data)}"
    copy = s.data_dir.parent / "db-copy"  # nothing writes now: a copy of the database and its WAL
    copy.mkdir()
    for name in ("tensoras.db", "tensoras.db-wal"):
        shutil.copy(inside(s, name), copy / name)
    db = sqlite3.connect(copy / "tensoras.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    assert "panicked" not in s.log()


# --- errors in the middle of a stream --------------------------------------------------------


def stream_request(model, **extra):
    return {"model": model, "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": 2000, "temperature": 0, "stream": True, **extra}


def assert_stream_ends_with_error(server, body, kind, code):
    """Raw SSE: content chunks, then one `data: {"error": {...}}` event, then the server
    closes the connection (no [DONE], nothing after)."""
    r = requests.post(server.url + "/v1/chat/completions", headers=server.headers(), json=body,
                      stream=True, timeout=120)
    assert r.status_code == 200, r.text
    events = [line[len(b"data: "):] for line in r.iter_lines() if line.startswith(b"data: ")]
    r.close()  # iter_lines ended: the server closed the stream
    *chunks, last = events
    assert len(chunks) >= 5, "the error came before the stream was under way"
    assert all(json.loads(c)["object"] == "chat.completion.chunk" for c in chunks)
    assert any(json.loads(c)["choices"] and json.loads(c)["choices"][0]["delta"].get("content") for c in chunks)
    err = json.loads(last)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"], err
    assert (err["type"], err["code"]) == (kind, code), err
    return err


def assert_sdk_raises_mid_stream(server, body):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=120)
    params = {k: v for k, v in body.items() if k not in ("stream", "logit_bias")}
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in client.chat.completions.create(stream=True, logit_bias=body.get("logit_bias"), **params):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert got, "no content before the error"
    return e.value


def assert_healthy_and_idle(server, model, **extra):
    wait_for(lambda: requests.get(server.url + "/health", timeout=60).json()["instances"]["busy"] == 0,
             "a slot stayed busy after the failed stream")
    r = requests.post(server.url + "/v1/chat/completions", headers=server.headers(), timeout=120,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0, **extra})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "length"


def test_a_guest_trap_mid_stream_ends_it_with_an_error_event(tmp_path):
    """The chat handler runs out of its CPU budget (wasmtime fuel: a trap) about a hundred
    tokens into a generation that cannot end on its own."""
    s = Server(tmp_path / "data", new_key(), "--handler-fuel", "60000000").start()
    try:
        err = assert_stream_ends_with_error(s, stream_request(CHAT, logit_bias=ENDLESS), "timeout_error", "function_cpu_limit")
        # Worded for the request: the client deployed no function.
        assert "request exceeded its CPU budget" in err["message"] and "function" not in err["message"], err
        assert_healthy_and_idle(s, CHAT)
        e = assert_sdk_raises_mid_stream(s, stream_request(CHAT, logit_bias=ENDLESS))
        assert "CPU budget" in str(e), e
        assert_healthy_and_idle(s, CHAT)
    finally:
        s.kill()


POSITIONS = 96  # rows of the tiny model's position table


@pytest.fixture
def positions_model(tmp_path):
    """A models folder with one chat model whose graph has POSITIONS positions while its
    config claims 4096: a run past them fails inside ONNX Runtime. Its tokenizer and chat
    template are SmolLM2's."""
    models_dir = Path(os.environ.get("TENSORAS_MODELS_DIR") or CACHE / "models")
    smol = models_dir / CHAT
    python = os.environ.get("TENSORAS_IMPORTER_PYTHON") or str(CACHE / "importer-venv/bin/python")
    vocab = json.loads((smol / "tokenizer.json").read_text())["model"]["vocab"]
    out = tmp_path / "models" / "positions"
    subprocess.run([python, str(Path(__file__).with_name("positions_decoder.py")), "--out", str(out),
                    "--positions", str(POSITIONS), "--vocab", "49152", "--token", str(vocab["Ġtick"]), "--eos", "2"],
                   check=True, timeout=120)
    for name in ("tokenizer.json", "chat_template.jinja"):
        shutil.copy(smol / name, out / name)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "positions.toml").write_text('id = "positions"\nkind = "chat"\ndir = "positions"\n')
    return manifests, tmp_path / "models"


def test_an_onnx_runtime_error_mid_stream_ends_it_with_an_error_event(tmp_path, positions_model):
    manifests, models = positions_model
    s = Server(tmp_path / "data", new_key(), "--manifests", str(manifests), "--models-dir", str(models)).start()
    try:
        # The handler reports the backend's failure (wasi-nn's runtime-error) as a server
        # error; ORT's own words name the position the graph does not have.
        err = assert_stream_ends_with_error(s, stream_request("positions"), "server_error", None)
        assert "compute failed" in err["message"] and "out of data bounds" in err["message"], err
        assert_healthy_and_idle(s, "positions")
        e = assert_sdk_raises_mid_stream(s, stream_request("positions"))
        assert "compute failed" in str(e), e
        assert_healthy_and_idle(s, "positions")
        assert "panicked" not in s.log()
    finally:
        s.kill()
