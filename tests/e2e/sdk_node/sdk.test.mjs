// End to end: the native Node SDK (`sdks/node`), as packed into a tarball and installed here by
// scripts/sdks.sh, against the real server: OpenAI calls unchanged, the RAG flow with typed
// citations, deployed functions, usage, keys and models, errors as the openai SDK's.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import OpenAI from 'openai';
import Tensoras, {
  AuthenticationError,
  BadRequestError,
  DEFAULT_BASE_URL,
  NotFoundError,
  PermissionDeniedError,
  citations,
  toFile,
} from 'tensoras';

import { REPO, startServer } from '../node/server.mjs';

const CHAT = 'smollm2';
const QUESTION = 'What is the access code for the Zephyr vault?';
const DOCS = {
  'vault.txt': 'Security memo. The access code for the Zephyr vault is 4417. Only two people know it.',
  'ferry.md': '# Ferry timetable\n\nThe ferry to Kelpie Island leaves from Pier 9 at 7:40 every morning.\n',
};
const FUNCTIONS = join(REPO, 'build', 'functions');

let server;
let client;

before(async () => {
  server = await startServer();
  client = new Tensoras({ baseURL: server.url + '/v1', apiKey: server.apiKey, maxRetries: 0, timeout: 300_000 });
});

after(async () => {
  if (server) await server.stop();
});

