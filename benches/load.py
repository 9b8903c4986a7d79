#!/usr/bin/env python3
"""Load and overload client for benches/load.sh (stdlib only: asyncio and a small HTTP/1.1
client, so that every byte of a stream is seen and checked).

Subcommands (each writes its result as JSON; `report` decides pass or fail):

  setup URL STATE.json --key KEY
      Deploys build/functions/calc.wasm as the server-side tool `calc`, creates a knowledge
      base from two small uploaded files, waits until they are ingested, and sends one
      request of each kind (chat, RAG, tool, embeddings) so that models are loaded before
      anything is timed.
  run URL STATE.json OUT.json --key KEY --pid PID [--duration S] [--clients N]
      [--rag-clients N] [--tool-clients N] [--embed-clients N] [--timeout S] [--warmup S]
      Closed-loop clients for DURATION seconds: CLIENTS streaming chat clients (short
      prompts, max_tokens 32, temperature 0.7, a seed per request), and a few RAG
      (`knowledge_bases`, streamed), server-side tool (`tensoras_function` calc, streamed)
      and embeddings clients. Every stream must end with `data: [DONE]` and a complete
      chunked body, every chunk must parse as JSON with the chunk shape (one id and model
      per stream, choices with index/delta, one finish_reason, final usage); every request
      must end within its timeout (one that does not is a hang: the deadlock check). The
      server's VmRSS (/proc/PID/status) is sampled every --rss-every seconds and /health
      every second. After the clients stop, /health must come back to no busy slot and no
      waiter (a leaked slot would be a deadlock later).
  overload URL OUT.json --key KEY --pid PID --slots N --max-queue N --queue-timeout S
      [--clients N] [--duration S] [--timeout S]
      Against a server started with --max-instances N --max-queue N --queue-timeout-secs S:
      more streaming chat clients than slots + queue, each retrying 0.1 s after a refusal.
      Every answer must be either a valid stream or a refusal (503 `server_overloaded` or
      429) with Retry-After; refusals of a full queue must be fast (p99 <= --fast-s), every
      refusal must come within the queue timeout (+ slack); /health must never show more
      waiters than --max-queue or more busy slots than --slots; afterwards the server must
      drain to idle and serve a request again.
  report RUN.json [OVERLOAD.json] [--machine TEXT] [--command TEXT]
      Prints the summary block (Markdown, for BENCHMARKS.md) and the checks; exits 1 if a
      check failed.

Only http://127.0.0.1 URLs are accepted. Every request has a timeout, and every
subcommand a hard deadline (SIGALRM) after which the process ends by itself.
"""

import argparse
import asyncio
import json
import math
import os
import random
import signal
import statistics
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
CHUNK_OBJECT = "chat.completion.chunk"
FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter"}
# With server-side tools every generation round has its own max_tokens budget, and usage
# counts all rounds: at most 1 + MAX_SERVER_ROUNDS (functions/handlers/chat-core/src/turns.rs).
TOOL_ROUNDS = 5
STREAMED = [0]  # content chunks received so far, all streams (~ tokens), for the progress lines

PROMPTS = [
    "Say hello in one sentence.",
    "Name three colours.",
    "What is a river?",
    "Give me a short tip for sleeping well.",
    "Write one line about the sea.",
    "What do bees make?",
    "Name a fruit that is red.",
    "Describe a cat in five words.",
    "What is two plus two?",
    "Tell me something about the moon.",
    "Suggest a name for a small dog.",
    "Why is the sky blue? Be brief.",
    "Write a haiku about rain.",
    "What is bread made of?",
    "Name a city in France.",
    "Say something kind.",
]

# The knowledge base: two small files with facts no model knows; the RAG questions ask them.
KB_DOCS = {
    "lighthouse.md": (
        "# The Varrow lighthouse\n\nThe Varrow lighthouse stands on Tern Rock. Its keeper, Ilse Marrow, "
        "lights the lamp at dusk. The lamp has a green glass lens and can be seen 19 miles away.\n\n"
        "## Visits\n\nVisitors may climb the 212 steps on Saturdays between 10:00 and 14:00.\n"
    ),
    "bakery.txt": (
        "Quillon Bakery opened in 1931 on Copper Lane. Its best-known loaf is the Amber Rye, baked "
        "with caraway and honey. The bakery closes on Wednesdays. The head baker is Odo Penrith, who "
        "starts the ovens at 4 in the morning.\n"
    ),
}
RAG_QUESTIONS = [
    "Who is the keeper of the Varrow lighthouse?",
    "How many steps does the Varrow lighthouse have?",
    "What colour is the lens of the Varrow lighthouse?",
    "When did Quillon Bakery open?",
    "What is the best-known loaf of Quillon Bakery?",
    "On which day is Quillon Bakery closed?",
]
TOOL_PROMPTS = [
    "Use the calculator: what is {a} * {b}?",
    "Use the calculator: what is {a} + {b}?",
    "Use the calculator: what is {a} - {b}?",
]
EMBED_WORDS = (
    "river stone bridge market harvest lantern village mountain forest winter summer baker "
    "engine signal harbor tower garden letter archive council festival journey storm valley"
).split()


def die(msg):
    print(f"load.py: {msg}", file=sys.stderr)
    sys.exit(2)


def hard_deadline(seconds):
    """The process ends by itself after `seconds`, whatever it is doing (SIGALRM's default)."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(math.ceil(seconds))))


def loopback(url):
    u = urllib.parse.urlparse(url)
    if u.scheme != "http" or u.hostname != "127.0.0.1" or not u.port:
        die(f"refusing {url}: only http://127.0.0.1:PORT is loaded")
    return u.hostname, u.port


def pct(values, p):
    """The p-th percentile (nearest rank) of values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def rss_by_mapping(pid):
    """Resident KiB by kind of mapping, from /proc/PID/smaps: where memory sits, so that RSS
    left after the load can be pinned on the C heap, wasmtime's pool or the model files.
    glibc's arenas are anonymous mappings of at most 64 MiB (its HEAP_MAX); wasmtime's pool
    reserves one anonymous mapping of many GiB; blocks past the mmap threshold are anonymous
    mappings of their own size in between."""
    kinds = {"heap": 0, "anon <= 64 MiB": 0, "anon 64 MiB - 1 GiB": 0, "anon > 1 GiB": 0, "files": 0, "other": 0}
    try:
        with open(f"/proc/{pid}/smaps") as f:
            size, name = 0, ""
            for line in f:
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):
                    lo, hi = (int(x, 16) for x in head.split("-"))
                    size = hi - lo
                    parts = line.split(None, 5)
                    name = parts[5].strip() if len(parts) > 5 else ""
                elif head == "Rss:":
                    kib = int(line.split()[1])
                    if name == "[heap]":
                        kind = "heap"
                    elif name.startswith("/"):
                        kind = "files"
                    elif name:
                        kind = "other"
                    elif size <= 64 << 20:
                        kind = "anon <= 64 MiB"
                    elif size <= 1 << 30:
                        kind = "anon 64 MiB - 1 GiB"
                    else:
                        kind = "anon > 1 GiB"
                    kinds[kind] += kib
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return kinds


