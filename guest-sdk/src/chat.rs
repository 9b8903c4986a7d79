//! Chat functions: a function served as a model. A request to `/v1/chat/completions` (or
//! `/v1/completions`) with `"model": "fn:NAME"` reaches [`ChatFunction::handle`] with the
//! OpenAI body; the function answers with a `chat.completion` object, or, for a streamed
//! request, sends `chat.completion.chunk` objects through [`ChatRequest::send`]. Clients
//! use it through the unchanged OpenAI SDKs. It may call models itself ([`crate::ai`]), so
//! an agent or a custom retrieval pipeline written as a function is a model to its users.
//!
//! ```no_run
//! use tensoras_guest::ai::{self, Chat};
//! use tensoras_guest::chat::{ChatError, ChatFunction, ChatRequest};
//! use tensoras_guest::serde_json::Value;
//!
//! struct Pirate;
//!
//! impl ChatFunction for Pirate {
//!     fn handle(req: ChatRequest) -> Result<Value, ChatError> {
//!         let chat = Chat::from_body(req.body.clone())?
//!             .set("model", "smollm2-135m-instruct")
//!             .system_first("Answer like a pirate.");
//!         req.forward(&chat)
//!     }
//! }
//!
//! tensoras_guest::export_chat!(Pirate);
//! ```

use std::fmt;

use serde_json::{Map, Value, json};

use crate::Error;
use crate::ai::{self, Chat};
use crate::wit::chat_function::exports::tensoras::platform::handler as raw;
use crate::wit::chat_function::tensoras::platform::{output, types};

/// One request to the function, as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The OpenAI request body (`model` is `fn:NAME`).
    pub body: Value,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The endpoint called: `/v1/chat/completions` or `/v1/completions`.
    pub path: String,
}

impl ChatRequest {
    /// The model id the client asked for (`fn:NAME`), to put in answers.
    pub fn model(&self) -> &str {
        self.body.get("model").and_then(Value::as_str).unwrap_or_default()
    }

    /// Whether a streamed request asked for a final usage chunk (`stream_options.include_usage`).
    pub fn wants_usage(&self) -> bool {
        self.body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false)
    }

    /// Sends one chunk of a streamed answer; false once the client has gone away (stop
    /// generating then).
    pub fn send(&self, chunk: &Value) -> bool {
        output::send(&chunk.to_string())
    }

    /// Runs `chat` and answers with it: the completion, or for a streamed request its
    /// chunks as they come, with `model` set to the model the client asked for (and the
    /// usage chunk only when the client asked for it). Returns the completion, or `null`
    /// once streamed.
    pub fn forward(&self, chat: &Chat) -> Result<Value, ChatError> {
        self.forward_with(chat, Map::new())
    }

    /// [`forward`](Self::forward), with `extra` top-level fields added to the completion
    /// (a stream: to its first chunk), as the built-in RAG handler adds `citations`.
    pub fn forward_with(&self, chat: &Chat, mut extra: Map<String, Value>) -> Result<Value, ChatError> {
        if !self.stream {
            let mut completion = ai::chat(chat)?.raw;
            completion["model"] = Value::String(self.model().into());
            if let Some(obj) = completion.as_object_mut() {
                obj.append(&mut extra);
            }
            return Ok(completion);
        }
        for chunk in ai::chat_stream(chat)?.chunks() {
            let mut chunk = chunk?;
            if let Some(obj) = chunk.as_object_mut() {
                obj.append(&mut extra); // empty after the first chunk
            }
            let usage_only = chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
            if usage_only && !self.wants_usage() {
                continue;
            }
            if !self.wants_usage()
                && let Some(obj) = chunk.as_object_mut()
            {
                obj.remove("usage");
            }
            chunk["model"] = Value::String(self.model().into());
            if !self.send(&chunk) {
                break; // the client went away: dropping the stream stops the model
            }
        }
        Ok(Value::Null)
    }
}

