//! The RAG extension fields of a chat completions body.
//!
//! - `knowledge_bases`: `["kb_…", …]`, the knowledge bases to search (1 to
//!   [`MAX_KNOWLEDGE_BASES`]; repeats are searched once).
//! - `retrieval_options` (optional): `top_k` (chunks put in the prompt at
//!   most, 1 to [`MAX_TOP_K`], default [`DEFAULT_TOP_K`]), `search_type`
//!   (`vector` | `keyword` | `hybrid`, default `hybrid`), `filters` (the
//!   metadata filter language of the retrieve endpoint) and `min_score`.
//!
//! Stock OpenAI SDKs send both through `extra_body`; every other field of the
//! body is the chat request's own.

use chat_core::grounding::{self, Retrieval};
pub use chat_core::grounding::{DEFAULT_TOP_K, MAX_KNOWLEDGE_BASES};
use handler_common::ApiError;
use handler_common::fields::{Body, type_error};
use serde_json::{Map, Value};

/// Most chunks one request may put in the prompt.
pub const MAX_TOP_K: i64 = 20;

const OPTIONS: &str = "retrieval_options";

/// Reads the RAG fields of a body.
pub fn parse(body: &Map<String, Value>) -> Result<Retrieval, ApiError> {
    let knowledge_bases = grounding::knowledge_base_ids(body.get("knowledge_bases"), "knowledge_bases")?;
    let options = match body.get(OPTIONS) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(other) => return Err(type_error(OPTIONS, "an object", other)),
    };
    let fields = Body(&options);
    let nested = |e: ApiError| ApiError { param: e.param.map(|p| format!("{OPTIONS}.{p}")), ..e };
    let top_k = fields.opt_integer("top_k", 1, MAX_TOP_K).map_err(nested)?.map_or(DEFAULT_TOP_K, |k| k as u32);
    let search_type = match options.get("search_type") {
        None | Some(Value::Null) => "hybrid".to_owned(),
        Some(Value::String(s)) if matches!(s.as_str(), "vector" | "keyword" | "hybrid") => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{OPTIONS}.search_type"),
                "'search_type' must be 'vector', 'keyword' or 'hybrid'.",
            ));
        }
    };
    let filters = match options.get("filters") {
        None | Some(Value::Null) => None,
        Some(f @ Value::Object(_)) => Some(f.to_string()),
        Some(other) => return Err(nested(type_error("filters", "an object", other))),
    };
    let min_score = fields.opt_number("min_score", f64::MIN, f64::MAX, false).map_err(nested)?.map(|s| s as f32);
    Ok(Retrieval {
        knowledge_bases,
        top_k,
        search_type,
        filters,
        min_score,
        knowledge_bases_param: "knowledge_bases".into(),
        options_param: OPTIONS.into(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_json(v: Value) -> Result<Retrieval, ApiError> {
        parse(v.as_object().unwrap())
    }

    #[test]
    fn defaults_and_repeats() {
        let o = parse_json(json!({"knowledge_bases": ["kb_a", "kb_b", "kb_a"]})).unwrap();
        assert_eq!(o.knowledge_bases, ["kb_a", "kb_b"]);
        assert_eq!(o.top_k, DEFAULT_TOP_K);
        assert_eq!(o.search_type, "hybrid");
        assert_eq!((o.filters, o.min_score), (None, None));
    }

    #[test]
    fn options_are_read() {
        let o = parse_json(json!({"knowledge_bases": ["kb_a"], "retrieval_options": {
            "top_k": 2, "search_type": "keyword", "filters": {"lang": {"$eq": "en"}}, "min_score": 0.5
        }}))
        .unwrap();
        assert_eq!(o.top_k, 2);
        assert_eq!(o.search_type, "keyword");
        assert_eq!(o.filters.as_deref(), Some(r#"{"lang":{"$eq":"en"}}"#));
        assert_eq!(o.min_score, Some(0.5));
    }

    #[test]
    fn bad_fields_name_their_param() {
        let param = |v: Value| parse_json(v).unwrap_err().param.unwrap();
        assert_eq!(param(json!({"knowledge_bases": "kb_a"})), "knowledge_bases");
        assert_eq!(param(json!({"knowledge_bases": []})), "knowledge_bases");
        assert_eq!(param(json!({"knowledge_bases": ["kb_a", 3]})), "knowledge_bases[1]");
        assert_eq!(param(json!({"knowledge_bases": vec!["kb_a"; 11]})), "knowledge_bases");
        let with = |o: Value| json!({"knowledge_bases": ["kb_a"], "retrieval_options": o});
        assert_eq!(param(with(json!({"top_k": 0}))), "retrieval_options.top_k");
        assert_eq!(param(with(json!({"top_k": 21}))), "retrieval_options.top_k");
        assert_eq!(param(with(json!({"search_type": "fuzzy"}))), "retrieval_options.search_type");
        assert_eq!(param(with(json!({"filters": [1]}))), "retrieval_options.filters");
        assert_eq!(param(with(json!({"min_score": "high"}))), "retrieval_options.min_score");
        assert_eq!(param(json!({"knowledge_bases": ["kb_a"], "retrieval_options": 1})), "retrieval_options");
    }
}
