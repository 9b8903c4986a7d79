//! The `file_search` tool over Tensoras knowledge bases: `vector_store_ids`
//! are knowledge-base ids. The conversation is grounded by chat-core's
//! `grounding` (the step the RAG handler takes for `knowledge_bases`), the
//! search is shown as a `file_search_call` output item, and the sources the
//! answer cites become `file_citation` annotations on its text.
//!
//! The search runs whenever the tool is offered (unless `tool_choice` is
//! `none`): a small model decides badly when to search, and a search the
//! answer did not need costs one retrieval.
//!
//! - `max_num_results` (1 to 50) is the number of chunks retrieved; those that
//!   fit the model's context go into the prompt.
//! - `ranking_options.ranker`: `auto` and `default-2024-11-15` are Tensoras'
//!   `hybrid` search; `vector`, `keyword` and `hybrid` pick one (a Tensoras
//!   extension). `score_threshold` is the lowest score kept, as that search
//!   scores (cosine for `vector`, reciprocal-rank fusion for `hybrid`).
//! - `filters`: OpenAI's comparison filters (`eq`, `ne`, `gt`, `gte`, `lt`,
//!   `lte`, `in`) on the chunk metadata, and `and` of them; `or` and `nin`
//!   have no counterpart in the knowledge bases' filter language and are a 400.

use chat_core::grounding::{self, DEFAULT_TOP_K, Retrieval, Source};
use handler_common::ApiError;
use handler_common::fields::type_error;
use serde_json::{Map, Value, json};

/// Most chunks one search may retrieve (OpenAI's bound for `max_num_results`).
pub const MAX_NUM_RESULTS: u64 = 50;

/// The search a request's `file_search` tool asks for; `param` is the tool's
/// place in `tools`.
pub fn parse(tool: &Value, param: &str) -> Result<Retrieval, ApiError> {
    let Some(obj) = tool.as_object() else { return Err(type_error(param, "an object", tool)) };
    const KNOWN: &[&str] = &["type", "vector_store_ids", "max_num_results", "ranking_options", "filters"];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!("{param}.{unknown}"), format!("Unknown parameter: '{param}.{unknown}'."))
            .with_code("unknown_parameter"));
    }
    let ids_param = format!("{param}.vector_store_ids");
    let knowledge_bases = grounding::knowledge_base_ids(obj.get("vector_store_ids"), &ids_param)?;
    let top_k = match obj.get("max_num_results") {
        None | Some(Value::Null) => DEFAULT_TOP_K,
        Some(v) => match v.as_u64().filter(|n| (1..=MAX_NUM_RESULTS).contains(n)) {
            Some(n) => n as u32,
            None => {
                return Err(ApiError::invalid(
                    format!("{param}.max_num_results"),
                    format!("'max_num_results' must be an integer from 1 to {MAX_NUM_RESULTS}, not {v}."),
                ));
            }
        },
    };
    let (search_type, min_score) = ranking(obj.get("ranking_options"), &format!("{param}.ranking_options"))?;
    let filters = match obj.get("filters") {
        None | Some(Value::Null) => None,
        Some(f) => {
            let mut out = Map::new();
            filter(f, &format!("{param}.filters"), &mut out)?;
            Some(Value::Object(out).to_string())
        }
    };
    Ok(Retrieval {
        knowledge_bases,
        top_k,
        search_type,
        filters,
        min_score,
        knowledge_bases_param: ids_param,
        options_param: param.to_owned(),
    })
}

/// `ranking_options` as a search type and a lowest score.
fn ranking(options: Option<&Value>, param: &str) -> Result<(String, Option<f32>), ApiError> {
    let options = match options {
        None | Some(Value::Null) => return Ok(("hybrid".into(), None)),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(type_error(param, "an object", other)),
    };
    let search_type = match options.get("ranker") {
        None | Some(Value::Null) => "hybrid",
        Some(Value::String(r)) => match r.as_str() {
            "auto" | "default-2024-11-15" | "hybrid" => "hybrid",
            "vector" | "keyword" => r.as_str(),
            _ => {
                return Err(ApiError::invalid(
                    format!("{param}.ranker"),
                    format!("'ranker' must be auto, default-2024-11-15, vector, keyword or hybrid, not '{r}'."),
                ));
            }
        },
        Some(other) => return Err(type_error(&format!("{param}.ranker"), "a string", other)),
    };
    let min_score = match options.get("score_threshold") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64().filter(|s| (0.0..=1.0).contains(s)) {
            Some(s) => Some(s as f32),
            None => {
                return Err(ApiError::invalid(
                    format!("{param}.score_threshold"),
                    format!("'score_threshold' must be a number from 0 to 1, not {v}."),
                ));
            }
        },
    };
    Ok((search_type.to_owned(), min_score))
}

