// End to end: a chat function deployed as model `fn:concise` (functions/examples/concise)
// used through the official `openai` Node SDK, streamed and not, at temperature 0.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import OpenAI from 'openai';

import { REPO, startServer } from './server.mjs';

let server;
let client;

before(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: server.url + '/v1', apiKey: server.apiKey, maxRetries: 0, timeout: 180_000 });
  const form = new FormData();
  form.append('file', new Blob([readFileSync(join(REPO, 'build', 'functions', 'concise.wasm'))]), 'concise.wasm');
  form.append('manifest', JSON.stringify({ name: 'concise', kind: 'chat', grants: { models: ['smollm2-135m-instruct'] } }));
  const r = await fetch(server.url + '/v1/functions', {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.apiKey}` },
    body: form,
  });
  assert.equal(r.status, 201, await r.text());
});

after(async () => {
  if (server) await server.stop();
});

test('a chat function is a model: stream and non-stream agree at temperature 0', async () => {
  const request = {
    model: 'fn:concise',
    messages: [{ role: 'user', content: 'Why is the sky blue?' }],
    temperature: 0,
    max_tokens: 30,
  };
  const whole = await client.chat.completions.create(request);
  assert.equal(whole.model, 'fn:concise');
  assert.ok(whole.usage.completion_tokens > 0);
  const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

test('an unknown fn: model is a NotFoundError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'fn:missing', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found',
  );
});