test('the SDK is the installed tarball', () => {
  const entry = realpathSync(fileURLToPath(import.meta.resolve('tensoras')));
  assert.match(entry, /tests\/e2e\/sdk_node\/node_modules\/tensoras\/dist\/index\.js$/);
  assert.ok(existsSync(entry.replace(/\.js$/, '.d.ts')));
  assert.equal(JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')).version, '0.1.0');
});

test('apiKey and baseURL come from the environment', () => {
  const saved = { ...process.env };
  try {
    delete process.env.TENSORAS_BASE_URL;
    process.env.TENSORAS_API_KEY = 'tns_from_env';
    const c = new Tensoras();
    assert.equal(c.baseURL, DEFAULT_BASE_URL);
    assert.equal(DEFAULT_BASE_URL, 'http://127.0.0.1:8080/v1');
    assert.equal(c.apiKey, 'tns_from_env');
    process.env.TENSORAS_BASE_URL = server.url + '/v1';
    assert.equal(new Tensoras().baseURL, server.url + '/v1');
    assert.equal(new Tensoras({ apiKey: 'tns_x' }).apiKey, 'tns_x');
  } finally {
    process.env = saved;
  }
});

test('OpenAI calls work unchanged', async () => {
  assert.ok(client instanceof OpenAI);
  const plain = new OpenAI({ baseURL: server.url + '/v1', apiKey: server.apiKey, maxRetries: 0, timeout: 300_000 });
  const request = {
    model: CHAT,
    temperature: 0,
    max_tokens: 24,
    messages: [{ role: 'user', content: 'What is the capital of France?' }],
  };
  const ours = await client.chat.completions.create(request);
  assert.match(ours.choices[0].message.content, /Paris/);
  assert.equal(ours.choices[0].message.content, (await plain.chat.completions.create(request)).choices[0].message.content);
  const e = await client.embeddings.create({ model: 'all-minilm-l6-v2', input: ['cat', 'kitten'] });
  assert.deepEqual(e.data.map((d) => d.embedding.length), [384, 384]);
  const quick = client.withOptions({ maxRetries: 1 });
  assert.ok(quick instanceof Tensoras);
  assert.equal(quick.maxRetries, 1);
  assert.equal((await quick.models.retrieve(CHAT)).id, 'smollm2-135m-instruct');
});

test('models carry the Tensoras fields', async () => {
  const models = {};
  for await (const m of client.models.list()) models[m.id] = m;
  const chat = models['smollm2-135m-instruct'];
  assert.equal(chat.kind, 'chat');
  assert.equal(models['all-minilm-l6-v2'].kind, 'embedding');
  assert.ok(chat.context_length > 1000);
  assert.ok(chat.aliases.includes('smollm2'));
  assert.equal(typeof chat.pricing.input_per_million, 'number');
});

test('RAG: a knowledge base built, polled, searched, and an answer citing the right file', async () => {
  const kb = await client.knowledgeBases.create({ name: 'facts', metadata: { team: 'qa' } });
  assert.equal(kb.object, 'knowledge_base');
  const files = {};
  for (const [name, text] of Object.entries(DOCS)) {
    files[name] = (await client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'knowledge_base' })).id;
  }
  const first = await client.knowledgeBases.dataSources.create(kb.id, { file_id: files['vault.txt'] });
  assert.equal(first.file_id, files['vault.txt']);
  const more = await client.knowledgeBases.dataSources.createMany(kb.id, { file_ids: [files['ferry.md']] });
  assert.deepEqual(more.map((s) => s.file_id), [files['ferry.md']]);
  const done = await client.knowledgeBases.dataSources.poll(kb.id, first.id, { pollIntervalMs: 200 });
  assert.equal(done.status, 'completed');
  const ready = await client.knowledgeBases.poll(kb.id, { pollIntervalMs: 200 });
  assert.equal(ready.data_source_counts.completed, 2);
  const listed = await client.knowledgeBases.dataSources.list(kb.id);
  assert.deepEqual(listed.data.map((s) => s.file_id).sort(), Object.values(files).sort());
  assert.deepEqual((await client.knowledgeBases.list()).data.map((k) => k.id), [kb.id]);

  const found = await client.knowledgeBases.search(kb.id, { query: 'Zephyr vault access code', top_k: 2 });
  assert.equal(found.data[0].filename, 'vault.txt');

  const answer = await client.rag.create({
    model: CHAT,
    messages: [{ role: 'user', content: QUESTION }],
    knowledge_bases: [kb.id],
    temperature: 0,
    max_tokens: 48,
  });
  assert.match(answer.choices[0].message.content, /4417/);
  const top = answer.citations[0];
  assert.deepEqual([top.index, top.source, top.file_id, top.knowledge_base_id], [1, 'vault.txt', files['vault.txt'], kb.id]);
  assert.match(top.text, /4417/);

  const stream = await client.rag.create({
    model: CHAT,
    messages: [{ role: 'user', content: QUESTION }],
    knowledge_bases: [kb.id],
    temperature: 0,
    max_tokens: 48,
    stream: true,
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.deepEqual(chunks[0].citations, answer.citations);
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), answer.choices[0].message.content);

  const stock = await client.chat.completions.create({
    model: CHAT,
    messages: [{ role: 'user', content: 'Where does the ferry to Kelpie Island leave from?' }],
    temperature: 0,
    max_tokens: 48,
    knowledge_bases: [kb.id],
  });
  assert.match(stock.choices[0].message.content, /Pier 9/);
  assert.equal(citations(stock)[0].source, 'ferry.md');

  const narrowed = await client.rag.create({
    model: CHAT,
    messages: [{ role: 'user', content: QUESTION }],
    knowledge_bases: [kb.id],
    retrieval_options: { top_k: 1, search_type: 'keyword' },
    max_tokens: 4,
  });
  assert.deepEqual(narrowed.citations.map((c) => c.source), ['vault.txt']);

  await assert.rejects(
    client.rag.create({ model: CHAT, messages: [{ role: 'user', content: 'Hi' }], knowledge_bases: ['kb_nope'] }),
    (err) => err instanceof NotFoundError && err.code === 'knowledge_base_not_found',
  );
  await assert.rejects(
    client.rag.create({ model: CHAT, messages: [{ role: 'user', content: 'Hi' }], knowledge_bases: [kb.id], retrieval_options: { top_k: 0 } }),
    (err) => err instanceof BadRequestError && err.param === 'retrieval_options.top_k',
  );

  const removed = await client.knowledgeBases.dataSources.delete(kb.id, first.id);
  assert.equal(removed.deleted, true);
  assert.equal((await client.knowledgeBases.update(kb.id, { name: 'renamed' })).name, 'renamed');
  assert.equal((await client.knowledgeBases.delete(kb.id)).deleted, true);
  await assert.rejects(client.knowledgeBases.retrieve(kb.id), NotFoundError);
});

