// `extract`: an HTTP function that pulls structured data out of free text, as JSON that is
// valid against a schema (the model decodes under the schema's grammar, so it cannot be
// otherwise).
//
//   POST /v1/functions/extract/invoke
//   {"text": "Ada Lovelace, ada@example.com, works at Analytical Engines Ltd."}
//
// answers {"data": {"name": ..., "email": ..., "company": ...}, "model": ..., "usage": ...}.
// `{"file_id": "file-..."}` in place of `text` extracts from a file the tenant uploaded
// (`POST /v1/files`; the manifest grants `files`).
// `schema` in the body replaces the default contact schema; `?stream=1` streams the JSON's
// pieces as server-sent events (`data: {"text": ...}`, then `data: [DONE]`) while it is
// generated. `model` picks the model (the manifest must grant it), `max_tokens` the budget
// (default 256).

import { ai, errorResponse, files, serve, sse } from './tensoras.js';

// Bounded strings: a small model can run on inside a string, and the bounds keep the
// whole object inside max_tokens.
const CONTACT = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 60 },
    email: { type: 'string', maxLength: 80 },
    company: { type: 'string', maxLength: 80 },
  },
  required: ['name', 'email', 'company'],
  additionalProperties: false,
};

serve(async (request) => {
  if (request.method !== 'POST') {
    return errorResponse(405, 'invalid_request_error', 'POST a JSON body: {"text": ...}');
  }
  let input;
  try {
    input = await request.json();
  } catch {
    return errorResponse(400, 'invalid_request_error', 'the body is not JSON');
  }
  if (typeof input?.file_id === 'string') {
    input.text = files.readString(input.file_id); // another tenant's file is a 404, like a missing one
  }
  if (typeof input?.text !== 'string' || !input.text.trim()) {
    return errorResponse(400, 'invalid_request_error', 'text (or file_id) must name a non-empty text');
  }
  const schema = input.schema ?? CONTACT;
  const chat = {
    model: input.model ?? 'smollm2-135m-instruct',
    messages: [
      { role: 'system', content: 'Extract the fields of the JSON schema from the user\'s text. Copy values exactly.' },
      { role: 'user', content: input.text },
    ],
    response_format: { type: 'json_schema', json_schema: { name: 'extraction', strict: true, schema } },
    temperature: 0,
    max_tokens: input.max_tokens ?? 256,
  };
  if (new URL(request.url).searchParams.get('stream') === '1') {
    const stream = ai.stream(chat); // a refusal throws here, before the 200 goes out
    return sse((function* () {
      for (const text of stream) yield { text };
    })());
  }
  const reply = ai.chat(chat);
  if (reply.finishReason === 'length') {
    return errorResponse(422, 'invalid_request_error', 'the JSON did not fit in max_tokens; raise it or bound the schema\'s strings');
  }
  return Response.json({ data: reply.json(), model: reply.body.model, usage: reply.usage });
});
