//! Searching knowledge bases: one, or several as one.
//!
//! The query is embedded once for each embedding model among the knowledge bases.
//! One knowledge base is a single query to the vector store, whose hybrid search fuses its
//! own two rankings. For several, each ranking (by meaning, by keywords) is merged over all
//! of them by its own score, and a hybrid search then fuses the two merged rankings once,
//! by reciprocal rank, from the same candidate depth the store's own hybrid search uses
//! ([`crate::vector::prefetch_depth`]). Fusing each knowledge base apart and merging
//! afterwards would give every knowledge base's best chunk the same score, however poor.
//! A chunk found in two knowledge bases (one file added to both) comes once.

use std::collections::HashMap;

use serde_json::Value;

use super::{Knowledge, RetrieveError, RetrieveRequest, blocking};
use crate::vector::{Hit, MetadataFilter, Query, RRF_K, SearchType, VectorError, prefetch_depth};

/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 32_768;
/// Most chunks one search returns.
pub const MAX_TOP_K: u64 = 100;

/// A search refused: the parameter at fault, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// As the retrieve endpoint names it (`query`, `top_k`, `search_type`, `filters`, `min_score`).
    pub param: &'static str,
    /// What is wrong.
    pub message: String,
}

impl RetrieveRequest {
    /// A search checked by the one set of rules the retrieve endpoint and the RAG handler's
    /// `retrieval` import share. `filters` is the JSON filter language (`null`: none).
    pub fn new(query: String, top_k: u64, search_type: &str, filters: &Value, min_score: Option<f64>) -> Result<Self, Refused> {
        let refuse = |param, message: String| Refused { param, message };
        if query.trim().is_empty() {
            return Err(refuse("query", "'query' must be a non-empty string.".into()));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(refuse("query", format!("'query' is longer than {MAX_QUERY_BYTES} bytes.")));
        }
        if !(1..=MAX_TOP_K).contains(&top_k) {
            return Err(refuse("top_k", format!("'top_k' must be an integer from 1 to {MAX_TOP_K}.")));
        }
        let search_type = SearchType::parse(search_type)
            .ok_or_else(|| refuse("search_type", "'search_type' must be 'vector', 'keyword' or 'hybrid'.".into()))?;
        let filter = MetadataFilter::parse(filters).map_err(|m| refuse("filters", m))?;
        let min_score = match min_score {
            Some(s) if !s.is_finite() => return Err(refuse("min_score", "'min_score' must be a number.".into())),
            s => s.map(|s| s as f32),
        };
        Ok(Self { query, top_k: top_k as usize, search_type, filter, min_score })
    }
}

/// A knowledge base to search: its id and its embedding model.
#[derive(Debug, Clone)]
pub struct Searched {
    /// `kb_...`.
    pub id: String,
    /// The model its chunks were embedded with.
    pub embedding_model: String,
}

/// One hit and the knowledge base it came from.
#[derive(Debug, Clone)]
pub struct Found {
    /// `kb_...`.
    pub kb: String,
    /// The point.
    pub hit: Hit,
}

impl Knowledge {
    /// Searches `kbs` together: at most `req.top_k` hits over all of them, best
    /// first.
    pub async fn retrieve(&self, kbs: &[Searched], req: &RetrieveRequest) -> Result<Vec<Found>, RetrieveError> {
        let mut queries: HashMap<&str, Vec<f32>> = HashMap::new();
        if req.search_type != SearchType::Keyword {
            for kb in kbs {
                if !queries.contains_key(kb.embedding_model.as_str()) {
                    let embedded = self.inner.embedder.embed(&kb.embedding_model, std::slice::from_ref(&req.query)).await?;
                    let vector =
                        embedded.into_iter().next().ok_or_else(|| VectorError("the query embedded to nothing".into()))?;
                    queries.insert(&kb.embedding_model, vector);
                }
            }
        }
        let ranking = async |kind: SearchType, limit: usize, min_score: Option<f32>| -> Result<Vec<Found>, RetrieveError> {
            let mut found = Vec::new();
            for kb in kbs {
                let query = Query {
                    dense: if kind == SearchType::Keyword { None } else { queries.get(kb.embedding_model.as_str()).cloned() },
                    text: req.query.clone(),
                    kind,
                    limit,
                    filter: req.filter.clone(),
                    min_score,
                };
                let vectors = self.inner.vectors.clone();
                let id = kb.id.clone();
                let hits = blocking(move || vectors.search(&id, &query)).await?;
                found.extend(hits.into_iter().map(|hit| Found { kb: kb.id.clone(), hit }));
            }
            Ok(found)
        };
        if kbs.len() == 1 || req.search_type != SearchType::Hybrid {
            return Ok(merge(ranking(req.search_type, req.top_k, req.min_score).await?, req.top_k));
        }
        let depth = prefetch_depth(req.top_k);
        let dense = ranking(SearchType::Vector, depth, None).await?;
        let sparse = ranking(SearchType::Keyword, depth, None).await?;
        let mut fused = fuse(vec![dense, sparse], req.top_k);
        // `min_score` applies to the fused score, as in the store's own hybrid search.
        fused.retain(|f| req.min_score.is_none_or(|m| f.hit.score >= m));
        Ok(fused)
    }
}

