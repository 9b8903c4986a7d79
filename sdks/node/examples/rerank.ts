// Reranks documents against a query with `POST /v1/rerank`.
//   TENSORAS_API_KEY=tns_... node rerank.js
import { Tensoras } from 'tensoras';

const client = new Tensoras();
const ranked = await client.rerank.create({
  model: 'all-minilm-l6-v2',
  query: 'How do I reset my password?',
  documents: ['Opening hours are 9 to 5.', { text: "Click 'Forgot password' on the sign-in page." }],
  top_n: 1,
  return_documents: true,
});
for (const r of ranked.results) console.log(r.index, r.relevance_score.toFixed(3), r.document?.text);
