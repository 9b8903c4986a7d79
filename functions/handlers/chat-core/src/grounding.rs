//! Grounding a conversation in retrieved chunks: the step the RAG handler
//! (`knowledge_bases` on chat completions) and the Responses handler (the
//! `file_search` tool) share, so both answer from the same prompt.
//!
//! [`ground`] searches the knowledge bases for the last user message through
//! the host's `retrieval` interface, all in one call; the host ranks the
//! chunks of all the knowledge bases together and sends the best `top_k`. In
//! rank order, each goes into the prompt only if it still fits in the room the
//! model's context leaves (a chunk too long for what is left is skipped and a
//! shorter one may follow). The chunks that went in are numbered `[1]`, `[2]`,
//! … in the question and are exactly the sources the response cites.
//!
//! They are placed in the last user message, right before the question,
//! rather than in the system message: small models copy facts far more
//! reliably from text next to the question than from a long system prompt.

use handler_common::ApiError;
use handler_common::fields::type_error;
use serde_json::{Value, json};

use crate::Prepared;
use crate::bindings::tensoras::platform::retrieval::{self, RetrievalError, Search};
use crate::request::Input;

/// Completion tokens kept free when the request sets no limit: the model's
/// default, but never more than this, so a long default does not crowd the
/// sources out.
const MAX_RESERVED_COMPLETION: u32 = 512;

/// Most knowledge bases one request may search.
pub const MAX_KNOWLEDGE_BASES: usize = 10;
/// Chunks put in the prompt when the request does not say: enough to cover
/// a fact stated in a few places, few enough for a small model to use.
pub const DEFAULT_TOP_K: u32 = 4;

/// What to search, and the request fields that said it (named in errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieval {
    /// Knowledge base ids.
    pub knowledge_bases: Vec<String>,
    /// Chunks wanted over all knowledge bases.
    pub top_k: u32,
    /// `vector`, `keyword` or `hybrid`.
    pub search_type: String,
    /// Metadata filter as JSON text (the retrieve endpoint's language).
    pub filters: Option<String>,
    /// Lowest score kept.
    pub min_score: Option<f32>,
    /// The field that named the knowledge bases (`knowledge_bases`, `tools[0].vector_store_ids`).
    pub knowledge_bases_param: String,
    /// The field that held the search options.
    pub options_param: String,
}

/// A grounded conversation: the question searched for, and the sources its
/// prompt now holds, numbered from 1 in this order.
#[derive(Debug, Clone, PartialEq)]
pub struct Grounded {
    /// The last user message as the client sent it.
    pub question: String,
    /// The chunks in the prompt.
    pub sources: Vec<Source>,
}

/// The knowledge-base ids a request field `param` lists (`knowledge_bases`, a file search's
/// `vector_store_ids`): 1 to [`MAX_KNOWLEDGE_BASES`], in order, repeats searched once.
pub fn knowledge_base_ids(value: Option<&Value>, param: &str) -> Result<Vec<String>, ApiError> {
    let name = param.rsplit('.').next().unwrap_or(param);
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => {
            return Err(ApiError::invalid(param, format!("Missing required parameter: '{param}'.")));
        }
        Some(other) => return Err(type_error(param, "an array of knowledge base ids", other)),
    };
    if items.is_empty() || items.len() > MAX_KNOWLEDGE_BASES {
        return Err(ApiError::invalid(param, format!("'{name}' must list 1 to {MAX_KNOWLEDGE_BASES} knowledge base ids.")));
    }
    let mut ids: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(id) if !id.is_empty() => {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
            other => return Err(type_error(&format!("{param}[{i}]"), "a knowledge base id", other)),
        }
    }
    Ok(ids)
}

/// Searches for the last user message of `prepared` and puts the best chunks
/// that fit the model's context in front of it.
pub fn ground(prepared: &mut Prepared, retrieval: &Retrieval) -> Result<Grounded, ApiError> {
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
        return Err(ApiError::invalid("messages", "Searching the knowledge bases needs a user message to search for."));
    };
    let question = messages[at].content.clone();
    if question.trim().is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "The last user message is empty: there is nothing to search the knowledge bases for.",
        ));
    }

    let ranked = search(retrieval, &question)?;
    // Chunks and the question are message content: measured as text, as the prompt will hold them.
    let count = |text: &str| crate::host::encode_text(&model, text, "messages").map(|ids| ids.len() as u32);
    // The grounded question replaces the plain one: it may take the room
    // left plus what the plain question took.
    let budget = room.saturating_add(count(&question)?);
    let sources = fit(&question, ranked, budget, count)?;
    messages[at].content = grounded_question(&question, &sources);
    Ok(Grounded { question, sources })
}

