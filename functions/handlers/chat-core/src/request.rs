//! Parsing and validation of `/v1/chat/completions` and `/v1/completions`
//! bodies.
//!
//! Validation happens in two steps: [`parse`] checks everything that needs no
//! model (types and ranges), then [`GenerationRequest::check_against`] checks
//! what depends on the model (kind, vocabulary). Every error is a 400
//! `invalid_request_error` whose `param` names the field, the way OpenAI
//! reports it (`messages.[2].content` for a nested one).

use handler_common::ApiError;
use handler_common::fields::{Body, check_number, parse_object, type_error};
use serde_json::Value;

use crate::tools::{self, ServerTools, Tooling};

/// Which API the request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions` (legacy text completions)
    Completions,
}

impl Endpoint {
    /// The endpoint for a request path (a trailing slash is tolerated).
    pub fn from_path(path: &str) -> Option<Self> {
        match path.trim_end_matches('/') {
            "/v1/chat/completions" => Some(Self::Chat),
            "/v1/completions" => Some(Self::Completions),
            _ => None,
        }
    }

    /// The name of the prompt field, for errors about the prompt's length.
    pub fn prompt_param(self) -> &'static str {
        match self {
            Self::Chat => "messages",
            Self::Completions => "prompt",
        }
    }
}

/// One chat message, normalised for the chat template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool` (`developer` becomes `system`).
    pub role: String,
    /// The text, with text parts concatenated; empty for a content-less
    /// assistant message.
    pub content: String,
    /// For `tool` messages: the call answered.
    pub tool_call_id: Option<String>,
    /// For assistant messages: their `tool_calls` as JSON text.
    pub tool_calls: Option<String>,
}

/// What the model is prompted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Chat messages, rendered by the model's chat template.
    Messages(Vec<Message>),
    /// A raw prompt, tokenised as is.
    Prompt(String),
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The API called.
    pub endpoint: Endpoint,
    /// Model id or alias as the client sent it.
    pub model: String,
    /// The prompt.
    pub input: Input,
    /// `temperature`; `None` means the model's default.
    pub temperature: Option<f32>,
    /// `top_p`; `None` means the model's default.
    pub top_p: Option<f32>,
    /// Number of choices.
    pub n: u32,
    /// Completion token limit (`max_completion_tokens` wins over
    /// `max_tokens`); `None` means what fits, up to the model's default.
    pub max_tokens: Option<u32>,
    /// Stop sequences (empty strings dropped).
    pub stop: Vec<String>,
    /// `seed` for reproducible sampling.
    pub seed: Option<i64>,
    /// `presence_penalty`.
    pub presence_penalty: f32,
    /// `frequency_penalty`.
    pub frequency_penalty: f32,
    /// `logit_bias` as (token id, bias), sorted by id.
    pub logit_bias: Vec<(u32, f32)>,
    /// `Some(k)` when log probabilities are wanted, with `k` alternatives
    /// per token (`top_logprobs` for chat, the integer `logprobs` for
    /// completions).
    pub logprobs: Option<u32>,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Tools and `response_format` (chat only; nothing for completions).
    pub tooling: Tooling,
}

/// Most choices one request may ask for.
pub const MAX_N: i64 = 8;
/// Most stop sequences, as OpenAI allows.
pub const MAX_STOP: usize = 4;
/// Most alternatives per token for chat's `top_logprobs`.
pub const MAX_TOP_LOGPROBS: i64 = 20;
/// Most alternatives per token for the legacy integer `logprobs`.
pub const MAX_LEGACY_LOGPROBS: i64 = 5;

