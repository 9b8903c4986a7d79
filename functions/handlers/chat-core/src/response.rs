//! OpenAI response and stream-chunk JSON for chat and legacy completions.
//!
//! Built from `serde` structs (not `json!`) for two reasons: the fields come
//! out in OpenAI's order, and `f32` log probabilities serialise with their
//! shortest `f32` representation (`-0.25`, not `-0.25000000372529`).

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::generate::{ChoiceResult, FinishReason, ServerCall, TokenLogprob, ToolCall};
use crate::request::Endpoint;

/// `system_fingerprint` of every response: one fixed value, since the
/// serving stack does not vary per request.
pub const SYSTEM_FINGERPRINT: &str = "fp_tensoras";

/// What every response and chunk of one request shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// API called.
    pub endpoint: Endpoint,
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Canonical model id.
    pub model: String,
}

/// OpenAI `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Prompt tokens (counted once, whatever `n`).
    pub prompt_tokens: u32,
    /// Tokens generated over all choices.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

impl Usage {
    /// Usage from the two counts.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self { prompt_tokens, completion_tokens, total_tokens: prompt_tokens.saturating_add(completion_tokens) }
    }
}

/// The id prefix for an endpoint.
pub fn id_prefix(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "chatcmpl-",
        Endpoint::Completions => "cmpl-",
    }
}

// ---- log probabilities -------------------------------------------------

#[derive(Serialize)]
struct TopLogprob<'a> {
    token: &'a str,
    logprob: f32,
    bytes: &'a [u8],
}

#[derive(Serialize)]
struct ContentLogprob<'a> {
    token: &'a str,
    logprob: f32,
    bytes: &'a [u8],
    top_logprobs: Vec<TopLogprob<'a>>,
}

/// Chat's `{"content": [...]}`. `bytes` are the UTF-8 bytes of the token
/// text (the tokenizer interface returns text, not raw token bytes).
#[derive(Serialize)]
struct ChatLogprobs<'a> {
    content: Vec<ContentLogprob<'a>>,
}

fn chat_logprobs(items: &[TokenLogprob]) -> ChatLogprobs<'_> {
    ChatLogprobs {
        content: items
            .iter()
            .map(|t| ContentLogprob {
                token: &t.token,
                logprob: t.logprob,
                bytes: t.token.as_bytes(),
                top_logprobs: t
                    .top
                    .iter()
                    .map(|(token, logprob)| TopLogprob { token, logprob: *logprob, bytes: token.as_bytes() })
                    .collect(),
            })
            .collect(),
    }
}

/// One `top_logprobs` dict of the legacy API, in descending order (a
/// `serde_json::Map` would sort it by key).
struct OrderedDict<'a>(Vec<(&'a str, f32)>);

impl Serialize for OrderedDict<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Legacy `{tokens, token_logprobs, top_logprobs, text_offset}`.
#[derive(Serialize)]
struct LegacyLogprobs<'a> {
    tokens: Vec<&'a str>,
    token_logprobs: Vec<f32>,
    top_logprobs: Vec<OrderedDict<'a>>,
    text_offset: Vec<usize>,
}

fn legacy_logprobs(items: &[TokenLogprob]) -> LegacyLogprobs<'_> {
    LegacyLogprobs {
        tokens: items.iter().map(|t| t.token.as_str()).collect(),
        token_logprobs: items.iter().map(|t| t.logprob).collect(),
        // The legacy API always lists the sampled token too, so a dict has
        // up to `logprobs + 1` entries.
        top_logprobs: items
            .iter()
            .map(|t| {
                let mut dict: Vec<(&str, f32)> = Vec::with_capacity(t.top.len() + 1);
                for (token, lp) in &t.top {
                    if !dict.iter().any(|(k, _)| k == token) {
                        dict.push((token, *lp));
                    }
                }
                if !dict.iter().any(|(k, _)| *k == t.token) {
                    dict.push((&t.token, t.logprob));
                }
                OrderedDict(dict)
            })
            .collect(),
        text_offset: items.iter().map(|t| t.text_offset).collect(),
    }
}

/// `logprobs` of a choice or chunk in the endpoint's shape; `None` (JSON
/// null) when not requested.
#[derive(Serialize)]
#[serde(untagged)]
enum Logprobs<'a> {
    Chat(ChatLogprobs<'a>),
    Legacy(LegacyLogprobs<'a>),
}

fn logprobs<'a>(endpoint: Endpoint, wanted: bool, items: &'a [TokenLogprob]) -> Option<Logprobs<'a>> {
    if !wanted {
        return None;
    }
    Some(match endpoint {
        Endpoint::Chat => Logprobs::Chat(chat_logprobs(items)),
        Endpoint::Completions => Logprobs::Legacy(legacy_logprobs(items)),
    })
}

