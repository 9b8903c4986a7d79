//! # responses
//!
//! The handler component behind `POST /v1/responses`, OpenAI's Responses API
//! (world `tensoras:platform/rag-handler`, as chat-core's bindings are). It is
//! a translation over the chat handler's own generation, not a second path:
//! the request's items become a chat completion ([`input`]), chat-core
//! validates and generates it (sampling, tools and `text.format` by the same
//! constrained decoding), and its answer, or each chunk of its stream, is
//! written as Responses items and events ([`output`]). A `file_search` tool
//! grounds the conversation in knowledge-base chunks first, as the RAG
//! handler does ([`file_search`]).
//!
//! The host keeps what this handler cannot: stored responses, and the
//! conversation of a `previous_response_id`, which it puts in front of
//! `input` before the handler runs (host `api/responses.rs`).

pub mod file_search;
pub mod input;
pub mod output;

use chat_core::bindings;
use handler_common::fields::parse_object;
use handler_common::{ApiError, ids};
use serde_json::{Map, Value};

use bindings::exports::tensoras::platform::handler::{Request, Response};
use bindings::tensoras::platform::output as wit_output;
use bindings::tensoras::platform::types::Usage as WitUsage;

handler_common::export_handler!(ResponsesHandler, handle);

fn handle(raw: Request) -> Result<Response, ApiError> {
    if raw.path != "/v1/responses" {
        return Err(ApiError::unknown_path(&raw.path));
    }
    let body = parse_object(&raw.body)?;
    let converted = input::convert(&body, raw.stream)?;
    let chat = Request {
        body: converted.chat.to_string(),
        stream: raw.stream,
        tenant: raw.tenant.clone(),
        path: "/v1/chat/completions".into(),
    };
    let mut prepared = chat_core::prepare(&chat).map_err(input::rename_param)?;
    // Searched before anything is sent, so a missing knowledge base is a plain 404.
    let search = match &converted.file_search {
        Some(retrieval) => {
            let grounded = chat_core::grounding::ground(&mut prepared, retrieval).map_err(input::rename_param)?;
            Some(output::Search {
                id: ids::random_id("fs_"),
                query: grounded.question,
                sources: grounded.sources,
                include_results: converted.include_results,
            })
        }
        None => None,
    };
    let frame = output::Frame {
        id: ids::random_id("resp_"),
        created_at: ids::unix_time(),
        model: prepared.info.id.clone(),
        echo: converted.echo,
        new_id: ids::random_id,
        search,
    };
    if !raw.stream {
        let answer = chat_core::respond(&prepared, &Map::new()).map_err(input::rename_param)?;
        let completion: Value =
            serde_json::from_str(&answer.body).map_err(|e| ApiError::server(format!("chat-core answered invalid JSON: {e}")))?;
        let usage = output::Usage { input: answer.usage.prompt_tokens, output: answer.usage.completion_tokens };
        let response = output::from_completion(&frame, &completion, usage);
        return Ok(Response { body: response.to_string(), usage: answer.usage });
    }
    let send = |event: &str| wit_output::send(event);
    let events = output::Events::new(frame, &send);
    if !events.start() {
        return Ok(Response { body: String::new(), usage: WitUsage { prompt_tokens: 0, completion_tokens: 0 } });
    }
    let answer = chat_core::respond_to(&prepared, &Map::new(), &|chunk| events.chunk(chunk)).map_err(input::rename_param)?;
    events.finish(output::Usage { input: answer.usage.prompt_tokens, output: answer.usage.completion_tokens });
    Ok(Response { body: String::new(), usage: answer.usage })
}
