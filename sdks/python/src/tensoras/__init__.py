"""The Tensoras SDK: the official `openai` client with typed access to Tensoras' own API."""

from . import types
from ._async_resources import (
    AsyncDataSources,
    AsyncFunctions,
    AsyncKeys,
    AsyncKnowledgeBases,
    AsyncModels,
    AsyncRag,
    AsyncRerank,
    AsyncTenants,
    AsyncUsage,
)
from ._client import DEFAULT_BASE_URL, AsyncTensoras, Tensoras, citations
from ._resources import (
    DataSources,
    Functions,
    IngestionTimeout,
    Keys,
    KnowledgeBases,
    Models,
    Rag,
    Rerank,
    Tenants,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_URL",
    "AsyncDataSources",
    "AsyncFunctions",
    "AsyncKeys",
    "AsyncKnowledgeBases",
    "AsyncModels",
    "AsyncRag",
    "AsyncRerank",
    "AsyncTenants",
    "AsyncTensoras",
    "AsyncUsage",
    "DataSources",
    "Functions",
    "IngestionTimeout",
    "Keys",
    "KnowledgeBases",
    "Models",
    "Rag",
    "Rerank",
    "Tenants",
    "Tensoras",
    "Usage",
    "citations",
    "types",
]