// ---- non-streaming responses ---------------------------------------------

#[derive(Serialize)]
struct FunctionCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolCallJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionCall<'a>,
}

fn tool_calls_json(calls: &[ToolCall]) -> Option<Vec<ToolCallJson<'_>>> {
    (!calls.is_empty()).then(|| {
        calls
            .iter()
            .map(|c| ToolCallJson {
                index: None,
                id: Some(&c.id),
                kind: Some("function"),
                function: FunctionCall { name: Some(&c.name), arguments: &c.arguments },
            })
            .collect()
    })
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    /// Null when the model only called tools, as OpenAI answers.
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallJson<'a>>>,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<Logprobs<'a>>,
    finish_reason: &'static str,
    /// Tensoras extension: the deployed tools the server ran.
    #[serde(skip_serializing_if = "<[ServerCall]>::is_empty")]
    server_tool_calls: &'a [ServerCall],
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<Logprobs<'a>>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Completion<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<C>,
    usage: Usage,
}

/// The whole (non-streamed) response body.
pub fn full_response(env: &Envelope, choices: &[ChoiceResult], logprobs_wanted: bool, usage: Usage) -> String {
    let ep = env.endpoint;
    let result = match ep {
        Endpoint::Chat => serde_json::to_string(&Completion {
            id: &env.id,
            object: "chat.completion",
            created: env.created,
            model: &env.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices: choices
                .iter()
                .enumerate()
                .map(|(i, c)| ChatChoice {
                    index: i as u32,
                    message: AssistantMessage {
                        role: "assistant",
                        content: (c.tool_calls.is_empty() || !c.text.is_empty()).then_some(c.text.as_str()),
                        refusal: None,
                        tool_calls: tool_calls_json(&c.tool_calls),
                    },
                    logprobs: logprobs(ep, logprobs_wanted, &c.logprobs),
                    finish_reason: c.finish_reason.as_str(),
                    server_tool_calls: &c.server_calls,
                })
                .collect(),
            usage,
        }),
        Endpoint::Completions => serde_json::to_string(&Completion {
            id: &env.id,
            object: "text_completion",
            created: env.created,
            model: &env.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices: choices
                .iter()
                .enumerate()
                .map(|(i, c)| TextChoice {
                    text: &c.text,
                    index: i as u32,
                    logprobs: logprobs(ep, logprobs_wanted, &c.logprobs),
                    finish_reason: c.finish_reason.as_str(),
                })
                .collect(),
            usage,
        }),
    };
    // Serialising these structs cannot fail (string keys, finite-or-null
    // floats); an empty object keeps the handler from trapping regardless.
    result.unwrap_or_else(|_| "{}".into())
}

// ---- stream chunks ---------------------------------------------------------

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallJson<'a>>>,
    /// Tensoras extension: a deployed tool the server just ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_tool_calls: Option<[&'a ServerCall; 1]>,
}

#[derive(Serialize)]
struct ChatChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<Logprobs<'a>>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct TextChunkChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<Logprobs<'a>>,
    finish_reason: Option<&'static str>,
}

/// `usage` of a chunk: absent unless the client asked for usage, then null
/// on every chunk but the last.
enum ChunkUsage {
    Absent,
    Null,
    Final(Usage),
}

impl ChunkUsage {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

impl Serialize for ChunkUsage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Final(u) => u.serialize(serializer),
            _ => serializer.serialize_none(),
        }
    }
}

#[derive(Serialize)]
struct Chunk<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<C>,
    #[serde(skip_serializing_if = "ChunkUsage::is_absent")]
    usage: ChunkUsage,
}

/// What one chunk says about one choice.
#[derive(Debug, Clone, Copy)]
pub enum ChunkEvent<'a> {
    /// The first chunk of a chat choice: `{"role":"assistant","content":""}`.
    Start,
    /// New text, with the logprobs of the tokens it came from.
    Text(&'a str, &'a [TokenLogprob]),
    /// The end of a choice: empty delta and the finish reason.
    Finish(FinishReason),
    /// A tool call begins: its position, id and name (arguments follow).
    CallStart(usize, &'a str, &'a str),
    /// A fragment of the arguments of the call at this position.
    CallArguments(usize, &'a str),
    /// The server ran a deployed tool.
    ServerCall(&'a ServerCall),
}

/// Builds the chunks of one stream.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    env: Envelope,
    logprobs_wanted: bool,
    include_usage: bool,
}

impl ChunkWriter {
    /// A writer for one request's stream.
    pub fn new(env: Envelope, logprobs_wanted: bool, include_usage: bool) -> Self {
        Self { env, logprobs_wanted, include_usage }
    }

