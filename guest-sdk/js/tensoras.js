// Tensoras guest SDK for JavaScript functions (built with componentize-js).
//
//   import { ai, kb, kv, defineTool, serve, sse, TensorasError } from './tensoras.js';
//
// `ai` calls models, `kb` retrieves from knowledge bases, `files` reads the tenant's
// uploaded files, `kv` is the function's own key-value store; `defineTool` makes the export of the `tool-function` world and `serve`
// answers the `http-function` world's requests with a fetch-style handler. A refused or
// failed platform call throws a `TensorasError` whose `kind` says why.

import * as wit from 'tensoras:platform/ai@0.1.0';
import * as retrieval from 'tensoras:platform/retrieval@0.1.0';
import * as store from 'tensoras:platform/kv@0.1.0';
import * as fileStore from 'tensoras:platform/files@0.1.0';

const PREFIX = {
  not_permitted: 'not permitted',
  invalid_request: 'invalid request',
  not_found: 'not found',
  limit_exceeded: 'limit exceeded',
  overloaded: 'overloaded',
  too_large: 'too large',
  failed: 'failed',
};

/** A platform call was refused or failed; `kind` is `not_permitted`, `limit_exceeded`, ... */
export class TensorasError extends Error {
  constructor(kind, message) {
    super(`${PREFIX[kind] ?? kind}: ${message}`);
    this.name = 'TensorasError';
    this.kind = kind;
  }
}

/** Raise from a tool when its arguments are wrong: the model is told so. */
export class InvalidArguments extends Error {
  constructor(message) {
    super(message);
    this.name = 'InvalidArguments';
  }
}

// A WIT error variant (`{tag: 'not-permitted', val: '...'}`, thrown by the generated
// bindings, as the error itself or as its `payload`) as a TensorasError whose text reads
// as the Rust and Python SDKs' do.
function fromWit(e, iface) {
  if (e instanceof TensorasError) return e;
  const p = e && typeof e === 'object' && 'payload' in e ? e.payload : e;
  if (!p || typeof p !== 'object' || typeof p.tag !== 'string') return e;
  let kind = p.tag.replace(/-/g, '_');
  let val = p.val;
  if (iface === 'retrieval') {
    if (kind === 'not_permitted') val = `knowledge base '${val}' is not granted to this function (grants.knowledge_bases)`;
    else if (kind === 'not_found') val = `no knowledge base '${val}'`;
    else if (kind === 'invalid') kind = 'invalid_request';
    else if (kind === 'backend') kind = 'failed';
  } else if (iface === 'kv' && kind === 'not_permitted') {
    val = 'the key-value store is not granted to this function (grants.kv)';
  } else if (iface === 'files' && kind === 'not_permitted') {
    val = "the tenant's files are not granted to this function (grants.files)";
  } else if (iface === 'files' && kind === 'not_found') {
    val = `no file '${val}'`;
  }
  return new TensorasError(kind, val);
}

function call(iface, fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    throw fromWit(e, iface);
  }
}

/** A chat completion: the response body, with the usual fields at hand. */
export class Completion {
  constructor(body) {
    this.body = body;
  }
  get #choice() {
    return (this.body.choices ?? [{}])[0] ?? {};
  }
  /** The first choice's text ('' for a tool call). */
  get text() {
    return this.#choice.message?.content ?? '';
  }
  get toolCalls() {
    return this.#choice.message?.tool_calls ?? [];
  }
  get finishReason() {
    return this.#choice.finish_reason ?? '';
  }
  get usage() {
    return this.body.usage ?? {};
  }
  /** The text parsed as JSON (for `response_format` requests). */
  json() {
    return JSON.parse(this.text);
  }
}

/** A streamed completion: iterate for the text pieces, or `chunks()` for the chunk objects.
 * `usage` is set once it has ended; `close()` stops generation. */
