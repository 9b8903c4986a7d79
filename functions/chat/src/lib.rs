//! # chat
//!
//! The handler component behind `POST /v1/chat/completions` and
//! `POST /v1/completions` (world `tensoras:platform/chat-handler`). The host
//! runs a fresh instance per request; the handler:
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
//! Tool calls: `tools` reach the chat template, but the model's output is
//! returned as text (no tool-call parsing).

pub mod generate;
mod host;
pub mod request;
pub mod response;
pub mod sampling;
pub mod text;

use handler_common::{ApiError, ids};

use crate::generate::{ChoiceResult, ChoiceSpec, Outcome, run_choice};
use crate::request::{GenerationRequest, Input, ModelFacts};
use crate::response::{ChunkEvent, ChunkWriter, Envelope, Usage, full_response, id_prefix};
use crate::sampling::{Rng, Sampler, SamplingParams};

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "tensoras:platform/chat-handler",
        // wit-parser needs the @unstable clocks-timezone feature to resolve
        // the vendored WASI packages (see guest-sdk/src/lib.rs).
        features: ["clocks-timezone"],
        // Bind the world's wasi:nn imports here as well (they are not
        // provided by another crate).
        generate_all,
    });
}

use bindings::exports::tensoras::platform::handler::{Request, Response};
use bindings::tensoras::platform::models::{self, ModelInfo};
use bindings::tensoras::platform::output;
use bindings::tensoras::platform::types::Usage as WitUsage;

handler_common::export_handler!(ChatHandler, handle);

/// Sampling settings from the request, falling back to the model's
/// defaults (clamped into the API's ranges, in case a catalogue entry is
/// off).
fn sampling_params(req: &GenerationRequest, info: &ModelInfo) -> SamplingParams {
    let default_top_p = if info.default_top_p > 0.0 && info.default_top_p <= 1.0 {
        info.default_top_p
    } else {
        1.0
    };
    SamplingParams {
        temperature: req
            .temperature
            .unwrap_or(info.default_temperature.clamp(0.0, 2.0)),
        top_p: req.top_p.unwrap_or(default_top_p),
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logit_bias: req.logit_bias.clone(),
    }
}

fn handle(raw: Request) -> Result<Response, ApiError> {
    let endpoint =
        request::Endpoint::from_path(&raw.path).ok_or_else(|| ApiError::unknown_path(&raw.path))?;
    let req = request::parse(endpoint, &raw.body, raw.stream)?;
    let info = models::get(&req.model).ok_or_else(|| ApiError::model_not_found(&req.model))?;
    req.check_against(ModelFacts {
        id: &info.id,
        kind: &info.kind,
        vocab_size: info.vocab_size,
    })?;

    let prompt_param = endpoint.prompt_param();
    let prompt = match &req.input {
        Input::Messages { messages, tools } => {
            let text = host::apply_chat_template(&info.id, messages, tools.as_deref())?;
            host::encode_prompt(&info.id, &text, prompt_param)?
        }
        Input::Prompt(text) => host::encode_prompt(&info.id, text, prompt_param)?,
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid(
            prompt_param,
            format!("The {prompt_param} produced no tokens."),
        ));
    }
    let prompt_tokens = prompt.len().min(u32::MAX as usize) as u32;
    let max_tokens = request::completion_budget(
        endpoint,
        prompt_tokens,
        req.max_tokens,
        info.context_length,
        info.default_max_tokens,
    )?;
    let stop_tokens = host::stop_tokens(&info.id)?;
    let params = sampling_params(&req, &info);
    // Without a seed each request draws one; with it, choice i always gets
    // the same stream.
    let seed = req.seed.map(|s| s as u64).unwrap_or_else(ids::random_u64);
    let graph = host::load_graph(&info.id)?;

    let env = Envelope {
        endpoint,
        id: ids::random_id(id_prefix(endpoint)),
        created: ids::unix_time(),
        model: info.id.clone(),
    };
    let writer = ChunkWriter::new(env.clone(), req.logprobs.is_some(), req.include_usage);
    let spec = ChoiceSpec {
        prompt: &prompt,
        max_tokens,
        stop_tokens: &stop_tokens,
        stop: &req.stop,
        logprobs: req.logprobs,
    };
    let mut detok = host::HostDetokenizer { model: &info.id };
    // Streams go to `output.send`; a false return means the client left.
    let send = |chunk: Option<String>| chunk.is_none_or(|c| output::send(&c));

    let mut choices: Vec<ChoiceResult> = Vec::with_capacity(req.n as usize);
    let mut completion_tokens = 0u32;
    let abandoned = |completion_tokens: u32| Response {
        body: String::new(),
        usage: WitUsage {
            prompt_tokens,
            completion_tokens,
        },
    };

    for index in 0..req.n {
        // One execution context per choice; dropped (cache freed) after it.
        let mut seq = host::NnSequence::new(&graph)?;
        let mut sampler = Sampler::new(params.clone(), Rng::for_choice(seed, index));
        if req.stream && !send(writer.chunk(index, ChunkEvent::Start)) {
            return Ok(abandoned(completion_tokens));
        }
        let outcome = run_choice(
            &mut seq,
            &mut detok,
            &mut sampler,
            &spec,
            |text, logprobs| {
                !req.stream || send(writer.chunk(index, ChunkEvent::Text(text, logprobs)))
            },
        )?;
        match outcome {
            Outcome::Abandoned {
                completion_tokens: used,
            } => {
                return Ok(abandoned(completion_tokens.saturating_add(used)));
            }
            Outcome::Finished(result) => {
                completion_tokens = completion_tokens.saturating_add(result.completion_tokens);
                if req.stream
                    && !send(writer.chunk(index, ChunkEvent::Finish(result.finish_reason)))
                {
                    return Ok(abandoned(completion_tokens));
                }
                choices.push(result);
            }
        }
    }

    let usage = Usage::new(prompt_tokens, completion_tokens);
    let body = if req.stream {
        // The host ignores a stream's body; only the usage chunk remains.
        send(writer.usage_chunk(usage));
        String::new()
    } else {
        full_response(&env, &choices, req.logprobs.is_some(), usage)
    };
    Ok(Response {
        body,
        usage: WitUsage {
            prompt_tokens,
            completion_tokens,
        },
    })
}
