"""Fault injection (issue #17): the server is killed with SIGKILL over and over while a
large upload streams, small uploads, deletes and key creations run back to back, a
function is being deployed and a knowledge base ingests; after every restart on the same data
directory nothing is half there (docs/design/007-durability.md):

- no staging or temporary file is left, and no object or component file without a record;
- every listed file downloads whole, every acknowledged upload, key and deploy is there,
  and no acknowledged delete is undone;
- every listed function can be called, and a name whose deploy was cut off can be deployed;
- the ingestion finishes with every chunk exactly once.

Where a kill lands is varied with a seeded random delay only where the assertions hold
wherever it lands; the large upload is killed deterministically mid-stream (its staging
file on disk) in every other cycle."""

import hashlib
import json
import math
import random
import threading
import time

import requests

from conftest import FUNCTIONS, Server, new_key

CYCLES = 6
SEED = 17
BIG = 12 << 20  # past object_store's 10 MiB buffer: streamed into a staging file on disk
HOLD_AT = 11 << 20  # the large upload stops sending here until released
PIECE = 256 << 10
TENANT = "default"  # the bootstrap key's
CALC = (FUNCTIONS / "calc.wasm").read_bytes()
CALC_SHA = hashlib.sha256(CALC).hexdigest()
DOC = "".join(f"Crate {i} holds {i * 13 % 997} bolts and stands in bay {i % 31}.\n" for i in range(900))
CHUNK = 100


