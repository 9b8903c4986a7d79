"""Typed shapes of what Tensoras adds to the OpenAI API (as its `/openapi.json` states them).

Every model is an `openai.BaseModel`: unknown fields a newer server sends are kept, not
rejected, and `model_extra` shows them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, TypedDict, Union

import openai
from openai.types import Model as OpenAIModel
from openai.types.chat import ChatCompletion as OpenAIChatCompletion
from openai.types.chat import ChatCompletionChunk as OpenAIChatCompletionChunk

__all__ = [
    "APIKey",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChunkingStrategy",
    "ChunkingStrategyParam",
    "Citation",
    "DataSource",
    "DataSourceCounts",
    "DataSourceDeleted",
    "DataSourceError",
    "Function",
    "FunctionDeleted",
    "FunctionInvocation",
    "FunctionLogStats",
    "FunctionLogs",
    "FunctionVersion",
    "KeyDeleted",
    "KnowledgeBase",
    "KnowledgeBaseDeleted",
    "Model",
    "ModelPricing",
    "RerankDocument",
    "RerankDocumentParam",
    "RerankResponse",
    "RerankResult",
    "RerankUsage",
    "RetrievalOptions",
    "RetrieveResult",
    "RetrievedChunk",
    "SearchType",
    "Tenant",
    "ToolResult",
    "UsageBucket",
    "UsageCounts",
    "UsageReport",
]

SearchType = Literal["vector", "keyword", "hybrid"]


# --- Knowledge bases ---------------------------------------------------------------------


class ChunkingStrategyParam(TypedDict, total=False):
    """How documents are cut into chunks; fields left out keep their current values."""

    type: Literal["recursive", "fixed_size", "semantic"]
    chunk_size: int
    chunk_overlap: int


class ChunkingStrategy(openai.BaseModel):
    type: str
    chunk_size: int
    chunk_overlap: int


class DataSourceCounts(openai.BaseModel):
    """A knowledge base's data sources by status."""

    pending: int
    processing: int
    completed: int
    failed: int
    total: int


class KnowledgeBase(openai.BaseModel):
    id: str
    object: Literal["knowledge_base"]
    name: str
    description: Optional[str] = None
    embedding_model: str
    chunking_strategy: ChunkingStrategy
    metadata: Dict[str, Any]
    created_at: int
    updated_at: int
    data_source_counts: DataSourceCounts
    chunk_count: int

    @property
    def ready(self) -> bool:
        """No data source is still pending or processing."""
        return self.data_source_counts.pending + self.data_source_counts.processing == 0


class KnowledgeBaseDeleted(openai.BaseModel):
    id: str
    object: str
    deleted: bool


class DataSourceError(openai.BaseModel):
    message: str


class DataSource(openai.BaseModel):
    """A file attached to a knowledge base, with its ingestion's progress."""

    id: str
    object: Literal["knowledge_base.data_source"]
    knowledge_base_id: str
    type: str
    file_id: str
    status: Literal["pending", "processing", "completed", "failed"]
    error: Optional[DataSourceError] = None
    chunks_total: Optional[int] = None
    chunks_done: int
    metadata: Dict[str, Any]
    created_at: int
    updated_at: int

    @property
    def done(self) -> bool:
        """Ingestion finished, `completed` or `failed`."""
        return self.status in ("completed", "failed")


class DataSourceDeleted(openai.BaseModel):
    id: str
    object: str
    deleted: bool


class RetrievedChunk(openai.BaseModel):
    object: str
    id: str
    score: float
    text: Optional[str] = None
    file_id: Optional[str] = None
    filename: Optional[str] = None
    data_source_id: Optional[str] = None
    chunk_index: Optional[int] = None
    metadata: Optional[Dict[str, Any]] = None


class RetrieveResult(openai.BaseModel):
    """The chunks a retrieval found, best first."""

    object: str
    knowledge_base_id: str
    query: str
    search_type: SearchType
    data: List[RetrievedChunk]


class RetrievalOptions(TypedDict, total=False):
    """How a RAG chat searches its knowledge bases."""

    top_k: int
    search_type: SearchType
    filters: Dict[str, Any]
    min_score: float


# --- RAG chat --------------------------------------------------------------------------


