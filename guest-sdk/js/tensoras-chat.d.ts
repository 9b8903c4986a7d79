// Types of tensoras-chat.js: chat functions (world `chat-function`), served as model `fn:NAME`.

export class ChatError extends Error {
  constructor(status: number, kind: string, message: string, param?: string, code?: string);
  status: number;
  kind: string;
  param?: string;
  code?: string;
  /** A 400 `invalid_request_error` about `param`. */
  static invalid(param: string, message: string): ChatError;
  /** A platform error (`TensorasError`) passed on: a refusal is a 403, a spent budget a 429. */
  static from(e: { kind: string; message: string }): ChatError;
}

export class ChatRequest {
  /** The OpenAI request body. */
  body: Record<string, any>;
  /** Whether the client asked for a stream. */
  stream: boolean;
  /** `/v1/chat/completions` or `/v1/completions`. */
  path: string;
  readonly model: string;
  readonly wantsUsage: boolean;
  send(chunk: object): boolean;
  forward(body: Record<string, any>, extra?: Record<string, unknown>): Record<string, any> | undefined;
  reply(text: string, extra?: Record<string, unknown>): Record<string, any> | undefined;
}

/** The `handler` export: `export const handler = defineChat((req) => req.forward({...}))`.
 * `fn` is synchronous: it returns the completion, or nothing after streaming. */
export function defineChat(fn: (req: ChatRequest) => Record<string, any> | undefined): {
  handle(req: { body: string; stream: boolean; tenant: string; path: string }): unknown;
};
