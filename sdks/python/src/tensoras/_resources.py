"""The synchronous resources `Tensoras` adds. Every request goes through the openai client's
own `get`/`post`/`patch`/`delete`, so retries, timeouts, auth and errors are its own."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx2
from openai import NOT_GIVEN, NotGiven, Omit, Stream, omit
from openai._base_client import make_request_options
from openai._models import FinalRequestOptions
from openai._types import Body, FileTypes, Headers, Query
from openai.pagination import SyncPage
from openai.resources.models import Models as OpenAIModels
from openai.types.chat import ChatCompletionMessageParam

from .types import (
    APIKey,
    ChatCompletion,
    ChatCompletionChunk,
    ChunkingStrategyParam,
    DataSource,
    DataSourceDeleted,
    Function,
    FunctionDeleted,
    FunctionLogs,
    FunctionVersion,
    KeyDeleted,
    KnowledgeBase,
    KnowledgeBaseDeleted,
    Model,
    RerankDocumentInput,
    RerankResponse,
    RetrievalOptions,
    RetrieveResult,
    SearchType,
    Tenant,
    ToolResult,
    UsageReport,
)

if TYPE_CHECKING:
    from openai import OpenAI

MULTIPART = {"Content-Type": "multipart/form-data"}


def path(template: str, *parts: str) -> str:
    """`template` with each `{}` replaced by a part, percent-encoded as one path segment."""
    from urllib.parse import quote

    return template.format(*(quote(p, safe="") for p in parts))


def given(**fields: object) -> dict[str, object]:
    """The fields that were given: `omit` drops one, `None` is sent as `null`."""
    return {k: v for k, v in fields.items() if not isinstance(v, Omit)}


def deploy_form(
    file: str | os.PathLike[str] | bytes, name: str, manifest: dict[str, object]
) -> tuple[dict[str, object], list[tuple[str, FileTypes]]]:
    if isinstance(file, bytes):
        filename, data = f"{name}.wasm", file
    else:
        filename = os.path.basename(file)
        with open(file, "rb") as f:
            data = f.read()
    return {"manifest": json.dumps({"name": name, **manifest})}, [("file", (filename, data, "application/wasm"))]


def usage_query(
    start: date | str | Omit, end: date | str | Omit, group_by: Sequence[str] | str | Omit, **fields: str | Omit
) -> dict[str, object]:
    return given(
        start=start.isoformat() if isinstance(start, date) else start,
        end=end.isoformat() if isinstance(end, date) else end,
        group_by=group_by if isinstance(group_by, (str, Omit)) else ",".join(group_by),
        **fields,
    )


class IngestionTimeout(TimeoutError):
    """A poll gave up before ingestion finished."""


class _Resource:
    def __init__(self, client: OpenAI) -> None:
        self._client = client


class KnowledgeBases(_Resource):
    """`/v1/knowledge-bases`: documents embedded and searchable, for RAG chat and retrieval."""

    @cached_property
    def data_sources(self) -> DataSources:
        return DataSources(self._client)

    def create(
        self,
        *,
        name: str,
        description: str | None | Omit = omit,
        embedding_model: str | None | Omit = omit,
        chunking_strategy: ChunkingStrategyParam | None | Omit = omit,
        metadata: Mapping[str, object] | None | Omit = omit,
    ) -> KnowledgeBase:
        body = given(
            name=name,
            description=description,
            embedding_model=embedding_model,
            chunking_strategy=chunking_strategy,
            metadata=metadata,
        )
        return self._client.post("/knowledge-bases", body=body, cast_to=KnowledgeBase)

    def retrieve(self, knowledge_base_id: str) -> KnowledgeBase:
        return self._client.get(path("/knowledge-bases/{}", knowledge_base_id), cast_to=KnowledgeBase)

    def update(
        self,
        knowledge_base_id: str,
        *,
        name: str | Omit = omit,
        description: str | None | Omit = omit,
        chunking_strategy: ChunkingStrategyParam | None | Omit = omit,
        metadata: Mapping[str, object] | None | Omit = omit,
    ) -> KnowledgeBase:
        body = given(name=name, description=description, chunking_strategy=chunking_strategy, metadata=metadata)
        return self._client.patch(path("/knowledge-bases/{}", knowledge_base_id), body=body, cast_to=KnowledgeBase)

    def list(self) -> SyncPage[KnowledgeBase]:
        return self._client.get_api_list("/knowledge-bases", model=KnowledgeBase, page=SyncPage[KnowledgeBase])

    def delete(self, knowledge_base_id: str) -> KnowledgeBaseDeleted:
        return self._client.delete(path("/knowledge-bases/{}", knowledge_base_id), cast_to=KnowledgeBaseDeleted)

    def search(
        self,
        knowledge_base_id: str,
        *,
        query: str,
        top_k: int | Omit = omit,
        search_type: SearchType | Omit = omit,
        min_score: float | Omit = omit,
        filters: Mapping[str, object] | Omit = omit,
        include_metadata: bool | Omit = omit,
    ) -> RetrieveResult:
        """`POST /v1/knowledge-bases/{id}/retrieve`: the chunks that best match `query`."""
        body = given(
            query=query,
            top_k=top_k,
            search_type=search_type,
            min_score=min_score,
            filters=filters,
            include_metadata=include_metadata,
        )
        return self._client.post(path("/knowledge-bases/{}/retrieve", knowledge_base_id), body=body, cast_to=RetrieveResult)

    def poll(self, knowledge_base_id: str, *, poll_interval: float = 0.5, timeout: float = 600.0) -> KnowledgeBase:
        """Waits until no data source is pending or processing; check `data_source_counts.failed`."""
        deadline = time.monotonic() + timeout
        while not (kb := self.retrieve(knowledge_base_id)).ready:
            if time.monotonic() > deadline:
                raise IngestionTimeout(f"{knowledge_base_id} still ingesting after {timeout} s: {kb.data_source_counts}")
            time.sleep(poll_interval)
        return kb


class DataSources(_Resource):
    """`/v1/knowledge-bases/{id}/data-sources`: the files a knowledge base is built from."""

    def create(
        self,
        knowledge_base_id: str,
        *,
        file_id: str | Omit = omit,
        url: str | Omit = omit,
        metadata: Mapping[str, object] | None | Omit = omit,
    ) -> DataSource:
        """Adds an uploaded file (`file_id`) or a document to download (`url`); ingests in the background."""
        body = given(file_id=file_id, url=url, metadata=metadata)
        return self._client.post(path("/knowledge-bases/{}/data-sources", knowledge_base_id), body=body, cast_to=DataSource)

    def create_many(
        self, knowledge_base_id: str, *, file_ids: Sequence[str], metadata: Mapping[str, object] | None | Omit = omit
    ) -> list[DataSource]:
        body = given(file_ids=list(file_ids), metadata=metadata)
        page = self._client.post(
            path("/knowledge-bases/{}/data-sources", knowledge_base_id), body=body, cast_to=SyncPage[DataSource]
        )
        return page.data

    def upload_and_poll(
        self,
        knowledge_base_id: str,
        *,
        file: FileTypes,
        metadata: Mapping[str, object] | None | Omit = omit,
        poll_interval: float = 0.5,
        timeout: float = 600.0,
    ) -> DataSource:
        """Uploads `file` (purpose `knowledge_base`), adds it and waits until it is ingested."""
        uploaded = self._client.files.create(file=file, purpose="knowledge_base")  # type: ignore[arg-type]
        source = self.create(knowledge_base_id, file_id=uploaded.id, metadata=metadata)
        return self.poll(knowledge_base_id, source.id, poll_interval=poll_interval, timeout=timeout)

    def list(self, knowledge_base_id: str) -> SyncPage[DataSource]:
        return self._client.get_api_list(
            path("/knowledge-bases/{}/data-sources", knowledge_base_id), model=DataSource, page=SyncPage[DataSource]
        )

    def retrieve(self, knowledge_base_id: str, data_source_id: str) -> DataSource:
        return self._client.get(
            path("/knowledge-bases/{}/data-sources/{}", knowledge_base_id, data_source_id), cast_to=DataSource
        )

    def delete(self, knowledge_base_id: str, data_source_id: str) -> DataSourceDeleted:
        return self._client.delete(
            path("/knowledge-bases/{}/data-sources/{}", knowledge_base_id, data_source_id), cast_to=DataSourceDeleted
        )

    def poll(
        self, knowledge_base_id: str, data_source_id: str, *, poll_interval: float = 0.5, timeout: float = 600.0
    ) -> DataSource:
        """Waits until the source is `completed` or `failed` (then `error` says why)."""
        deadline = time.monotonic() + timeout
        while not (source := self.retrieve(knowledge_base_id, data_source_id)).done:
            if time.monotonic() > deadline:
                raise IngestionTimeout(f"{data_source_id} still {source.status} after {timeout} s")
            time.sleep(poll_interval)
        return source


class Rag(_Resource):
    """Chat completions grounded in knowledge bases, with typed `citations`."""

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        knowledge_bases: Sequence[str],
        retrieval_options: RetrievalOptions | Omit = omit,
        stream: Literal[False] = False,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        knowledge_bases: Sequence[str],
        retrieval_options: RetrievalOptions | Omit = omit,
        stream: Literal[True],
        **params: Any,
    ) -> Stream[ChatCompletionChunk]: ...

    def create(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        knowledge_bases: Sequence[str],
        retrieval_options: RetrievalOptions | Omit = omit,
        stream: bool = False,
        **params: Any,
    ) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """`POST /v1/chat/completions` with `knowledge_bases`; `params` are any other chat fields
        (`temperature`, `max_tokens`, `stream_options`, ...)."""
        body = given(
            model=model,
            messages=list(messages),
            knowledge_bases=list(knowledge_bases),
            retrieval_options=retrieval_options,
            **params,
        )
        if stream:
            body["stream"] = True
        return self._client.post(
            "/chat/completions", body=body, cast_to=ChatCompletion, stream=stream, stream_cls=Stream[ChatCompletionChunk]
        )


class Rerank(_Resource):
    def create(
        self,
        *,
        model: str,
        query: str,
        documents: Sequence[RerankDocumentInput],
        top_n: int | Omit = omit,
        return_documents: bool | Omit = omit,
    ) -> RerankResponse:
        """`POST /v1/rerank`: the documents ordered by relevance to `query`."""
        body = given(model=model, query=query, documents=list(documents), top_n=top_n, return_documents=return_documents)
        return self._client.post("/rerank", body=body, cast_to=RerankResponse)


class Functions(_Resource):
    """`/v1/functions`: WebAssembly components deployed as tools, HTTP endpoints or chat models."""

    def deploy(
        self,
        file: str | os.PathLike[str] | bytes,
        *,
        name: str,
        kind: Literal["tool", "http", "chat"] = "tool",
        description: str | None | Omit = omit,
        parameters: Mapping[str, object] | None | Omit = omit,
        limits: Mapping[str, object] | Omit = omit,
        grants: Mapping[str, object] | Omit = omit,
        replaces: str | None | Omit = omit,
    ) -> Function:
        """Deploys a `.wasm` component (a path or its bytes); a redeploy of `name` is a new version."""
        manifest = given(
            kind=kind, description=description, parameters=parameters, limits=limits, grants=grants, replaces=replaces
        )
        body, files = deploy_form(file, name, manifest)
        return self._client.post(
            "/functions", body=body, files=files, options={"headers": MULTIPART}, cast_to=Function
        )

    def list(self) -> SyncPage[Function]:
        return self._client.get_api_list("/functions", model=Function, page=SyncPage[Function])

    def retrieve(self, name: str) -> Function:
        return self._client.get(path("/functions/{}", name), cast_to=Function)

    def delete(self, name: str) -> FunctionDeleted:
        return self._client.delete(path("/functions/{}", name), cast_to=FunctionDeleted)

    def call(self, name: str, arguments: Mapping[str, object] | None = None) -> ToolResult:
        """Calls a tool function with its arguments. Arguments it refuses raise `openai.BadRequestError`,
        a tool that fails `openai.UnprocessableEntityError`."""
        return self._client.post(path("/functions/{}/call", name), body=dict(arguments or {}), cast_to=ToolResult)

    def invoke(
        self,
        name: str,
        subpath: str = "",
        *,
        method: str = "POST",
        content: bytes | str | None = None,
        json: object = NOT_GIVEN,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, object] | None = None,
    ) -> httpx2.Response:
        """Sends a request to an HTTP function (it sees `/{subpath}`); answers its response.
        An answer of 4xx/5xx raises the openai error for that status."""
        url = path("/functions/{}/invoke", name) + ("/" + subpath.lstrip("/") if subpath else "")
        options = FinalRequestOptions.construct(
            method=method.lower(),
            url=url,
            content=content.encode() if isinstance(content, str) else content,
            json_data=None if json is NOT_GIVEN else json,
            headers=dict(headers or {}),
            params=dict(params or {}),
        )
        return self._client.request(httpx2.Response, options)

    def versions(self, name: str) -> SyncPage[FunctionVersion]:
        return self._client.get_api_list(
            path("/functions/{}/versions", name), model=FunctionVersion, page=SyncPage[FunctionVersion]
        )

    def rollback(self, name: str, *, version: int) -> Function:
        return self._client.post(path("/functions/{}/rollback", name), body={"version": version}, cast_to=Function)

    def logs(self, name: str, *, after: int | Omit = omit, limit: int | Omit = omit) -> FunctionLogs:
        return self._client.get(
            path("/functions/{}/logs", name), options={"params": given(after=after, limit=limit)}, cast_to=FunctionLogs
        )


class Usage(_Resource):
    def retrieve(
        self,
        *,
        start: date | str | Omit = omit,
        end: date | str | Omit = omit,
        model: str | Omit = omit,
        key: str | Omit = omit,
        tenant: str | Omit = omit,
        group_by: Sequence[str] | str | Omit = omit,
    ) -> UsageReport:
        """`GET /v1/usage`: tokens, requests and cost, grouped by `day`, `model`, `key`, `tenant`."""
        query = usage_query(start=start, end=end, model=model, key=key, tenant=tenant, group_by=group_by)
        return self._client.get("/usage", options={"params": query}, cast_to=UsageReport)


class Keys(_Resource):
    def create(
        self,
        *,
        name: str,
        tenant: str | Omit = omit,
        role: Literal["member", "admin", "operator"] | Omit = omit,
        scopes: Sequence[str] | Omit = omit,
        plan: str | Omit = omit,
    ) -> APIKey:
        """A new key; its secret is in `key` of this answer only."""
        body = given(name=name, tenant=tenant, role=role, scopes=scopes if isinstance(scopes, Omit) else list(scopes), plan=plan)
        return self._client.post("/keys", body=body, cast_to=APIKey)

    def list(self, *, tenant: str | Omit = omit) -> SyncPage[APIKey]:
        return self._client.get_api_list(
            "/keys", model=APIKey, page=SyncPage[APIKey], options={"params": given(tenant=tenant)}
        )

    def update(self, key_id: str, *, plan: str | None) -> APIKey:
        return self._client.patch(path("/keys/{}", key_id), body={"plan": plan}, cast_to=APIKey)

    def delete(self, key_id: str) -> KeyDeleted:
        return self._client.delete(path("/keys/{}", key_id), cast_to=KeyDeleted)


class Tenants(_Resource):
    def retrieve(self, name: str) -> Tenant:
        return self._client.get(path("/tenants/{}", name), cast_to=Tenant)

    def update(
        self, name: str, *, plan: str | None | Omit = omit, monthly_budget_usd: float | None | Omit = omit
    ) -> Tenant:
        """Operators only; `None` resets a field, leaving it out keeps it."""
        body = given(plan=plan, monthly_budget_usd=monthly_budget_usd)
        return self._client.patch(path("/tenants/{}", name), body=body, cast_to=Tenant)


class Models(OpenAIModels):
    """OpenAI's models resource, answering Tensoras' `Model` (kind, context length, aliases, pricing)."""

    def retrieve(
        self,
        model: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: float | httpx2.Timeout | None | NotGiven = NOT_GIVEN,
    ) -> Model:
        options = make_request_options(
            extra_headers=extra_headers, extra_query=extra_query, extra_body=extra_body, timeout=timeout
        )
        return self._get(path("/models/{}", model), options=options, cast_to=Model)

    def list(  # type: ignore[override]
        self,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: float | httpx2.Timeout | None | NotGiven = NOT_GIVEN,
    ) -> SyncPage[Model]:
        options = make_request_options(
            extra_headers=extra_headers, extra_query=extra_query, extra_body=extra_body, timeout=timeout
        )
        return self._get_api_list("/models", model=Model, page=SyncPage[Model], options=options)
