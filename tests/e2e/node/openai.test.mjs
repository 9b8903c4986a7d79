// End to end: the real binary driven by the official `openai` Node SDK.
// One server for this file; every generation is greedy (temperature 0).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import OpenAI, { toFile } from 'openai';

import { newKey, startServer } from './server.mjs';

const CHAT = 'smollm2-135m-instruct';
const EMBED = 'all-minilm-l6-v2';
const FRANCE = [{ role: 'user', content: 'What is the capital of France?' }];
const FRANCE_ANSWER = 'The capital of France is Paris.';

let server;
let client;

before(async () => {
  server = await startServer('--openai-aliases');
  client = new OpenAI({ baseURL: server.url + '/v1', apiKey: server.apiKey, maxRetries: 0, timeout: 120_000 });
});

after(async () => {
  if (server) {
    const exited = await server.stop();
    assert.equal(exited.code, 0, `server exit: ${JSON.stringify(exited)}`);
  }
});

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length > 0, 'the stream sent no chunks');
  return chunks;
}

const textOf = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

test('chat answers the capital of France', async () => {
  const r = await client.chat.completions.create({ model: CHAT, messages: FRANCE, temperature: 0, max_tokens: 30 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.match(r.choices[0].message.content, /Paris/);
  assert.equal(r.choices[0].message.content, FRANCE_ANSWER);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('the gpt-4o-mini alias answers like the local model', async () => {
  const r = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: FRANCE,
    temperature: 0,
    max_tokens: 30,
  });
  assert.equal(r.choices[0].message.content, FRANCE_ANSWER);
});

test('streamed deltas concatenate to the non-streamed text', async () => {
  const args = { model: CHAT, messages: FRANCE, temperature: 0, max_tokens: 30 };
  const full = await client.chat.completions.create(args);
  const chunks = await collect(await client.chat.completions.create({ ...args, stream: true }));
  assert.equal(textOf(chunks), full.choices[0].message.content);
  assert.deepEqual(new Set(chunks.map((c) => c.object)), new Set(['chat.completion.chunk']));
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'every chunk carries the same id');
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
  assert.ok(chunks.every((c) => !c.usage), 'no usage without stream_options.include_usage');
});

test('the SDK stream helper gives the same final message', async () => {
  const args = { model: CHAT, messages: FRANCE, temperature: 0, max_tokens: 30 };
  const stream = client.chat.completions.stream(args);
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].message.content, FRANCE_ANSWER);
  assert.equal(final.choices[0].finish_reason, 'stop');
});

test('include_usage ends the stream with a usage chunk', async () => {
  const args = { model: CHAT, messages: FRANCE, temperature: 0, max_tokens: 30 };
  const full = await client.chat.completions.create(args);
  const chunks = await collect(
    await client.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } }),
  );
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.prompt_tokens, full.usage.prompt_tokens);
  assert.equal(last.usage.completion_tokens, full.usage.completion_tokens);
  assert.equal(last.usage.total_tokens, full.usage.total_tokens);
  assert.ok(chunks.slice(0, -1).every((c) => !c.usage), 'only the last chunk carries usage');
  assert.equal(textOf(chunks), full.choices[0].message.content);
});

test('stop sequences cut the output', async () => {
  const r = await client.chat.completions.create({
    model: CHAT,
    messages: FRANCE,
    temperature: 0,
    max_tokens: 30,
    stop: [' France is'],
  });
  assert.equal(r.choices[0].message.content, 'The capital of');
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('embeddings (base64 by default) keep cat nearer kitten than the stock market', async () => {
  const input = ['cat', 'kitten', 'stock market'];
  const r = await client.embeddings.create({ model: EMBED, input });
  assert.equal(r.data.length, 3);
  const [cat, kitten, stocks] = r.data.map((d) => d.embedding);
  for (const v of [cat, kitten, stocks]) {
    assert.equal(v.length, 384);
    assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-3, 'unit norm');
  }
  assert.ok(cosine(cat, kitten) > cosine(cat, stocks), 'cat is nearer kitten than the stock market');

  const floats = await client.embeddings.create({ model: EMBED, input, encoding_format: 'float' });
  floats.data.forEach((d, i) => {
    const maxDiff = Math.max(...d.embedding.map((x, j) => Math.abs(x - r.data[i].embedding[j])));
    assert.ok(maxDiff <= 1e-6, `base64 and float embeddings differ by ${maxDiff}`);
  });

  const aliased = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'cat' });
  assert.equal(aliased.data[0].embedding.length, 384);
});

test('unknown model is a NotFoundError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: FRANCE, max_tokens: 5 }),
    (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'model_not_found');
      return true;
    },
  );
});

test('invalid parameters are a BadRequestError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: CHAT, messages: FRANCE, temperature: 5, max_tokens: 5 }),
    (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, 'temperature');
      return true;
    },
  );
});

test('a wrong key is an AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL: server.url + '/v1', apiKey: newKey(), maxRetries: 0 });
  await assert.rejects(bad.models.list(), (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 401);
    return true;
  });
});

test('a refused upload is answered with its error, not a reset connection', async () => {
  // The SDK sends the whole body before it reads the answer; the server refuses the key
  // before reading it, and must read the rest (and discard it) for the 401 to arrive.
  const bad = new OpenAI({ baseURL: server.url + '/v1', apiKey: newKey(), maxRetries: 0 });
  const refused = (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}: ${err}`);
    return true;
  };
  for (const mb of [2, 20]) {
    const file = await toFile(Buffer.alloc(mb << 20, 97), 'big.txt');
    await assert.rejects(bad.files.create({ file, purpose: 'assistants' }), refused);
  }
  const long = [{ role: 'user', content: 'a '.repeat(1 << 20) }];
  await assert.rejects(bad.chat.completions.create({ model: CHAT, messages: long }), refused);
});

test('models list and retrieve', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(CHAT), ids.join(','));
  assert.ok(ids.includes(EMBED), ids.join(','));
  const m = await client.models.retrieve(CHAT);
  assert.equal(m.id, CHAT);
});
