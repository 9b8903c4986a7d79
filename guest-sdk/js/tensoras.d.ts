// Types of the Tensoras JavaScript guest SDK (tensoras.js), for TypeScript and editors.

export type ErrorKind =
  | 'not_permitted'
  | 'invalid_request'
  | 'not_found'
  | 'limit_exceeded'
  | 'overloaded'
  | 'too_large'
  | 'failed';

/** A platform call was refused or failed. */
export class TensorasError extends Error {
  readonly kind: ErrorKind;
}

/** Throw from a tool when its arguments are wrong. */
export class InvalidArguments extends Error {}

/** A `/v1/chat/completions` request body (`stream` is ignored). */
export interface ChatRequest {
  model: string;
  messages: Array<Record<string, unknown>>;
  [field: string]: unknown;
}

export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

export class Completion {
  readonly body: Record<string, any>;
  readonly text: string;
  readonly toolCalls: Array<Record<string, any>>;
  readonly finishReason: string;
  readonly usage: Usage;
  json(): any;
}

export class Stream implements Iterable<string> {
  usage: Usage | null;
  finishReason: string | null;
  chunks(): Generator<Record<string, any>>;
  [Symbol.iterator](): Iterator<string>;
  close(): void;
}

export const ai: {
  chat(request: ChatRequest): Completion;
  stream(request: ChatRequest): Stream;
  embed(model: string, input: string | string[]): number[][];
};

export interface Chunk {
  knowledgeBase: string;
  fileId: string;
  filename: string;
  chunkIndex: number;
  text: string;
  score: number;
  metadata: Record<string, unknown>;
}

export const kb: {
  retrieve(
    knowledgeBases: string | string[],
    query: string,
    options?: { topK?: number; searchType?: 'vector' | 'keyword' | 'hybrid'; filters?: object; minScore?: number },
  ): Chunk[];
};

export const kv: {
  get(key: string): Uint8Array | undefined;
  getString(key: string): string | undefined;
  set(key: string, value: string | Uint8Array): void;
  delete(key: string): boolean;
  keys(prefix?: string): string[];
};

export interface FileInfo {
  id: string;
  filename: string;
  purpose: string;
  bytes: number;
  contentType: string;
  createdAt: number;
}

/** The invoking tenant's files (needs `"files": true` in the manifest's grants). */
export const files: {
  info(id: string): FileInfo;
  readAt(id: string, offset: number, length: number): Uint8Array;
  read(id: string): Uint8Array;
  readString(id: string): string;
};

export interface ToolSpec {
  name: string;
  description: string;
  parameters?: object;
}

export function defineTool(
  spec: ToolSpec,
  fn: (args: Record<string, any>) => unknown,
): { describe(): { name: string; description: string; parameters: string }; call(args: string): string };

export function errorResponse(status: number, type: string, message: string, code?: string | null): Response;
export function fromError(e: TensorasError): Response;
export function serve(handler: (request: Request) => Response | Promise<Response>): void;
export function sse(events: Iterable<unknown>, init?: { status?: number; headers?: Record<string, string> }): Response;
