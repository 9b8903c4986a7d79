//! Models: chat completions and embeddings, made on behalf of the key that invoked the
//! function, within its manifest's grants (`grants.models`) and limits
//! (`limits.max_model_calls`, `limits.max_generated_tokens`).
//!
//! A [`Chat`] is the body of `POST /v1/chat/completions`, and is run by the same code:
//! everything that endpoint accepts works here (`response_format`, `tools`,
//! `knowledge_bases`, `seed`, ...), set with the builder's methods or [`Chat::set`].
//!
//! ```no_run
//! use tensoras_guest::ai::{self, Chat};
//!
//! let chat = Chat::new("smollm2-135m-instruct").system("Be brief.").user("What is the capital of France?");
//! let answer = ai::chat(&chat)?;
//! println!("{}", answer.text());
//!
//! // The same, token by token.
//! for piece in ai::chat_stream(&chat.temperature(0.7))? {
//!     print!("{}", piece?);
//! }
//!
//! let vectors = ai::embed("all-minilm-l6-v2", &["a cat", "a kitten"])?;
//! # Ok::<(), tensoras_guest::Error>(())
//! ```

use serde_json::{Map, Value, json};

use crate::Error;
use crate::wit::platform::tensoras::platform::ai as raw;

/// A chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    body: Map<String, Value>,
}

impl Chat {
    /// A request to `model` with no messages yet.
    pub fn new(model: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(model.into()));
        body.insert("messages".into(), Value::Array(Vec::new()));
        Self { body }
    }

    /// A request from a whole body (a JSON object with `model` and `messages`), e.g. the one
    /// a chat function was sent.
    pub fn from_body(body: Value) -> Result<Self, Error> {
        match body {
            Value::Object(body) => Ok(Self { body }),
            _ => Err(Error::InvalidRequest("a chat request is a JSON object".into())),
        }
    }

    /// Puts a system message first (before the conversation it was given).
    pub fn system_first(mut self, text: impl Into<String>) -> Self {
        if let Some(Value::Array(messages)) = self.body.get_mut("messages") {
            messages.insert(0, json!({"role": "system", "content": text.into()}));
        }
        self
    }

    /// Appends a message of any role (`content` may be text or a content-parts array).
    pub fn message(mut self, role: &str, content: impl Into<Value>) -> Self {
        if let Some(Value::Array(messages)) = self.body.get_mut("messages") {
            messages.push(json!({"role": role, "content": content.into()}));
        }
        self
    }

    /// Appends a system message.
    pub fn system(self, text: impl Into<String>) -> Self {
        self.message("system", text.into())
    }

    /// Appends a user message.
    pub fn user(self, text: impl Into<String>) -> Self {
        self.message("user", text.into())
    }

    /// Appends an assistant message.
    pub fn assistant(self, text: impl Into<String>) -> Self {
        self.message("assistant", text.into())
    }

    /// Sampling temperature (0 = greedy).
    pub fn temperature(self, t: f32) -> Self {
        self.set("temperature", t)
    }

    /// Most tokens to generate (capped by what the invocation's budget has left).
    pub fn max_tokens(self, n: u32) -> Self {
        self.set("max_tokens", n)
    }

    /// Seed for reproducible sampling.
    pub fn seed(self, seed: i64) -> Self {
        self.set("seed", seed)
    }

    /// Constrains the answer to JSON valid against `schema` (`response_format`
    /// `json_schema`, strict).
    pub fn json_schema(self, name: &str, schema: Value) -> Self {
        self.set(
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": true}}),
        )
    }

    /// Tools the model may call (OpenAI `tools`).
    pub fn tools(self, tools: Value) -> Self {
        self.set("tools", tools)
    }

    /// Grounds the answer in knowledge bases (they must be granted too).
    pub fn knowledge_bases(self, ids: &[&str]) -> Self {
        self.set("knowledge_bases", ids.iter().map(|s| Value::String((*s).into())).collect::<Vec<_>>())
    }

    /// Sets any other field of the request body.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.body.insert(field.into(), value.into());
        self
    }

    /// The request body as JSON.
    pub fn body(&self) -> Value {
        Value::Object(self.body.clone())
    }
}

/// A finished chat completion: the `chat.completion` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The response body as `/v1/chat/completions` returns it.
    pub raw: Value,
}

impl Completion {
    /// The first choice's text ("" when it answered with tool calls only).
    pub fn text(&self) -> &str {
        self.raw.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or_default()
    }

    /// The first choice's tool calls, if any.
    pub fn tool_calls(&self) -> &[Value] {
        self.raw.pointer("/choices/0/message/tool_calls").and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }

    /// Why generation stopped (`stop`, `length`, `tool_calls`).
    pub fn finish_reason(&self) -> &str {
        self.raw.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or_default()
    }

    /// Tokens read and generated: `(prompt, completion)`.
    pub fn usage(&self) -> (u64, u64) {
        let n = |p: &str| self.raw.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        (n("/usage/prompt_tokens"), n("/usage/completion_tokens"))
    }
}

/// Runs a chat completion.
pub fn chat(request: &Chat) -> Result<Completion, Error> {
    let text = raw::chat(&request.body().to_string())?;
    let raw = serde_json::from_str(&text).map_err(|e| Error::Failed(format!("the completion is not JSON: {e}")))?;
    Ok(Completion { raw })
}

/// Starts a streamed chat completion. Iterating yields the text as it is generated;
/// [`Stream::chunks`] gives the raw `chat.completion.chunk` objects instead. Dropping the
/// stream stops generation.
pub fn chat_stream(request: &Chat) -> Result<Stream, Error> {
    Ok(Stream { inner: raw::chat_stream(&request.body().to_string())?, usage: None })
}

/// A streamed chat completion.
#[derive(Debug)]
pub struct Stream {
    inner: raw::CompletionStream,
    usage: Option<(u64, u64)>,
}

impl Stream {
    /// The next chunk object, as JSON; `None` once finished.
    pub fn next_chunk(&mut self) -> Option<Result<Value, Error>> {
        let chunk = match self.inner.next()? {
            Ok(text) => text,
            Err(e) => return Some(Err(e.into())),
        };
        let value: Value = match serde_json::from_str(&chunk) {
            Ok(v) => v,
            Err(e) => return Some(Err(Error::Failed(format!("a chunk is not JSON: {e}")))),
        };
        if let Some(u) = value.get("usage").filter(|u| !u.is_null()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some((n("prompt_tokens"), n("completion_tokens")));
        }
        Some(Ok(value))
    }

    /// The raw chunks instead of the text.
    pub fn chunks(self) -> Chunks {
        Chunks(self)
    }

    /// Tokens read and generated, `(prompt, completion)`, once the stream has finished.
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.usage
    }
}

impl Iterator for Stream {
    type Item = Result<String, Error>;

    /// The next piece of the first choice's text (chunks without text are skipped).
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let chunk = match self.next_chunk()? {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            };
            if let Some(text) = chunk.pointer("/choices/0/delta/content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                return Some(Ok(text.to_owned()));
            }
        }
    }
}

/// A stream's raw chunk objects.
#[derive(Debug)]
pub struct Chunks(Stream);

impl Iterator for Chunks {
    type Item = Result<Value, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_chunk()
    }
}

/// Embeds texts with an embedding model: one unit-length vector per text, in order.
pub fn embed(model: &str, input: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
    let input: Vec<String> = input.iter().map(|s| (*s).to_owned()).collect();
    Ok(raw::embed(model, &input)?.vectors)
}
