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
use serde_json::{Value, json};

use crate::bindings::tensoras::platform::models::ModelInfo;
use crate::bindings::wasi::nn::graph::Graph;
use crate::calls::{self, CallFormat, Event, ScannedCall, Scanner};
use crate::generate::{ChoiceResult, ChoiceSpec, FinishReason, Flow, Outcome, ServerCall, TokenLogprob, ToolCall, run_choice};
use crate::grammar::{Constraint, Engine};
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

impl ChoiceRun {
    /// Nothing counted yet; abandoned until a round answers.
    fn new() -> Self {
        Self { result: TurnsOutcome::Abandoned, first_prompt_tokens: 0, more_prompt_tokens: 0, completion_tokens: 0 }
    }

    /// Counts a round's prompt: the first round's apart, as all choices share it.
    fn count_prompt(&mut self, round: u32, tokens: u32) {
        if round == 0 {
            self.first_prompt_tokens = tokens;
        } else {
            self.more_prompt_tokens = self.more_prompt_tokens.saturating_add(tokens);
        }
    }
}

impl Turns<'_> {
    /// Runs choice `index` to its end: rounds of generation until the model
    /// answers, calls client tools, or the client leaves.
    pub fn run(&self, index: u32) -> Result<ChoiceRun, ApiError> {
        let mut run = ChoiceRun::new();
        let mut messages = self.first_messages();
        let mut server_calls: Vec<ServerCall> = Vec::new();
        let mut answer_now = false;
        for round in 0..=MAX_SERVER_ROUNDS {
            let tooling = self.round_tooling(round, answer_now);
            let prompt = self.encode(&messages, &tooling)?;
            run.count_prompt(round, token_count(&prompt));
            let Some(finished) = self.generate_round(index, round, &prompt, &tooling, &mut run.completion_tokens)? else {
                return Ok(run);
            };
            match finished.next_step(round, &server_calls) {
                NextStep::AnswerWithToolsOff => answer_now = true,
                NextStep::RunServerCalls => {
                    let Some(done) = self.run_server_calls(index, finished.scanned) else {
                        return Ok(run);
                    };
                    record_server_round(&mut messages, finished.content, &done);
                    server_calls.extend(done);
                }
                NextStep::Answer => {
                    run.result = TurnsOutcome::Finished(finished.into_answer(server_calls));
                    return Ok(run);
                }
            }
        }
        Err(ApiError::server("the tool-call loop ended without an answer"))
    }

    /// The conversation of the first round: the request's messages (none for
    /// legacy completions, whose prompt is encoded as it is).
    fn first_messages(&self) -> Vec<Message> {
        match &self.req.input {
            Input::Messages(m) => m.clone(),
            Input::Prompt(_) => Vec::new(),
        }
    }

    /// The tools allowed in a round: the request's in the first, `auto`
    /// after server-side calls, none in the last (the model must answer) or
    /// once the model repeated calls whose results it has (`answer_now`).
    fn round_tooling(&self, round: u32, answer_now: bool) -> Tooling {
        let mut tooling = self.req.tooling.clone();
        if round == MAX_SERVER_ROUNDS || answer_now {
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

    /// Generates one round from `prompt`: decodes under the round's grammar,
    /// reads the text for tool calls and streams it. Adds the tokens it
    /// generated to `completion_tokens`; `None` when the client left.
    fn generate_round(
        &self,
        index: u32,
        round: u32,
        prompt: &[u32],
        tooling: &Tooling,
        completion_tokens: &mut u32,
    ) -> Result<Option<FinishedRound>, ApiError> {
        let max_tokens = self.completion_budget(token_count(prompt))?;
        let mut constraint = self.constraint(tooling)?;
        let spec =
            ChoiceSpec { prompt, max_tokens, stop_tokens: self.stop_tokens, stop: &self.req.stop, logprobs: self.req.logprobs };
        let mut seq = host::NnSequence::new(self.graph)?;
        let mut detok = host::HostDetokenizer { model: &self.info.id };
        // Each round draws its own stream, reproducible under a seed.
        let mut sampler = Sampler::new(self.params.clone(), Rng::for_choice(self.seed ^ (u64::from(round) << 32), index));
        let mut scanner = Scanner::new(self.format, tooling.calls_allowed());
        let mut output = RoundOutput::new(self, index, tooling);
        let outcome = run_choice(&mut seq, &mut detok, &mut sampler, &spec, constraint.as_mut(), |text, logprobs| {
            if !output.release(scanner.feed(text), logprobs) {
                Flow::Abandon
            } else if scanner.repeated() {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })?;
        let result = match outcome {
            Outcome::Abandoned { completion_tokens: generated } => {
                *completion_tokens = completion_tokens.saturating_add(generated);
                return Ok(None);
            }
            Outcome::Finished(result) => result,
        };
        *completion_tokens = completion_tokens.saturating_add(result.completion_tokens);
        if !output.release(scanner.finish(), &[]) {
            return Ok(None);
        }
        Ok(Some(output.finish(result, scanner.calls().to_vec())))
    }

    /// The most tokens a round may generate after a prompt of `prompt_tokens`.
    fn completion_budget(&self, prompt_tokens: u32) -> Result<u32, ApiError> {
        request::completion_budget(
            self.req.endpoint,
            prompt_tokens,
            self.req.max_tokens,
            self.info.context_length,
            self.info.default_max_tokens,
        )
    }

    /// The grammar a round decodes under (the tool-call format, or the
    /// `response_format` schema), when the output is constrained at all.
    fn constraint(&self, tooling: &Tooling) -> Result<Option<Constraint>, ApiError> {
        let (Some(engine), Some(source)) = (self.engine, calls::grammar_for(tooling, &self.format)) else {
            return Ok(None);
        };
        let grammar = match source {
            calls::GrammarSource::Schema(s) => llguidance::api::TopLevelGrammar::from_json_schema(s),
            calls::GrammarSource::Lark(g) => llguidance::api::TopLevelGrammar::from_lark(g),
        };
        engine
            .constraint(grammar, calls::number_scan(tooling, &self.format))
            .map(Some)
            .map_err(|e| ApiError::invalid("tools", format!("Invalid tools: {e}")))
    }

    /// Runs a round's server-side calls in order, streaming each as it
    /// completes; `None` when the client left.
    fn run_server_calls(&self, index: u32, calls: Vec<ScannedCall>) -> Option<Vec<ServerCall>> {
        let mut done = Vec::new();
        for call in calls {
            let call = invoke_server_call(call);
            if self.req.stream && !(self.send)(self.writer.chunk(index, ChunkEvent::ServerCall(&call))) {
                return None;
            }
            done.push(call);
        }
        Some(done)
    }
}

/// What a round has said so far: the scanner's events kept (content, client
/// tool calls) and streamed as chunks while the round decodes.
struct RoundOutput<'r> {
    turns: &'r Turns<'r>,
    /// The choice.
    index: u32,
    tooling: &'r Tooling,
    content: String,
    client_calls: Vec<ToolCall>,
    /// Maps scanner call positions to client call positions (`None`: a
    /// server-side call).
    positions: Vec<Option<usize>>,
}

impl<'r> RoundOutput<'r> {
    fn new(turns: &'r Turns<'r>, index: u32, tooling: &'r Tooling) -> Self {
        Self { turns, index, tooling, content: String::new(), client_calls: Vec::new(), positions: Vec::new() }
    }

    /// Keeps and sends `events`; the first piece of content carries
    /// `logprobs`. False when the client left.
    fn release(&mut self, events: Vec<Event>, logprobs: &[TokenLogprob]) -> bool {
        let mut lp = Some(logprobs);
        for event in events {
            let out = match event {
                Event::Content(text) => {
                    self.content.push_str(&text);
                    self.chunk(ChunkEvent::Text(&text, lp.take().unwrap_or(&[])))
                }
                Event::CallStart { name, .. } => self.start_call(name),
                Event::Arguments { index: at, text } => self.add_arguments(at, &text),
            };
            if !(self.turns.send)(out) {
                return false;
            }
        }
        true
    }

    /// A call begins: a server-side tool's is only counted (the server
    /// runs it after the round), a client tool's joins the answer.
    fn start_call(&mut self, name: String) -> Option<String> {
        if self.tooling.tool(&name).is_some_and(|t| t.server) {
            self.positions.push(None);
            return None;
        }
        let at = self.client_calls.len();
        self.positions.push(Some(at));
        self.client_calls.push(ToolCall { id: ids::random_id("call_"), name, arguments: String::new() });
        let call = &self.client_calls[at];
        self.chunk(ChunkEvent::CallStart(at, &call.id, &call.name))
    }

    /// More arguments text of scanner call `at` (kept for client calls only).
    fn add_arguments(&mut self, at: usize, text: &str) -> Option<String> {
        let at = self.positions.get(at).copied().flatten()?;
        self.client_calls[at].arguments.push_str(text);
        self.chunk(ChunkEvent::CallArguments(at, text))
    }

    /// The chunk of an event; built only for streams, as this runs on every token.
    fn chunk(&self, event: ChunkEvent<'_>) -> Option<String> {
        if self.turns.req.stream { self.turns.writer.chunk(self.index, event) } else { None }
    }

    /// The round once decoding ended with `result`, the scanner having read `scanned`.
    fn finish(self, result: ChoiceResult, scanned: Vec<ScannedCall>) -> FinishedRound {
        FinishedRound { result, content: self.content, client_calls: self.client_calls, scanned }
    }
}

/// A round whose decoding ended.
struct FinishedRound {
    result: ChoiceResult,
    /// The text outside tool calls.
    content: String,
    /// Calls of client tools.
    client_calls: Vec<ToolCall>,
    /// Every call the scanner read, server-side ones included.
    scanned: Vec<ScannedCall>,
}

/// What follows a round.
enum NextStep {
    /// Another round with tools off: the model repeated calls whose results it has.
    AnswerWithToolsOff,
    /// Run the server-side calls, then another round with their results.
    RunServerCalls,
    /// This round is the choice's answer.
    Answer,
}

impl FinishedRound {
    /// The step after round `round`, given the server-side calls already run.
    fn next_step(&self, round: u32, server_calls: &[ServerCall]) -> NextStep {
        let only_server = !self.scanned.is_empty() && self.client_calls.is_empty();
        if !only_server || round >= MAX_SERVER_ROUNDS {
            return NextStep::Answer;
        }
        // A model that asks for calls it already made has its results:
        // it answers next, with tools off.
        let repeats = self.scanned.iter().all(|c| server_calls.iter().any(|d| d.name == c.name && d.arguments == c.arguments));
        if repeats {
            NextStep::AnswerWithToolsOff
        } else if self.result.finish_reason != FinishReason::Length {
            NextStep::RunServerCalls
        } else {
            NextStep::Answer
        }
    }

    /// The choice's result when this round answers, after `server_calls`.
    fn into_answer(self, server_calls: Vec<ServerCall>) -> ChoiceResult {
        let mut result = self.result;
        result.text = self.content;
        if !self.client_calls.is_empty() && result.finish_reason == FinishReason::Stop {
            result.finish_reason = FinishReason::ToolCalls;
        }
        result.tool_calls = self.client_calls;
        result.server_calls = server_calls;
        result
    }
}

/// A prompt's length as a token count.
fn token_count(prompt: &[u32]) -> u32 {
    prompt.len().min(u32::MAX as usize) as u32
}

/// Runs one server-side call through the host; a tool's error is its
/// output, marked as such.
fn invoke_server_call(call: ScannedCall) -> ServerCall {
    let id = ids::random_id("call_");
    let (output, is_error) = match host::invoke_tool(&call.name, &call.arguments) {
        Ok(out) => (out, false),
        Err(err) => (err, true),
    };
    ServerCall { id, name: call.name, arguments: call.arguments, output, is_error }
}

/// Appends a round that called server-side tools to the conversation: the
/// assistant's message with its calls, then one `tool` message per result.
fn record_server_round(messages: &mut Vec<Message>, content: String, calls: &[ServerCall]) {
    let assistant_calls: Vec<Value> = calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
        .collect();
    messages.push(Message {
        role: "assistant".to_owned(),
        content,
        tool_call_id: None,
        tool_calls: Some(Value::Array(assistant_calls).to_string()),
    });
    messages.extend(calls.iter().map(|c| Message {
        role: "tool".to_owned(),
        content: c.output.clone(),
        tool_call_id: Some(c.id.clone()),
        tool_calls: None,
    }));
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
