//! Retrieval over the invoking tenant's knowledge bases, as
//! `POST /v1/knowledge-bases/{id}/retrieve` does it. The manifest names the knowledge
//! bases a function may search (`grants.knowledge_bases`, or `"*"` for all of the
//! tenant's); an id of another tenant is not found, whatever the grant says.
//!
//! ```no_run
//! use tensoras_guest::kb::{self, Search};
//!
//! let chunks = kb::retrieve(&["kb_123"], &Search::new("refund policy").top_k(3).hybrid())?;
//! for c in &chunks {
//!     println!("[{}] {}", c.filename, c.text);
//! }
//! # Ok::<(), tensoras_guest::Error>(())
//! ```

use crate::Error;
use crate::wit::platform::tensoras::platform::retrieval as raw;

/// A search: the query and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    query: String,
    top_k: u32,
    search_type: &'static str,
    filters: Option<String>,
    min_score: Option<f32>,
}

impl Search {
    /// A vector search for `query`, 5 chunks.
    pub fn new(query: impl Into<String>) -> Self {
        Self { query: query.into(), top_k: 5, search_type: "vector", filters: None, min_score: None }
    }

    /// Most chunks over all the knowledge bases (1 to 100).
    pub fn top_k(mut self, k: u32) -> Self {
        self.top_k = k;
        self
    }

    /// Ranks by keywords (BM25) instead of meaning.
    pub fn keyword(mut self) -> Self {
        self.search_type = "keyword";
        self
    }

    /// Fuses the ranking by meaning and the ranking by keywords.
    pub fn hybrid(mut self) -> Self {
        self.search_type = "hybrid";
        self
    }

    /// A metadata filter (`{"field": {"$eq": ...}}`).
    pub fn filters(mut self, filters: &serde_json::Value) -> Self {
        self.filters = Some(filters.to_string());
        self
    }

    /// Drops chunks scoring below `score`.
    pub fn min_score(mut self, score: f32) -> Self {
        self.min_score = Some(score);
        self
    }
}

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The knowledge base it came from (`kb_...`).
    pub knowledge_base: String,
    /// The source file (`file-...`).
    pub file_id: String,
    /// The source file's name as uploaded.
    pub filename: String,
    /// Position of the chunk in its document.
    pub chunk_index: u32,
    /// The text.
    pub text: String,
    /// Higher is better: cosine (vector), BM25 (keyword) or reciprocal-rank fusion (hybrid).
    pub score: f32,
    /// The chunk's metadata.
    pub metadata: serde_json::Value,
}

/// Searches `knowledge_bases` together: at most `top_k` chunks over all of them, best first.
pub fn retrieve(knowledge_bases: &[&str], search: &Search) -> Result<Vec<Chunk>, Error> {
    let kbs: Vec<String> = knowledge_bases.iter().map(|s| (*s).to_owned()).collect();
    let raw_search = raw::Search {
        query: search.query.clone(),
        top_k: search.top_k,
        search_type: search.search_type.into(),
        filters: search.filters.clone(),
        min_score: search.min_score,
    };
    Ok(raw::retrieve(&kbs, &raw_search)?
        .into_iter()
        .map(|c| Chunk {
            knowledge_base: c.knowledge_base,
            file_id: c.file_id,
            filename: c.filename,
            chunk_index: c.chunk_index,
            text: c.text,
            score: c.score,
            metadata: serde_json::from_str(&c.metadata).unwrap_or(serde_json::Value::Null),
        })
        .collect())
}
