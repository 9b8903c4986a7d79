//! # chat-core
//!
//! Generation for the handler components behind `POST /v1/chat/completions`
//! and `POST /v1/completions`: `functions/handlers/chat` exports [`handle`] as it is,
//! `functions/handlers/rag` grounds the conversation in retrieved chunks first and
//! then calls [`prepare`] / [`respond`]. The host runs a fresh instance per
//! request; a request goes through:
//!
//! 1. validates the OpenAI body ([`request`]) and resolves the model
//!    (`models.get`);
//! 2. renders the chat template and tokenises the prompt (host tokenizer);
//! 3. runs each of the `n` choices in its own wasi:nn execution context:
//!    prefill, then one token per `compute` ([`generate`]), choosing tokens
//!    with [`sampling`] and releasing text through [`text`];
//! 4. answers with OpenAI's JSON ([`response`]), or streams chunks through
//!    `output.send` when the request is a stream.
//!
//! The conventions with the host are in `docs/design/003-inference-abi.md`.
//! Choices are generated one after another; every chunk names its choice.
//!
//! `tools` and `response_format` are enforced by constrained decoding
//! ([`grammar`]): the output is forced into the tool-call format
//! ([`calls`]) or the JSON schema. Calls of deployed tool functions
//! (`type: "tensoras_function"`) run on the server between generation
//! rounds ([`turns`]). See `docs/design/005-tool-calling.md`.

pub mod bindings;
pub mod calls;
pub mod decoded;
pub mod generate;
pub mod grammar;
pub mod grounding;
pub mod host;
pub mod logits;
pub mod numbers;
pub mod prompt;
pub mod request;
pub mod response;
pub mod sampling;
pub mod text;
pub mod tools;
pub mod turns;

use handler_common::{ApiError, ids};
use serde_json::{Map, Value};

use crate::calls::CallFormat;
use crate::generate::ChoiceResult;
use crate::grammar::Engine;
use crate::request::{GenerationRequest, ModelFacts};
use crate::response::{ChunkEvent, ChunkWriter, Envelope, Usage, full_response, id_prefix};
use crate::sampling::SamplingParams;
use crate::turns::{Turns, TurnsOutcome};

use bindings::exports::tensoras::platform::handler::{Request, Response};
use bindings::tensoras::platform::models::{self, ModelInfo};
use bindings::tensoras::platform::output;
use bindings::tensoras::platform::types::Usage as WitUsage;

/// Sampling settings from the request, falling back to the model's
/// defaults (clamped into the API's ranges, in case a catalogue entry is
/// off).
fn sampling_params(req: &GenerationRequest, info: &ModelInfo) -> SamplingParams {
    let default_top_p = if info.default_top_p > 0.0 && info.default_top_p <= 1.0 { info.default_top_p } else { 1.0 };
    SamplingParams {
        temperature: req.temperature.unwrap_or(info.default_temperature.clamp(0.0, 2.0)),
        top_p: req.top_p.unwrap_or(default_top_p),
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logit_bias: req.logit_bias.clone(),
    }
}

/// A validated request and the model it names.
pub struct Prepared {
    /// The request.
    pub req: GenerationRequest,
    /// The model.
    pub info: ModelInfo,
}

impl Prepared {
    /// How many tokens the request's prompt takes as the first round renders
    /// it (tools and schemas included).
    pub fn prompt_tokens(&self) -> Result<u32, ApiError> {
        let messages = match &self.req.input {
            request::Input::Messages(m) => m.as_slice(),
            request::Input::Prompt(_) => &[],
        };
        let format = CallFormat::named(&self.info.tool_call_format);
        let ids = turns::encode_prompt(&self.req, &self.info, &format, messages, &self.req.tooling)?;
        Ok(ids.len() as u32)
    }
}

/// Validates a request against the API and its model.
pub fn prepare(raw: &Request) -> Result<Prepared, ApiError> {
    let endpoint = request::Endpoint::from_path(&raw.path).ok_or_else(|| ApiError::unknown_path(&raw.path))?;
    let req = request::parse(endpoint, &raw.body, raw.stream, &mut host::DeployedTools::default())?;
    let info = models::get(&req.model).ok_or_else(|| ApiError::model_not_found(&req.model))?;
    req.check_against(ModelFacts { id: &info.id, kind: &info.kind, vocab_size: info.vocab_size })?;
    Ok(Prepared { req, info })
}

/// Handles a request as the chat handler: no extension fields.
pub fn handle(raw: Request) -> Result<Response, ApiError> {
    respond(&prepare(&raw)?, &Map::new())
}

/// Generates the answer to a prepared request. `extra` holds extension
/// fields (RAG's `citations`) added at the top level of the response, or of
/// the first chunk of a stream.
pub fn respond(prepared: &Prepared, extra: &Map<String, Value>) -> Result<Response, ApiError> {
    respond_to(prepared, extra, &|chunk| output::send(chunk))
}

