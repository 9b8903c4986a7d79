//! Knowledge-base search for the RAG handler component: the runtime's [`Retriever`],
//! bound to one tenant, over the same [`Knowledge::retrieve`] the retrieve endpoint uses,
//! with every knowledge base of the request in one call.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Found, Knowledge, RetrieveRequest, Searched};
use crate::runtime::{RetrievalError, RetrievalSearch, RetrievedChunk, Retriever};

/// Most knowledge bases one request may search, as `knowledge_bases` allows.
const MAX_KNOWLEDGE_BASES: usize = 10;

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
    fn retrieve(
        &self,
        kbs: Vec<String>,
        search: RetrievalSearch,
    ) -> BoxFuture<'static, Result<Vec<RetrievedChunk>, RetrievalError>> {
        let knowledge = self.knowledge.clone();
        let tenant = self.tenant.clone();
        Box::pin(async move {
            if kbs.is_empty() || kbs.len() > MAX_KNOWLEDGE_BASES {
                return Err(RetrievalError::Invalid(format!("search 1 to {MAX_KNOWLEDGE_BASES} knowledge bases at once")));
            }
            let mut searched: Vec<Searched> = Vec::with_capacity(kbs.len());
            for kb in kbs {
                let record = knowledge
                    .inner
                    .store
                    .get_kb(&tenant, &kb)
                    .map_err(|e| RetrievalError::Backend(e.to_string()))?
                    .ok_or_else(|| RetrievalError::NotFound(kb.clone()))?;
                if !searched.iter().any(|s| s.id == record.id) {
                    searched.push(Searched { id: record.id, embedding_model: record.embedding_model });
                }
            }
            let req = request(search).map_err(RetrievalError::Invalid)?;
            let found = knowledge.retrieve(&searched, &req).await.map_err(|e| RetrievalError::Backend(e.to_string()))?;
            Ok(found.into_iter().map(chunk).collect())
        })
    }
}

/// The search as a [`RetrieveRequest`], by the retrieve endpoint's rules.
fn request(s: RetrievalSearch) -> Result<RetrieveRequest, String> {
    let filters = match s.filters {
        None => Value::Null,
        Some(text) => serde_json::from_str(&text).map_err(|e| format!("filters are not JSON: {e}"))?,
    };
    RetrieveRequest::new(s.query, u64::from(s.top_k), &s.search_type, &filters, s.min_score.map(f64::from)).map_err(|r| r.message)
}

fn chunk(Found { kb, hit: h }: Found) -> RetrievedChunk {
    let p = &h.payload;
    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    RetrievedChunk {
        knowledge_base: kb,
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
    use crate::vector::SearchType;

    fn search(query: &str, top_k: u32, search_type: &str, filters: Option<&str>, min_score: Option<f32>) -> RetrievalSearch {
        RetrievalSearch {
            query: query.into(),
            top_k,
            search_type: search_type.into(),
            filters: filters.map(Into::into),
            min_score,
        }
    }

    #[test]
    fn searches_are_checked_like_the_retrieve_endpoint() {
        let ok = request(search("q", 100, "hybrid", Some(r#"{"lang": {"$eq": "en"}}"#), Some(0.5))).unwrap();
        assert_eq!((ok.top_k, ok.search_type, ok.min_score), (100, SearchType::Hybrid, Some(0.5)));
        assert!(request(search(" ", 4, "vector", None, None)).is_err());
        assert!(request(search("q", 101, "vector", None, None)).is_err());
        assert!(request(search("q", 4, "vector", None, Some(f32::NAN))).is_err());
        assert!(request(search("q", 4, "fuzzy", None, None)).is_err());
        assert!(request(search("q", 4, "vector", Some("{"), None)).is_err());
        assert!(request(search("q", 4, "vector", Some(r#"{"a": {"$regex": "x"}}"#), None)).is_err());
    }
}
