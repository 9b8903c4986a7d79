// The console talks to the server it is served from, so every path is same-origin.
const KEY_STORAGE = 'tensoras.apiKey';

export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE) || '';
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(message, { status, type, param, code } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = type;
    this.param = param;
    this.code = code;
  }
}

// Turns a failed answer into an ApiError carrying the server's own message, whatever
// shape the body has (OpenAI error JSON, plain text from a proxy, or nothing).
async function errorFrom(res) {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // The body may already be gone (aborted); the status alone still says something.
  }
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      const e = body.error;
      return new ApiError(e.message || `HTTP ${res.status}`, { status: res.status, ...e });
    }
  } catch {
    // Not JSON: fall through to the raw text.
  }
  return new ApiError(text.trim() || `HTTP ${res.status} ${res.statusText}`, { status: res.status });
}

function headers(extra, key) {
  const h = { ...extra };
  const k = key ?? getKey();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

// Sends a request and returns the Response if it succeeded; `body` that is a FormData
// goes as multipart, any other object as JSON.
export async function raw(method, path, { body, key, signal, headers: extra } = {}) {
  const init = { method, signal, headers: headers(extra, key) };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await errorFrom(res);
  return res;
}

export async function api(method, path, opts) {
  const res = await raw(method, path, opts);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => api('GET', path, opts);
export const post = (path, body, opts) => api('POST', path, { ...opts, body });
export const patch = (path, body, opts) => api('PATCH', path, { ...opts, body });
export const del = (path, opts) => api('DELETE', path, opts);

// Streams a chat completion, calling onChunk with each parsed `data:` JSON object.
// Resolves at `data: [DONE]` or end of body; an error event mid-stream rejects with its message.
export async function streamChat(body, { signal, onChunk }) {
  const res = await raw('POST', '/v1/chat/completions', {
    body: { ...body, stream: true },
    signal,
    headers: { Accept: 'text/event-stream' },
  });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data = [];

  // One SSE event is the `data:` lines up to a blank line; returns true at [DONE].
  const dispatch = () => {
    if (!data.length) return false;
    const payload = data.join('\n');
    data = [];
    if (payload === '[DONE]') return true;
    const event = JSON.parse(payload);
    if (event && event.error) {
      throw new ApiError(event.error.message || 'stream failed', event.error);
    }
    onChunk(event);
    return false;
  };

  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      let line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (dispatch()) {
          reader.cancel().catch(() => {});
          return;
        }
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
      // Other fields (event:, id:, comments) carry nothing the console uses.
    }
  }
  buffer += decoder.decode();
  if (buffer.startsWith('data:')) data.push(buffer.slice(5).replace(/^ /, ''));
  dispatch();
}

// Fetches a file's bytes with the key and hands back an object URL, since a plain
// link would be sent without the Authorization header.
export async function blobUrl(path) {
  const res = await raw('GET', path);
  return URL.createObjectURL(await res.blob());
}
