// Plain OpenAI calls through `Tensoras`, then what Tensoras adds to models and usage.
//   TENSORAS_API_KEY=tns_... node quickstart.js
import { Tensoras } from 'tensoras';

const client = new Tensoras(); // TENSORAS_BASE_URL, or http://127.0.0.1:8080/v1

const chat = await client.chat.completions.create({
  model: 'smollm2',
  temperature: 0,
  max_tokens: 32,
  messages: [{ role: 'user', content: 'What is the capital of France?' }],
});
console.log(chat.choices[0]?.message.content);

const embeddings = await client.embeddings.create({ model: 'all-minilm-l6-v2', input: ['cat', 'kitten'] });
console.log(embeddings.data[0]?.embedding.length, 'dimensions');

for await (const model of client.models.list()) {
  console.log(model.id, model.kind, model.context_length, model.aliases);
}

const report = await client.usage.retrieve({ group_by: ['model'] });
for (const bucket of report.data) console.log(bucket.model, bucket.requests, bucket.input_tokens, bucket.output_tokens);
console.log('total cost:', report.total.cost_usd);
