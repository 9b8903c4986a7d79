// A knowledge base from a file, a retrieval, and a chat answer with typed citations.
//   TENSORAS_API_KEY=tns_... node rag.js
import { Tensoras, toFile } from 'tensoras';

const client = new Tensoras();

const kb = await client.knowledgeBases.create({
  name: 'handbook',
  chunking_strategy: { type: 'recursive', chunk_size: 800, chunk_overlap: 100 },
});
const source = await client.knowledgeBases.dataSources.uploadAndPoll(
  kb.id,
  await toFile(Buffer.from('Security memo. The access code for the Zephyr vault is 4417.'), 'vault.txt'),
  { metadata: { team: 'security' } },
);
console.log(source.status, source.chunks_done, 'chunks');

const found = await client.knowledgeBases.search(kb.id, { query: 'Zephyr vault', top_k: 3, search_type: 'hybrid' });
for (const chunk of found.data) console.log(chunk.score.toFixed(3), chunk.filename, chunk.text);

const answer = await client.rag.create({
  model: 'smollm2',
  messages: [{ role: 'user', content: 'What is the access code for the Zephyr vault?' }],
  knowledge_bases: [kb.id],
  retrieval_options: { top_k: 2, search_type: 'hybrid' },
  temperature: 0,
  max_tokens: 48,
});
console.log(answer.choices[0]?.message.content);
for (const cite of answer.citations ?? []) {
  console.log(`[${cite.index}] ${cite.source} (${cite.file_id}, chunk ${cite.chunk_index}, score ${cite.score.toFixed(3)})`);
}

// Streamed: the first chunk carries the citations.
const stream = await client.rag.create({
  model: 'smollm2',
  messages: [{ role: 'user', content: 'What is the access code for the Zephyr vault?' }],
  knowledge_bases: [kb.id],
  stream: true,
});
for await (const chunk of stream) {
  if (chunk.citations) console.log('sources:', chunk.citations.map((c) => c.source));
  process.stdout.write(chunk.choices[0]?.delta.content ?? '');
}
console.log();

await client.knowledgeBases.delete(kb.id);
