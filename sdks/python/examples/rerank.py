"""Reranks documents against a query with `POST /v1/rerank`.

    TENSORAS_API_KEY=tns_... python examples/rerank.py
"""

from tensoras import Tensoras

client = Tensoras()
ranked = client.rerank.create(
    model="all-minilm-l6-v2",
    query="How do I reset my password?",
    documents=["Opening hours are 9 to 5.", {"text": "Click 'Forgot password' on the sign-in page."}],
    top_n=1,
    return_documents=True,
)
for result in ranked.results:
    print(result.index, f"{result.relevance_score:.3f}", result.document.text if result.document else "")