/// Parses and validates a body. `stream` is the host's flag (it decides
/// whether the answer is an event stream); the body's own `stream` is only
/// type-checked and, when true, also allows `stream_options`.
pub fn parse(
    endpoint: Endpoint,
    body: &str,
    stream: bool,
    server_tools: &mut dyn ServerTools,
) -> Result<GenerationRequest, ApiError> {
    let map = parse_object(body)?;
    let body = Body(&map);

    let model = body.required_str("model")?.to_owned();
    let (input, tooling) = match endpoint {
        Endpoint::Chat => (parse_chat_input(body)?, tools::parse(body, server_tools)?),
        Endpoint::Completions => {
            reject_legacy_extras(body)?;
            (Input::Prompt(parse_prompt(body)?), Tooling::none())
        }
    };

    let temperature = body.opt_number("temperature", 0.0, 2.0, false)?.map(|x| x as f32);
    let top_p = body.opt_number("top_p", 0.0, 1.0, true)?.map(|x| x as f32);
    let n = body.opt_integer("n", 1, MAX_N)?.unwrap_or(1) as u32;
    let max_tokens = max_tokens(body)?;
    let stop = parse_stop(body)?;
    let seed = body.opt_integer("seed", i64::MIN, i64::MAX)?;
    let presence_penalty = body.opt_number("presence_penalty", -2.0, 2.0, false)?.unwrap_or(0.0) as f32;
    let frequency_penalty = body.opt_number("frequency_penalty", -2.0, 2.0, false)?.unwrap_or(0.0) as f32;
    let logit_bias = parse_logit_bias(body)?;
    let logprobs = match endpoint {
        Endpoint::Chat => parse_chat_logprobs(body)?,
        Endpoint::Completions => body.opt_integer("logprobs", 0, MAX_LEGACY_LOGPROBS)?.map(|k| k as u32),
    };

    let body_stream = body.opt_bool("stream")?.unwrap_or(false);
    let include_usage = parse_stream_options(body, stream || body_stream)?;

    Ok(GenerationRequest {
        endpoint,
        model,
        input,
        temperature,
        top_p,
        n,
        max_tokens,
        stop,
        seed,
        presence_penalty,
        frequency_penalty,
        logit_bias,
        logprobs,
        stream,
        include_usage,
        tooling,
    })
}

/// Facts about the model that request checks need.
#[derive(Debug, Clone, Copy)]
pub struct ModelFacts<'a> {
    /// Canonical id.
    pub id: &'a str,
    /// `chat` or `embedding`.
    pub kind: &'a str,
    /// Vocabulary size (0 = unknown, no id checks).
    pub vocab_size: u32,
}

impl GenerationRequest {
    /// Checks what depends on the model: that it generates text at all, and
    /// that `logit_bias` names tokens of its vocabulary.
    pub fn check_against(&self, model: ModelFacts<'_>) -> Result<(), ApiError> {
        if model.kind != "chat" {
            let api = match self.endpoint {
                Endpoint::Chat => "v1/chat/completions",
                Endpoint::Completions => "v1/completions",
            };
            return Err(ApiError::invalid(
                "model",
                format!("The model `{}` is an {} model and is not supported in the {api} endpoint.", model.id, model.kind),
            ));
        }
        if model.vocab_size > 0
            && let Some((id, _)) = self.logit_bias.iter().find(|(id, _)| *id >= model.vocab_size)
        {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("Invalid key in 'logit_bias': {id}. Token ids must be below the vocabulary size {}.", model.vocab_size),
            ));
        }
        Ok(())
    }
}

/// `messages` of a chat request.
fn parse_chat_input(body: Body<'_>) -> Result<Input, ApiError> {
    let messages = match body.get("messages") {
        None => {
            return Err(ApiError::invalid("messages", "Missing required parameter: 'messages'."));
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(type_error("messages", "an array", other)),
    };
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        ));
    }
    let messages = messages.iter().enumerate().map(|(i, m)| parse_message(i, m)).collect::<Result<Vec<_>, _>>()?;
    Ok(Input::Messages(messages))
}

/// One element of `messages`.
fn parse_message(i: usize, value: &Value) -> Result<Message, ApiError> {
    let at = |field: &str| format!("messages.[{i}].{field}");
    let Value::Object(obj) = value else {
        return Err(type_error(&format!("messages.[{i}]"), "an object", value));
    };
    let role = match obj.get("role") {
        Some(Value::String(role)) => role.as_str(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(at("role"), format!("Missing required parameter: '{}'.", at("role"))));
        }
        Some(other) => return Err(type_error(&at("role"), "a string", other)),
    };
    let role = match role {
        "system" | "developer" => "system",
        "user" | "assistant" | "tool" => role,
        other => {
            return Err(ApiError::invalid(
                at("role"),
                format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', and 'developer'."
                ),
            ));
        }
    };

    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => text_parts(i, parts)?,
        None | Some(Value::Null) if role == "assistant" => String::new(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(at("content"), format!("Missing required parameter: '{}'.", at("content"))));
        }
        Some(other) => return Err(type_error(&at("content"), "a string or array", other)),
    };

    let tool_call_id = match obj.get("tool_call_id") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) if role == "tool" => {
            return Err(ApiError::invalid(at("tool_call_id"), format!("Missing required parameter: '{}'.", at("tool_call_id"))));
        }
        None | Some(Value::Null) => None,
        Some(other) => return Err(type_error(&at("tool_call_id"), "a string", other)),
    };

    let tool_calls = match obj.get("tool_calls") {
        None | Some(Value::Null) => None,
        Some(Value::Array(calls)) if role == "assistant" => (!calls.is_empty()).then(|| Value::Array(calls.clone()).to_string()),
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                at("tool_calls"),
                format!("Invalid parameter: '{}' is only allowed for assistant messages.", at("tool_calls")),
            ));
        }
        Some(other) => return Err(type_error(&at("tool_calls"), "an array", other)),
    };

    Ok(Message { role: role.to_owned(), content, tool_call_id, tool_calls })
}