/// An OpenAI attribute filter (`{type: eq, key, value}` or `{type: and, filters}`)
/// added to `out`, the knowledge bases' filter (`{"key": {"$eq": value}}`).
fn filter(f: &Value, param: &str, out: &mut Map<String, Value>) -> Result<(), ApiError> {
    let kind = f.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "and" => {
            let Some(Value::Array(all)) = f.get("filters") else {
                return Err(ApiError::invalid(format!("{param}.filters"), "An 'and' filter needs an array 'filters'."));
            };
            for (i, g) in all.iter().enumerate() {
                filter(g, &format!("{param}.filters[{i}]"), out)?;
            }
            Ok(())
        }
        "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "in" => {
            let key = match f.get("key") {
                Some(Value::String(k)) if !k.is_empty() => k,
                _ => return Err(ApiError::invalid(format!("{param}.key"), "A comparison filter needs a string 'key'.")),
            };
            let value = f.get("value").filter(|v| !v.is_null()).cloned();
            let Some(value) = value else {
                return Err(ApiError::invalid(format!("{param}.value"), "A comparison filter needs a 'value'."));
            };
            let ops = out.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            let Some(ops) = ops.as_object_mut() else { return Err(ApiError::server("a filter field that is not an object")) };
            if ops.insert(format!("${kind}"), value).is_some() {
                return Err(ApiError::invalid(param, format!("'{key}' is compared with '{kind}' twice.")));
            }
            Ok(())
        }
        "or" | "nin" => Err(ApiError::invalid(
            format!("{param}.type"),
            format!("'{kind}' filters are not supported by knowledge bases: use and, eq, ne, gt, gte, lt, lte or in."),
        )),
        _ => Err(ApiError::invalid(
            format!("{param}.type"),
            format!("'{kind}' is not a filter type: and, eq, ne, gt, gte, lt, lte or in."),
        )),
    }
}

/// The search as an output item: `queries` holds the question searched for;
/// `results` the chunks the prompt held, when the request's `include` asked.
pub fn call_item(id: &str, status: &str, query: &str, results: Option<&[Source]>) -> Value {
    let results = results.map(|sources| {
        sources
            .iter()
            .map(|s| {
                json!({"file_id": s.file_id, "filename": s.filename, "score": s.score, "text": s.text,
                    "attributes": {"knowledge_base_id": s.knowledge_base, "chunk_index": s.chunk_index}})
            })
            .collect::<Vec<_>>()
    });
    json!({"type": "file_search_call", "id": id, "status": status, "queries": [query], "results": results})
}

