// Chat functions in JavaScript: a function served as a model. Deployed with
// `"kind": "chat"` as NAME, it answers `"model": "fn:NAME"` on /v1/chat/completions (and
// /v1/completions) for its tenant, through the unchanged OpenAI SDKs, streamed or not.
//
//   import { defineChat } from './tensoras-chat.js';
//
//   export const handler = defineChat((req) => {
//     const body = { ...req.body, model: 'smollm2-135m-instruct' };
//     body.messages = [{ role: 'system', content: 'Answer like a pirate.' }, ...body.messages];
//     return req.forward(body);
//   });
//
// A module of its own because only the `chat-function` world imports `output`. The function
// returns the completion (its `usage` is what the server meters) or streams chunks with
// `req.send` and returns nothing; `req.forward` does either for a request it runs through
// `ai`, `req.reply` answers with a text of its own. Throw a `ChatError` for an OpenAI-shaped
// error; a `TensorasError` that escapes becomes the matching one (a refusal is a 403), any
// other exception a 500 (its stack goes to the function's logs).

import * as output from 'tensoras:platform/output@0.1.0';
import { ai, TensorasError } from './tensoras.js';

/** An error the client gets as `{"error": {...}}` with HTTP `status`. */
export class ChatError extends Error {
  constructor(status, kind, message, param = undefined, code = undefined) {
    super(message);
    this.name = 'ChatError';
    Object.assign(this, { status, kind, param, code });
  }
  /** A 400 `invalid_request_error` about `param`. */
  static invalid(param, message) {
    return new ChatError(400, 'invalid_request_error', message, param);
  }
  /** A platform error passed on, as the Rust and Python SDKs pass it on. */
  static from(e) {
    const [status, kind, code] = {
      not_permitted: [403, 'permission_error', 'permission_denied'],
      invalid_request: [400, 'invalid_request_error'],
      too_large: [400, 'invalid_request_error'],
      not_found: [404, 'invalid_request_error', 'not_found'],
      limit_exceeded: [429, 'rate_limit_error', 'function_limit_exceeded'],
      overloaded: [503, 'server_error', 'server_overloaded'],
    }[e.kind] ?? [500, 'server_error'];
    return new ChatError(status, kind, e.message, undefined, code);
  }
}

/** One request, as the client sent it. */
export class ChatRequest {
  constructor(body, stream, path) {
    this.body = body;
    this.stream = stream;
    this.path = path;
  }
  /** The model id the client asked for, to put in answers. */
  get model() {
    return this.body.model ?? '';
  }
  /** Whether a streamed request asked for a final usage chunk. */
  get wantsUsage() {
    return Boolean(this.body.stream_options?.include_usage);
  }
  /** Sends one `chat.completion.chunk`; false once the client has gone away. */
  send(chunk) {
    return output.send(JSON.stringify(chunk));
  }
  /** Runs chat request `body` and answers with it: the completion, or for a stream its
   * chunks as they come, with `model` set to the client's; `extra` top-level fields
   * (`{citations}`) go on the completion, or on a stream's first chunk. */
  forward(body, extra = {}) {
    const { stream: _s, stream_options: _o, ...request } = body;
    if (!this.stream) {
      return { ...ai.chat(request).body, model: this.model, ...extra };
    }
    const stream = ai.stream(request);
    try {
      for (const chunk of stream.chunks()) {
        if (!chunk.choices?.length && !this.wantsUsage) continue;
        if (!this.wantsUsage) delete chunk.usage;
        if (!this.send({ ...chunk, model: this.model, ...extra })) break;
        extra = {};
      }
    } finally {
      stream.close(); // stops the model if the client went away
    }
    return undefined;
  }
  /** Answers with `text`, no model call, shaped as a model's answer; usage is zero. */
  reply(text, extra = {}) {
    const ms = Date.now();
    const base = { id: `chatcmpl-${ms.toString(16)}${Math.floor(Math.random() * 1e9).toString(16)}`, created: Math.floor(ms / 1000), model: this.model };
    const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
    if (!this.stream) {
      const choice = { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: 'stop' };
      return { ...base, object: 'chat.completion', choices: [choice], usage, ...extra };
    }
    const chunk = (delta, finish) => ({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
    const chunks = [{ ...chunk({ role: 'assistant', content: text }, null), ...extra }, chunk({}, 'stop')];
    if (this.wantsUsage) chunks.push({ ...base, object: 'chat.completion.chunk', choices: [], usage });
    for (const c of chunks) if (!this.send(c)) break;
    return undefined;
  }
}

/** The `handler` export of the `chat-function` world, from `fn(req) -> completion | undefined`. */
export function defineChat(fn) {
  const fail = (e) => {
    const err = new Error(e.message);
    err.payload = { status: e.status, kind: e.kind, message: e.message, param: e.param, code: e.code };
    return err;
  };
  return {
    handle(req) {
      let body;
      try {
        body = JSON.parse(req.body);
      } catch (e) {
        throw fail(ChatError.invalid('body', `the body is not JSON: ${e.message}`));
      }
      let result;
      try {
        result = fn(new ChatRequest(body, req.stream, req.path));
      } catch (e) {
        if (e instanceof ChatError) throw fail(e);
        if (e instanceof TensorasError) throw fail(ChatError.from(e));
        console.error(e?.stack ?? String(e));
        throw fail(new ChatError(500, 'server_error', `${e?.name ?? 'Error'}: ${e?.message ?? e}`));
      }
      result = result ?? {};
      const usage = result.usage ?? {};
      return {
        body: JSON.stringify(result),
        usage: { promptTokens: usage.prompt_tokens ?? 0, completionTokens: usage.completion_tokens ?? 0 },
      };
    },
  };
}
