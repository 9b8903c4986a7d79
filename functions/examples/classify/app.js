// `classify`: a tool that puts a text into one of the given labels. The model answers
// under a JSON schema whose `enum` is the labels, so the answer is always one of them.
//
//   POST /v1/functions/classify/call
//   {"text": "The package arrived broken.", "labels": ["praise", "complaint", "question"]}
//
// returns {"label": "complaint"}.

import { InvalidArguments, ai, defineTool } from './tensoras.js';

export const tool = defineTool(
  {
    name: 'classify',
    description: 'Classifies a text into exactly one of the given labels.',
    parameters: {
      type: 'object',
      properties: {
        text: { type: 'string', maxLength: 2000 },
        labels: { type: 'array', items: { type: 'string' }, minItems: 2 },
      },
      required: ['text', 'labels'],
    },
  },
  ({ text, labels }) => {
    if (typeof text !== 'string' || !Array.isArray(labels) || labels.length < 2) {
      throw new InvalidArguments('text must be a string and labels a list of at least two strings');
    }
    const reply = ai.chat({
      model: 'smollm2-135m-instruct',
      messages: [
        { role: 'system', content: `Classify the user's text as one of: ${labels.join(', ')}.` },
        { role: 'user', content: text },
      ],
      response_format: {
        type: 'json_schema',
        json_schema: {
          name: 'label',
          strict: true,
          schema: { type: 'object', properties: { label: { enum: labels } }, required: ['label'], additionalProperties: false },
        },
      },
      temperature: 0,
      max_tokens: 24,
    });
    return reply.json();
  },
);