/// Concatenates the text parts of an array `content` (no separator: the
/// parts are one message's text split up by the client).
fn text_parts(i: usize, parts: &[Value]) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        let at = format!("messages.[{i}].content.[{j}]");
        let Value::Object(obj) = part else {
            return Err(type_error(&at, "an object", part));
        };
        match obj.get("type") {
            Some(Value::String(t)) if t == "text" => {}
            Some(Value::String(t)) => {
                return Err(ApiError::invalid(
                    format!("{at}.type"),
                    format!("Invalid value: '{t}'. This model only supports content parts of type 'text'."),
                ));
            }
            _ => {
                return Err(ApiError::invalid(format!("{at}.type"), format!("Missing required parameter: '{at}.type'.")));
            }
        }
        match obj.get("text") {
            Some(Value::String(s)) => text.push_str(s),
            None | Some(Value::Null) => {
                return Err(ApiError::invalid(format!("{at}.text"), format!("Missing required parameter: '{at}.text'.")));
            }
            Some(other) => return Err(type_error(&format!("{at}.text"), "a string", other)),
        }
    }
    Ok(text)
}

/// `prompt` of a completions request: a string or an array of one string.
fn parse_prompt(body: Body<'_>) -> Result<String, ApiError> {
    match body.get("prompt") {
        None => Err(ApiError::invalid("prompt", "Missing required parameter: 'prompt'.")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => Ok(s.clone()),
            [] => {
                Err(ApiError::invalid("prompt", "Invalid 'prompt': empty array. Expected a string or an array with one string."))
            }
            items if items.iter().all(Value::is_string) => Err(ApiError::invalid(
                "prompt",
                "Invalid 'prompt': this server accepts one prompt per request; send an array of one string.",
            )),
            items if items.iter().any(|v| v.is_number() || v.is_array()) => {
                Err(ApiError::invalid("prompt", "Invalid 'prompt': token arrays are not supported; send the prompt as a string."))
            }
            _ => Err(type_error("prompt", "a string or an array of strings", &Value::Array(items.to_vec()))),
        },
        Some(other) => Err(type_error("prompt", "a string", other)),
    }
}

/// Legacy completion options this server does not implement: accepted only
/// at their defaults, rejected otherwise rather than silently ignored.
fn reject_legacy_extras(body: Body<'_>) -> Result<(), ApiError> {
    if body.opt_bool("echo")?.unwrap_or(false) {
        return Err(ApiError::invalid("echo", "Invalid 'echo': echoing the prompt is not supported."));
    }
    match body.get("suffix") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(_)) => {
            return Err(ApiError::invalid("suffix", "Invalid 'suffix': insertion (suffix) is not supported."));
        }
        Some(other) => return Err(type_error("suffix", "a string", other)),
    }
    if let Some(best_of) = body.opt_integer("best_of", 0, 20)?
        && best_of != 1
    {
        return Err(ApiError::invalid("best_of", "Invalid 'best_of': only the default value 1 is supported."));
    }
    Ok(())
}

/// `max_completion_tokens` (preferred) or `max_tokens`; both must be >= 1.
fn max_tokens(body: Body<'_>) -> Result<Option<u32>, ApiError> {
    let legacy = body.opt_integer("max_tokens", 1, i64::MAX)?;
    let current = body.opt_integer("max_completion_tokens", 1, i64::MAX)?;
    // Anything above u32::MAX exceeds every context length anyway.
    Ok(current.or(legacy).map(|x| x.min(u32::MAX as i64) as u32))
}