/// What makes two hits the same chunk: its file and its place in it.
fn chunk_key(f: &Found) -> (Option<&str>, Option<u64>) {
    let p = &f.hit.payload;
    (p.get("file_id").and_then(Value::as_str), p.get("chunk_index").and_then(Value::as_u64))
}

/// The best `top_k` hits by score, best first, each chunk once.
fn merge(mut found: Vec<Found>, top_k: usize) -> Vec<Found> {
    found.sort_by(|a, b| b.hit.score.total_cmp(&a.hit.score));
    let mut out: Vec<Found> = Vec::with_capacity(top_k.min(found.len()));
    for f in found {
        if out.len() == top_k {
            break;
        }
        if !out.iter().any(|o| chunk_key(o) == chunk_key(&f)) {
            out.push(f);
        }
    }
    out
}

/// Reciprocal-rank fusion of `rankings`, each merged over the knowledge bases first:
/// score = the sum over rankings of 1 / (k + rank), ranks counted from 0 as Qdrant's own
/// fusion counts them, so the hybrid scores of one knowledge base (fused by the store) and
/// of several (fused here) are on one scale.
fn fuse(rankings: Vec<Vec<Found>>, top_k: usize) -> Vec<Found> {
    let mut fused: Vec<Found> = Vec::new();
    for ranking in rankings {
        for (rank, f) in merge(ranking, usize::MAX).into_iter().enumerate() {
            let score = 1.0 / (RRF_K as f32 + rank as f32);
            match fused.iter_mut().find(|o| chunk_key(o) == chunk_key(&f)) {
                Some(o) => o.hit.score += score,
                None => fused.push(Found { hit: Hit { score, ..f.hit }, ..f }),
            }
        }
    }
    merge(fused, top_k)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn found(kb: &str, file: &str, index: u64, text: &str, score: f32) -> Found {
        let payload = json!({"file_id": format!("file-{file}"), "chunk_index": index, "text": text});
        let Value::Object(payload) = payload else { unreachable!() };
        Found { kb: kb.into(), hit: Hit { id: 0, score, payload } }
    }

    fn texts(found: &[Found]) -> Vec<&str> {
        found.iter().map(|f| f.hit.payload["text"].as_str().unwrap_or_default()).collect()
    }

    #[test]
    fn merges_across_knowledge_bases_and_drops_repeats() {
        let merged = merge(
            vec![
                found("kb_1", "a", 0, "low", 0.1),
                found("kb_2", "b", 0, "high", 0.9),
                found("kb_1", "a", 1, "mid", 0.5),
                found("kb_1", "b", 0, "high", 0.9),
            ],
            2,
        );
        assert_eq!(texts(&merged), ["high", "mid"]);
    }

    #[test]
    fn hybrid_fuses_merged_rankings_not_per_knowledge_base_ones() {
        // kb_1's best chunk is weak in both rankings, kb_2's is first in both: fusing per
        // knowledge base would tie them.
        let dense =
            vec![found("kb_2", "b", 0, "fleet", 0.8), found("kb_1", "a", 0, "crew", 0.6), found("kb_1", "a", 1, "ferry", 0.1)];
        let sparse = vec![found("kb_2", "b", 0, "fleet", 7.0), found("kb_1", "a", 1, "ferry", 0.5)];
        let fused = fuse(vec![dense, sparse], 2);
        assert_eq!(texts(&fused), ["fleet", "ferry"]);
        assert!((fused[0].hit.score - 2.0 / 60.0).abs() < 1e-6);
    }
}