impl ChatRequest {
    /// Answers with `text` and no model call (a fixed reply, a refusal, a cached answer):
    /// the completion, or for a streamed request its chunks, shaped as a model's would be,
    /// with `extra` top-level fields as in [`forward_with`](Self::forward_with). Usage is
    /// zero: nothing was generated.
    pub fn reply(&self, text: &str, extra: Map<String, Value>) -> Value {
        let (id, created) = completion_id();
        let model = self.model();
        let usage = json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0});
        if !self.stream {
            let mut completion = json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage,
            });
            completion.as_object_mut().expect("an object").extend(extra);
            return completion;
        }
        let chunk = |delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        let mut first = chunk(json!({"role": "assistant", "content": text}), Value::Null);
        first.as_object_mut().expect("an object").extend(extra);
        let mut chunks = vec![first, chunk(json!({}), "stop".into())];
        if self.wants_usage() {
            chunks.push(json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [], "usage": usage}));
        }
        for c in &chunks {
            if !self.send(c) {
                break;
            }
        }
        Value::Null
    }
}

/// A completion id and its creation time (Unix seconds), from the clock: ids only need to
/// differ between answers, which the nanoseconds do without binding `wasi:random` here.
fn completion_id() -> (String, u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (format!("chatcmpl-{:x}", now.as_nanos()), now.as_secs())
}

/// An OpenAI-shaped error the client gets (`{"error": {...}}` with `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatError {
    /// HTTP status (400..=599).
    pub status: u16,
    /// OpenAI error `type`.
    pub kind: String,
    /// What went wrong, for the client.
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<String>,
}

impl ChatError {
    /// A 400 `invalid_request_error` about `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self { status: 400, kind: "invalid_request_error".into(), message: message.into(), param: Some(param.into()), code: None }
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for ChatError {}

/// A platform error passed on: refusals are 403s, bad requests 400s, spent budgets 429s.
impl From<Error> for ChatError {
    fn from(e: Error) -> Self {
        let (status, kind, code) = match &e {
            Error::NotPermitted(_) => (403, "permission_error", Some("permission_denied")),
            Error::InvalidRequest(_) | Error::TooLarge(_) => (400, "invalid_request_error", None),
            Error::NotFound(_) => (404, "invalid_request_error", Some("not_found")),
            Error::LimitExceeded(_) => (429, "rate_limit_error", Some("function_limit_exceeded")),
            Error::Overloaded(_) => (503, "server_error", Some("server_overloaded")),
            Error::Failed(_) => (500, "server_error", None),
        };
        Self { status, kind: kind.into(), message: e.to_string(), param: None, code: code.map(Into::into) }
    }
}

/// A function served as a model. Implement it on a unit struct and export it with
/// [`export_chat!`](crate::export_chat).
pub trait ChatFunction {
    /// Answers one request: the completion object (its `usage` is what the server meters),
    /// or anything (`null`) after streaming the chunks through [`ChatRequest::send`].
    fn handle(req: ChatRequest) -> Result<Value, ChatError>;
}

/// Glue behind [`export_chat!`](crate::export_chat).
#[doc(hidden)]
pub fn __handle<T: ChatFunction>(req: raw::Request) -> Result<raw::Response, types::HandlerError> {
    let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
    let req = ChatRequest { body, stream: req.stream, path: req.path };
    match T::handle(req) {
        Ok(body) => {
            let n = |p: &str| body.pointer(p).and_then(Value::as_u64).unwrap_or(0) as u32;
            let usage =
                types::Usage { prompt_tokens: n("/usage/prompt_tokens"), completion_tokens: n("/usage/completion_tokens") };
            let body = if body.is_null() { json!({}) } else { body };
            Ok(raw::Response { body: body.to_string(), usage })
        }
        Err(e) => Err(types::HandlerError { status: e.status, kind: e.kind, message: e.message, param: e.param, code: e.code }),
    }
}

/// Exports a [`ChatFunction`] implementation (world `chat-function`). Deploy the component
/// with `"kind": "chat"`; it is then model `fn:NAME` for its tenant.
#[macro_export]
macro_rules! export_chat {
    ($f:ty) => {
        const _: () = {
            struct __TensorasChatExport;

            impl $crate::wit::chat_function::exports::tensoras::platform::handler::Guest for __TensorasChatExport {
                fn handle(
                    req: $crate::wit::chat_function::exports::tensoras::platform::handler::Request,
                ) -> ::std::result::Result<
                    $crate::wit::chat_function::exports::tensoras::platform::handler::Response,
                    $crate::wit::chat_function::tensoras::platform::types::HandlerError,
                > {
                    $crate::chat::__handle::<$f>(req)
                }
            }

            $crate::wit::chat_function::export_chat_function!(
                __TensorasChatExport with_types_in $crate::wit::chat_function
            );
        };
    };
}