# ---- a small HTTP/1.1 client -------------------------------------------------------------


class HttpError(Exception):
    """The exchange failed below HTTP: connection refused or reset, a malformed response."""


class Response:
    def __init__(self, status, headers, reader, writer):
        self.status = status
        self.headers = headers
        self._reader = reader
        self._writer = writer
        self.complete = False  # the body ended as its framing says (not cut off)

    async def chunks(self):
        """The body as it arrives; sets `complete` when its framing says it ended."""
        r = self._reader
        try:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while True:
                    line = await r.readline()
                    if not line.endswith(b"\n"):
                        return
                    size = int(line.split(b";")[0].strip() or b"x", 16)
                    if size == 0:
                        while (await r.readline()) not in (b"\r\n", b"\n", b""):
                            pass
                        self.complete = True
                        return
                    data = await r.readexactly(size)
                    if await r.readexactly(2) != b"\r\n":
                        raise HttpError("chunk not followed by CRLF")
                    yield data
            elif "content-length" in self.headers:
                n = int(self.headers["content-length"])
                if n:
                    yield await r.readexactly(n)
                self.complete = True
            else:
                while data := await r.read(65536):
                    yield data
                self.complete = True
        except asyncio.IncompleteReadError as e:
            if e.partial:
                yield e.partial
        except ValueError as e:
            raise HttpError(f"bad chunk framing: {e}") from e

    async def body(self):
        return b"".join([c async for c in self.chunks()])

    def close(self):
        self._writer.close()


