"""`support_agent`: answers a customer's question from the tenant's knowledge base, with
citations. A tool the model calls server-side (`tools: [{"type": "function", "function":
{"name": "support_agent"}}]` on a chat completion), or that a client calls directly at
`POST /v1/functions/support-agent/call`.

It retrieves the chunks that best match the question (hybrid search), asks the model to
answer from them alone, and returns the answer with the chunks it was given as numbered
citations. The deployer, not the model, picks the knowledge bases and the model: the
manifest's environment (`grants.env`: `KNOWLEDGE_BASES`, comma-separated; `MODEL`).
"""

import os

from tensoras import Error, InvalidArguments, ai, kb, tool

PARAMETERS = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "maxLength": 200, "description": "The customer's question."},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 8},
    },
    "required": ["question"],
}


@tool(description="Answers a customer support question from the documentation, citing its sources.", parameters=PARAMETERS)
def support_agent(question, top_k=3):
    ids = [k for k in os.environ.get("KNOWLEDGE_BASES", "").split(",") if k]
    if not question.strip():
        raise InvalidArguments("question is empty")
    if not ids:
        raise Error("no knowledge base: set KNOWLEDGE_BASES in the manifest's environment (grants.env)")
    chunks = kb.retrieve(ids, question, top_k=top_k, search_type="hybrid")
    if not chunks:
        return {"answer": "I could not find this in the documentation.", "citations": []}
    sources = "\n\n".join(f"[{i}] {c.text}" for i, c in enumerate(chunks, 1))
    reply = ai.chat(
        model=os.environ.get("MODEL", "smollm2-135m-instruct"),
        messages=[
            {
                "role": "system",
                "content": "You are a support agent. Answer the question using only the numbered sources, "
                "and cite them like [1].\n\n" + sources,
            },
            {"role": "user", "content": question},
        ],
        temperature=0,
        max_tokens=96,
    )
    print(f"support_agent: {len(chunks)} chunks, {reply.usage.get('completion_tokens', 0)} tokens")
    return {
        "answer": reply.text.strip(),
        "citations": [
            {"index": i, "file_id": c.file_id, "filename": c.filename, "chunk_index": c.chunk_index, "score": round(c.score, 4), "quote": c.text[:200]}
            for i, c in enumerate(chunks, 1)
        ],
    }


# componentize-py instantiates the export class by the interface's name.
Tool = support_agent
