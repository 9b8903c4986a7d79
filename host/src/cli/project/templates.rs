//! What `tensoras functions new` writes: the source of a new project, by language and
//! kind. `{{name}}` is the function's name, `{{ident}}` the same as an identifier.

use super::Kind;

pub const CARGO_TOML: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
tensoras-guest = { path = ".tensoras/guest-sdk" }

# A project of its own, even inside another workspace.
[workspace]

[profile.release]
opt-level = "s"
lto = true
"#;

pub fn python(kind: Kind) -> &'static str {
    match kind {
        Kind::Chat => {
            r#""""{{name}}: a chat function, used as model "fn:{{name}}" on /v1/chat/completions
through the unchanged OpenAI SDKs. It puts an instruction before the conversation and
forwards the request to a granted model, streamed or not."""

from tensoras import chat


@chat.handler
def {{ident}}(req):
    body = dict(req.body, model="smollm2-135m-instruct")
    body["messages"] = [{"role": "system", "content": "Answer in one short sentence."}] + body.get("messages", [])
    return req.forward(body)


# componentize-py instantiates the export class by the interface's name.
Handler = {{ident}}
"#
        }
        Kind::Http => {
            r#""""{{name}}: an HTTP function (POST /v1/functions/{{name}}/invoke) that streams a
model's answer to the request body as server-sent events."""

from tensoras import ai, http


@http.handler
def {{ident}}(req):
    text = req.text() or "Say hello."
    # Started before the response, so a refusal is still a proper 403 (see http.handler).
    stream = ai.stream(model="smollm2-135m-instruct", messages=[{"role": "user", "content": text}], max_tokens=32)
    return http.Response(200, http.sse({"text": piece} for piece in stream), {"content-type": "text/event-stream"})


# componentize-py instantiates the export class by the interface's name.
IncomingHandler = {{ident}}
"#
        }
        Kind::Tool => {
            r#""""{{name}}: a tool function (POST /v1/functions/{{name}}/call, or called by a model)."""

from tensoras import ai, tool


@tool(
    description="Answers a question in one sentence.",
    parameters={"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
)
def {{ident}}(question):
    reply = ai.chat(model="smollm2-135m-instruct", messages=[{"role": "user", "content": question}], max_tokens=32)
    return {"answer": reply.text}


# componentize-py instantiates the export class by the interface's name.
Tool = {{ident}}
"#
        }
    }
}

pub fn js(kind: Kind) -> &'static str {
    match kind {
        Kind::Chat => {
            r#"// {{name}}: a chat function, used as model "fn:{{name}}" on /v1/chat/completions through
// the unchanged OpenAI SDKs. It puts an instruction before the conversation and forwards
// the request to a granted model, streamed or not.
import { defineChat } from './tensoras-chat.js';

export const handler = defineChat((req) => {
  const body = { ...req.body, model: 'smollm2-135m-instruct' };
  body.messages = [{ role: 'system', content: 'Answer in one short sentence.' }, ...(body.messages ?? [])];
  return req.forward(body);
});
"#
        }
        Kind::Http => {
            r#"// {{name}}: an HTTP function (POST /v1/functions/{{name}}/invoke).
import { ai, serve } from './tensoras.js';

serve(async (request) => {
  const text = (await request.text()) || 'Say hello.';
  const reply = ai.chat({ model: 'smollm2-135m-instruct', messages: [{ role: 'user', content: text }], max_tokens: 32 });
  return Response.json({ reply: reply.text, usage: reply.usage });
});
"#
        }
        Kind::Tool => {
            r#"// {{name}}: a tool function (POST /v1/functions/{{name}}/call, or called by a model).
import { ai, defineTool } from './tensoras.js';

export const tool = defineTool(
  {
    name: '{{ident}}',
    description: 'Answers a question in one sentence.',
    parameters: { type: 'object', properties: { question: { type: 'string' } }, required: ['question'] },
  },
  ({ question }) => {
    const reply = ai.chat({ model: 'smollm2-135m-instruct', messages: [{ role: 'user', content: question }], max_tokens: 32 });
    return { answer: reply.text };
  },
);
"#
        }
    }
}

pub fn rust(kind: Kind) -> &'static str {
    match kind {
        Kind::Http => {
            r#"//! {{name}}: an HTTP function (POST /v1/functions/{{name}}/invoke).

use std::io::{Read, Write};

use tensoras_guest::ai::{self, Chat};
use tensoras_guest::serde_json::json;
use tensoras_guest::{HttpFunction, Request, Responder};

struct Function;

impl HttpFunction for Function {
    fn handle(mut req: Request, responder: Responder) {
        let mut text = String::new();
        let _ = req.body().read_to_string(&mut text);
        if text.trim().is_empty() {
            text = "Say hello.".into();
        }
        let (status, body) = match ai::chat(&Chat::new("smollm2-135m-instruct").user(text).max_tokens(32)) {
            Ok(reply) => (200, json!({"reply": reply.text()})),
            Err(e) => (502, json!({"error": {"message": e.to_string(), "type": "server_error", "param": null, "code": null}})),
        };
        if let Ok(mut out) = responder.start(status, [("content-type", "application/json")]) {
            let _ = out.write_all(body.to_string().as_bytes());
        }
    }
}

tensoras_guest::export_http!(Function);
"#
        }
        Kind::Tool => {
            r#"//! {{name}}: a tool function (POST /v1/functions/{{name}}/call, or called by a model).

use tensoras_guest::ai::{self, Chat};
use tensoras_guest::serde_json::{Value, json};
use tensoras_guest::{Tool, ToolError, ToolInfo};

struct Function;

impl Tool for Function {
    fn info() -> ToolInfo {
        ToolInfo::new(
            "{{ident}}",
            "Answers a question in one sentence.",
            json!({"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}),
        )
    }

    fn call(args: Value) -> Result<Value, ToolError> {
        let question = tensoras_guest::tool::required_str(&args, "question")?;
        let reply = ai::chat(&Chat::new("smollm2-135m-instruct").user(question).max_tokens(32))?;
        Ok(json!({"answer": reply.text()}))
    }
}

tensoras_guest::export_tool!(Function);
"#
        }
        Kind::Chat => {
            r#"//! {{name}}: a chat function, served as the model `fn:{{name}}`.

use tensoras_guest::ai::Chat;
use tensoras_guest::chat::{ChatError, ChatFunction, ChatRequest};
use tensoras_guest::serde_json::Value;

struct Function;

impl ChatFunction for Function {
    fn handle(req: ChatRequest) -> Result<Value, ChatError> {
        // The client's request, answered by a granted model asked to be brief.
        let chat = Chat::from_body(req.body.clone())?.set("model", "smollm2-135m-instruct").system_first("Answer in one sentence.");
        req.forward(&chat)
    }
}

tensoras_guest::export_chat!(Function);
"#
        }
    }
}