async def http_request(host, port, method, path, key=None, body=None, content_type="application/json"):
    """Sends one request on a new connection (Connection: close) and reads the head."""
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    except OSError as e:
        raise HttpError(f"connect: {e}") from e
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", "Accept: */*"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    if body is not None:
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line {status_line[:80]!r}")
        status = int(parts[1])
        headers = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise HttpError("connection closed in the response head")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except (OSError, ValueError) as e:
        writer.close()
        raise HttpError(f"{type(e).__name__}: {e}") from e
    except BaseException:
        writer.close()
        raise
    return Response(status, headers, reader, writer)


async def http_json(host, port, method, path, key=None, body=None, timeout=60, content_type="application/json"):
    async with asyncio.timeout(timeout):
        resp = await http_request(host, port, method, path, key, body, content_type)
        try:
            data = await resp.body()
        finally:
            resp.close()
    try:
        return resp.status, json.loads(data) if data else None, resp.headers
    except ValueError:
        return resp.status, data.decode(errors="replace"), resp.headers


def multipart(fields):
    """fields: [(name, filename or None, bytes)] -> (body, content type)."""
    boundary = "load" + uuid.uuid4().hex
    out = []
    for name, filename, data in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


# ---- one request, checked -----------------------------------------------------------------


class Outcome:
    """What one request came to. `error` is None for a good answer; otherwise a short class:
    refused (503/429 with Retry-After: allowed), timeout (a hang), truncated, corrupt,
    stream_error (an error event in a stream), bad_refusal, http_NNN, connect, bad_response."""

    __slots__ = ("kind", "start", "status", "code", "error", "detail", "ttft", "total", "tokens", "retry_after", "message", "text", "called", "progress")

    def __init__(self, kind, start):
        self.kind, self.start = kind, start
        self.status = self.code = self.error = self.detail = self.ttft = self.total = None
        self.tokens = 0
        self.retry_after = self.message = self.text = self.called = self.progress = None

    def row(self):
        return {k: getattr(self, k) for k in self.__slots__ if k not in ("text", "progress")}


def read_error(o, status, headers, payload):
    """A non-200 answer: a refusal if it says so properly, an error otherwise."""
    o.status = status
    err = payload.get("error") if isinstance(payload, dict) else None
    o.code = (err or {}).get("code") if isinstance(err, dict) else None
    o.message = (err or {}).get("message") if isinstance(err, dict) else str(payload)[:200]
    o.retry_after = headers.get("retry-after")
    if status in (429, 503) and o.retry_after is not None and err is not None:
        o.error = "refused"
        if status == 503 and o.code != "server_overloaded":
            o.error, o.detail = "bad_refusal", f"503 with code {o.code!r}"
    elif status in (429, 503):
        o.error, o.detail = "bad_refusal", f"{status} without Retry-After or error body: {str(payload)[:200]}"
    else:
        o.error, o.detail = f"http_{status}", str(payload)[:300]


def check_chunk(obj, st):
    """Checks one streamed chat chunk against the stream so far; returns an error or None."""
    if not isinstance(obj, dict):
        return f"chunk is not an object: {str(obj)[:120]}"
    if obj.get("object") != CHUNK_OBJECT or not isinstance(obj.get("id"), str) or not isinstance(obj.get("choices"), list):
        return f"not a chat chunk: {json.dumps(obj)[:160]}"
    if st.setdefault("id", obj["id"]) != obj["id"] or st.setdefault("model", obj.get("model")) != obj.get("model"):
        return f"id/model changed within a stream: {st['id']}/{st['model']} then {obj['id']}/{obj.get('model')}"
    if st.get("usage_seen"):
        return "chunk after the usage chunk"
    usage = obj.get("usage")
    if usage is not None:
        if obj["choices"] or not isinstance(usage.get("completion_tokens"), int):
            return f"bad usage chunk: {json.dumps(obj)[:160]}"
        st["usage_seen"] = True
        st["tokens"] = usage["completion_tokens"]
    for c in obj["choices"]:
        if not isinstance(c, dict) or c.get("index") != 0 or not isinstance(c.get("delta"), dict):
            return f"bad choice: {json.dumps(c)[:160]}"
        if st.get("finished"):
            return "choice continues after its finish_reason"
        d = c["delta"]
        if isinstance(d.get("content"), str):
            st["text"].append(d["content"])
            if d["content"]:
                STREAMED[0] += 1
        elif d.get("content") is not None:
            return f"content is not a string: {d['content']!r}"
        if d.get("server_tool_calls"):
            st["server_calls"] += [s.get("name") for s in d["server_tool_calls"]]
        if (d.get("content") or d.get("tool_calls") or d.get("server_tool_calls")) and st.get("ttft") is None:
            st["ttft"] = time.perf_counter()
        fr = c.get("finish_reason")
        if fr is not None:
            if fr not in FINISH_REASONS:
                return f"unknown finish_reason {fr!r}"
            st["finished"] = fr
            if st.get("ttft") is None:  # nothing generated: the finish is the first answer
                st["ttft"] = time.perf_counter()
    return None


async def stream_chat(host, port, key, body, o, t0, expect=None):
    """POST a streamed chat request and check the whole stream; fills `o`."""
    resp = await http_request(host, port, "POST", "/v1/chat/completions", key, body)
    try:
        if resp.status != 200:
            data = await resp.body()
            try:
                payload = json.loads(data)
            except ValueError:
                payload = data.decode(errors="replace")
            read_error(o, resp.status, resp.headers, payload)
            return
        o.status = 200
        if "text/event-stream" not in resp.headers.get("content-type", ""):
            o.error, o.detail = "corrupt", f"content-type {resp.headers.get('content-type')!r}"
            return
        st = {"text": [], "server_calls": [], "n": 0}
        o.progress = st  # what a timed-out stream had received (one_request reads it)
        buf = b""
        event = []
        done = False
        async for data in resp.chunks():
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.rstrip(b"\r")
                if line == b"":
                    if not event:
                        continue
                    payload, event = b"\n".join(event), []
                    if done:
                        o.error, o.detail = "corrupt", f"event after [DONE]: {payload[:120]!r}"
                        return
                    if payload == b"[DONE]":
                        done = True
                        continue
                    try:
                        obj = json.loads(payload)
                    except ValueError:
                        o.error, o.detail = "corrupt", f"chunk is not JSON: {payload[:160]!r}"
                        return
                    if isinstance(obj, dict) and "error" in obj:
                        o.error, o.detail = "stream_error", f"error event after {st['n']} chunks: {payload[:240]!r}"
                        return
                    if st["n"] == 0 and expect == "citations":
                        cites = obj.get("citations")
                        if not isinstance(cites, list) or not cites:
                            o.error, o.detail = "bad_response", f"first RAG chunk without citations: {payload[:200]!r}"
                            return
                    st["n"] += 1
                    problem = check_chunk(obj, st)
                    if problem:
                        o.error, o.detail = "corrupt", problem
                        return
                elif line.startswith(b"data:"):
                    event.append(line[5:].lstrip(b" "))
                elif line.startswith(b":") or line.startswith(b"event:") or line.startswith(b"id:") or line.startswith(b"retry:"):
                    pass
                else:
                    o.error, o.detail = "corrupt", f"not an SSE line: {line[:120]!r}"
                    return
        if not resp.complete:
            o.error, o.detail = "truncated", f"body cut off after {st['n']} chunks (done={done})"
        elif not done:
            o.error, o.detail = "truncated", f"no data: [DONE] after {st['n']} chunks"
        elif buf.strip() or event:
            o.error, o.detail = "corrupt", f"bytes after [DONE]: {(buf or b''.join(event))[:120]!r}"
        elif not st.get("finished"):
            o.error, o.detail = "corrupt", "stream without a finish_reason"
        elif not st.get("usage_seen"):
            o.error, o.detail = "corrupt", "stream without the usage chunk (include_usage)"
        elif st["tokens"] > body["max_tokens"] * (TOOL_ROUNDS if expect == "calc" else 1):
            o.error, o.detail = "corrupt", f"{st['tokens']} completion tokens for max_tokens {body['max_tokens']}"
        elif expect == "calc" and "calc" not in st["server_calls"] and st.get("finished") != "length":
            # tool_choice "required": only running out of max_tokens excuses no call.
            o.error, o.detail = "bad_response", f"no server_tool_calls for calc (finish {st.get('finished')})"
        o.tokens = st.get("tokens", 0)
        o.text = "".join(st["text"])
        o.called = "calc" in st["server_calls"]
        if st.get("ttft") is not None:
            o.ttft = st["ttft"] - t0
    finally:
        resp.close()


async def embed(host, port, key, body, o):
    resp = await http_request(host, port, "POST", "/v1/embeddings", key, body)
    try:
        data = await resp.body()
        try:
            payload = json.loads(data)
        except ValueError:
            payload = data.decode(errors="replace")
        if resp.status != 200:
            read_error(o, resp.status, resp.headers, payload)
            return
        o.status = 200
        if not resp.complete:
            o.error, o.detail = "truncated", "embeddings body cut off"
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            o.error, o.detail = "corrupt", f"not an embeddings response: {str(payload)[:160]}"
            return
        items = payload["data"]
        if [d.get("index") for d in items] != list(range(len(body["input"]))):
            o.error, o.detail = "corrupt", f"{len(items)} embeddings for {len(body['input'])} inputs"
            return
        dims = {len(d.get("embedding") or []) for d in items}
        if len(dims) != 1 or 0 in dims or not all(all(math.isfinite(x) for x in d["embedding"]) for d in items):
            o.error, o.detail = "corrupt", f"embedding dimensions {dims} or non-finite values"
    finally:
        resp.close()


async def one_request(host, port, key, kind, body, timeout, t_origin, expect=None):
    """One request of `kind` with its own timeout; never raises (but for cancellation)."""
    t0 = time.perf_counter()
    o = Outcome(kind, t0 - t_origin)
    try:
        async with asyncio.timeout(timeout):
            if kind == "embeddings":
                await embed(host, port, key, body, o)
            else:
                await stream_chat(host, port, key, body, o, t0, expect)
    except TimeoutError:
        st = o.progress or {}
        first = f"first token after {st['ttft'] - t0:.1f} s" if st.get("ttft") else "no token"
        o.error, o.detail = "timeout", (f"no complete answer in {timeout} s (status {o.status}; {st.get('n', 0)} chunks, "
                                        f"{len(st.get('text', []))} with text, {first})")
    except HttpError as e:
        o.error, o.detail = ("truncated" if o.status == 200 else "connect"), str(e)
    except (OSError, ValueError) as e:
        o.error, o.detail = "connect", f"{type(e).__name__}: {e}"
    o.total = time.perf_counter() - t0
    if kind == "embeddings" and o.error is None:
        o.ttft = o.total
    return o


# ---- request bodies -----------------------------------------------------------------------


def chat_body(rng, seed, max_tokens):
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def rag_body(rng, seed, kb_id, max_tokens):
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": rng.choice(RAG_QUESTIONS)}],
        "knowledge_bases": [kb_id],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def tool_body(rng, seed, max_tokens):
    prompt = rng.choice(TOOL_PROMPTS).format(a=rng.randint(1000, 99999), b=rng.randint(100, 999))
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "tools": [{"type": "tensoras_function", "tensoras_function": {"name": "calc"}}],
        "tool_choice": "required",
        # Each round has this budget: the call's arguments (~30 tokens when the model closes
        # them), then the answer after the tool's output.
        "max_tokens": 3 * max_tokens,
        "temperature": 0.7,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def embed_body(rng):
    texts = [" ".join(rng.choice(EMBED_WORDS) for _ in range(rng.randint(6, 14))) for _ in range(rng.randint(1, 16))]
    return {"model": EMBED_MODEL, "input": texts}


def body_for(kind, rng, seed, state, max_tokens):
    if kind == "chat":
        return chat_body(rng, seed, max_tokens), None
    if kind == "rag":
        return rag_body(rng, seed, state["kb_id"], max_tokens), "citations"
    if kind == "tool":
        return tool_body(rng, seed, max_tokens), "calc"
    return embed_body(rng), None


# ---- setup --------------------------------------------------------------------------------


async def setup(a):
    host, port = loopback(a.url)
    state = {}
    calc = REPO / "build" / "functions" / "calc.wasm"
    body, ctype = multipart([("file", "calc.wasm", calc.read_bytes()), ("manifest", None, json.dumps({"name": "calc", "kind": "tool"}).encode())])
    status, out, _ = await http_json(host, port, "POST", "/v1/functions", a.key, body, 120, ctype)
    if status != 201:
        die(f"deploying calc: HTTP {status}: {out}")
    status, kb, _ = await http_json(host, port, "POST", "/v1/knowledge-bases", a.key, {"name": "load"})
    if status != 201:
        die(f"creating the knowledge base: HTTP {status}: {kb}")
    for name, text in KB_DOCS.items():
        body, ctype = multipart([("purpose", None, b"knowledge_base"), ("file", name, text.encode())])
        status, f, _ = await http_json(host, port, "POST", "/v1/files", a.key, body, 60, ctype)
        if status not in (200, 201):
            die(f"uploading {name}: HTTP {status}: {f}")
        status, src, _ = await http_json(host, port, "POST", f"/v1/knowledge-bases/{kb['id']}/data-sources", a.key, {"file_id": f["id"]})
        if status != 202:
            die(f"attaching {name}: HTTP {status}: {src}")
    deadline = time.time() + 180
    while True:
        status, sources, _ = await http_json(host, port, "GET", f"/v1/knowledge-bases/{kb['id']}/data-sources", a.key)
        statuses = [s["status"] for s in sources["data"]]
        if all(s in ("completed", "failed") for s in statuses):
            break
        if time.time() > deadline:
            die(f"ingestion did not finish in 180 s: {statuses}")
        await asyncio.sleep(0.2)
    if statuses != ["completed"] * len(KB_DOCS):
        die(f"ingestion failed: {sources}")
    state["kb_id"] = kb["id"]
    # One of each kind, so that the models are loaded and warm before anything is timed.
    # The tool's is the e2e test's greedy request, which calls calc (under load, sampled
    # requests may run out of max_tokens inside the call's arguments).
    rng = random.Random(0)
    for kind in ("chat", "rag", "tool", "embeddings"):
        body, expect = body_for(kind, rng, 1, state, 32)
        if kind == "tool":
            body.update(temperature=0, max_tokens=100,
                        messages=[{"role": "user", "content": "Use the calculator: what is 12345 * 678?"}])
        o = await one_request(host, port, a.key, kind, body, 300, time.perf_counter(), expect)
        if o.error:
            die(f"warm-up {kind} request failed: {o.error} {o.status} {o.code} {o.detail}")
        if kind == "tool":
            state["warmup_calc_ran"] = bool(o.called)
        print(f"warm-up {kind}: {o.total * 1e3:.0f} ms" + (f", calc ran: {bool(o.called)}" if kind == "tool" else ""), flush=True)
    Path(a.state).write_text(json.dumps(state))


# ---- samplers -----------------------------------------------------------------------------


async def sample_rss(pid, every, t_origin, out, stop):
    while not stop.is_set():
        kib = rss_kib(pid)
        if kib is not None:
            out.append((time.perf_counter() - t_origin, kib))
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


async def sample_health(host, port, every, t_origin, out, stop):
    """/health's instance counts; a /health that does not answer in 10 s is recorded too."""
    while not stop.is_set():
        t = time.perf_counter() - t_origin
        try:
            status, h, _ = await http_json(host, port, "GET", "/health", timeout=10)
            inst = (h or {}).get("instances") if isinstance(h, dict) else None
            out.append((t, status, inst))
        except (TimeoutError, HttpError, OSError) as e:
            out.append((t, None, {"error": f"{type(e).__name__}: {e}"}))
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


async def wait_idle(host, port, seconds):
    """Polls /health until no slot is busy and nothing waits; returns the last instances."""
    deadline = time.perf_counter() + seconds
    last = None
    while time.perf_counter() < deadline:
        try:
            status, h, _ = await http_json(host, port, "GET", "/health", timeout=5)
            last = (h or {}).get("instances") if isinstance(h, dict) else None
            if status == 200 and last and last.get("busy") == 0 and last.get("waiting") == 0:
                return True, last
        except (TimeoutError, HttpError, OSError) as e:
            last = {"error": str(e)}
        await asyncio.sleep(0.5)
    return False, last


# ---- run ----------------------------------------------------------------------------------


async def client_loop(kind, idx, host, port, key, state, a, t_origin, t_end, outcomes, jitter, first_done=None):
    rng = random.Random(f"{kind}-{idx}")
    await asyncio.sleep(rng.uniform(0, jitter))
    n = 0
    while time.perf_counter() < t_end:
        n += 1
        seed = idx * 100_000 + n
        body, expect = body_for(kind, rng, seed, state, a.max_tokens)
        o = await one_request(host, port, key, kind, body, a.timeout, t_origin, expect)
        outcomes.append(o)
        if first_done is not None and (kind, idx) not in first_done:
            first_done[(kind, idx)] = time.perf_counter() - t_origin
        if o.error == "refused":
            await asyncio.sleep(a.refused_pause)
        elif o.error:
            await asyncio.sleep(0.5)  # no hot loop on a broken server


def summarize(outcomes, load_s):
    kinds = {}
    for o in outcomes:
        k = kinds.setdefault(o.kind, {"requests": 0, "ok": 0, "ttft": [], "total": [], "tokens": 0, "errors": {}, "called": 0})
        k["requests"] += 1
        if o.error is None:
            k["ok"] += 1
            k["called"] += bool(o.called)
            if o.ttft is not None:
                k["ttft"].append(o.ttft)
            k["total"].append(o.total)
            k["tokens"] += o.tokens
        else:
            label = error_label(o)
            k["errors"][label] = k["errors"].get(label, 0) + 1
    out = {}
    for kind, k in sorted(kinds.items()):
        out[kind] = {
            "requests": k["requests"],
            "ok": k["ok"],
            "ok_per_s": k["ok"] / load_s if load_s else None,
            "completion_tokens": k["tokens"],
            "tokens_per_s": k["tokens"] / load_s if load_s else None,
            "ttft_p50_ms": ms(pct(k["ttft"], 50)),
            "ttft_p99_ms": ms(pct(k["ttft"], 99)),
            "ttft_max_ms": ms(max(k["ttft"]) if k["ttft"] else None),
            "total_p50_ms": ms(pct(k["total"], 50)),
            "total_p99_ms": ms(pct(k["total"], 99)),
            "errors": k["errors"],
        }
        if kind == "tool":
            out[kind]["calc_ran"] = k["called"]
    return out


def error_label(o):
    if o.error == "refused":
        return f"{o.status} {o.code or ''}".strip()
    if o.error.startswith("http_"):
        return f"{o.status} {o.code or ''}".strip()
    return o.error


def ms(s):
    return None if s is None else round(s * 1e3, 1)


def median_in(samples, t_from, t_to):
    vals = [v for t, v in samples if t_from <= t <= t_to]
    return statistics.median(vals) if vals else None


async def run(a):
    host, port = loopback(a.url)
    hard_deadline(a.duration + a.timeout + a.drain_s + 120)
    state = json.loads(Path(a.state).read_text())
    min_warmup = a.warmup if a.warmup is not None else max(5.0, a.duration / 3)
    first_done = {}
    mappings_before = rss_by_mapping(a.pid)
    t_origin = time.perf_counter()
    t_end = t_origin + a.duration
    outcomes, rss, health = [], [], []
    stop = asyncio.Event()
    samplers = [
        asyncio.create_task(sample_rss(a.pid, a.rss_every, t_origin, rss, stop)),
        asyncio.create_task(sample_health(host, port, 1.0, t_origin, health, stop)),
    ]
    clients = []
    jitter = min(2.0, a.duration / 10)
    for kind, n in (("chat", a.clients), ("rag", a.rag_clients), ("tool", a.tool_clients), ("embeddings", a.embed_clients)):
        for i in range(n):
            clients.append(asyncio.create_task(client_loop(kind, i, host, port, a.key, state, a, t_origin, t_end, outcomes, jitter, first_done)))
    print(f"run: {len(clients)} clients ({a.clients} chat, {a.rag_clients} RAG, {a.tool_clients} tool, "
          f"{a.embed_clients} embeddings) for {a.duration:.0f} s, request timeout {a.timeout:.0f} s", flush=True)
    last_print, last_streamed = 0.0, STREAMED[0]
    while time.perf_counter() < t_end:
        await asyncio.sleep(1)
        now = time.perf_counter() - t_origin
        if now - last_print >= a.progress_every:
            rate = (STREAMED[0] - last_streamed) / (now - last_print)
            last_print, last_streamed = now, STREAMED[0]
            errs = sum(1 for o in outcomes if o.error and o.error != "refused")
            h = health[-1][2] if health else None
            done = {}
            for o in outcomes:
                done[o.kind] = done.get(o.kind, 0) + 1
            print(f"  t={now:5.0f} s  done {done}  errors {errs}  streamed {rate:.0f} chunks/s  "
                  f"rss {rss[-1][1] / 1024 if rss else 0:.0f} MiB  health {h}", flush=True)
    rss_at_end = median_in(rss, a.duration - max(3 * a.rss_every, a.duration / 10), a.duration + 0.5)
    # Stop: no new requests; the ones in flight finish (or time out: each has its timeout).
    t_stop = time.perf_counter()
    await asyncio.gather(*clients)
    drain_s = time.perf_counter() - t_stop
    idle, idle_health = await wait_idle(host, port, a.drain_s)
    await asyncio.sleep(3)  # let freed memory settle before the idle sample
    stop.set()
    await asyncio.gather(*samplers)
    rss_idle = rss_kib(a.pid)
    mappings_idle = rss_by_mapping(a.pid)
    alive = rss_idle is not None
    load_s = a.duration
    window = max(3 * a.rss_every, a.duration / 10)
    # Warm-up: at least min_warmup, and until every client has had an answer (before that,
    # memory grows with the streams still starting: RSS is per stream in flight). Tool
    # clients do not count: their requests run several generation rounds and take far
    # longer, but they are in flight (and in memory) from the start.
    n_clients = a.clients + a.rag_clients + a.embed_clients
    firsts = [t for (kind, _), t in first_done.items() if kind != "tool"]
    first_round = max(firsts) if len(firsts) == n_clients else None
    warmup = max(min_warmup, first_round if first_round is not None else math.inf)
    steady = warmup + window <= a.duration
    rss_after_warmup = median_in(rss, warmup, warmup + window) if steady else None
    result = {
        "phase": "run",
        "config": {k: getattr(a, k) for k in ("duration", "clients", "rag_clients", "tool_clients", "embed_clients", "timeout", "max_tokens", "rss_tolerance")},
        "warmup_s": warmup if steady else None,
        "first_round_s": first_round,
        "kinds": summarize(outcomes, load_s),
        "requests": len(outcomes),
        "drain_s": drain_s,
        "idle_after": idle,
        "idle_health": idle_health,
        "server_alive": alive,
        "rss_kib": rss,
        "rss_after_warmup_kib": rss_after_warmup,
        "rss_at_end_kib": rss_at_end,
        "rss_start_kib": rss[0][1] if rss else None,
        "rss_max_kib": max((v for _, v in rss), default=None),
        "rss_idle_after_kib": rss_idle,
        "rss_by_mapping_before_kib": mappings_before,
        "rss_by_mapping_after_kib": mappings_idle,
        "health_max_busy": max((h[2].get("busy", 0) for h in health if h[2] and "busy" in h[2]), default=None),
        "health_max_waiting": max((h[2].get("waiting", 0) for h in health if h[2] and "waiting" in h[2]), default=None),
        "health_failures": [h for h in health if h[1] != 200],
        "failures": [o.row() for o in outcomes if o.error and o.error != "refused"][:50],
    }
    checks = []
    bad = [o for o in outcomes if o.error and o.error != "refused"]
    by_class = {}
    for o in bad:
        by_class[o.error] = by_class.get(o.error, 0) + 1
    dropped = ("truncated", "corrupt", "stream_error")
    checks.append(("no dropped or corrupted stream", not any(c in by_class for c in dropped),
                   ", ".join(f"{c} {by_class.get(c, 0)}" for c in dropped)))
    checks.append(("no request past its timeout (no hang)", "timeout" not in by_class,
                   f"{by_class.get('timeout', 0)} timed out (limit {a.timeout:.0f} s)"))
    others = {k: v for k, v in by_class.items() if k not in dropped + ("timeout",)}
    checks.append(("no other errors", not others, json.dumps(others) if others else "none"))
    missing = [k for k, n in (("chat", a.clients), ("rag", a.rag_clients), ("tool", a.tool_clients), ("embeddings", a.embed_clients))
               if n and not result["kinds"].get(k, {}).get("ok")]
    checks.append(("every kind answered", not missing, f"none answered: {missing}" if missing else "all"))
    tool = result["kinds"].get("tool", {})
    if a.tool_clients:
        # A sampled request may spend max_tokens inside the call's arguments (a 135M model);
        # the greedy warm-up calls it for sure, and under load about half do.
        ran = tool.get("calc_ran", 0)
        checks.append(("server-side tool ran", bool(state.get("warmup_calc_ran")) and (ran > 0 or tool.get("ok", 0) < 10),
                       f"warm-up: {state.get('warmup_calc_ran')}; under load in {ran} of {tool.get('ok', 0)} tool answers"))
    rss_start = rss[0][1] if rss else None
    if steady and rss_after_warmup and rss_at_end:
        growth = rss_at_end / rss_after_warmup - 1
        checks.append(("RSS flat after warm-up", growth <= a.rss_tolerance,
                       f"{rss_after_warmup / 1024:.0f} MiB at {warmup:.0f} s -> {rss_at_end / 1024:.0f} MiB at the end "
                       f"({growth * 100:+.1f} %, limit +{a.rss_tolerance * 100:.0f} %)"))
    # Without a steady state within the run (the report's RSS line says so), the idle check
    # below is the only memory check.
    if rss_start and rss_idle:
        # Idle after the load against idle before it, allowing for the prefix cache, which
        # fills up to its bound and keeps it.
        limit = rss_start * (1 + a.rss_tolerance) + a.prefix_cache_mb * 1024
        checks.append(("RSS back near its baseline once idle", rss_idle <= limit,
                       f"idle {rss_start / 1024:.0f} MiB before -> {rss_idle / 1024:.0f} MiB after the load (limit "
                       f"{limit / 1024:.0f} MiB: +{a.rss_tolerance * 100:.0f} % + the {a.prefix_cache_mb} MiB prefix cache)"))
    else:
        checks.append(("RSS back near its baseline once idle", False, f"no RSS samples for pid {a.pid}"))
    checks.append(("slots free again after the load", idle, f"/health {idle_health} after {drain_s:.1f} s of drain"))
    checks.append(("server alive", alive, f"pid {a.pid}"))
    result["checks"] = [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks]
    Path(a.out).write_text(json.dumps(result, indent=1))
    print_checks(result["checks"])


def print_checks(checks):
    for c in checks:
        print(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}", flush=True)


# ---- overload -----------------------------------------------------------------------------


async def overload(a):
    host, port = loopback(a.url)
    hard_deadline(a.duration + a.timeout + 180)
    t_origin = time.perf_counter()
    t_end = t_origin + a.duration
    outcomes, health = [], []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_health(host, port, 0.25, t_origin, health, stop))
    a.refused_pause = 0.1
    # The model loads on the first request: not part of the blast.
    warm = await one_request(host, port, a.key, "chat", chat_body(random.Random(0), 0, 4), a.timeout, t_origin)
    if warm.error:
        die(f"warm-up request failed: {warm.error} {warm.status} {warm.detail}")
    t_origin = time.perf_counter()
    t_end = t_origin + a.duration
    clients = [asyncio.create_task(client_loop("chat", i, host, port, a.key, {}, a, t_origin, t_end, outcomes, 0.2))
               for i in range(a.clients)]
    print(f"overload: {a.clients} streaming chat clients for {a.duration:.0f} s against {a.slots} slots, "
          f"queue {a.max_queue}, queue timeout {a.queue_timeout:.0f} s", flush=True)
    await asyncio.gather(*clients)
    idle, idle_health = await wait_idle(host, port, a.queue_timeout + 30)
    stop.set()
    await sampler
    # Capacity is back: one request goes through.
    after = await one_request(host, port, a.key, "chat", chat_body(random.Random(1), 1, 16), a.timeout, t_origin)
    refused = [o for o in outcomes if o.error == "refused"]
    queue_full = [o for o in refused if "queue is full" in (o.message or "")]
    timed_out_queue = [o for o in refused if "in time" in (o.message or "")]
    served = [o for o in outcomes if o.error is None]
    bad = [o for o in outcomes if o.error not in (None, "refused")]
    by_class = {}
    for o in outcomes:
        label = "200" if o.error is None else error_label(o)
        by_class[label] = by_class.get(label, 0) + 1
    ra = sorted({o.retry_after for o in refused})
    hs = [h[2] for h in health if h[2] and "busy" in h[2]]
    max_busy = max((h["busy"] for h in hs), default=None)
    max_waiting = max((h["waiting"] for h in hs), default=None)
    lat = lambda xs, p: ms(pct([o.total for o in xs], p))
    result = {
        "phase": "overload",
        "config": {k: getattr(a, k) for k in ("duration", "clients", "slots", "max_queue", "queue_timeout", "timeout", "fast_s")},
        "requests": len(outcomes),
        "answers": by_class,
        "served": len(served),
        "served_ttft_p50_ms": ms(pct([o.ttft for o in served if o.ttft is not None], 50)),
        "served_ttft_p99_ms": ms(pct([o.ttft for o in served if o.ttft is not None], 99)),
        "refused": len(refused),
        "refused_queue_full": len(queue_full),
        "refused_queue_timeout": len(timed_out_queue),
        "refusal_p50_ms": lat(refused, 50),
        "refusal_p99_ms": lat(refused, 99),
        "refusal_max_ms": ms(max((o.total for o in refused), default=None)),
        "queue_full_p50_ms": lat(queue_full, 50),
        "queue_full_p99_ms": lat(queue_full, 99),
        "queue_timeout_p50_ms": lat(timed_out_queue, 50),
        "queue_timeout_max_ms": ms(max((o.total for o in timed_out_queue), default=None)),
        "retry_after_values": ra,
        "health_max_busy": max_busy,
        "health_max_waiting": max_waiting,
        "health_samples": len(hs),
        "health_failures": [h for h in health if h[1] != 200][:10],
        "idle_after": idle,
        "idle_health": idle_health,
        "after": after.row(),
        "failures": [o.row() for o in bad][:50],
    }
    checks = [
        ("capacity exceeded (some requests refused)", bool(refused), f"{len(refused)} refused of {len(outcomes)}"),
        ("refusals are 503 server_overloaded / 429 with Retry-After", not any(o.error == "bad_refusal" for o in outcomes),
         f"Retry-After values {ra}"),
        ("queue-full refusals fast", bool(queue_full) and pct([o.total for o in queue_full], 99) <= a.fast_s,
         f"p99 {lat(queue_full, 99)} ms of {len(queue_full)} (limit {a.fast_s * 1e3:.0f} ms)"),
        ("no refusal later than the queue timeout", bool(refused) and max(o.total for o in refused) <= a.queue_timeout + a.slack_s,
         f"max {result['refusal_max_ms']} ms (limit {(a.queue_timeout + a.slack_s) * 1e3:.0f} ms)"),
        ("no request past its timeout, no broken stream", not bad,
         json.dumps({k: v for k, v in by_class.items() if k in {error_label(o) for o in bad}}) if bad else "none"),
        ("some requests served", bool(served), f"{len(served)} served"),
        ("/health within bounds", bool(hs) and max_busy <= a.slots and max_waiting <= a.max_queue,
         f"max busy {max_busy}/{a.slots}, max waiting {max_waiting}/{a.max_queue}, {len(hs)} samples"),
        ("drains to idle and serves again", idle and after.error is None,
         f"/health {idle_health}; next request {after.error or 'ok'} in {after.total * 1e3:.0f} ms"),
    ]
    result["checks"] = [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks]
    Path(a.out).write_text(json.dumps(result, indent=1))
    print_checks(result["checks"])


# ---- report -------------------------------------------------------------------------------


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float):
        v = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"
    return f"{v}{unit}"


def mib(kib):
    return fmt(kib / 1024 if kib else None, " MiB")


def report(a):
    run_r = json.loads(Path(a.run).read_text())
    over = json.loads(Path(a.overload).read_text()) if a.overload else None
    c = run_r["config"]
    lines = ["### Load and overload", ""]
    if a.command:
        lines += [f"`{a.command}`" + (f", {a.machine}" if a.machine else "") + ".", ""]
    lines += [
        f"Load: {c['clients']} streaming chat clients + {c['rag_clients']} RAG + {c['tool_clients']} tool + "
        f"{c['embed_clients']} embeddings clients, closed loop, {c['duration']:.0f} s (max_tokens {c['max_tokens']}, "
        f"temperature 0.7, request timeout {c['timeout']:.0f} s); TTFT = request sent -> first generated chunk "
        f"(embeddings: the whole response).",
        "",
        "| kind | requests ok | ok/s | tokens/s | TTFT p50 | TTFT p99 | total p50 | total p99 | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, k in run_r["kinds"].items():
        errs = ", ".join(f"{n}× {label}" for label, n in sorted(k["errors"].items())) or "none"
        lines.append(
            f"| {kind} | {k['ok']} / {k['requests']} | {fmt(k['ok_per_s'])} | {fmt(k['tokens_per_s']) if kind != 'embeddings' else '–'} | "
            f"{fmt(k['ttft_p50_ms'], ' ms')} | {fmt(k['ttft_p99_ms'], ' ms')} | {fmt(k['total_p50_ms'], ' ms')} | "
            f"{fmt(k['total_p99_ms'], ' ms')} | {errs} |"
        )
    ra, re_ = run_r.get("rss_after_warmup_kib"), run_r.get("rss_at_end_kib")
    if run_r.get("warmup_s"):
        rss_line = (f"RSS: {mib(ra)} after the warm-up ({run_r['warmup_s']:.0f} s: every chat, RAG and embeddings client "
                    f"answered once), {mib(re_)} at the end"
                    + (f" ({(re_ / ra - 1) * 100:+.1f} %)" if ra and re_ else ""))
    else:
        rss_line = (f"RSS: no steady state within the run (every chat, RAG and embeddings client answered once: "
                    f"{fmt(run_r.get('first_round_s'), ' s')}); {mib(re_)} at the end of the load")
    lines += [
        "",
        rss_line + f", peak {mib(run_r.get('rss_max_kib'))}; idle {mib(run_r.get('rss_start_kib'))} before the load, "
        f"{mib(run_r.get('rss_idle_after_kib'))} after it; /health peak busy {run_r.get('health_max_busy')}, "
        f"waiting {run_r.get('health_max_waiting')}; in-flight requests drained in {run_r['drain_s']:.1f} s.",
    ]
    before, after = run_r.get("rss_by_mapping_before_kib"), run_r.get("rss_by_mapping_after_kib")
    if before and after:
        lines += ["", "Resident memory by mapping (idle, /proc/PID/smaps):", "",
                  "| mapping | before the load | after it |", "|---|---|---|"]
        lines += [f"| {k} | {mib(before[k])} | {mib(after[k])} |" for k in before if before[k] or after[k]]
    if over:
        oc = over["config"]
        answers = ", ".join(f"{n}× {k}" for k, n in sorted(over["answers"].items()))
        lines += [
            "",
            f"Overload: `--max-instances {oc['slots']} --max-queue {oc['max_queue']} --queue-timeout-secs "
            f"{oc['queue_timeout']:.0f}`, {oc['clients']} streaming chat clients for {oc['duration']:.0f} s, each "
            f"retrying 0.1 s after a refusal: {answers}.",
            "",
            "| answer | count | p50 | p99 | max |",
            "|---|---|---|---|---|",
            f"| served (TTFT) | {over['served']} | {fmt(over['served_ttft_p50_ms'], ' ms')} | {fmt(over['served_ttft_p99_ms'], ' ms')} | |",
            f"| 503, queue full | {over['refused_queue_full']} | {fmt(over['queue_full_p50_ms'], ' ms')} | {fmt(over['queue_full_p99_ms'], ' ms')} | |",
            f"| 503, no slot within the queue timeout | {over['refused_queue_timeout']} | {fmt(over['queue_timeout_p50_ms'], ' ms')} | | {fmt(over['queue_timeout_max_ms'], ' ms')} |",
            f"| all refusals | {over['refused']} | {fmt(over['refusal_p50_ms'], ' ms')} | {fmt(over['refusal_p99_ms'], ' ms')} | {fmt(over['refusal_max_ms'], ' ms')} |",
            "",
            f"Retry-After: {over['retry_after_values']}; /health peak busy {over['health_max_busy']}/{oc['slots']}, "
            f"waiting {over['health_max_waiting']}/{oc['max_queue']}.",
        ]
    checks = run_r["checks"] + (over["checks"] if over else [])
    lines += ["", "Checks:", ""]
    lines += [f"- {'ok' if ch['ok'] else '**FAIL**'}: {ch['name']} ({ch['detail']})" for ch in checks]
    print("\n".join(lines))
    failed = [ch for ch in checks if not ch["ok"]]
    for phase in (run_r, over):
        if phase and phase.get("failures"):
            print(f"\nfirst failures ({phase['phase']}):", file=sys.stderr)
            for f in phase["failures"][:10]:
                print(f"  {json.dumps(f)}", file=sys.stderr)
    if failed:
        print(f"\nload: {len(failed)} check(s) failed", file=sys.stderr)
        sys.exit(1)


# ---- main ---------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("url")
    s.add_argument("state")
    s.add_argument("--key", required=True)

    r = sub.add_parser("run")
    r.add_argument("url")
    r.add_argument("state")
    r.add_argument("out")
    r.add_argument("--key", required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--duration", type=float, default=180)
    r.add_argument("--clients", type=int, default=200)
    r.add_argument("--rag-clients", type=int, default=4)
    r.add_argument("--tool-clients", type=int, default=4)
    r.add_argument("--embed-clients", type=int, default=4)
    r.add_argument("--timeout", type=float, default=300, help="per request, seconds")
    r.add_argument("--max-tokens", type=int, default=32)
    r.add_argument("--warmup", type=float, default=None, help="seconds [duration/3, at least 5]")
    r.add_argument("--rss-every", type=float, default=2.0)
    r.add_argument("--rss-tolerance", type=float, default=0.15)
    r.add_argument("--prefix-cache-mb", type=int, default=256, help="the server's --prefix-cache-mb")
    r.add_argument("--drain-s", type=float, default=60, help="for /health to show idle after the load")
    r.add_argument("--progress-every", type=float, default=15)
    r.add_argument("--refused-pause", type=float, default=1.0)

    o = sub.add_parser("overload")
    o.add_argument("url")
    o.add_argument("out")
    o.add_argument("--key", required=True)
    o.add_argument("--pid", type=int, required=True)
    o.add_argument("--slots", type=int, required=True)
    o.add_argument("--max-queue", type=int, required=True)
    o.add_argument("--queue-timeout", type=float, required=True)
    o.add_argument("--clients", type=int, default=64)
    o.add_argument("--duration", type=float, default=30)
    o.add_argument("--timeout", type=float, default=120, help="per request, seconds")
    o.add_argument("--max-tokens", type=int, default=32)
    o.add_argument("--fast-s", type=float, default=1.0, help="p99 limit of queue-full refusals")
    o.add_argument("--slack-s", type=float, default=2.0, help="past the queue timeout, for a refusal")

    t = sub.add_parser("report")
    t.add_argument("run")
    t.add_argument("overload", nargs="?")
    t.add_argument("--machine", default="")
    t.add_argument("--command", default="")
    a = p.parse_args()
    if a.cmd == "setup":
        hard_deadline(600)
        asyncio.run(setup(a))
    elif a.cmd == "run":
        asyncio.run(run(a))
    elif a.cmd == "overload":
        asyncio.run(overload(a))
    else:
        report(a)


if __name__ == "__main__":
    main()
