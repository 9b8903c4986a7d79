// End to end: tool calling and structured outputs with the official `openai` Node SDK and
// its zod helpers (zodResponseFormat, zodFunction), against SmolLM2-135M. The shapes hold
// because the chat handler enforces them by constrained decoding.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import OpenAI from 'openai';
import { zodFunction, zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';

import { startServer } from './server.mjs';

const CHAT = 'smollm2-135m-instruct';

let server;
let client;

before(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: server.url + '/v1', apiKey: server.apiKey, maxRetries: 0, timeout: 180_000 });
});

after(async () => {
  if (server) await server.stop();
});

const Person = z.object({ name: z.string(), age: z.number().int(), likes_cats: z.boolean() });
const GetWeather = z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']) });

test('chat.completions.parse with zodResponseFormat returns a parsed object', async () => {
  for (const seed of [1, 2]) {
    const r = await client.chat.completions.parse({
      model: CHAT,
      messages: [{ role: 'user', content: 'Describe Bob, who is 41 and afraid of cats.' }],
      response_format: zodResponseFormat(Person, 'person'),
      seed,
      max_tokens: 120,
    });
    const parsed = r.choices[0].message.parsed;
    assert.ok(parsed, r.choices[0].message.content);
    assert.deepEqual(Person.parse(parsed), parsed);
  }
});

test('zodFunction tools: required and named choices give valid calls, parsed by the SDK', async () => {
  const tools = [zodFunction({ name: 'get_weather', parameters: GetWeather })];
  for (const tool_choice of ['required', { type: 'function', function: { name: 'get_weather' } }]) {
    const r = await client.chat.completions.parse({
      model: CHAT,
      messages: [{ role: 'user', content: 'How warm is it in Oslo?' }],
      tools,
      tool_choice,
      seed: 3,
      max_tokens: 120,
    });
    const choice = r.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    for (const call of choice.message.tool_calls) {
      assert.match(call.id, /^call_/);
      assert.equal(call.function.name, 'get_weather');
      // The SDK validated the arguments against the zod schema.
      assert.deepEqual(GetWeather.parse(call.function.parsed_arguments), call.function.parsed_arguments);
    }
  }
});

test('tool_choice none never calls', async () => {
  const r = await client.chat.completions.create({
    model: CHAT,
    messages: [{ role: 'user', content: 'How warm is it in Oslo?' }],
    tools: [zodFunction({ name: 'get_weather', parameters: GetWeather })],
    tool_choice: 'none',
    temperature: 0,
    max_tokens: 30,
  });
  assert.equal(r.choices[0].message.tool_calls, undefined);
});

test('streamed tool calls reassemble to the non-streamed ones', async () => {
  const body = {
    model: CHAT,
    messages: [{ role: 'user', content: 'Weather in Oslo and in Bergen?' }],
    tools: [zodFunction({ name: 'get_weather', parameters: GetWeather })],
    tool_choice: 'required',
    seed: 5,
    max_tokens: 150,
  };
  const whole = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({ ...body, stream: true });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    finish = choice.finish_reason ?? finish;
    for (const d of choice.delta.tool_calls ?? []) {
      if (d.id) calls[d.index] = { name: d.function.name, arguments: d.function.arguments };
      else calls[d.index].arguments += d.function.arguments;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.deepEqual(
    calls,
    whole.choices[0].message.tool_calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments })),
  );
});

test('bad tool parameters are 400s naming the param', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: CHAT, messages: [{ role: 'user', content: 'hi' }], tool_choice: 'required' }),
    (err) => err.status === 400 && err.error?.param === 'tool_choice',
  );
});
