"""Schemathesis hooks for test_openapi.py: generated requests name the server's real models
and ask for few tokens, so that an inference request is a valid request the model actually
runs (rather than a `model_not_found`) and a run of hundreds of them fits in CI. Only
values of the right type are touched: a request that is invalid on purpose (negative
testing) stays exactly as invalid."""

import schemathesis

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
MODEL_FOR = {"/v1/chat/completions": CHAT, "/v1/completions": CHAT, "/v1/embeddings": EMBED, "/v1/responses": CHAT}
# Fields that bound how much the model generates.
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MAX_TOKENS = 4
# The document's maximum for them (int64): a larger value is a request invalid on purpose.
INT64_MAX = 2**63 - 1


@schemathesis.hook
def map_body(context, body):
    path = context.operation.path if context.operation else ""
    model = MODEL_FOR.get(path)
    if model is None or not isinstance(body, dict):
        return body
    if isinstance(body.get("model"), str) and body["model"] and not body["model"].startswith("fn:"):
        body["model"] = model
    for field in TOKEN_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and MAX_TOKENS < value <= INT64_MAX:
            body[field] = MAX_TOKENS
    if not any(field in body for field in TOKEN_FIELDS):
        # The Responses API names its limit differently (and refuses the others).
        body["max_output_tokens" if path == "/v1/responses" else "max_tokens"] = MAX_TOKENS
    return body
