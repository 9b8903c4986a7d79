//! `strict-rag`: a tenant's own replacement of the built-in RAG handler. Deployed as a chat
//! function with `"replaces": "rag"`, it serves every chat completion of its tenant that
//! names `knowledge_bases`, from the unchanged OpenAI SDKs, streamed or not.
//!
//! Its policy differs from the built-in handler's in one way a support team often wants:
//! chunks less similar to the question than a threshold are not sources, and when no chunk
//! is left it answers "I don't know" itself, without a model call, instead of letting a
//! small model guess. Otherwise it grounds the question as the built-in handler does and
//! adds the same `citations` (on a stream's first chunk).
//!
//! The threshold is the request's `retrieval_options.min_score`, else `$MIN_SCORE`
//! (`grants.env`), else 0.3 (cosine, vector search). The manifest grants the models its
//! tenant's clients name and `"knowledge_bases": ["*"]`.

use tensoras_guest::ai::Chat;
use tensoras_guest::chat::{ChatError, ChatFunction, ChatRequest};
use tensoras_guest::kb::{self, Chunk, Search};
use tensoras_guest::serde_json::{Map, Value, json};

const DEFAULT_MIN_SCORE: f32 = 0.3;
const DEFAULT_TOP_K: u32 = 4;
/// What it answers when nothing relevant was found.
pub const UNKNOWN: &str = "I don't know: the knowledge bases say nothing about this.";

struct StrictRag;

impl ChatFunction for StrictRag {
    fn handle(req: ChatRequest) -> Result<Value, ChatError> {
        if req.path != "/v1/chat/completions" {
            return Err(ChatError::invalid("knowledge_bases", "knowledge_bases apply to /v1/chat/completions only"));
        }
        let mut body = req.body.clone();
        let Some(obj) = body.as_object_mut() else { return Err(ChatError::invalid("body", "the body must be an object")) };
        let kbs: Vec<String> = match obj.remove("knowledge_bases") {
            Some(Value::Array(ids)) if !ids.is_empty() && ids.iter().all(Value::is_string) => {
                ids.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            _ => return Err(ChatError::invalid("knowledge_bases", "knowledge_bases must be a non-empty array of ids")),
        };
        let options = obj.remove("retrieval_options").unwrap_or(Value::Null);
        let Some((at, question)) = last_user_message(obj.get("messages")) else {
            return Err(ChatError::invalid("messages", "a grounded request needs a user message to search for"));
        };

        let min_score = options
            .get("min_score")
            .and_then(Value::as_f64)
            .map(|s| s as f32)
            .unwrap_or_else(|| std::env::var("MIN_SCORE").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_MIN_SCORE));
        let top_k = options.get("top_k").and_then(Value::as_u64).map_or(DEFAULT_TOP_K, |k| k.clamp(1, 20) as u32);
        let mut search = Search::new(question.clone()).top_k(top_k).min_score(min_score);
        if let Some(filters) = options.get("filters").filter(|f| !f.is_null()) {
            search = search.filters(filters);
        }
        let ids: Vec<&str> = kbs.iter().map(String::as_str).collect();
        let chunks = kb::retrieve(&ids, &search)?;
        if chunks.is_empty() {
            return Ok(req.reply(UNKNOWN, citations(&[])));
        }

        let sources: String =
            chunks.iter().enumerate().map(|(i, c)| format!("[{}] {}: {}\n", i + 1, c.filename, c.text.trim())).collect();
        obj["messages"][at]["content"] = Value::String(format!(
            "Answer the question using only the sources below, and cite them like [1]. If they do not answer it, \
             say you don't know.\n\nSources:\n{sources}\nQuestion: {question}"
        ));
        req.forward_with(&Chat::from_body(body)?, citations(&chunks))
    }
}

/// The index and text of the last user message (text parts joined).
fn last_user_message(messages: Option<&Value>) -> Option<(usize, String)> {
    let messages = messages?.as_array()?;
    let (at, m) = messages.iter().enumerate().rev().find(|(_, m)| m["role"] == "user")?;
    let text = match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => return None,
    };
    (!text.trim().is_empty()).then_some((at, text))
}

/// `citations` as the built-in RAG handler gives them: numbered as the model saw them.
fn citations(chunks: &[Chunk]) -> Map<String, Value> {
    let list: Vec<Value> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": i + 1, "source": c.filename, "file_id": c.file_id, "knowledge_base_id": c.knowledge_base,
                "chunk_index": c.chunk_index, "text": c.text, "score": c.score,
            })
        })
        .collect();
    Map::from_iter([("citations".to_owned(), Value::Array(list))])
}

tensoras_guest::export_chat!(StrictRag);