/// The best chunks for `query` over every knowledge base, best first: one call, in
/// which the host embeds the query once per embedding model and ranks (for `hybrid`,
/// fuses) the knowledge bases' chunks together.
fn search(r: &Retrieval, query: &str) -> Result<Vec<Source>, ApiError> {
    let search = Search {
        query: query.to_owned(),
        top_k: r.top_k,
        search_type: r.search_type.clone(),
        filters: r.filters.clone(),
        min_score: r.min_score,
    };
    let chunks = retrieval::retrieve(&r.knowledge_bases, &search).map_err(|e| retrieval_error(r, e))?;
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

fn retrieval_error(r: &Retrieval, e: RetrievalError) -> ApiError {
    match e {
        RetrievalError::NotFound(kb) => ApiError {
            status: 404,
            kind: "invalid_request_error",
            message: format!("No knowledge base found with id '{kb}'."),
            param: Some(r.knowledge_bases_param.clone()),
            code: Some("knowledge_base_not_found"),
        },
        RetrievalError::Invalid(why) => ApiError::invalid(r.options_param.clone(), why),
        RetrievalError::Backend(why) => ApiError::server(format!("retrieval from the knowledge bases failed: {why}")),
        // Only a user function's grants refuse; a request's own knowledge bases never are.
        RetrievalError::NotPermitted(kb) => ApiError {
            status: 403,
            kind: "permission_error",
            message: format!("Knowledge base '{kb}' is not granted."),
            param: Some(r.knowledge_bases_param.clone()),
            code: Some("permission_denied"),
        },
    }
}

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Knowledge base id.
    pub knowledge_base: String,
    /// File id.
    pub file_id: String,
    /// File name, shown to the model and cited.
    pub filename: String,
    /// Position in its document.
    pub chunk_index: u32,
    /// The chunk text.
    pub text: String,
    /// Retrieval score.
    pub score: f32,
}

/// The user message that asks `question` over `sources` (numbered from 1);
/// the question alone when there are none.
pub fn grounded_question(question: &str, sources: &[Source]) -> String {
    if sources.is_empty() {
        return question.to_owned();
    }
    let mut out = String::from(
        "Answer the question using the sources below. Use only facts stated in the sources; \
         if they do not contain the answer, say that you do not know.\n\nSources:\n",
    );
    for (i, s) in sources.iter().enumerate() {
        out.push_str(&format!("[{}] {}: {}\n", i + 1, s.filename, s.text.trim()));
    }
    out.push_str("\nQuestion: ");
    out.push_str(question);
    out
}

/// The sources, in rank order, that fit: the grounded question may take at
/// most `budget` tokens as `count` measures them.
pub fn fit<E>(
    question: &str,
    ranked: Vec<Source>,
    budget: u32,
    mut count: impl FnMut(&str) -> Result<u32, E>,
) -> Result<Vec<Source>, E> {
    let mut chosen: Vec<Source> = Vec::with_capacity(ranked.len());
    for s in ranked {
        chosen.push(s);
        if count(&grounded_question(question, &chosen))? > budget {
            chosen.pop();
        }
    }
    Ok(chosen)
}

/// The `citations` field: the sources in the prompt, numbered as shown.
pub fn citations(sources: &[Source]) -> Value {
    Value::Array(
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "index": i + 1,
                    "source": s.filename,
                    "file_id": s.file_id,
                    "knowledge_base_id": s.knowledge_base,
                    "chunk_index": s.chunk_index,
                    "text": s.text,
                    "score": s.score,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn src(file: &str, index: u32, text: &str, score: f32) -> Source {
        Source {
            knowledge_base: "kb_1".into(),
            file_id: format!("file-{file}"),
            filename: format!("{file}.txt"),
            chunk_index: index,
            text: text.into(),
            score,
        }
    }

    #[test]
    fn sources_are_numbered_before_the_question() {
        let q = grounded_question("Who?", &[src("a", 0, " Ada wrote it. ", 1.0), src("b", 2, "Bob read it.", 0.5)]);
        assert!(q.contains("[1] a.txt: Ada wrote it.\n[2] b.txt: Bob read it.\n"), "{q}");
        assert!(q.ends_with("\nQuestion: Who?"));
        assert_eq!(grounded_question("Who?", &[]), "Who?");
    }

    #[test]
    fn only_what_fits_goes_in_and_shorter_chunks_may_follow_a_long_one() {
        // One token per byte: easy to reason about.
        let bytes = |s: &str| Ok::<u32, Infallible>(s.len() as u32);
        let long = "x".repeat(400);
        let ranked = vec![src("a", 0, "short one", 0.9), src("b", 0, &long, 0.8), src("c", 0, "tiny", 0.7)];
        let base = grounded_question("Q?", &ranked[..1]).len() as u32;
        let chosen = fit("Q?", ranked.clone(), base + 40, bytes).unwrap();
        let files: Vec<&str> = chosen.iter().map(|s| s.filename.as_str()).collect();
        assert_eq!(files, ["a.txt", "c.txt"]);
        assert!(fit("Q?", ranked.clone(), 10, bytes).unwrap().is_empty());
        assert_eq!(fit("Q?", ranked, u32::MAX, bytes).unwrap().len(), 3);
    }

    #[test]
    fn citations_match_the_numbers_in_the_prompt() {
        let c = citations(&[src("a", 3, "t", 0.25)]);
        assert_eq!(
            c,
            json!([{"index": 1, "source": "a.txt", "file_id": "file-a", "knowledge_base_id": "kb_1",
                    "chunk_index": 3, "text": "t", "score": 0.25}])
        );
    }
}
