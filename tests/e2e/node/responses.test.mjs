// End to end: the Responses API through the official `openai` Node SDK (issue #22): text,
// streamed events that reassemble to the same text, a function call, previous_response_id.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import OpenAI from 'openai';

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