/// The `file_citation` annotations of an answer grounded in `sources` (the
/// prompt's `[1]`, `[2]`, …): one at each marker the text carries, at its
/// character position; when the text cites none, one per source file, in rank
/// order, at the end of the text.
pub fn annotations(text: &str, sources: &[Source]) -> Vec<Value> {
    let cite =
        |s: &Source, index: usize| json!({"type": "file_citation", "file_id": s.file_id, "filename": s.filename, "index": index});
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            let digits: String = chars[i + 1..].iter().take_while(|c| c.is_ascii_digit()).collect();
            let close = i + 1 + digits.len();
            if !digits.is_empty() && chars.get(close) == Some(&']') {
                if let Some(s) = digits.parse::<usize>().ok().and_then(|n| n.checked_sub(1)).and_then(|n| sources.get(n)) {
                    out.push(cite(s, i));
                }
                i = close;
            }
        }
        i += 1;
    }
    if out.is_empty() {
        let mut files: Vec<&str> = Vec::new();
        for s in sources {
            if !files.contains(&s.file_id.as_str()) {
                files.push(&s.file_id);
                out.push(cite(s, chars.len()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(file: &str) -> Source {
        Source {
            knowledge_base: "kb_1".into(),
            file_id: format!("file-{file}"),
            filename: format!("{file}.txt"),
            chunk_index: 0,
            text: "t".into(),
            score: 0.5,
        }
    }

    #[test]
    fn the_tool_maps_onto_a_knowledge_base_search() {
        let r = parse(
            &json!({"type": "file_search", "vector_store_ids": ["kb_a", "kb_b", "kb_a"], "max_num_results": 8,
                "ranking_options": {"ranker": "vector", "score_threshold": 0.4},
                "filters": {"type": "and", "filters": [
                    {"type": "eq", "key": "lang", "value": "en"},
                    {"type": "gte", "key": "year", "value": 2020},
                    {"type": "lt", "key": "year", "value": 2025}]}}),
            "tools[1]",
        )
        .unwrap();
        assert_eq!(r.knowledge_bases, ["kb_a", "kb_b"]);
        assert_eq!((r.top_k, r.search_type.as_str(), r.min_score), (8, "vector", Some(0.4)));
        let filters: Value = serde_json::from_str(r.filters.as_deref().unwrap()).unwrap();
        assert_eq!(filters, json!({"lang": {"$eq": "en"}, "year": {"$gte": 2020, "$lt": 2025}}));
        assert_eq!(r.knowledge_bases_param, "tools[1].vector_store_ids");

        let d = parse(&json!({"type": "file_search", "vector_store_ids": ["kb_a"]}), "tools[0]").unwrap();
        assert_eq!((d.top_k, d.search_type.as_str(), d.filters, d.min_score), (DEFAULT_TOP_K, "hybrid", None, None));
    }

    #[test]
    fn what_knowledge_bases_cannot_do_is_a_400_naming_the_field() {
        let param = |v: Value| parse(&v, "tools[0]").unwrap_err().param.unwrap();
        assert_eq!(param(json!({"type": "file_search"})), "tools[0].vector_store_ids");
        assert_eq!(param(json!({"type": "file_search", "vector_store_ids": []})), "tools[0].vector_store_ids");
        assert_eq!(param(json!({"type": "file_search", "vector_store_ids": [1]})), "tools[0].vector_store_ids[0]");
        let with = |k: &str, v: Value| {
            let mut t = json!({"type": "file_search", "vector_store_ids": ["kb_a"]});
            t[k] = v;
            t
        };
        assert_eq!(param(with("max_num_results", json!(51))), "tools[0].max_num_results");
        assert_eq!(param(with("ranking_options", json!({"score_threshold": 2}))), "tools[0].ranking_options.score_threshold");
        assert_eq!(param(with("ranking_options", json!({"ranker": "bm42"}))), "tools[0].ranking_options.ranker");
        assert_eq!(param(with("filters", json!({"type": "or", "filters": []}))), "tools[0].filters.type");
        assert_eq!(
            param(with("filters", json!({"type": "and", "filters": [{"type": "eq", "key": "a"}]}))),
            "tools[0].filters.filters[0].value"
        );
        assert_eq!(param(with("colour", json!("red"))), "tools[0].colour");
    }

    #[test]
    fn annotations_follow_the_markers_or_else_name_each_file_once() {
        let sources = [src("a"), src("b"), src("a")];
        let a = annotations("Ada [2] wrote it [1][9].", &sources);
        assert_eq!(a.len(), 2);
        assert_eq!((a[0]["filename"].as_str(), a[0]["index"].as_u64()), (Some("b.txt"), Some(4)));
        assert_eq!((a[1]["file_id"].as_str(), a[1]["index"].as_u64()), (Some("file-a"), Some(17)));
        let b = annotations("Ada wrote it.", &sources);
        let files: Vec<&str> = b.iter().map(|x| x["filename"].as_str().unwrap()).collect();
        assert_eq!(files, ["a.txt", "b.txt"]);
        assert!(b.iter().all(|x| x["index"] == 13 && x["type"] == "file_citation"));
        assert!(annotations("no sources", &[]).is_empty());
    }
}