/// `stop`: a string or an array of up to four strings.
fn parse_stop(body: Body<'_>) -> Result<Vec<String>, ApiError> {
    let stops = match body.get("stop") {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(ApiError::invalid(
                    "stop",
                    format!(
                        "Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, but got an array with length {} instead.",
                        items.len()
                    ),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(type_error(&format!("stop.[{i}]"), "a string", other)),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(other) => return Err(type_error("stop", "a string or array", other)),
    };
    // An empty stop sequence would match before any text; it means nothing.
    Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
}

/// `logit_bias`: `{"token id": bias in [-100, 100]}`.
fn parse_logit_bias(body: Body<'_>) -> Result<Vec<(u32, f32)>, ApiError> {
    let map = match body.get("logit_bias") {
        None => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(other) => return Err(type_error("logit_bias", "an object", other)),
    };
    let mut bias = Vec::with_capacity(map.len());
    for (key, value) in map {
        let Ok(id) = key.trim().parse::<u32>() else {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("Invalid key in 'logit_bias': {key}. Keys must be token ids (non-negative integers as strings)."),
            ));
        };
        let Some(x) = value.as_f64() else {
            return Err(type_error("logit_bias", "a number for each token", value));
        };
        let x = check_number("logit_bias", x, -100.0, 100.0, false)?;
        bias.push((id, x as f32));
    }
    bias.sort_by_key(|(id, _)| *id);
    Ok(bias)
}

/// Chat's `logprobs` (bool) and `top_logprobs` (0..=20, needs `logprobs`).
fn parse_chat_logprobs(body: Body<'_>) -> Result<Option<u32>, ApiError> {
    let wanted = body.opt_bool("logprobs")?.unwrap_or(false);
    let top = body.opt_integer("top_logprobs", 0, MAX_TOP_LOGPROBS)?;
    match (wanted, top) {
        (true, top) => Ok(Some(top.unwrap_or(0) as u32)),
        (false, Some(_)) => Err(ApiError::invalid(
            "top_logprobs",
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
        )),
        (false, None) => Ok(None),
    }
}

