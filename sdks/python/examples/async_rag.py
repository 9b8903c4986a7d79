"""The RAG flow with `AsyncTensoras`: several questions answered concurrently.

    TENSORAS_API_KEY=tns_... python examples/async_rag.py
"""

import asyncio

from tensoras import AsyncTensoras
from tensoras.types import ChatCompletion


async def main() -> None:
    client = AsyncTensoras()
    kb = await client.knowledge_bases.create(name="facts")
    uploaded = await client.files.create(
        file=("ferry.md", b"# Ferry\n\nThe ferry to Kelpie Island leaves from Pier 9 at 7:40 every morning.\n"),
        purpose="knowledge_base",  # type: ignore[arg-type]
    )
    source = await client.knowledge_bases.data_sources.create(kb.id, file_id=uploaded.id)
    await client.knowledge_bases.data_sources.poll(kb.id, source.id)

    async def ask(question: str) -> ChatCompletion:
        return await client.rag.create(
            model="smollm2",
            messages=[{"role": "user", "content": question}],
            knowledge_bases=[kb.id],
            temperature=0,
            max_tokens=32,
        )

    answers = await asyncio.gather(
        ask("Where does the ferry to Kelpie Island leave from?"), ask("When does the ferry to Kelpie Island leave?")
    )
    for answer in answers:
        print(answer.choices[0].message.content, [c.source for c in answer.citations or []])

    async for source_listed in client.knowledge_bases.data_sources.list(kb.id):
        print(source_listed.id, source_listed.status)
    await client.knowledge_bases.delete(kb.id)


asyncio.run(main())