test('a knowledge base file uploaded and polled in one call', async () => {
  const kb = await client.knowledgeBases.create({ name: 'owls' });
  const source = await client.knowledgeBases.dataSources.uploadAndPoll(
    kb.id,
    await toFile(Buffer.from('The owl Bramble lives in the clock tower of Vell.'), 'owl.txt'),
    { metadata: { year: 2025 }, pollIntervalMs: 200 },
  );
  assert.equal(source.status, 'completed');
  assert.equal(source.metadata.year, 2025);
  await client.knowledgeBases.delete(kb.id);
});

test('rerank surfaces the server answer (no /v1/rerank yet: NotFoundError)', async () => {
  await assert.rejects(
    client.rerank.create({ model: 'all-minilm-l6-v2', query: 'cat', documents: ['a cat', { text: 'a dog' }], top_n: 1 }),
    (err) => err instanceof NotFoundError && err.status === 404,
  );
});

test('functions: deploy a .wasm, call, versions, rollback, logs, invoke, delete', async () => {
  const wasm = join(FUNCTIONS, 'calc.wasm');
  const v1 = await client.functions.deploy(wasm, { name: 'calc', limits: { timeout_ms: 10000 } });
  assert.deepEqual([v1.name, v1.kind, v1.version, v1.size_bytes], ['calc', 'tool', 1, readFileSync(wasm).length]);
  const result = await client.functions.call('calc', { expression: '6*7' });
  assert.equal(result.output, '{"result":42}');
  await assert.rejects(client.functions.call('calc', { expression: '1 +' }), BadRequestError);

  const v2 = await client.functions.deploy(new Uint8Array(readFileSync(wasm)), { name: 'calc', description: 'Arithmetic.' });
  assert.deepEqual([v2.version, v2.description, v2.sha256], [2, 'Arithmetic.', v1.sha256]);
  const versions = [];
  for await (const v of client.functions.versions('calc')) versions.push([v.version, v.active]);
  assert.deepEqual(versions, [[1, false], [2, true]]);
  assert.equal((await client.functions.rollback('calc', 1)).version, 1);
  assert.equal((await client.functions.retrieve('calc')).version, 1);
  assert.deepEqual((await client.functions.list()).data.map((f) => f.name), ['calc']);

  const logs = await client.functions.logs('calc');
  assert.ok(logs.stats.invocations >= 1 && logs.data.length >= 1);
  assert.deepEqual((await client.functions.logs('calc', { after: logs.data.at(-1).id })).data, []);

  const echo = await client.functions.deploy(join(FUNCTIONS, 'echo.wasm'), { name: 'echo', kind: 'http' });
  assert.ok(echo.url);
  const r = await client.functions.invoke('echo', { path: 'some/path', body: 'ping', query: { q: 1 } });
  assert.deepEqual([r.status, await r.text(), r.headers.get('x-echo-method')], [200, 'ping', 'POST']);
  const put = await client.functions.invoke('echo', { method: 'PUT', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
  assert.deepEqual(await put.json(), { a: 1 });

  assert.equal((await client.functions.delete('calc')).deleted, true);
  assert.equal((await client.functions.delete('echo')).deleted, true);
  await assert.rejects(client.functions.retrieve('calc'), NotFoundError);
});

test('usage, keys and tenants', async () => {
  await client.chat.completions.create({ model: CHAT, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
  const report = await client.usage.retrieve({ group_by: ['model'], end: new Date() });
  const chat = report.data.find((b) => b.model === 'smollm2-135m-instruct');
  assert.ok(chat.requests >= 1 && report.total.requests >= chat.requests);
  assert.equal((await client.usage.retrieve({ start: '2000-01-01', end: '2000-01-02' })).total.requests, 0);

  const key = await client.keys.create({ name: 'other', tenant: 'other-team' });
  assert.match(key.key, /^tns_/);
  assert.ok((await client.keys.list({ tenant: 'other-team' })).data.some((k) => k.id === key.id));
  assert.equal((await client.tenants.retrieve('other-team')).name, 'other-team');
  const theirs = new Tensoras({ baseURL: server.url + '/v1', apiKey: key.key, maxRetries: 0 });
  assert.deepEqual((await theirs.knowledgeBases.list()).data, []); // another tenant's
  await assert.rejects(theirs.tenants.retrieve('other-team'), PermissionDeniedError); // members may not
  assert.equal((await client.keys.delete(key.id)).deleted, true);
  await assert.rejects(theirs.models.list(), AuthenticationError);
});
