"""Retrieval over the tenant's knowledge bases, as `POST /v1/knowledge-bases/{id}/retrieve`.

    from tensoras import kb

    for chunk in kb.retrieve(["kb_..."], "how do I reset my password?", top_k=4):
        print(chunk.filename, chunk.score, chunk.text)

Only the knowledge bases the manifest grants (`grants.knowledge_bases`) are reachable;
another tenant's id is `NotFound`, whatever the grant says.
"""

import json
from dataclasses import dataclass

from wit_world.imports import retrieval as _wit

from .errors import call


@dataclass
class Chunk:
    """One retrieved chunk, best first."""

    knowledge_base: str
    file_id: str
    filename: str
    chunk_index: int
    text: str
    score: float
    metadata: dict


def retrieve(knowledge_bases, query: str, top_k: int = 4, search_type: str = "vector", filters=None, min_score=None) -> list:
    """Searches the knowledge bases together; at most `top_k` chunks over all of them.

    `search_type` is `vector`, `keyword` or `hybrid`; `filters` a metadata filter
    (`{"field": {"$eq": ...}}`); chunks scoring below `min_score` are dropped."""
    ids = [knowledge_bases] if isinstance(knowledge_bases, str) else list(knowledge_bases)
    search = _wit.Search(
        query=query,
        top_k=top_k,
        search_type=search_type,
        filters=None if filters is None else json.dumps(filters),
        min_score=min_score,
    )
    return [
        Chunk(c.knowledge_base, c.file_id, c.filename, c.chunk_index, c.text, c.score, json.loads(c.metadata or "{}"))
        for c in call(_wit.retrieve, ids, search)
    ]


__all__ = ["Chunk", "retrieve"]
