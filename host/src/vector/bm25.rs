//! The keyword side of every backend: BM25 term weights as a sparse vector, computed
//! on the host with qdrant-edge's tokenizer (Qdrant's own: English stopwords and
//! stemming, hashed token ids). The collection's `idf` modifier supplies the inverse
//! document frequency at query time, so every backend stores the same vectors and
//! scores keywords alike.

use qdrant_edge::SparseVector;
use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};

/// The BM25 model (Qdrant's defaults: k1 1.2, b 0.75, average length 256 tokens).
#[derive(Debug)]
pub struct Bm25(EdgeBm25);

impl Bm25 {
    /// Builds the model.
    pub fn new() -> anyhow::Result<Self> {
        EdgeBm25::new(EdgeBm25Config::default()).map(Self).map_err(|e| anyhow::anyhow!("BM25 model: {e}"))
    }

    /// Term-frequency weights of a stored chunk (hashed token ids and weights).
    pub fn document(&self, text: &str) -> SparseVector {
        self.0.embed_document(text)
    }

    /// Unit weights of the query's terms.
    pub fn query(&self, text: &str) -> SparseVector {
        self.0.embed_query(text)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn documents_and_queries_share_token_ids() -> anyhow::Result<()> {
        let bm25 = super::Bm25::new()?;
        let doc = bm25.document("Zebras are striped; the zebra runs");
        let query = bm25.query("zebra");
        assert_eq!(query.indices.len(), 1, "one stemmed term");
        assert!(doc.indices.contains(&query.indices[0]), "stemming maps zebras and zebra to one id");
        assert_eq!(doc.indices.len(), doc.values.len());
        assert!(bm25.query("the and of").indices.is_empty(), "stopwords are dropped");
        Ok(())
    }
}