class Citation(openai.BaseModel):
    """A knowledge base chunk a RAG answer's prompt held, numbered as the model saw it."""

    index: int
    source: str
    """The file's name."""
    file_id: str
    knowledge_base_id: str
    chunk_index: int
    text: str
    score: float


class ChatCompletion(OpenAIChatCompletion):
    """OpenAI's chat completion with the `citations` of a RAG answer."""

    citations: Optional[List[Citation]] = None


class ChatCompletionChunk(OpenAIChatCompletionChunk):
    """A streamed chunk; the first one of a RAG answer carries its `citations`."""

    citations: Optional[List[Citation]] = None


# --- Rerank ----------------------------------------------------------------------------


class RerankDocumentParam(TypedDict):
    text: str


class RerankDocument(openai.BaseModel):
    text: str


class RerankResult(openai.BaseModel):
    index: int
    """Position of the document in the request."""
    relevance_score: float
    document: Optional[RerankDocument] = None
    """With `return_documents=True`."""


class RerankUsage(openai.BaseModel):
    total_tokens: int


class RerankResponse(openai.BaseModel):
    object: str
    results: List[RerankResult]
    """Most relevant first."""
    model: str
    usage: Optional[RerankUsage] = None


# --- Functions -------------------------------------------------------------------------


class Function(openai.BaseModel):
    """A deployed function (the version that serves)."""

    id: str
    object: str
    name: str
    version: int
    kind: Literal["tool", "http", "chat"]
    description: str
    limits: Dict[str, Any]
    grants: Dict[str, Any]
    sha256: str
    size_bytes: int
    created_at: int
    parameters: Optional[Dict[str, Any]] = None
    url: Optional[str] = None
    """HTTP functions: where to send requests."""
    model: Optional[str] = None
    """Chat functions: the model name to use it by, `fn:NAME`."""
    replaces: Optional[str] = None


class FunctionVersion(Function):
    active: bool
    """Whether this version serves."""


class FunctionDeleted(openai.BaseModel):
    id: str
    object: str
    deleted: bool


class ToolResult(openai.BaseModel):
    object: str
    name: str
    output: str
    duration_ms: float


class FunctionInvocation(openai.BaseModel):
    id: int
    object: str
    started_at_ms: int
    duration_ms: float
    status: Literal["ok", "error"]
    error: Optional[str] = None
    output: str
    """What it wrote to stdout and stderr."""


class FunctionLogStats(openai.BaseModel):
    invocations: int
    errors: int
    mean_duration_ms: float


class FunctionLogs(openai.BaseModel):
    """A function's recent invocations, oldest first."""

    object: str
    data: List[FunctionInvocation]
    stats: FunctionLogStats


# --- Usage, keys, tenants, models -------------------------------------------------------


class UsageCounts(openai.BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float


class UsageBucket(UsageCounts):
    """One group of the report: the fields named by `group_by` say which."""

    object: str
    day: Optional[str] = None
    tenant: Optional[str] = None
    key_id: Optional[str] = None
    model: Optional[str] = None


class UsageReport(openai.BaseModel):
    object: str
    start: str
    end: str
    group_by: List[str]
    data: List[UsageBucket]
    total: UsageCounts


class APIKey(openai.BaseModel):
    id: str
    object: str
    name: str
    tenant: str
    role: Literal["member", "admin", "operator"]
    scopes: List[str]
    plan: Optional[str] = None
    created_at: int
    key: Optional[str] = None
    """The secret, `tns_...`: in the answer to `keys.create` only."""


class KeyDeleted(openai.BaseModel):
    id: str
    object: str
    deleted: bool


class Tenant(openai.BaseModel):
    object: str
    name: str
    plan: Optional[str] = None
    effective_plan: str
    monthly_budget_usd: Optional[float] = None
    spent_this_month_usd: float


class ModelPricing(openai.BaseModel):
    input_per_million: float
    output_per_million: float


class Model(OpenAIModel):
    """OpenAI's model object with what Tensoras adds."""

    kind: Literal["chat", "embedding", "function"]
    context_length: Optional[int] = None
    aliases: List[str] = []
    pricing: Optional[ModelPricing] = None
    description: Optional[str] = None


RerankDocumentInput = Union[str, RerankDocumentParam]
