"""End to end: OpenTelemetry trace export (issue #21, part 4's optional part). With
`--otlp-endpoint`, each request's span goes over OTLP/HTTP to a collector — here a small
receiver on loopback that keeps what it is sent. The span is named by method and route
template, is a server span with the status and the `x-request-id`, continues the caller's
W3C `traceparent`, and holds nothing of the prompt or the key. Spans still buffered when
the server stops are sent before it exits, so the test reads them after a SIGTERM (no
waiting on the exporter's schedule)."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import Server, free_port, new_key

CHAT = "smollm2-135m-instruct"
SECRET_PROMPT = "Quokka lighthouse 5531 is my secret."
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class Collector:
    """An OTLP/HTTP receiver: answers every export with success and keeps the bodies."""

    def __init__(self):
        self.exports: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                collector.exports.append((self.path, self.headers.get("content-type", ""), body))
                json_reply = self.headers.get("content-type", "").startswith("application/json")
                reply = b"{}" if json_reply else b""
                self.send_response(200)
                self.send_header("content-type", "application/json" if json_reply else "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def start(tmp_path, collector, protocol=None):
    s = Server(tmp_path / "data", new_key(), "--otlp-endpoint", collector.url)
    if protocol:
        env = s.env
        s.env = lambda: {**env(), "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    return s.start()


def traffic(s):
    """A traced listing, a chat, and a 404 on a route with an id; the chat's request id."""
    r = requests.get(s.url + "/v1/models", headers={**s.headers(), "traceparent": TRACEPARENT}, timeout=60)
    assert r.status_code == 200, r.text
    body = {"model": CHAT, "messages": [{"role": "user", "content": SECRET_PROMPT}], "max_tokens": 2}
    chat = requests.post(s.url + "/v1/chat/completions", headers=s.headers(), json=body, timeout=300)
    assert chat.status_code == 200, chat.text
    r = requests.get(s.url + "/v1/files/file-nope", headers=s.headers(), timeout=60)
    assert r.status_code == 404
    return chat.headers["x-request-id"]


def hex_id(value: str) -> str:
    """OTLP/JSON ids are hex; some encoders write proto3's base64 instead."""
    if len(value) in (16, 32) and all(c in "0123456789abcdef" for c in value.lower()):
        return value.lower()
    return base64.b64decode(value).hex()


def attribute(span, key):
    for a in span.get("attributes", []):
        if a["key"] == key:
            v = a["value"]
            return v.get("stringValue", v.get("intValue"))
    return None


def test_request_spans_are_exported_over_otlp_json(tmp_path, collector):
    s = start(tmp_path, collector, "http/json")
    try:
        chat_id = traffic(s)
    finally:
        assert s.stop() == 0, s.log()
    assert collector.exports, "nothing was exported"
    assert {path for path, _, _ in collector.exports} == {"/v1/traces"}
    spans, services = [], set()
    for _, content_type, body in collector.exports:
        assert content_type.startswith("application/json"), content_type
        for rs in json.loads(body)["resourceSpans"]:
            services |= {attribute(rs["resource"], "service.name")}
            spans += [span for ss in rs["scopeSpans"] for span in ss["spans"]]
    assert services == {"tensoras"}
    by_name = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    assert {"GET /v1/models", "POST /v1/chat/completions", "GET /v1/files/{id}"} <= set(by_name), sorted(by_name)

    # The caller's trace goes on: same trace id, its span as the parent.
    (models,) = by_name["GET /v1/models"]
    assert hex_id(models["traceId"]) == TRACE_ID and hex_id(models["parentSpanId"]) == PARENT_ID, models
    (chat,) = by_name["POST /v1/chat/completions"]
    assert chat["kind"] in (2, "SPAN_KIND_SERVER"), chat
    assert attribute(chat, "id") == chat_id
    assert str(attribute(chat, "http.response.status_code")) == "200"
    assert attribute(chat, "http.route") == "/v1/chat/completions"
    # Without a traceparent a request starts its own trace.
    assert hex_id(chat["traceId"]) != TRACE_ID and not chat.get("parentSpanId")
    (missing,) = by_name["GET /v1/files/{id}"]
    assert str(attribute(missing, "http.response.status_code")) == "404"
    # Nothing of the prompt or the key left the server.
    everything = b"".join(body for _, _, body in collector.exports)
    assert SECRET_PROMPT.encode() not in everything and s.api_key.encode() not in everything


def test_the_default_protocol_is_otlp_protobuf(tmp_path, collector):
    s = start(tmp_path, collector)
    try:
        traffic(s)
    finally:
        assert s.stop() == 0, s.log()
    assert collector.exports, "nothing was exported"
    for path, content_type, _ in collector.exports:
        assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    everything = b"".join(body for _, _, body in collector.exports)
    # Protobuf carries ids as raw bytes and names as UTF-8.
    assert bytes.fromhex(TRACE_ID) in everything
    assert b"POST /v1/chat/completions" in everything
    assert SECRET_PROMPT.encode() not in everything and s.api_key.encode() not in everything