/// `stream_options` (only with `stream`); returns `include_usage`.
fn parse_stream_options(body: Body<'_>, streaming: bool) -> Result<bool, ApiError> {
    let Some(options) = body.get("stream_options") else {
        return Ok(false);
    };
    if !streaming {
        return Err(ApiError::invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    let Value::Object(obj) = options else {
        return Err(type_error("stream_options", "an object", options));
    };
    match obj.get("include_usage") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(type_error("stream_options.include_usage", "a boolean", other)),
    }
}

/// The completion budget: the requested `max_tokens`, or what fits up to the
/// model's default. Errors when the prompt plus completion exceed the
/// context, in OpenAI's words.
pub fn completion_budget(
    endpoint: Endpoint,
    prompt_tokens: u32,
    requested: Option<u32>,
    context_length: u32,
    default_max_tokens: u32,
) -> Result<u32, ApiError> {
    let param = endpoint.prompt_param();
    let (what, reduce) = match endpoint {
        Endpoint::Chat => ("in the messages", "the length of the messages"),
        Endpoint::Completions => ("in your prompt", "your prompt"),
    };
    match requested {
        Some(max) if prompt_tokens as u64 + max as u64 > context_length as u64 => {
            Err(ApiError::invalid(
                param,
                format!(
                    "This model's maximum context length is {context_length} tokens. However, you requested {} tokens ({prompt_tokens} {what}, {max} in the completion). Please reduce {reduce} or completion.",
                    prompt_tokens as u64 + max as u64
                ),
            )
            .with_code("context_length_exceeded"))
        }
        Some(max) => Ok(max),
        None if prompt_tokens >= context_length => Err(ApiError::invalid(
            param,
            format!(
                "This model's maximum context length is {context_length} tokens. However, your {} resulted in {prompt_tokens} tokens. Please reduce {reduce}.",
                match endpoint {
                    Endpoint::Chat => "messages",
                    Endpoint::Completions => "prompt",
                }
            ),
        )
        .with_code("context_length_exceeded")),
        None => {
            let room = context_length - prompt_tokens;
            // A model configured without a default gets all the room left.
            Ok(if default_max_tokens == 0 { room } else { default_max_tokens.min(room) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct NoServerTools;
    impl ServerTools for NoServerTools {
        fn describe(&mut self, _: &str) -> Option<(String, Value)> {
            None
        }
    }

    fn chat(body: Value) -> Result<GenerationRequest, ApiError> {
        parse(Endpoint::Chat, &body.to_string(), body["stream"] == json!(true), &mut NoServerTools)
    }

    fn completions(body: Value) -> Result<GenerationRequest, ApiError> {
        parse(Endpoint::Completions, &body.to_string(), body["stream"] == json!(true), &mut NoServerTools)
    }

    fn param_of(result: Result<GenerationRequest, ApiError>) -> String {
        let err = result.expect_err("expected a validation error");
        assert_eq!(err.status, 400, "{err:?}");
        assert_eq!(err.kind, "invalid_request_error");
        err.param.expect("param is set")
    }

    fn user() -> Value {
        json!([{"role": "user", "content": "hi"}])
    }

    #[test]
    fn minimal_chat_request_has_defaults() {
        let req = chat(json!({"model": "m", "messages": user(), "unknown_field": {"x": 1}})).unwrap();
        assert_eq!(req.n, 1);
        assert_eq!(req.temperature, None);
        assert_eq!(req.max_tokens, None);
        assert_eq!(req.logprobs, None);
        assert!(!req.stream && !req.include_usage);
        assert!(matches!(req.input, Input::Messages(ref messages) if messages.len() == 1));
    }

    #[test]
    fn messages_are_normalised() {
        let req = chat(json!({"model": "m", "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]}))
        .unwrap();
        let Input::Messages(messages) = req.input else { panic!() };
        assert_eq!(messages[0].role, "system");
        assert_eq!(messages[1].content, "ab");
        assert_eq!(messages[2].content, "");
        assert!(messages[2].tool_calls.as_deref().unwrap().contains("\"c1\""));
        assert_eq!(messages[3].tool_call_id.as_deref(), Some("c1"));
    }

    #[test]
    fn validation_errors_name_the_param() {
        let m = || user();
        assert_eq!(param_of(chat(json!({"messages": m()}))), "model");
        assert_eq!(param_of(chat(json!({"model": "m"}))), "messages");
        assert_eq!(param_of(chat(json!({"model": "m", "messages": []}))), "messages");
        assert_eq!(param_of(chat(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}))), "messages.[0].role");
        assert_eq!(param_of(chat(json!({"model": "m", "messages": [{"role": "user"}]}))), "messages.[0].content");
        assert_eq!(
            param_of(chat(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})
            )),
            "messages.[0].content.[0].type"
        );
        assert_eq!(
            param_of(chat(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}))),
            "messages.[0].tool_call_id"
        );
        for (field, value) in [
            ("temperature", json!(2.5)),
            ("temperature", json!(-0.1)),
            ("temperature", json!("hot")),
            ("top_p", json!(0)),
            ("top_p", json!(1.5)),
            ("n", json!(0)),
            ("n", json!(9)),
            ("n", json!(1.5)),
            ("max_tokens", json!(0)),
            ("max_completion_tokens", json!(-1)),
            ("stop", json!(["a", "b", "c", "d", "e"])),
            ("stop", json!(5)),
            ("seed", json!("x")),
            ("presence_penalty", json!(2.1)),
            ("frequency_penalty", json!(-3)),
            ("logit_bias", json!({"12": 101})),
            ("logit_bias", json!({"abc": 1})),
            ("logprobs", json!(1)),
            ("top_logprobs", json!(21)),
            ("stream", json!("yes")),
        ] {
            let mut body = json!({"model": "m", "messages": m()});
            body[field] = value.clone();
            assert_eq!(param_of(chat(body)), field, "{field} = {value}");
        }
        assert_eq!(param_of(chat(json!({"model": "m", "messages": m(), "top_logprobs": 2}))), "top_logprobs");
        assert_eq!(
            param_of(chat(json!({"model": "m", "messages": m(), "stream_options": {"include_usage": true}}))),
            "stream_options"
        );
    }

    #[test]
    fn options_are_read() {
        let req = chat(json!({
            "model": "m", "messages": user(), "temperature": 0, "top_p": 0.5, "n": 3,
            "max_tokens": 10, "max_completion_tokens": 20, "stop": ["x", ""], "seed": -7,
            "presence_penalty": 1, "frequency_penalty": -1.5, "logit_bias": {"5": -100, "2": 3},
            "logprobs": true, "top_logprobs": 4, "stream": true,
            "stream_options": {"include_usage": true}, "user": "u-1"
        }))
        .unwrap();
        assert_eq!(req.temperature, Some(0.0));
        assert_eq!(req.top_p, Some(0.5));
        assert_eq!(req.n, 3);
        assert_eq!(req.max_tokens, Some(20), "max_completion_tokens wins");
        assert_eq!(req.stop, vec!["x".to_string()]);
        assert_eq!(req.seed, Some(-7));
        assert_eq!((req.presence_penalty, req.frequency_penalty), (1.0, -1.5));
        assert_eq!(req.logit_bias, vec![(2, 3.0), (5, -100.0)]);
        assert_eq!(req.logprobs, Some(4));
        assert!(req.stream && req.include_usage);
    }

    #[test]
    fn completions_prompt_and_legacy_options() {
        let req = completions(json!({"model": "m", "prompt": ["once"], "logprobs": 2, "best_of": 1, "echo": false})).unwrap();
        assert_eq!(req.input, Input::Prompt("once".into()));
        assert_eq!(req.logprobs, Some(2));
        assert_eq!(param_of(completions(json!({"model": "m"}))), "prompt");
        assert_eq!(param_of(completions(json!({"model": "m", "prompt": [1, 2, 3]}))), "prompt");
        assert_eq!(param_of(completions(json!({"model": "m", "prompt": ["a", "b"]}))), "prompt");
        assert_eq!(param_of(completions(json!({"model": "m", "prompt": "a", "logprobs": 6}))), "logprobs");
        assert_eq!(param_of(completions(json!({"model": "m", "prompt": "a", "logprobs": true}))), "logprobs");
        assert_eq!(param_of(completions(json!({"model": "m", "prompt": "a", "echo": true}))), "echo");
        assert_eq!(param_of(completions(json!({"model": "m", "prompt": "a", "suffix": "z"}))), "suffix");
        assert_eq!(param_of(completions(json!({"model": "m", "prompt": "a", "best_of": 2}))), "best_of");
    }

    #[test]
    fn model_checks() {
        let req = chat(json!({"model": "m", "messages": user(), "logit_bias": {"100": 1}})).unwrap();
        let facts = ModelFacts { id: "m", kind: "chat", vocab_size: 100 };
        assert_eq!(req.check_against(facts).unwrap_err().param.as_deref(), Some("logit_bias"));
        let facts = ModelFacts { id: "m", kind: "embedding", vocab_size: 1000 };
        assert_eq!(req.check_against(facts).unwrap_err().param.as_deref(), Some("model"));
        let facts = ModelFacts { id: "m", kind: "chat", vocab_size: 1000 };
        assert!(req.check_against(facts).is_ok());
    }

    #[test]
    fn context_length_budget() {
        assert_eq!(completion_budget(Endpoint::Chat, 10, Some(5), 100, 50), Ok(5));
        assert_eq!(completion_budget(Endpoint::Chat, 10, None, 100, 50), Ok(50));
        assert_eq!(completion_budget(Endpoint::Chat, 80, None, 100, 50), Ok(20));
        assert_eq!(completion_budget(Endpoint::Chat, 80, None, 100, 0), Ok(20));
        let err = completion_budget(Endpoint::Chat, 90, Some(20), 100, 50).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
        assert_eq!(err.code, Some("context_length_exceeded"));
        assert!(err.message.contains("maximum context length is 100 tokens"), "{}", err.message);
        assert!(err.message.contains("you requested 110 tokens (90 in the messages, 20 in the completion)"), "{}", err.message);
        let err = completion_budget(Endpoint::Completions, 100, None, 100, 50).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("prompt"));
        assert_eq!(err.code, Some("context_length_exceeded"));
    }

    #[test]
    fn endpoints_from_paths() {
        assert_eq!(Endpoint::from_path("/v1/chat/completions"), Some(Endpoint::Chat));
        assert_eq!(Endpoint::from_path("/v1/completions/"), Some(Endpoint::Completions));
        assert_eq!(Endpoint::from_path("/v1/embeddings"), None);
    }
}
