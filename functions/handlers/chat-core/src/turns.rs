//! One choice from prompt to answer, through as many generation rounds as
//! server-side tools need.
//!
//! Each round renders the conversation, prefills a fresh sequence and
//! decodes under the request's grammar. When the model calls only deployed
//! tool functions (`tensoras_function`), the server runs them, appends the
//! calls and their results to the conversation and starts another round;
//! the last allowed round has tools switched off so the model must answer.
//! Calls of client tools end the choice with `finish_reason: tool_calls`.

use handler_common::{ApiError, ids};

use crate::bindings::tensoras::platform::models::ModelInfo;
use crate::bindings::wasi::nn::graph::Graph;
use crate::calls::{self, CallFormat, Event, Scanner};
use crate::generate::{ChoiceResult, ChoiceSpec, FinishReason, Flow, Outcome, ServerCall, ToolCall, run_choice};
use crate::grammar::Engine;
use crate::host;
use crate::request::{self, GenerationRequest, Input, Message};
use crate::response::{ChunkEvent, ChunkWriter};
use crate::sampling::{Rng, Sampler, SamplingParams};
use crate::tools::{ToolChoice, Tooling};

/// Most rounds of server-side tool calls before the model must answer.
pub const MAX_SERVER_ROUNDS: u32 = 4;

/// Everything the choices of one request share.
pub struct Turns<'a> {
    /// The request.
    pub req: &'a GenerationRequest,
    /// The model.
    pub info: &'a ModelInfo,
    /// Its graph.
    pub graph: &'a Graph,
    /// Ids that end a turn.
    pub stop_tokens: &'a [u32],
    /// Sampling settings.
    pub params: &'a SamplingParams,
    /// Base seed.
    pub seed: u64,
    /// The grammar engine, when the output is constrained.
    pub engine: Option<&'a Engine>,
    /// How the model writes tool calls.
    pub format: CallFormat,
    /// Stream chunk builder.
    pub writer: &'a ChunkWriter,
    /// Sends a chunk; false when the client left.
    pub send: &'a dyn Fn(Option<String>) -> bool,
}

/// The end of one choice.
pub enum TurnsOutcome {
    /// Finished normally.
    Finished(ChoiceResult),
    /// The client left.
    Abandoned,
}

/// A choice's outcome and its token counts.
pub struct ChoiceRun {
    /// What happened.
    pub result: TurnsOutcome,
    /// Prompt tokens of the first round (shared by all choices).
    pub first_prompt_tokens: u32,
    /// Prompt tokens of later rounds.
    pub more_prompt_tokens: u32,
    /// Tokens generated over all rounds.
    pub completion_tokens: u32,
}

