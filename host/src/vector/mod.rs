//! Vector stores: one collection per knowledge base, each point one chunk with a dense
//! embedding (meaning), a BM25 sparse vector (keywords) and its payload.
//!
//! [`VectorStore`] is the boundary, with two backends that store and rank alike:
//! [`edge::EdgeStore`] (qdrant-edge, in process, under the data directory) is the
//! default; [`server::ServerStore`] uses a Qdrant server or cluster over gRPC, for
//! deployments that outgrow one machine or share vectors between servers. Calls are
//! synchronous (qdrant-edge is): async callers run them on the blocking pool.
//!
//! Point ids are derived from `(data source id, chunk index)`, so upserting the same
//! chunk twice — a resumed ingestion after a crash — overwrites instead of duplicating.

pub mod bm25;
pub mod edge;
pub mod filter;
pub mod server;

use serde_json::{Map, Value};

pub use filter::{Condition, MetadataFilter};

/// The dense vector of every collection (cosine).
const DENSE: &str = "dense";
/// The sparse BM25 vector of every collection (IDF applied by Qdrant at query time).
const SPARSE: &str = "bm25";
/// Reciprocal-rank-fusion constant of hybrid search (the usual 60).
pub(crate) const RRF_K: usize = 60;

/// Candidates each side of a hybrid search contributes before RRF ranks them: more than
/// asked for, so a chunk found by only one side can still make the cut.
pub(crate) fn prefetch_depth(limit: usize) -> usize {
    (limit * 4).max(20)
}

/// One chunk to store.
#[derive(Debug, Clone)]
pub struct ChunkPoint {
    /// Deterministic id, see [`point_id`].
    pub id: u64,
    /// Embedding of the chunk text.
    pub dense: Vec<f32>,
    /// The text, for the keyword index.
    pub text: String,
    /// Stored with the point and returned by searches.
    pub payload: Map<String, Value>,
}

/// How to rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchType {
    /// Cosine similarity of embeddings.
    Vector,
    /// BM25 over the chunk text.
    Keyword,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

impl SearchType {
    /// Name in the API and the WIT: `vector`, `keyword` or `hybrid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vector => "vector",
            Self::Keyword => "keyword",
            Self::Hybrid => "hybrid",
        }
    }

    /// Parses a name written by [`SearchType::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Vector, Self::Keyword, Self::Hybrid].into_iter().find(|t| t.as_str() == s)
    }
}

/// A search.
#[derive(Debug, Clone)]
pub struct Query {
    /// Query embedding (needed for vector and hybrid search).
    pub dense: Option<Vec<f32>>,
    /// Query text (used by keyword and hybrid search).
    pub text: String,
    /// Ranking.
    pub kind: SearchType,
    /// Results wanted.
    pub limit: usize,
    /// Metadata conditions, all of which must hold.
    pub filter: MetadataFilter,
    /// Drop results scoring below this.
    pub min_score: Option<f32>,
}

/// A search result.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Point id.
    pub id: u64,
    /// Score: cosine similarity, BM25 score or fused rank score by search type.
    pub score: f32,
    /// The stored payload.
    pub payload: Map<String, Value>,
}

/// A vector store failure (details for logs).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VectorError(pub String);

/// Result of vector store calls.
pub type VectorResult<T> = Result<T, VectorError>;

/// Storage of chunk vectors, one collection per knowledge base.
pub trait VectorStore: Send + Sync {
    /// Adds or overwrites points; creates the collection on first use with the
    /// dimension of the points' embeddings.
    fn upsert(&self, collection: &str, points: Vec<ChunkPoint>) -> VectorResult<()>;
    /// Deletes every point whose payload `field` equals `value`.
    fn delete_where(&self, collection: &str, field: &str, value: &str) -> VectorResult<()>;
    /// Drops a collection and its files; a missing one is not an error.
    fn drop_collection(&self, collection: &str) -> VectorResult<()>;
    /// Searches; a collection that was never written returns nothing.
    fn search(&self, collection: &str, query: &Query) -> VectorResult<Vec<Hit>>;
    /// Points in a collection whose payload `field` equals `value` (all points if `None`).
    fn count(&self, collection: &str, field_eq: Option<(&str, &str)>) -> VectorResult<u64>;
    /// Makes what was upserted durable (survives a crash) before the caller records progress.
    fn flush(&self, collection: &str) -> VectorResult<()>;
    /// Indexes what was written since the last call (e.g. builds the HNSW graph) in the
    /// background and returns at once; searches and writes go on meanwhile. For stores
    /// that index by themselves (a Qdrant server) there is nothing to do.
    fn index(&self, _collection: &str) -> VectorResult<()> {
        Ok(())
    }
}

/// The point id of chunk `index` of data source `source_id`: the first 8 bytes of
/// SHA-256 over both, stable across processes and versions.
pub fn point_id(source_id: &str, index: u64) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(source_id.as_bytes());
    h.update([0]);
    h.update(index.to_le_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    #[test]
    fn point_ids_are_stable_and_distinct() {
        assert_eq!(super::point_id("ds_1", 0), super::point_id("ds_1", 0));
        assert_ne!(super::point_id("ds_1", 0), super::point_id("ds_1", 1));
        assert_ne!(super::point_id("ds_1", 0), super::point_id("ds_2", 0));
    }
}
