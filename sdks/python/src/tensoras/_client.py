"""`Tensoras` and `AsyncTensoras`: the official openai clients, pointed at a Tensoras server
(`TENSORAS_BASE_URL`, `TENSORAS_API_KEY`), with typed access to what Tensoras adds."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any

import httpx2
import openai

from . import _async_resources as a
from . import _resources as s
from .types import ChatCompletion, ChatCompletionChunk, Citation

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"


def _base_url(base_url: str | httpx2.URL | None) -> str | httpx2.URL:
    return base_url or os.environ.get("TENSORAS_BASE_URL") or DEFAULT_BASE_URL


class Tensoras(openai.OpenAI):
    """`openai.OpenAI` for a Tensoras server: every OpenAI call works as it is, and
    `knowledge_bases`, `rag`, `rerank`, `functions`, `usage`, `keys` and `tenants` are added
    (`models` answers Tensoras' `Model`). Retries, timeouts and errors are the openai client's.

    `api_key` defaults to `TENSORAS_API_KEY` (then `OPENAI_API_KEY`), `base_url` to
    `TENSORAS_BASE_URL`, then `http://127.0.0.1:8080/v1`. Other arguments are `openai.OpenAI`'s.
    """

    def __init__(
        self,
        *,
        api_key: str | Callable[[], str] | None = None,
        base_url: str | httpx2.URL | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key=api_key or os.environ.get("TENSORAS_API_KEY"), base_url=_base_url(base_url), **kwargs)

    @cached_property
    def knowledge_bases(self) -> s.KnowledgeBases:
        return s.KnowledgeBases(self)

    @cached_property
    def rag(self) -> s.Rag:
        return s.Rag(self)

    @cached_property
    def rerank(self) -> s.Rerank:
        return s.Rerank(self)

    @cached_property
    def functions(self) -> s.Functions:
        return s.Functions(self)

    @cached_property
    def usage(self) -> s.Usage:
        return s.Usage(self)

    @cached_property
    def keys(self) -> s.Keys:
        return s.Keys(self)

    @cached_property
    def tenants(self) -> s.Tenants:
        return s.Tenants(self)

    @cached_property
    def models(self) -> s.Models:
        return s.Models(self)


class AsyncTensoras(openai.AsyncOpenAI):
    """`openai.AsyncOpenAI` for a Tensoras server; the same resources as `Tensoras`, awaited."""

    def __init__(
        self,
        *,
        api_key: str | Callable[[], Awaitable[str]] | None = None,
        base_url: str | httpx2.URL | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key=api_key or os.environ.get("TENSORAS_API_KEY"), base_url=_base_url(base_url), **kwargs)

    @cached_property
    def knowledge_bases(self) -> a.AsyncKnowledgeBases:
        return a.AsyncKnowledgeBases(self)

    @cached_property
    def rag(self) -> a.AsyncRag:
        return a.AsyncRag(self)

    @cached_property
    def rerank(self) -> a.AsyncRerank:
        return a.AsyncRerank(self)

    @cached_property
    def functions(self) -> a.AsyncFunctions:
        return a.AsyncFunctions(self)

    @cached_property
    def usage(self) -> a.AsyncUsage:
        return a.AsyncUsage(self)

    @cached_property
    def keys(self) -> a.AsyncKeys:
        return a.AsyncKeys(self)

    @cached_property
    def tenants(self) -> a.AsyncTenants:
        return a.AsyncTenants(self)

    @cached_property
    def models(self) -> a.AsyncModels:
        return a.AsyncModels(self)


def citations(completion: openai.types.chat.ChatCompletion | openai.types.chat.ChatCompletionChunk) -> list[Citation]:
    """The typed `citations` of a RAG answer, also one made with `client.chat.completions.create(
    extra_body={"knowledge_bases": [...]})`; `[]` when it has none."""
    if isinstance(completion, (ChatCompletion, ChatCompletionChunk)):
        return list(completion.citations or [])
    raw = (completion.model_extra or {}).get("citations") or []
    return [Citation.model_validate(c) for c in raw]
