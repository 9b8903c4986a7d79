"""Models: chat completions (whole or streamed) and embeddings.

A request is the body `POST /v1/chat/completions` takes, as keyword arguments, so
everything that endpoint accepts works here (`response_format`, `tools`, `seed`,
`knowledge_bases`, ...). Calls run on behalf of the key that invoked the function, within
the manifest's `grants.models` and `limits`.

    from tensoras import ai

    reply = ai.chat(model="smollm2-135m-instruct",
                    messages=[{"role": "user", "content": "Hi"}], max_tokens=20)
    print(reply.text)

    for token in ai.stream(model=..., messages=...):
        ...
"""

import json

from wit_world.imports import ai as _wit

from componentize_py_types import Err, Ok

from .errors import Error, Failed, call, from_wit


class Completion:
    """A chat completion: the response body, with the usual fields at hand."""

    def __init__(self, body: dict):
        self.body = body

    @property
    def _choice(self) -> dict:
        choices = self.body.get("choices") or [{}]
        return choices[0]

    @property
    def text(self) -> str:
        """The first choice's text ("" for a tool call)."""
        return self._choice.get("message", {}).get("content") or ""

    @property
    def tool_calls(self) -> list:
        """The first choice's tool calls, as OpenAI shapes them."""
        return self._choice.get("message", {}).get("tool_calls") or []

    @property
    def finish_reason(self) -> str:
        return self._choice.get("finish_reason") or ""

    @property
    def usage(self) -> dict:
        return self.body.get("usage") or {}

    def json(self):
        """The text parsed as JSON (for `response_format` requests)."""
        return json.loads(self.text)


def request(model: str, messages: list, **fields) -> dict:
    """The request body for these arguments; `None` values are left out."""
    body = {"model": model, "messages": messages}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def chat(model: str, messages: list, **fields) -> Completion:
    """Runs a chat completion and returns it whole."""
    body = request(model, messages, **fields)
    body.pop("stream", None)
    return Completion(json.loads(call(_wit.chat, json.dumps(body))))


def chat_body(body: dict) -> dict:
    """Runs a chat completion of a ready-made request body; returns the response body."""
    return json.loads(call(_wit.chat, json.dumps(body)))


class Stream:
    """A streamed completion: iterate for the text pieces as they are generated, or call
    `chunks()` for the raw `chat.completion.chunk` objects. `usage` is filled once the
    stream has ended. Closing it (or leaving a `with` block) stops generation."""

    def __init__(self, handle):
        self._handle = handle
        self.usage = None
        self.finish_reason = None

    def chunks(self):
        """Yields each chunk object (a dict) as it arrives."""
        while True:
            item = call(self._handle.next)
            if item is None:
                return
            # `option<result<..>>`: the inner result arrives as an `Ok` or `Err` value.
            if isinstance(item, Err):
                raise from_wit(item.value)
            if isinstance(item, Ok):
                item = item.value
            chunk = json.loads(item)
            if chunk.get("usage"):
                self.usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
            yield chunk

    def __iter__(self):
        for chunk in self.chunks():
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece

    def close(self):
        if self._handle is not None:
            self._handle.__exit__(None, None, None)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def stream(model: str, messages: list, **fields) -> Stream:
    """Starts a streamed chat completion. Errors the server knows before the first token
    (a refused model, a spent budget) are raised here, not while iterating."""
    body = request(model, messages, **fields)
    body.pop("stream", None)
    return Stream(call(_wit.chat_stream, json.dumps(body)))


def stream_body(body: dict) -> Stream:
    """Starts a streamed chat completion of a ready-made request body."""
    return Stream(call(_wit.chat_stream, json.dumps(body)))


def embed(model: str, input) -> list:
    """Embeds a text (or a list of texts); returns one vector per text, in order."""
    texts = [input] if isinstance(input, str) else list(input)
    if not all(isinstance(t, str) for t in texts):
        raise Failed("embed takes a string or a list of strings")
    return call(_wit.embed, model, texts).vectors


__all__ = ["Completion", "Stream", "Error", "chat", "chat_body", "stream", "stream_body", "embed", "request"]