def content(name: str, size: int) -> bytes:
    """The bytes of an upload, derived from its name so that a download can be checked."""
    block = hashlib.sha256(name.encode()).digest() * 1024
    return (block * (size // len(block) + 1))[:size]


def expected_content(name: str) -> bytes:
    if name == "doc.txt":
        return DOC.encode()
    size = int(name.rsplit("-", 1)[1].removesuffix(".bin"))
    return content(name, size)


def api(server, method, path, key=None, **kw):
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return requests.request(method, server.url + "/v1" + path, headers=headers, timeout=60, **kw)


class Acked:
    """What the server answered before it was killed, collected by the load threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.files = {}  # id -> filename
        self.keys = {}  # id -> secret
        self.functions = set()
        self.attempted = set()
        self.checked = set()  # files and keys already downloaded / tried after a restart
        self.deleting = set()  # files a delete was sent for
        self.deleted = set()  # ... and answered
        self.errors = []  # answers other than success, from any load thread

    def add(self, kind, k, v=None):
        with self.lock:
            getattr(self, kind)[k] = v

    def answered(self, r, ok):
        """Whether `r` succeeded with status `ok`; any other answer is an error."""
        if r.status_code != ok:
            self.errors.append((r.request.method, r.request.url, r.status_code, r.text[:300]))
        return r.status_code == ok


def big_upload(server, name, streaming, release, acked):
    data = content(name, BIG)
    boundary = "durability-boundary"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body():
        yield head
        for at in range(0, len(data), PIECE):
            if at == HOLD_AT:
                streaming.set()
                release.wait(30)
            yield data[at:at + PIECE]
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        r = requests.post(server.url + "/v1/files", data=body(), timeout=60,
                          headers={**server.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"})
        if acked.answered(r, 200):
            acked.add("files", r.json()["id"], name)
    except requests.RequestException:
        pass


def small_uploads(server, cycle, rng, stop, acked):
    i = 0
    while not stop.is_set():
        name = f"small-{cycle}-{i}-{rng.randrange(1, 200_000)}.bin"
        i += 1
        try:
            r = api(server, "POST", "/files", files={"file": (name, expected_content(name))}, data={"purpose": "user_data"})
        except requests.RequestException:
            return
        if acked.answered(r, 200):
            acked.add("files", r.json()["id"], name)


def delete_files(server, ids, stop, acked):
    for file_id in ids:
        if stop.is_set():
            return
        acked.deleting.add(file_id)
        try:
            r = api(server, "DELETE", f"/files/{file_id}")
        except requests.RequestException:
            return
        if acked.answered(r, 200):
            acked.deleted.add(file_id)
        time.sleep(0.05)


def create_keys(server, cycle, stop, acked):
    i = 0
    while not stop.is_set():
        try:
            r = api(server, "POST", "/keys", json={"name": f"k-{cycle}-{i}", "tenant": "keys"})
        except requests.RequestException:
            return
        i += 1
        if acked.answered(r, 200):
            acked.add("keys", r.json()["id"], r.json()["key"])


def deploy(server, name, acked):
    try:
        r = api(server, "POST", "/functions", files={"file": ("calc.wasm", CALC)},
                data={"manifest": json.dumps({"name": name, "kind": "tool"})})
    except requests.RequestException:
        return
    if acked.answered(r, 201):
        acked.functions.add(name)


def staging_files(data_dir):
    return [p for p in (data_dir / "objects").rglob("*") if "#" in p.name]


def wait_for(cond, what, timeout=60):
    deadline = time.time() + timeout
    while not (found := cond()):
        assert time.time() < deadline, what
        time.sleep(0.01)
    return found


def call_calc(server, name):
    r = api(server, "POST", f"/functions/{name}/call", json={"expression": "6*7"})
    assert r.status_code == 200, (name, r.text)
    assert "42" in json.dumps(r.json()["output"]), r.json()


def check(server, acked):
    """Everything that must hold after a kill -9 and a restart, wherever the kill landed."""
    data = server.data_dir
    assert acked.errors == []
    assert staging_files(data) == []
    assert [p for p in (data / "functions").rglob("*.tmp")] == []

    files = api(server, "GET", "/files").json()["data"]
    listed = {f["id"]: f for f in files}
    for file_id, name in acked.files.items():
        if file_id in acked.deleted:
            assert file_id not in listed, f"acknowledged delete of {name} undone"
        elif file_id not in acked.deleting:
            assert file_id in listed, f"acknowledged upload {name} lost"
    for f in files:
        if f["id"] not in acked.checked:  # the object check below covers the others
            body = api(server, "GET", f"/files/{f['id']}/content").content
            assert len(body) == f["bytes"] and body == expected_content(f["filename"]), f
            acked.checked.add(f["id"])
    on_disk = {p.name for p in (data / "objects" / "files" / TENANT).iterdir()}
    assert on_disk == set(listed), "objects without a record, or records without an object"

    functions = {f["name"]: f for f in api(server, "GET", "/functions").json()["data"]}
    assert acked.functions <= set(functions), "an acknowledged deploy was lost"
    for name in functions:
        call_calc(server, name)
    for name in acked.attempted - set(functions):
        r = api(server, "POST", "/functions", files={"file": ("calc.wasm", CALC)},
                data={"manifest": json.dumps({"name": name, "kind": "tool"})})
        assert r.status_code == 201, f"the name of a cut-off deploy is stuck: {r.text}"
        call_calc(server, name)
        acked.functions.add(name)
        functions[name] = r.json()
    component_files = {p.name for p in (data / "functions" / TENANT).iterdir()}
    assert component_files == {f"{n}.{CALC_SHA}.wasm" for n in functions}

    keys = {k["id"] for k in api(server, "GET", "/keys").json()["data"]}
    for key_id, secret in acked.keys.items():
        assert key_id in keys, "an acknowledged key was lost"
        if key_id not in acked.checked:
            assert api(server, "GET", "/functions", key=secret).status_code == 200
            acked.checked.add(key_id)


def test_kill_9_anywhere_leaves_nothing_half_done(tmp_path):
    rng = random.Random(SEED)
    data_dir, key = tmp_path / "data", new_key()
    acked = Acked()
    server = Server(data_dir, key).start()
    try:
        kb = api(server, "POST", "/knowledge-bases", json={
            "name": "bays", "chunking_strategy": {"type": "fixed_size", "chunk_size": CHUNK, "chunk_overlap": 0}}).json()
        doc = api(server, "POST", "/files", files={"file": ("doc.txt", DOC.encode())}, data={"purpose": "knowledge_base"})
        acked.files[doc.json()["id"]] = "doc.txt"
        r = api(server, "POST", f"/knowledge-bases/{kb['id']}/data-sources", json={"file_id": doc.json()["id"]})
        assert r.status_code == 202, r.text

        for cycle in range(CYCLES):
            stop, streaming, release = threading.Event(), threading.Event(), threading.Event()
            earlier = sorted(i for i, n in acked.files.items() if n.startswith("small-") and i not in acked.deleting)
            threads = [
                threading.Thread(target=small_uploads, args=(server, cycle, random.Random(rng.random()), stop, acked)),
                threading.Thread(target=delete_files, args=(server, rng.sample(earlier, min(len(earlier), 40)), stop, acked)),
                threading.Thread(target=create_keys, args=(server, cycle, stop, acked)),
                threading.Thread(target=big_upload, args=(server, f"big-{cycle}-{BIG}.bin", streaming, release, acked)),
            ]
            for t in threads:
                t.start()
            assert streaming.wait(60)
            wait_for(lambda: staging_files(data_dir), "the large upload's staging file")
            acked.attempted.add(f"calc{cycle}")
            threads.append(threading.Thread(target=deploy, args=(server, f"calc{cycle}", acked)))
            threads[-1].start()
            time.sleep(rng.uniform(0, 1.2))  # somewhere in the deploy (receiving, compiling, storing) or after it
            if cycle % 2:
                release.set()  # and somewhere in the rest of the large upload, or after it
                time.sleep(rng.uniform(0, 0.3))
            server.kill()
            stop.set()
            release.set()
            for t in threads:
                t.join(60)
                assert not t.is_alive()

            server = Server(data_dir, key).start()
            check(server, acked)

        deadline = time.time() + 300
        while (s := api(server, "GET", f"/knowledge-bases/{kb['id']}/data-sources").json()["data"][0])["status"] != "completed":
            assert s["status"] in ("pending", "processing") and time.time() < deadline, s
            time.sleep(0.2)
        total = math.ceil(len(DOC) / CHUNK)  # what a run without kills stores
        assert s["chunks_total"] == total and s["chunks_done"] == total, s
        assert api(server, "GET", f"/knowledge-bases/{kb['id']}").json()["chunk_count"] == total
        hits = api(server, "POST", f"/knowledge-bases/{kb['id']}/retrieve",
                   json={"query": "bolts bay", "search_type": "keyword", "top_k": 100}).json()["data"]
        indexes = [h["chunk_index"] for h in hits]
        assert len(indexes) == 100 and len(set(indexes)) == 100
    finally:
        server.kill()
