// `Tensoras`: the official openai client, pointed at a Tensoras server (`TENSORAS_BASE_URL`,
// `TENSORAS_API_KEY`), with typed access to what Tensoras adds.

import OpenAI, { type ClientOptions } from 'openai';

import * as R from './resources.js';
import type { ChatCompletion, ChatCompletionChunk, Citation } from './types.js';

export const DEFAULT_BASE_URL = 'http://127.0.0.1:8080/v1';

/**
 * `OpenAI` for a Tensoras server: every OpenAI call works as it is, and `knowledgeBases`,
 * `rag`, `rerank`, `functions`, `usage`, `keys` and `tenants` are added (`models` answers
 * Tensoras' `Model`). Retries, timeouts and errors are the openai client's.
 *
 * `apiKey` defaults to `TENSORAS_API_KEY` (then `OPENAI_API_KEY`), `baseURL` to
 * `TENSORAS_BASE_URL`, then `http://127.0.0.1:8080/v1`. Other options are `OpenAI`'s.
 */
export class Tensoras extends OpenAI {
  constructor({
    apiKey = process.env['TENSORAS_API_KEY'],
    baseURL = process.env['TENSORAS_BASE_URL'] || DEFAULT_BASE_URL,
    ...options
  }: ClientOptions = {}) {
    super({ apiKey, baseURL, ...options });
  }

  knowledgeBases: R.KnowledgeBases = new R.KnowledgeBases(this);
  rag: R.Rag = new R.Rag(this);
  rerank: R.Rerank = new R.Rerank(this);
  functions: R.Functions = new R.Functions(this);
  usage: R.Usage = new R.Usage(this);
  keys: R.Keys = new R.Keys(this);
  tenants: R.Tenants = new R.Tenants(this);
  override models: R.Models = new R.Models(this);
}

/** The `citations` of a RAG answer, also one made with `client.chat.completions.create(
 * { ..., knowledge_bases: [...] } as any)`; `[]` when it has none. */
export function citations(completion: OpenAI.Chat.ChatCompletion | OpenAI.Chat.ChatCompletionChunk): Citation[] {
  return (completion as ChatCompletion | ChatCompletionChunk).citations ?? [];
}

export default Tensoras;
export * from './types.js';
export {
  DataSources,
  Functions,
  IngestionTimeout,
  KnowledgeBases,
  Keys,
  Models,
  Rag,
  Rerank,
  Tenants,
  Usage,
} from './resources.js';
// The openai SDK's errors, which every failed request rejects with.
export {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  OpenAI,
  OpenAIError,
  PermissionDeniedError,
  RateLimitError,
  UnprocessableEntityError,
  toFile,
  type ClientOptions,
} from 'openai';
