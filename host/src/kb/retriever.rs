//! Knowledge-base search for the RAG handler component: the runtime's [`Retriever`],
//! bound to one tenant, over the same [`Knowledge::retrieve`] the retrieve endpoint uses.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Knowledge, RetrieveRequest};
use crate::runtime::{RetrievalError, RetrievalSearch, RetrievedChunk, Retriever};
use crate::vector::{Hit, MetadataFilter, SearchType};

/// Most bytes of a query, as the retrieve endpoint allows.
const MAX_QUERY_BYTES: usize = 32_768;

struct TenantRetriever {
    knowledge: Knowledge,
    tenant: String,
}

impl Knowledge {
    /// Searches of `tenant`'s knowledge bases, for a handler call.
    pub fn retriever(&self, tenant: &str) -> Arc<dyn Retriever> {
        Arc::new(TenantRetriever { knowledge: self.clone(), tenant: tenant.to_owned() })
    }
}

impl Retriever for TenantRetriever {
    fn retrieve(&self, kb: String, search: RetrievalSearch) -> BoxFuture<'static, Result<Vec<RetrievedChunk>, RetrievalError>> {
        let knowledge = self.knowledge.clone();
        let tenant = self.tenant.clone();
        Box::pin(async move {
            let record = knowledge
                .inner
                .store
                .get_kb(&tenant, &kb)
                .map_err(|e| RetrievalError::Backend(e.to_string()))?
                .ok_or_else(|| RetrievalError::NotFound(kb.clone()))?;
            let req = request(search).map_err(RetrievalError::Invalid)?;
            let hits = knowledge
                .retrieve(&tenant, &record.id, &record.embedding_model, &req)
                .await
                .map_err(|e| RetrievalError::Backend(e.to_string()))?;
            Ok(hits.into_iter().map(|h| chunk(&record.id, h)).collect())
        })
    }
}

/// The search as a [`RetrieveRequest`], with the retrieve endpoint's limits.
fn request(s: RetrievalSearch) -> Result<RetrieveRequest, String> {
    if s.query.trim().is_empty() || s.query.len() > MAX_QUERY_BYTES {
        return Err(format!("the query must be 1 to {MAX_QUERY_BYTES} bytes of text"));
    }
    let search_type = SearchType::parse(&s.search_type).ok_or_else(|| format!("unknown search type {:?}", s.search_type))?;
    let filter = match s.filters {
        None => MetadataFilter::default(),
        Some(text) => {
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("filters are not JSON: {e}"))?;
            MetadataFilter::parse(&v)?
        }
    };
    Ok(RetrieveRequest {
        query: s.query,
        top_k: s.top_k.clamp(1, 100) as usize,
        search_type,
        filter,
        min_score: s.min_score.filter(|m| m.is_finite()),
    })
}

fn chunk(kb: &str, h: Hit) -> RetrievedChunk {
    let p = &h.payload;
    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    RetrievedChunk {
        knowledge_base: kb.to_owned(),
        file_id: text("file_id"),
        filename: text("filename"),
        chunk_index: p.get("chunk_index").and_then(Value::as_u64).unwrap_or_default() as u32,
        text: text("text"),
        score: h.score,
        metadata: p.get(crate::vector::filter::METADATA_KEY).map_or_else(|| "{}".to_owned(), Value::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(query: &str, search_type: &str, filters: Option<&str>) -> RetrievalSearch {
        RetrievalSearch {
            query: query.into(),
            top_k: 500,
            search_type: search_type.into(),
            filters: filters.map(Into::into),
            min_score: Some(f32::NAN),
        }
    }

    #[test]
    fn searches_are_checked_like_the_retrieve_endpoint() {
        let ok = request(search("q", "hybrid", Some(r#"{"lang": {"$eq": "en"}}"#))).unwrap();
        assert_eq!((ok.top_k, ok.search_type, ok.min_score), (100, SearchType::Hybrid, None));
        assert!(request(search(" ", "vector", None)).is_err());
        assert!(request(search("q", "fuzzy", None)).is_err());
        assert!(request(search("q", "vector", Some("{"))).is_err());
        assert!(request(search("q", "vector", Some(r#"{"a": {"$regex": "x"}}"#))).is_err());
    }
}
