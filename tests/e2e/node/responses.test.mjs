// End to end: the Responses API through the official `openai` Node SDK (issue #22): text,
// streamed events that reassemble to the same text, a function call, previous_response_id, and the
// file_search tool over a knowledge base.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import OpenAI, { toFile } from 'openai';

import { startServer } from './server.mjs';

const CHAT = 'smollm2-135m-instruct';

let server;
let client;

before(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: server.url + '/v1', apiKey: server.apiKey, maxRetries: 0, timeout: 120_000 });
});

after(async () => {
  if (server) await server.stop();
});

test('text, and a stream of events that adds up to it', async () => {
  const args = { model: CHAT, input: 'What is the capital of France?', max_output_tokens: 16, temperature: 0 };
  const whole = await client.responses.create(args);
  assert.equal(whole.object, 'response');
  assert.ok(whole.output_text.length > 0);
  const stream = await client.responses.create({ ...args, stream: true });
  let text = '';
  let last;
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') text += event.delta;
    last = event;
  }
  assert.equal(text, whole.output_text);
  assert.ok(['response.completed', 'response.incomplete'].includes(last.type));
});

test('a function call, continued with previous_response_id', async () => {
  const tools = [{
    type: 'function', name: 'get_weather', description: 'Weather in a city.', strict: false,
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  }];
  const first = await client.responses.create({
    model: CHAT, input: 'Weather in Paris?', tools, tool_choice: 'required', temperature: 0,
  });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.ok(call && call.name === 'get_weather');
  assert.equal(typeof JSON.parse(call.arguments).city, 'string');
  const second = await client.responses.create({
    model: CHAT, previous_response_id: first.id, tools, max_output_tokens: 16, temperature: 0,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: 'Sunny' }],
  });
  assert.equal(second.previous_response_id, first.id);
  assert.ok(second.usage.input_tokens > first.usage.input_tokens);
});

test('file_search over a knowledge base cites the file with the fact', async () => {
  const auth = { Authorization: `Bearer ${server.apiKey}`, 'Content-Type': 'application/json' };
  const kb = await (await fetch(`${server.url}/v1/knowledge-bases`, {
    method: 'POST', headers: auth, body: JSON.stringify({ name: 'facts' }),
  })).json();
  const docs = {
    'vault.txt': 'Security memo. The access code for the Zephyr vault is 4417. Only two people know it.',
    'ferry.md': 'The ferry to Kelpie Island leaves from Pier 9 at 7:40 every morning.',
  };
  const ids = {};
  for (const [name, text] of Object.entries(docs)) {
    const file = await client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'knowledge_base' });
    ids[name] = file.id;
    const added = await fetch(`${server.url}/v1/knowledge-bases/${kb.id}/data-sources`, {
      method: 'POST', headers: auth, body: JSON.stringify({ file_id: file.id }),
    });
    assert.equal(added.status, 202);
  }
  const deadline = Date.now() + 300_000;
  for (;;) {
    assert.ok(Date.now() < deadline, 'ingestion did not finish');
    const { data } = await (await fetch(`${server.url}/v1/knowledge-bases/${kb.id}/data-sources`, { headers: auth })).json();
    assert.ok(!data.some((s) => s.status === 'failed'));
    if (data.every((s) => s.status === 'completed')) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const r = await client.responses.create({
    model: CHAT, input: 'What is the access code for the Zephyr vault?', temperature: 0, max_output_tokens: 48,
    tools: [{ type: 'file_search', vector_store_ids: [kb.id] }],
  });
  assert.equal(r.output[0].type, 'file_search_call');
  assert.match(r.output_text, /4417/);
  const [first] = r.output[1].content[0].annotations;
  assert.equal(first.type, 'file_citation');
  assert.equal(first.file_id, ids['vault.txt']);
  assert.equal(first.filename, 'vault.txt');
});
