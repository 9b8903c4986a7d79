"""HTTP functions (`kind: "http"`, served at `/v1/functions/{name}/invoke`), WSGI-like:
a function takes a `Request` and returns a `Response`, whose body may be an iterable that
is streamed piece by piece (server-sent events, say).

    from tensoras import http

    @http.handler
    def hello(req):
        return http.Response(200, {"greeting": f"hello {req.query.get('name', 'you')}"})

    IncomingHandler = hello   # componentize-py looks for the export class by this name
"""

import json
import sys
import traceback
from urllib.parse import parse_qsl

from .errors import Error, NotPermitted

# WASI streams take at most 4096 bytes per blocking write.
_WRITE_MAX = 4096


class Request:
    """The incoming request, body read whole."""

    def __init__(self, method: str, path: str, headers: dict, body: bytes):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    @property
    def query(self) -> dict:
        """The query string's parameters (the first value of each)."""
        _, _, query = self.path.partition("?")
        out = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            out.setdefault(k, v)
        return out

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


class Response:
    """A response. `body` is bytes, text, a JSON-able dict or list (sent as JSON), or an
    iterable of bytes/text pieces, each written and flushed as it comes."""

    def __init__(self, status: int = 200, body=b"", headers=None):
        self.status = status
        self.headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            self.headers.setdefault("content-type", "application/json")
        self.body = body


def error(status: int, kind: str, message: str, code=None) -> Response:
    """An OpenAI-shaped error response."""
    return Response(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def from_error(e: Error) -> Response:
    """The response a failed platform call deserves: 403 for a refusal, 429 for a spent
    budget, 400 for a bad request, 502 otherwise."""
    status = {"not_permitted": 403, "limit_exceeded": 429, "invalid_request": 400, "not_found": 404}.get(e.kind, 502)
    kind = {403: "permission_error", 429: "rate_limit_error", 400: "invalid_request_error", 404: "not_found_error"}.get(status, "server_error")
    return error(status, kind, str(e))


def sse(events):
    """Server-sent events: each item (a dict, or text) as one `data:` event, then `[DONE]`."""
    for event in events:
        yield "data: " + (event if isinstance(event, str) else json.dumps(event)) + "\n\n"
    yield "data: [DONE]\n\n"


def _read(incoming) -> Request:
    from componentize_py_types import Err
    from wit_world.imports import types

    method = incoming.method()
    method = method.value if isinstance(method, types.Method_Other) else type(method).__name__.split("_", 1)[1].upper()
    headers = {}
    for name, value in incoming.headers().entries():
        headers.setdefault(name.lower(), value.decode("latin-1"))
    body = bytearray()
    incoming_body = incoming.consume()
    stream = incoming_body.stream()
    while True:
        try:
            body += stream.blocking_read(65536)
        except Err:  # closed: the whole body is in
            break
    stream.__exit__(None, None, None)
    incoming_body.__exit__(None, None, None)
    return Request(method, incoming.path_with_query() or "/", headers, bytes(body))


def _write(response_out, response: Response) -> None:
    from componentize_py_types import Ok
    from wit_world.imports import types

    body = response.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = [(k.lower(), str(v).encode("latin-1")) for k, v in response.headers.items()]
    outgoing = types.OutgoingResponse(types.Fields.from_list(headers))
    outgoing.set_status_code(response.status)
    outgoing_body = outgoing.body()
    types.ResponseOutparam.set(response_out, Ok(outgoing))
    stream = outgoing_body.write()
    try:
        pieces = [body] if isinstance(body, (bytes, bytearray)) else body
        for piece in pieces:
            data = piece.encode("utf-8") if isinstance(piece, str) else bytes(piece)
            for i in range(0, len(data), _WRITE_MAX):
                stream.blocking_write_and_flush(data[i : i + _WRITE_MAX])
    except Exception as e:  # the client went away, or the body's generator failed
        if not type(e).__name__ == "Err":
            traceback.print_exc(file=sys.stderr)
        stream.__exit__(None, None, None)
        return  # dropping the body unfinished tells the host the response is incomplete
    stream.__exit__(None, None, None)
    types.OutgoingBody.finish(outgoing_body, None)


def handler(fn):
    """Turns `fn(Request) -> Response` into the class the `http-function` world exports.

    A platform error that escapes `fn` is answered with `from_error`, and any other
    exception with a 500 whose traceback goes to the function's logs."""

    class IncomingHandler:
        def handle(self, request, response_out):
            try:
                response = fn(_read(request))
            except Error as e:
                response = from_error(e)
            except Exception as e:
                traceback.print_exc(file=sys.stderr)
                response = error(500, "server_error", f"{type(e).__name__}: {e}")
            _write(response_out, response)

    IncomingHandler.__name__ = IncomingHandler.__qualname__ = fn.__name__
    IncomingHandler.function = staticmethod(fn)
    return IncomingHandler


__all__ = ["Request", "Response", "error", "from_error", "sse", "handler", "NotPermitted"]