    /// The chunk for one event of choice `index`; `None` for events the
    /// endpoint has no chunk for (legacy completions have no start chunk).
    pub fn chunk(&self, index: u32, event: ChunkEvent<'_>) -> Option<String> {
        let ep = self.env.endpoint;
        let usage = if self.include_usage { ChunkUsage::Null } else { ChunkUsage::Absent };
        let no_logprobs: &[TokenLogprob] = &[];
        let json = match ep {
            Endpoint::Chat => {
                let (delta, lp, finish) = match event {
                    ChunkEvent::Start => (Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }, None, None),
                    ChunkEvent::Text(text, lp) => {
                        (Delta { content: Some(text), ..Delta::default() }, logprobs(ep, self.logprobs_wanted, lp), None)
                    }
                    ChunkEvent::Finish(reason) => (Delta::default(), None, Some(reason.as_str())),
                    ChunkEvent::CallStart(i, id, name) => (
                        Delta {
                            tool_calls: Some(vec![ToolCallJson {
                                index: Some(i),
                                id: Some(id),
                                kind: Some("function"),
                                function: FunctionCall { name: Some(name), arguments: "" },
                            }]),
                            ..Delta::default()
                        },
                        None,
                        None,
                    ),
                    ChunkEvent::CallArguments(i, text) => (
                        Delta {
                            tool_calls: Some(vec![ToolCallJson {
                                index: Some(i),
                                id: None,
                                kind: None,
                                function: FunctionCall { name: None, arguments: text },
                            }]),
                            ..Delta::default()
                        },
                        None,
                        None,
                    ),
                    ChunkEvent::ServerCall(call) => (Delta { server_tool_calls: Some([call]), ..Delta::default() }, None, None),
                };
                self.encode(vec![ChatChunkChoice { index, delta, logprobs: lp, finish_reason: finish }], usage)
            }
            Endpoint::Completions => {
                let (text, lp, finish) = match event {
                    ChunkEvent::Start | ChunkEvent::CallStart(..) | ChunkEvent::CallArguments(..) | ChunkEvent::ServerCall(_) => {
                        return None;
                    }
                    ChunkEvent::Text(text, lp) => (text, lp, None),
                    ChunkEvent::Finish(reason) => ("", no_logprobs, Some(reason.as_str())),
                };
                let lp = if finish.is_some() { None } else { logprobs(ep, self.logprobs_wanted, lp) };
                self.encode(vec![TextChunkChoice { text, index, logprobs: lp, finish_reason: finish }], usage)
            }
        };
        Some(json)
    }

    /// The last chunk when usage was requested: no choices, just usage.
    pub fn usage_chunk(&self, usage: Usage) -> Option<String> {
        if !self.include_usage {
            return None;
        }
        Some(self.encode(Vec::<ChatChunkChoice<'_>>::new(), ChunkUsage::Final(usage)))
    }

    fn encode<C: Serialize>(&self, choices: Vec<C>, usage: ChunkUsage) -> String {
        let object = match self.env.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completions => "text_completion",
        };
        serde_json::to_string(&Chunk {
            id: &self.env.id,
            object,
            created: self.env.created,
            model: &self.env.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        })
        .unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn env(endpoint: Endpoint) -> Envelope {
        Envelope { endpoint, id: "chatcmpl-x".into(), created: 1700000000, model: "m".into() }
    }

    fn lp() -> Vec<TokenLogprob> {
        vec![TokenLogprob {
            token: "Hi".into(),
            logprob: -0.25,
            top: vec![("Hi".into(), -0.25), ("Hey".into(), -1.5)],
            text_offset: 0,
        }]
    }

    fn choice(logprobs: Vec<TokenLogprob>) -> ChoiceResult {
        ChoiceResult {
            text: "Hi".into(),
            finish_reason: FinishReason::Stop,
            completion_tokens: 2,
            logprobs,
            tool_calls: Vec::new(),
            server_calls: Vec::new(),
        }
    }

    #[test]
    fn tool_calls_have_openai_shape() {
        let mut c = choice(vec![]);
        c.text.clear();
        c.finish_reason = FinishReason::ToolCalls;
        c.tool_calls = vec![ToolCall { id: "call_1".into(), name: "f".into(), arguments: "{\"x\": 1}".into() }];
        c.server_calls = vec![ServerCall {
            id: "call_0".into(),
            name: "calc".into(),
            arguments: "{}".into(),
            output: "{\"result\": 2}".into(),
            is_error: false,
        }];
        let body = parse(&full_response(&env(Endpoint::Chat), &[c.clone()], false, Usage::new(5, 2)));
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}])
        );
        assert_eq!(choice["server_tool_calls"][0]["name"], "calc");

        let w = ChunkWriter::new(env(Endpoint::Chat), false, false);
        let start = parse(&w.chunk(0, ChunkEvent::CallStart(0, "call_1", "f")).unwrap());
        assert_eq!(
            start["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]})
        );
        let args = parse(&w.chunk(0, ChunkEvent::CallArguments(0, "{\"x")).unwrap());
        assert_eq!(args["choices"][0]["delta"], json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x"}}]}));
        let server = parse(&w.chunk(0, ChunkEvent::ServerCall(&c.server_calls[0])).unwrap());
        assert_eq!(server["choices"][0]["delta"]["server_tool_calls"][0]["output"], "{\"result\": 2}");
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn chat_response_has_openai_shape() {
        let body = full_response(&env(Endpoint::Chat), &[choice(vec![])], false, Usage::new(5, 2));
        assert_eq!(
            parse(&body),
            json!({
                "id": "chatcmpl-x", "object": "chat.completion", "created": 1700000000, "model": "m",
                "system_fingerprint": "fp_tensoras",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "refusal": null},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            })
        );
        assert!(body.starts_with(r#"{"id":"chatcmpl-x","object":"chat.completion","created""#));
    }

    #[test]
    fn chat_logprobs_shape() {
        let body = full_response(&env(Endpoint::Chat), &[choice(lp())], true, Usage::new(5, 2));
        assert_eq!(
            parse(&body)["choices"][0]["logprobs"],
            json!({"content": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                                 {"token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121]}]}]})
        );
    }

    #[test]
    fn completion_response_and_legacy_logprobs() {
        let mut e = env(Endpoint::Completions);
        e.id = "cmpl-x".into();
        let mut items = lp();
        items[0].top = vec![("Hey".into(), -0.1)];
        let body = full_response(&e, &[choice(items)], true, Usage::new(1, 2));
        let v = parse(&body);
        assert_eq!(v["object"], "text_completion");
        assert_eq!(
            v["choices"][0],
            json!({"text": "Hi", "index": 0, "finish_reason": "stop", "logprobs": {
                "tokens": ["Hi"], "token_logprobs": [-0.25],
                "top_logprobs": [{"Hey": -0.1, "Hi": -0.25}], "text_offset": [0]}})
        );
        // The dict keeps descending order, not key order.
        assert!(body.contains(r#"{"Hey":-0.1,"Hi":-0.25}"#), "{body}");
    }

    #[test]
    fn chat_chunks() {
        let w = ChunkWriter::new(env(Endpoint::Chat), false, true);
        let start = parse(&w.chunk(1, ChunkEvent::Start).unwrap());
        assert_eq!(start["object"], "chat.completion.chunk");
        assert_eq!(
            start["choices"][0],
            json!({"index": 1, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})
        );
        assert_eq!(start["usage"], Value::Null);
        assert!(start.as_object().unwrap().contains_key("usage"));
        let text = parse(&w.chunk(1, ChunkEvent::Text("Hi", &[])).unwrap());
        assert_eq!(text["choices"][0]["delta"], json!({"content": "Hi"}));
        let end = parse(&w.chunk(1, ChunkEvent::Finish(FinishReason::Length)).unwrap());
        assert_eq!(end["choices"][0]["delta"], json!({}));
        assert_eq!(end["choices"][0]["finish_reason"], "length");
        let usage = parse(&w.usage_chunk(Usage::new(3, 4)).unwrap());
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"], json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}));
    }

    #[test]
    fn chunks_without_usage_omit_it() {
        let w = ChunkWriter::new(env(Endpoint::Chat), true, false);
        let items = lp();
        let text = parse(&w.chunk(0, ChunkEvent::Text("Hi", &items)).unwrap());
        assert!(!text.as_object().unwrap().contains_key("usage"));
        assert_eq!(text["choices"][0]["logprobs"]["content"][0]["token"], "Hi");
        assert!(w.usage_chunk(Usage::new(1, 1)).is_none());
    }

    #[test]
    fn completion_chunks() {
        let w = ChunkWriter::new(env(Endpoint::Completions), false, false);
        assert!(w.chunk(0, ChunkEvent::Start).is_none());
        let text = parse(&w.chunk(0, ChunkEvent::Text("Hi", &[])).unwrap());
        assert_eq!(text["object"], "text_completion");
        assert_eq!(text["choices"][0], json!({"text": "Hi", "index": 0, "logprobs": null, "finish_reason": null}));
        let end = parse(&w.chunk(0, ChunkEvent::Finish(FinishReason::Stop)).unwrap());
        assert_eq!(end["choices"][0]["text"], "");
        assert_eq!(end["choices"][0]["finish_reason"], "stop");
    }
}