/// [`respond`], with a stream's chunks handed to `sink` instead of
/// `output.send` (the Responses handler turns them into its own events); a
/// false return means the client left.
pub fn respond_to(prepared: &Prepared, extra: &Map<String, Value>, sink: &dyn Fn(&str) -> bool) -> Result<Response, ApiError> {
    let Prepared { req, info } = prepared;
    let endpoint = req.endpoint;
    let stop_tokens = host::stop_tokens(&info.id)?;
    let format = CallFormat::named(&info.tool_call_format);
    let engine = grammar_engine(req, info, &stop_tokens)?;

    let params = sampling_params(req, info);
    // Without a seed each request draws one; with it, choice i always gets
    // the same stream.
    let seed = req.seed.map(|s| s as u64).unwrap_or_else(ids::random_u64);
    let graph = host::load_graph(&info.id)?;

    let env = Envelope { endpoint, id: ids::random_id(id_prefix(endpoint)), created: ids::unix_time(), model: info.id.clone() };
    let writer = ChunkWriter::new(env.clone(), req.logprobs.is_some(), req.include_usage);
    // Streams go to `output.send`; a false return means the client left.
    let first = std::cell::Cell::new(true);
    let send = |chunk: Option<String>| {
        chunk.is_none_or(|c| if first.replace(false) && !extra.is_empty() { sink(&with_fields(&c, extra)) } else { sink(&c) })
    };
    let turns = Turns {
        req,
        info,
        graph: &graph,
        stop_tokens: &stop_tokens,
        params: &params,
        seed,
        engine: engine.as_ref(),
        format,
        writer: &writer,
        send: &send,
    };

    let mut choices: Vec<ChoiceResult> = Vec::with_capacity(req.n as usize);
    let mut prompt_tokens = 0u32;
    let mut completion_tokens = 0u32;
    let mut abandoned = false;
    for index in 0..req.n {
        if req.stream && !send(writer.chunk(index, ChunkEvent::Start)) {
            abandoned = true;
            break;
        }
        let outcome = turns.run(index)?;
        // The prompt is counted once for all choices, plus the prompts of
        // any later rounds (after server-side tool calls).
        prompt_tokens = prompt_tokens.max(outcome.first_prompt_tokens);
        prompt_tokens = prompt_tokens.saturating_add(outcome.more_prompt_tokens);
        completion_tokens = completion_tokens.saturating_add(outcome.completion_tokens);
        match outcome.result {
            TurnsOutcome::Abandoned => {
                abandoned = true;
                break;
            }
            TurnsOutcome::Finished(result) => {
                if req.stream && !send(writer.chunk(index, ChunkEvent::Finish(result.finish_reason))) {
                    abandoned = true;
                    break;
                }
                choices.push(result);
            }
        }
    }

    let usage = Usage::new(prompt_tokens, completion_tokens);
    let body = if req.stream || abandoned {
        // The host ignores a stream's body; only the usage chunk remains.
        if !abandoned {
            send(writer.usage_chunk(usage));
        }
        String::new()
    } else {
        let body = full_response(&env, &choices, req.logprobs.is_some(), usage);
        if extra.is_empty() { body } else { with_fields(&body, extra) }
    };
    Ok(Response { body, usage: WitUsage { prompt_tokens, completion_tokens } })
}

/// A JSON object's text with `extra` fields added at its top level.
fn with_fields(json: &str, extra: &Map<String, Value>) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(mut obj)) => {
            obj.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            Value::Object(obj).to_string()
        }
        _ => json.to_owned(),
    }
}

/// The grammar engine, when the request constrains the output; every
/// schema is compiled here first, so one that cannot be enforced is a 400
/// on its own parameter before any generation.
fn grammar_engine(req: &GenerationRequest, info: &ModelInfo, stop_tokens: &[u32]) -> Result<Option<Engine>, ApiError> {
    let tooling = &req.tooling;
    let constrained = tooling.calls_allowed() || tooling.format != tools::ResponseFormat::Text;
    if !constrained {
        return Ok(None);
    }
    let vocab = host::vocabulary(&info.id)?;
    let engine = Engine::new(&vocab, info.vocab_size as usize, stop_tokens)
        .map_err(|e| ApiError::server(format!("the grammar engine could not start: {e}")))?;
    let check = |schema: serde_json::Value, param: String, what: String| {
        engine
            .constraint(llguidance::api::TopLevelGrammar::from_json_schema(schema), numbers::NumberScan::json())
            .map(drop)
            .map_err(|e| ApiError::invalid(param, format!("Invalid schema for {what}: {e}")))
    };
    if tooling.calls_allowed() {
        for tool in &tooling.tools {
            check(calls::args_schema(tool), tool.param(), format!("function '{}'", tool.name))?;
        }
    }
    if let tools::ResponseFormat::JsonSchema { name, .. } = &tooling.format
        && let Some(schema) = calls::format_schema(&tooling.format)
    {
        check(schema, tools::ResponseFormat::param().to_owned(), format!("response_format '{name}'"))?;
    }
    Ok(Some(engine))
}
