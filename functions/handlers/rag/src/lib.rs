//! # rag
//!
//! The handler component behind `POST /v1/chat/completions` when the body
//! names `knowledge_bases` (world `tensoras:platform/rag-handler`): it
//! searches the knowledge bases for the last user message through the host's
//! `retrieval` interface, all in one call, puts the best chunks that fit the model's context
//! in front of the question (chat-core's `grounding`), generates with `chat-core`
//! exactly as the chat handler does (streaming, tools, JSON modes, `n`,
//! sampling all work), and adds `citations` — the chunks the prompt held —
//! to the response, or to the first chunk of a stream.

pub mod options;

use chat_core::request::Endpoint;
use chat_core::{bindings, grounding};
use handler_common::ApiError;
use handler_common::fields::parse_object;
use serde_json::Map;

use bindings::exports::tensoras::platform::handler::{Request, Response};

handler_common::export_handler!(RagHandler, handle);

fn handle(raw: Request) -> Result<Response, ApiError> {
    if Endpoint::from_path(&raw.path) != Some(Endpoint::Chat) {
        return Err(ApiError::invalid("knowledge_bases", "'knowledge_bases' is supported on /v1/chat/completions only."));
    }
    let retrieval = options::parse(&parse_object(&raw.body)?)?;
    let mut prepared = chat_core::prepare(&raw)?;
    let grounded = grounding::ground(&mut prepared, &retrieval)?;
    let mut extra = Map::new();
    extra.insert("citations".into(), grounding::citations(&grounded.sources));
    chat_core::respond(&prepared, &extra)
}
