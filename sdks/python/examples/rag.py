"""A knowledge base from a file, a retrieval, and a chat answer with typed citations.

    TENSORAS_API_KEY=tns_... python examples/rag.py
"""

from tensoras import Tensoras

client = Tensoras()

kb = client.knowledge_bases.create(
    name="handbook", chunking_strategy={"type": "recursive", "chunk_size": 800, "chunk_overlap": 100}
)
source = client.knowledge_bases.data_sources.upload_and_poll(
    kb.id,
    file=("vault.txt", b"Security memo. The access code for the Zephyr vault is 4417."),
    metadata={"team": "security"},
)
print(source.status, source.chunks_done, "chunks")

found = client.knowledge_bases.search(kb.id, query="Zephyr vault", top_k=3, search_type="hybrid")
for chunk in found.data:
    print(f"{chunk.score:.3f} {chunk.filename}: {chunk.text}")

answer = client.rag.create(
    model="smollm2",
    messages=[{"role": "user", "content": "What is the access code for the Zephyr vault?"}],
    knowledge_bases=[kb.id],
    retrieval_options={"top_k": 2, "search_type": "hybrid"},
    temperature=0,
    max_tokens=48,
)
print(answer.choices[0].message.content)
for cite in answer.citations or []:
    print(f"[{cite.index}] {cite.source} ({cite.file_id}, chunk {cite.chunk_index}, score {cite.score:.3f})")

client.knowledge_bases.delete(kb.id)