export class Stream {
  #handle;
  constructor(handle) {
    this.#handle = handle;
    this.usage = null;
    this.finishReason = null;
  }
  *chunks() {
    while (this.#handle) {
      let item = call('ai', () => this.#handle.next());
      if (item === undefined || item === null) return;
      // `option<result<..>>`: the bindings throw only for a top-level result, so the inner
      // one arrives as `{tag: 'ok' | 'err', val}`.
      if (typeof item === 'object') {
        if (item.tag === 'err') throw fromWit(item.val, 'ai');
        item = item.val;
      }
      const chunk = JSON.parse(item);
      if (chunk.usage) this.usage = chunk.usage;
      for (const c of chunk.choices ?? []) if (c.finish_reason) this.finishReason = c.finish_reason;
      yield chunk;
    }
  }
  *[Symbol.iterator]() {
    for (const chunk of this.chunks()) {
      for (const c of chunk.choices ?? []) if (c.delta?.content) yield c.delta.content;
    }
  }
  close() {
    const h = this.#handle;
    this.#handle = undefined;
    h?.[Symbol.dispose]?.();
  }
}

function body(request) {
  const out = {};
  for (const [k, v] of Object.entries(request)) if (v !== undefined && k !== 'stream') out[k] = v;
  return JSON.stringify(out);
}

export const ai = {
  /** Runs a chat completion (the `/v1/chat/completions` body) and returns it whole. */
  chat(request) {
    return new Completion(JSON.parse(call('ai', wit.chat, body(request))));
  },
  /** Starts a streamed chat completion; errors known before the first token throw here. */
  stream(request) {
    return new Stream(call('ai', wit.chatStream, body(request)));
  },
  /** Embeds a text or a list of texts: one vector (an array of numbers) per text. */
  embed(model, input) {
    const texts = typeof input === 'string' ? [input] : [...input];
    return call('ai', wit.embed, model, texts).vectors.map((v) => Array.from(v));
  },
};

export const kb = {
  /** Searches knowledge bases together, best chunks first (as `/v1/knowledge-bases/{id}/retrieve`). */
  retrieve(knowledgeBases, query, { topK = 4, searchType = 'vector', filters, minScore } = {}) {
    const ids = typeof knowledgeBases === 'string' ? [knowledgeBases] : [...knowledgeBases];
    const search = {
      query,
      topK,
      searchType,
      filters: filters === undefined ? undefined : JSON.stringify(filters),
      minScore,
    };
    return call('retrieval', retrieval.retrieve, ids, search).map((c) => ({
      knowledgeBase: c.knowledgeBase,
      fileId: c.fileId,
      filename: c.filename,
      chunkIndex: c.chunkIndex,
      text: c.text,
      score: c.score,
      metadata: JSON.parse(c.metadata || '{}'),
    }));
  },
};

const utf8 = { enc: new TextEncoder(), dec: new TextDecoder() };

export const kv = {
  /** The value of `key` (a Uint8Array), or undefined. */
  get: (key) => call('kv', store.get, key) ?? undefined,
  /** The value of `key` as UTF-8 text, or undefined. */
  getString(key) {
    const v = kv.get(key);
    return v === undefined ? undefined : utf8.dec.decode(v);
  },
  /** Sets `key` to `value` (a string, stored as UTF-8, or bytes). */
  set: (key, value) => call('kv', store.set, key, typeof value === 'string' ? utf8.enc.encode(value) : new Uint8Array(value)),
  /** Removes `key`; whether it was set. */
  delete: (key) => call('kv', store.delete, key),
  /** The keys that start with `prefix`, sorted. */
  keys: (prefix = '') => call('kv', store.keys, prefix),
};

/** The most one `files.readAt` returns; `files.read` reads a larger file in pieces of this size. */
const FILES_MAX_READ = 4 << 20;

export const files = {
  /** The file's metadata: `{id, filename, purpose, bytes, contentType, createdAt}`. */
  info(id) {
    const f = call('files', fileStore.info, id);
    return { ...f, bytes: Number(f.bytes), createdAt: Number(f.createdAt) };
  },
  /** Up to `length` bytes from `offset` (a Uint8Array; at most 4 MiB, fewer at the end). */
  readAt: (id, offset, length) => call('files', fileStore.read, id, BigInt(offset), Math.min(length, FILES_MAX_READ)),
  /** The whole content, as a Uint8Array. Mind the function's memory limit with large files. */
  read(id) {
    const pieces = [];
    let size = 0;
    for (;;) {
      const piece = files.readAt(id, size, FILES_MAX_READ);
      if (piece.length === 0) break;
      pieces.push(piece);
      size += piece.length;
    }
    const all = new Uint8Array(size);
    let at = 0;
    for (const p of pieces) {
      all.set(p, at);
      at += p.length;
    }
    return all;
  },
  /** The whole content as UTF-8 text. */
  readString: (id) => utf8.dec.decode(files.read(id)),
};

/** The `tool` export of the `tool-function` world, from a function of the arguments object.
 * A string result is passed on as is, anything else as JSON. Throw `InvalidArguments` when
 * the arguments are wrong; any other exception fails the call. */
export function defineTool({ name, description, parameters }, fn) {
  const schema = JSON.stringify(parameters ?? { type: 'object', properties: {} });
  const fail = (tag, message) => {
    const e = new Error(message);
    e.payload = { tag, val: message };
    return e;
  };
  return {
    describe: () => ({ name, description, parameters: schema }),
    call(args) {
      let parsed;
      try {
        parsed = args.trim() ? JSON.parse(args) : {};
      } catch (e) {
        throw fail('invalid-arguments', `the arguments are not JSON: ${e.message}`);
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw fail('invalid-arguments', 'the arguments must be a JSON object');
      }
      let result;
      try {
        result = fn(parsed);
      } catch (e) {
        if (e instanceof InvalidArguments) throw fail('invalid-arguments', e.message);
        if (!(e instanceof TensorasError)) console.error(e?.stack ?? String(e));
        throw fail('failed', e instanceof TensorasError ? e.message : `${e?.name ?? 'Error'}: ${e?.message ?? e}`);
      }
      return typeof result === 'string' ? result : JSON.stringify(result);
    },
  };
}

/** An OpenAI-shaped error response. */
export function errorResponse(status, type, message, code = null) {
  return Response.json({ error: { message, type, param: null, code } }, { status });
}

const STATUS = { not_permitted: 403, limit_exceeded: 429, invalid_request: 400, not_found: 404 };
const TYPE = { 403: 'permission_error', 429: 'rate_limit_error', 400: 'invalid_request_error', 404: 'not_found_error' };

/** The response a failed platform call deserves: 403 for a refusal, 429 for a spent budget,
 * 400 for a bad request, 502 otherwise. */
export function fromError(e) {
  const status = STATUS[e.kind] ?? 502;
  return errorResponse(status, TYPE[status] ?? 'server_error', e.message);
}

/** Serves the `http-function` world with `handler(request) -> Response` (or a promise of
 * one), fetch-style. A TensorasError that escapes it is answered with `fromError`, any
 * other exception with a 500 (its stack goes to the function's logs). */
export function serve(handler) {
  addEventListener('fetch', (event) =>
    event.respondWith(
      (async () => {
        try {
          return await handler(event.request);
        } catch (e) {
          if (e instanceof TensorasError) return fromError(e);
          console.error(e?.stack ?? String(e));
          return errorResponse(500, 'server_error', `${e?.name ?? 'Error'}: ${e?.message ?? e}`);
        }
      })(),
    ),
  );
}

/** A server-sent events response: each item of `events` (an iterable of objects or text)
 * as one `data:` event, sent as it is produced, then `data: [DONE]`. */
export function sse(events, init = {}) {
  const enc = new TextEncoder();
  const it = events[Symbol.iterator]();
  const stream = new ReadableStream({
    pull(controller) {
      try {
        const { value, done } = it.next();
        if (done) {
          controller.enqueue(enc.encode('data: [DONE]\n\n'));
          controller.close();
          return;
        }
        controller.enqueue(enc.encode(`data: ${typeof value === 'string' ? value : JSON.stringify(value)}\n\n`));
      } catch (e) {
        const err = e instanceof TensorasError ? e.message : String(e);
        controller.enqueue(enc.encode(`data: ${JSON.stringify({ error: { message: err, type: 'server_error' } })}\n\n`));
        controller.close();
      }
    },
    cancel() {
      it.return?.();
    },
  });
  const headers = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...(init.headers ?? {}) };
  return new Response(stream, { status: init.status ?? 200, headers });
}