impl Turns<'_> {
    /// Runs choice `index` to its end.
    pub fn run(&self, index: u32) -> Result<ChoiceRun, ApiError> {
        let mut run =
            ChoiceRun { result: TurnsOutcome::Abandoned, first_prompt_tokens: 0, more_prompt_tokens: 0, completion_tokens: 0 };
        let mut messages: Vec<Message> = match &self.req.input {
            Input::Messages(m) => m.clone(),
            Input::Prompt(_) => Vec::new(),
        };
        let mut server_calls: Vec<ServerCall> = Vec::new();
        let mut answer_now = false;
        for round in 0..=MAX_SERVER_ROUNDS {
            let mut tooling = self.round_tooling(round);
            if answer_now {
                tooling.choice = ToolChoice::None;
            }
            let prompt = self.encode(&messages, &tooling)?;
            let prompt_tokens = prompt.len().min(u32::MAX as usize) as u32;
            if round == 0 {
                run.first_prompt_tokens = prompt_tokens;
            } else {
                run.more_prompt_tokens = run.more_prompt_tokens.saturating_add(prompt_tokens);
            }
            let max_tokens = request::completion_budget(
                self.req.endpoint,
                prompt_tokens,
                self.req.max_tokens,
                self.info.context_length,
                self.info.default_max_tokens,
            )?;
            let mut constraint = match (self.engine, calls::grammar_for(&tooling, &self.format)) {
                (Some(engine), Some(source)) => Some(
                    engine
                        .constraint(
                            match source {
                                calls::GrammarSource::Schema(s) => llguidance::api::TopLevelGrammar::from_json_schema(s),
                                calls::GrammarSource::Lark(g) => llguidance::api::TopLevelGrammar::from_lark(g),
                            },
                            calls::number_scan(&tooling, &self.format),
                        )
                        .map_err(|e| ApiError::invalid("tools", format!("Invalid tools: {e}")))?,
                ),
                _ => None,
            };

            let spec = ChoiceSpec {
                prompt: &prompt,
                max_tokens,
                stop_tokens: self.stop_tokens,
                stop: &self.req.stop,
                logprobs: self.req.logprobs,
            };
            let mut seq = host::NnSequence::new(self.graph)?;
            let mut detok = host::HostDetokenizer { model: &self.info.id };
            // Each round draws its own stream, reproducible under a seed.
            let mut sampler = Sampler::new(self.params.clone(), Rng::for_choice(self.seed ^ (u64::from(round) << 32), index));
            let mut scanner = Scanner::new(self.format, tooling.calls_allowed());
            let mut content = String::new();
            let mut client_calls: Vec<ToolCall> = Vec::new();
            // Maps scanner call positions to client call positions.
            let mut positions: Vec<Option<usize>> = Vec::new();
            // Chunks are built only for streams: this runs on every token.
            let stream = self.req.stream;
            let chunk = |event: ChunkEvent<'_>| if stream { self.writer.chunk(index, event) } else { None };
            let mut on_events = |events: Vec<Event>, logprobs: &[_]| -> bool {
                let mut lp = Some(logprobs);
                for event in events {
                    let out = match event {
                        Event::Content(text) => {
                            content.push_str(&text);
                            chunk(ChunkEvent::Text(&text, lp.take().unwrap_or(&[])))
                        }
                        Event::CallStart { name, .. } => {
                            let server = tooling.tool(&name).is_some_and(|t| t.server);
                            if server {
                                positions.push(None);
                                None
                            } else {
                                let at = client_calls.len();
                                positions.push(Some(at));
                                client_calls.push(ToolCall { id: ids::random_id("call_"), name, arguments: String::new() });
                                let call = &client_calls[at];
                                chunk(ChunkEvent::CallStart(at, &call.id, &call.name))
                            }
                        }
                        Event::Arguments { index: at, text } => match positions.get(at).copied().flatten() {
                            Some(at) => {
                                client_calls[at].arguments.push_str(&text);
                                chunk(ChunkEvent::CallArguments(at, &text))
                            }
                            None => None,
                        },
                    };
                    if !(self.send)(out) {
                        return false;
                    }
                }
                true
            };
            let outcome = run_choice(&mut seq, &mut detok, &mut sampler, &spec, constraint.as_mut(), |text, logprobs| {
                if !on_events(scanner.feed(text), logprobs) {
                    Flow::Abandon
                } else if scanner.repeated() {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            })?;
            let mut result = match outcome {
                Outcome::Abandoned { completion_tokens } => {
                    run.completion_tokens = run.completion_tokens.saturating_add(completion_tokens);
                    return Ok(run);
                }
                Outcome::Finished(result) => result,
            };
            run.completion_tokens = run.completion_tokens.saturating_add(result.completion_tokens);
            if !on_events(scanner.finish(), &[]) {
                return Ok(run);
            }

            let scanned = scanner.calls().to_vec();
            let only_server = !scanned.is_empty() && client_calls.is_empty();
            // A model that asks for calls it already made has its results:
            // it answers next, with tools off.
            let repeats = scanned.iter().all(|c| server_calls.iter().any(|d| d.name == c.name && d.arguments == c.arguments));
            if only_server && repeats && round < MAX_SERVER_ROUNDS {
                answer_now = true;
                continue;
            }
            if only_server && result.finish_reason != FinishReason::Length && round < MAX_SERVER_ROUNDS {
                let mut assistant_calls = Vec::new();
                let mut results = Vec::new();
                for call in scanned {
                    let id = ids::random_id("call_");
                    let (output, is_error) = match host::invoke_tool(&call.name, &call.arguments) {
                        Ok(out) => (out, false),
                        Err(err) => (err, true),
                    };
                    let done = ServerCall {
                        id: id.clone(),
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                        output,
                        is_error,
                    };
                    if stream && !(self.send)(self.writer.chunk(index, ChunkEvent::ServerCall(&done))) {
                        return Ok(run);
                    }
                    assistant_calls.push(serde_json::json!({
                        "id": id, "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }));
                    results.push(Message {
                        role: "tool".to_owned(),
                        content: done.output.clone(),
                        tool_call_id: Some(id),
                        tool_calls: None,
                    });
                    server_calls.push(done);
                }
                messages.push(Message {
                    role: "assistant".to_owned(),
                    content: content.clone(),
                    tool_call_id: None,
                    tool_calls: Some(serde_json::Value::Array(assistant_calls).to_string()),
                });
                messages.extend(results);
                continue;
            }

            result.text = content;
            if !client_calls.is_empty() && result.finish_reason == FinishReason::Stop {
                result.finish_reason = FinishReason::ToolCalls;
            }
            result.tool_calls = client_calls;
            result.server_calls = server_calls;
            run.result = TurnsOutcome::Finished(result);
            return Ok(run);
        }
        Err(ApiError::server("the tool-call loop ended without an answer"))
    }

    /// The tools allowed in a round: the request's in the first, `auto`
    /// after server-side calls, none in the last (the model must answer).
    fn round_tooling(&self, round: u32) -> Tooling {
        let mut tooling = self.req.tooling.clone();
        if round == MAX_SERVER_ROUNDS {
            tooling.choice = ToolChoice::None;
        } else if round > 0 && tooling.choice != ToolChoice::None {
            tooling.choice = ToolChoice::Auto;
        }
        tooling
    }

    /// The prompt ids of a round.
    fn encode(&self, messages: &[Message], tooling: &Tooling) -> Result<Vec<u32>, ApiError> {
        encode_prompt(self.req, self.info, &self.format, messages, tooling)
    }
}

/// The prompt ids for `messages` (the request's own prompt for legacy
/// completions), rendered as a round with `tooling` would render them.
pub fn encode_prompt(
    req: &GenerationRequest,
    info: &ModelInfo,
    format: &CallFormat,
    messages: &[Message],
    tooling: &Tooling,
) -> Result<Vec<u32>, ApiError> {
    let param = req.endpoint.prompt_param();
    let ids = match &req.input {
        Input::Prompt(text) => host::encode_prompt(&info.id, text, param)?,
        Input::Messages(_) => {
            let p = crate::prompt::build(messages, tooling, info.template_tools, format);
            host::encode_chat(&info.id, &p.messages, p.tools.as_deref())?
        }
    };
    if ids.is_empty() {
        return Err(ApiError::invalid(param, format!("The {param} produced no tokens.")));
    }
    Ok(ids)
}
