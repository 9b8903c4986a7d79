//! # rag
//!
//! The handler component behind `POST /v1/chat/completions` when the body
//! names `knowledge_bases` (world `tensoras:platform/rag-handler`): it
//! searches the knowledge bases for the last user message through the host's
//! `retrieval` interface, all in one call, puts the best chunks that fit the model's context
//! in front of the question ([`grounding`]), generates with `chat-core`
//! exactly as the chat handler does (streaming, tools, JSON modes, `n`,
//! sampling all work), and adds `citations` — the chunks the prompt held —
//! to the response, or to the first chunk of a stream.

pub mod grounding;
pub mod options;

use chat_core::bindings;
use chat_core::request::{Endpoint, Input};
use handler_common::ApiError;
use handler_common::fields::parse_object;
use serde_json::Map;

use bindings::exports::tensoras::platform::handler::{Request, Response};
use bindings::tensoras::platform::retrieval::{self, RetrievalError, Search};
use grounding::Source;
use options::RagOptions;

handler_common::export_handler!(RagHandler, handle);

/// Completion tokens kept free when the request sets no limit: the model's
/// default, but never more than this, so a long default does not crowd the
/// sources out.
const MAX_RESERVED_COMPLETION: u32 = 512;

fn handle(raw: Request) -> Result<Response, ApiError> {
    if Endpoint::from_path(&raw.path) != Some(Endpoint::Chat) {
        return Err(ApiError::invalid("knowledge_bases", "'knowledge_bases' is supported on /v1/chat/completions only."));
    }
    let opts = options::parse(&parse_object(&raw.body)?)?;
    let mut prepared = chat_core::prepare(&raw)?;

    // The base prompt's size before the question is grounded.
    let base_tokens = prepared.prompt_tokens()?;
    let info = &prepared.info;
    let reserve = prepared.req.max_tokens.unwrap_or(info.default_max_tokens.clamp(1, MAX_RESERVED_COMPLETION));
    let room = info.context_length.saturating_sub(base_tokens.saturating_add(reserve));
    let model = info.id.clone();

    let Input::Messages(messages) = &mut prepared.req.input else {
        return Err(ApiError::server("a chat request without messages"));
    };
    let Some(at) = messages.iter().rposition(|m| m.role == "user") else {
        return Err(ApiError::invalid("messages", "'knowledge_bases' needs a user message to search for."));
    };
    let question = messages[at].content.clone();
    if question.trim().is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "The last user message is empty: there is nothing to search the knowledge bases for.",
        ));
    }

    let ranked = search(&opts, &question)?;
    // Chunks and the question are message content: measured as text, as the prompt will hold them.
    let count = |text: &str| chat_core::host::encode_text(&model, text, "messages").map(|ids| ids.len() as u32);
    // The grounded question replaces the plain one: it may take the room
    // left plus what the plain question took.
    let budget = room.saturating_add(count(&question)?);
    let sources = grounding::fit(&question, ranked, budget, count)?;
    messages[at].content = grounding::grounded_question(&question, &sources);

    let mut extra = Map::new();
    extra.insert("citations".into(), grounding::citations(&sources));
    chat_core::respond(&prepared, &extra)
}

/// The best chunks for `query` over every knowledge base, best first: one call, in
/// which the host embeds the query once per embedding model and ranks (for `hybrid`,
/// fuses) the knowledge bases' chunks together.
fn search(opts: &RagOptions, query: &str) -> Result<Vec<Source>, ApiError> {
    let search = Search {
        query: query.to_owned(),
        top_k: opts.top_k,
        search_type: opts.search_type.clone(),
        filters: opts.filters.clone(),
        min_score: opts.min_score,
    };
    let chunks = retrieval::retrieve(&opts.knowledge_bases, &search).map_err(retrieval_error)?;
    Ok(chunks
        .into_iter()
        .map(|c| Source {
            knowledge_base: c.knowledge_base,
            file_id: c.file_id,
            filename: c.filename,
            chunk_index: c.chunk_index,
            text: c.text,
            score: c.score,
        })
        .collect())
}

fn retrieval_error(e: RetrievalError) -> ApiError {
    match e {
        RetrievalError::NotFound(kb) => ApiError {
            status: 404,
            kind: "invalid_request_error",
            message: format!("No knowledge base found with id '{kb}'."),
            param: Some("knowledge_bases".into()),
            code: Some("knowledge_base_not_found"),
        },
        RetrievalError::Invalid(why) => ApiError::invalid("retrieval_options", why),
        RetrievalError::Backend(why) => ApiError::server(format!("retrieval from the knowledge bases failed: {why}")),
        // Only a user function's grants refuse; a request's own knowledge bases never are.
        RetrievalError::NotPermitted(kb) => ApiError {
            status: 403,
            kind: "permission_error",
            message: format!("Knowledge base '{kb}' is not granted."),
            param: Some("knowledge_bases".into()),
            code: Some("permission_denied"),
        },
    }
}
