"""`semantic-rank`: an HTTP function that orders texts by how close in meaning they are
to a query, with an embedding model.

    POST /v1/functions/semantic-rank/invoke
    {"query": "reset my password", "documents": ["...", "..."], "top_n": 3}

answers `{"model": ..., "results": [{"index": 2, "score": 0.83, "document": "..."}, ...]}`,
best first (cosine similarity). `model` in the body picks the embedding model (default
`all-minilm-l6-v2`; the manifest must grant it). `"file_id": "file-..."` in place of
`documents` ranks the lines of a file the tenant uploaded (the manifest grants `files`).
"""

import math

from tensoras import ai, files, http

DEFAULT_MODEL = "all-minilm-l6-v2"


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@http.handler
def semantic_rank(req):
    if req.method != "POST":
        return http.error(405, "invalid_request_error", "POST a JSON body: {\"query\": ..., \"documents\": [...]}")
    try:
        body = req.json()
        query = body["query"]
        if isinstance(body.get("file_id"), str):
            # A missing file, or another tenant's, is a 404 (http.handler).
            documents = [line.strip() for line in files.read_str(body["file_id"]).splitlines() if line.strip()]
        else:
            documents = body["documents"]
        if not isinstance(query, str) or not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            raise ValueError("query must be a string and documents a list of strings")
        if not documents:
            raise ValueError("documents is empty")
    except (ValueError, KeyError, TypeError) as e:
        return http.error(400, "invalid_request_error", f"invalid body: {e}")
    model = body.get("model", DEFAULT_MODEL)
    top_n = int(body.get("top_n", len(documents)))
    vectors = ai.embed(model, [query] + documents)  # a refusal becomes a 403 (http.handler)
    scored = sorted(
        ({"index": i, "score": round(cosine(vectors[0], v), 6), "document": d} for i, (v, d) in enumerate(zip(vectors[1:], documents))),
        key=lambda r: -r["score"],
    )
    return http.Response(200, {"model": model, "results": scored[:top_n]})


# componentize-py instantiates the export class by the interface's name.
IncomingHandler = semantic_rank
