"""Chat functions: a Python function served as a model. Deployed with `"kind": "chat"`
as NAME, it answers `"model": "fn:NAME"` on `/v1/chat/completions` (and `/v1/completions`)
for its tenant, through the unchanged OpenAI SDKs, streamed or not.

    from tensoras import chat

    @chat.handler
    def pirate(req):
        body = dict(req.body, model="smollm2-135m-instruct")
        body["messages"] = [{"role": "system", "content": "Answer like a pirate."}] + body["messages"]
        return req.forward(body)

    Handler = pirate   # componentize-py looks for the export class by this name

The function gets a `Request` (the OpenAI body as a dict, whether a stream was asked for,
the path) and returns the completion (a dict; its `usage` is what the server meters), or
streams chunks with `req.send` and returns None. `req.forward` does either for a request
it runs through `ai`; `req.reply` answers with a text of its own. Raise `ChatError` for an
OpenAI-shaped error; a platform `Error` that escapes becomes the matching one (a refusal is
a 403), and any other exception a 500 (its traceback goes to the function's logs).
"""

import json
import sys
import time
import traceback

from componentize_py_types import Err

from . import ai
from .errors import Error, InvalidRequest, LimitExceeded, NotFound, NotPermitted, Overloaded, TooLarge

# Imported now, while componentize-py pre-initialises the app: a function has no file
# system at run time, so a module first imported then cannot be found. Only the
# `chat-function` world has these; in the others this module is imported but not used.
try:
    from wit_world.exports import handler as _exports
    from wit_world.imports import output as _output
    from wit_world.imports import types as _types
except ImportError:
    _exports = _output = _types = None


class ChatError(Exception):
    """An error the client gets as `{"error": {...}}` with HTTP `status`."""

    def __init__(self, status: int, kind: str, message: str, param=None, code=None):
        super().__init__(message)
        self.status, self.kind, self.message, self.param, self.code = status, kind, message, param, code

    @classmethod
    def invalid(cls, param: str, message: str) -> "ChatError":
        """A 400 `invalid_request_error` about `param`."""
        return cls(400, "invalid_request_error", message, param=param)

    @classmethod
    def from_error(cls, e: Error) -> "ChatError":
        """A platform error passed on, as the Rust SDK passes it on."""
        status, kind, code = {
            NotPermitted: (403, "permission_error", "permission_denied"),
            InvalidRequest: (400, "invalid_request_error", None),
            TooLarge: (400, "invalid_request_error", None),
            NotFound: (404, "invalid_request_error", "not_found"),
            LimitExceeded: (429, "rate_limit_error", "function_limit_exceeded"),
            Overloaded: (503, "server_error", "server_overloaded"),
        }.get(type(e), (500, "server_error", None))
        return cls(status, kind, str(e), code=code)


class Request:
    """One request, as the client sent it."""

    def __init__(self, body: dict, stream: bool, path: str):
        self.body = body
        self.stream = stream
        self.path = path

    @property
    def model(self) -> str:
        """The model id the client asked for (`fn:NAME`, or a real model for a replacement
        of a built-in handler), to put in answers."""
        return self.body.get("model", "")

    @property
    def wants_usage(self) -> bool:
        """Whether a streamed request asked for a final usage chunk."""
        return bool((self.body.get("stream_options") or {}).get("include_usage"))

    def send(self, chunk: dict) -> bool:
        """Sends one `chat.completion.chunk`; False once the client has gone away."""
        return _output.send(json.dumps(chunk))

    def forward(self, body: dict, **extra):
        """Runs chat request `body` and answers with it: the completion, or for a streamed
        request its chunks as they come, with `model` set to the one the client asked for
        (and the usage chunk only when the client asked for it). `extra` top-level fields
        (`citations=...`) go on the completion, or on a stream's first chunk."""
        body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        if not self.stream:
            completion = ai.chat_body(body)
            completion["model"] = self.model
            completion.update(extra)
            return completion
        with ai.stream_body(body) as stream:
            for chunk in stream.chunks():
                if not chunk.get("choices") and not self.wants_usage:
                    continue
                if not self.wants_usage:
                    chunk.pop("usage", None)
                chunk["model"] = self.model
                chunk.update(extra)
                extra = {}
                if not self.send(chunk):
                    break  # the client went away: closing the stream stops the model
        return None

    def reply(self, text: str, **extra):
        """Answers with `text`, no model call: the completion, or its chunks for a streamed
        request, shaped as a model's, with `extra` top-level fields. Usage is zero."""
        now = time.time_ns()
        base = {"id": f"chatcmpl-{now:x}", "created": now // 1_000_000_000, "model": self.model}
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        if not self.stream:
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            return {**base, "object": "chat.completion", "choices": [choice], "usage": usage, **extra}

        def chunk(delta, finish):
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}

        chunks = [{**chunk({"role": "assistant", "content": text}, None), **extra}, chunk({}, "stop")]
        if self.wants_usage:
            chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        for c in chunks:
            if not self.send(c):
                break
        return None


def handler(fn):
    """Turns `fn(req) -> completion dict | None` into the class the `chat-function` world
    exports (assign it to `Handler`)."""

    class Handler:
        def handle(self, req):
            def fail(e: ChatError):
                return Err(_types.HandlerError(status=e.status, kind=e.kind, message=e.message, param=e.param, code=e.code))

            try:
                body = json.loads(req.body)
            except ValueError as e:
                raise fail(ChatError.invalid("body", f"the body is not JSON: {e}")) from None
            try:
                result = fn(Request(body, req.stream, req.path))
            except ChatError as e:
                raise fail(e) from None
            except Error as e:
                raise fail(ChatError.from_error(e)) from None
            except Exception as e:  # a bug in the function: the client gets the message
                traceback.print_exc(file=sys.stderr)
                raise fail(ChatError(500, "server_error", f"{type(e).__name__}: {e}")) from None
            result = result or {}
            usage = result.get("usage") or {}
            counts = _types.Usage(prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0))
            return _exports.Response(body=json.dumps(result), usage=counts)

    Handler.__name__ = Handler.__qualname__ = fn.__name__
    Handler.function = staticmethod(fn)
    return Handler


__all__ = ["ChatError", "Request", "handler"]
