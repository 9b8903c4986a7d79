//! Knowledge bases: documents cut into chunks, embedded with the knowledge base's model
//! and stored in the vector store, retrievable by meaning, keywords or both.
//!
//! Lifecycle of a data source (one file in one knowledge base): the API records it as
//! `pending` and queues it; one background worker parses, chunks, embeds (in batches,
//! through the embeddings handler) and upserts, writing `chunks_done` to the metadata
//! store after each batch is durable in the vector store. On start-up every source still
//! `pending` or `processing` is queued again and continues after its last recorded
//! batch; since point ids derive from (source, chunk index), a batch that was stored but
//! not yet recorded is simply overwritten, never duplicated.

pub mod chunk;
pub mod embed;
mod ingest;
pub mod parse;
mod retriever;

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

pub use chunk::{ChunkingKind, ChunkingStrategy};
pub use embed::{EmbedError, Embedder};

use crate::files::FileStorage;
use crate::store::{DataSourceRecord, MetadataStore};
use crate::vector::{Hit, MetadataFilter, Query, SearchType, VectorError, VectorStore};

/// What the worker needs, shared with the API.
struct Inner {
    store: Arc<dyn MetadataStore>,
    files: FileStorage,
    vectors: Arc<dyn VectorStore>,
    embedder: Embedder,
}

/// Identifies a queued data source.
#[derive(Debug, Clone)]
struct Job {
    tenant: String,
    kb_id: String,
    source_id: String,
}

/// The knowledge-base service: ingestion worker, vector cleanup and retrieval.
#[derive(Clone)]
pub struct Knowledge {
    inner: Arc<Inner>,
    queue: mpsc::UnboundedSender<Job>,
    stop: watch::Sender<bool>,
    worker: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Knowledge")
    }
}

/// A retrieval request, validated.
#[derive(Debug, Clone)]
pub struct RetrieveRequest {
    /// Query text.
    pub query: String,
    /// Results wanted (1..=100).
    pub top_k: usize,
    /// Ranking.
    pub search_type: SearchType,
    /// Metadata conditions.
    pub filter: MetadataFilter,
    /// Lowest score kept.
    pub min_score: Option<f32>,
}

/// Why retrieval failed.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// The query could not be embedded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The vector store failed.
    #[error(transparent)]
    Vector(#[from] VectorError),
}

impl Knowledge {
    /// Starts the ingestion worker and re-queues every unfinished data source.
    pub fn start(
        store: Arc<dyn MetadataStore>,
        files: FileStorage,
        vectors: Arc<dyn VectorStore>,
        embedder: Embedder,
    ) -> anyhow::Result<Self> {
        let inner = Arc::new(Inner { store, files, vectors, embedder });
        let (queue, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let unfinished = inner.store.unfinished_sources().map_err(|e| anyhow::anyhow!("reading ingestion jobs: {e}"))?;
        if !unfinished.is_empty() {
            tracing::info!(sources = unfinished.len(), "resuming unfinished ingestion");
        }
        for s in unfinished {
            let _ = queue.send(Job { tenant: s.tenant, kb_id: s.kb_id, source_id: s.id });
        }
        let worker = tokio::spawn(ingest::run(inner.clone(), rx, stop_rx));
        Ok(Self { inner, queue, stop, worker: Arc::new(tokio::sync::Mutex::new(Some(worker))) })
    }

    /// Queues a data source for ingestion.
    pub fn enqueue(&self, s: &DataSourceRecord) {
        let job = Job { tenant: s.tenant.clone(), kb_id: s.kb_id.clone(), source_id: s.id.clone() };
        if self.queue.send(job).is_err() {
            tracing::warn!(source_id = %s.id, "ingestion worker stopped; the source runs after a restart");
        }
    }

    /// Stops the worker after its current batch (the job resumes on the next start).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.worker.lock().await.take() {
            let _ = handle.await;
        }
    }

    /// The embedder (for model checks).
    pub fn embedder(&self) -> &Embedder {
        &self.inner.embedder
    }

    /// Removes a knowledge base's vectors.
    pub async fn drop_vectors(&self, kb_id: &str) -> Result<(), VectorError> {
        let vectors = self.inner.vectors.clone();
        let kb = kb_id.to_owned();
        blocking(move || vectors.drop_collection(&kb)).await
    }

    /// Removes one data source's chunks.
    pub async fn delete_source_vectors(&self, kb_id: &str, source_id: &str) -> Result<(), VectorError> {
        let vectors = self.inner.vectors.clone();
        let (kb, source) = (kb_id.to_owned(), source_id.to_owned());
        blocking(move || vectors.delete_where(&kb, "source_id", &source)).await
    }

    /// Chunks stored for a knowledge base.
    pub async fn count_vectors(&self, kb_id: &str) -> Result<u64, VectorError> {
        let vectors = self.inner.vectors.clone();
        let kb = kb_id.to_owned();
        blocking(move || vectors.count(&kb, None)).await
    }

    /// Searches a knowledge base.
    pub async fn retrieve(
        &self,
        tenant: &str,
        kb_id: &str,
        model: &str,
        req: &RetrieveRequest,
    ) -> Result<Vec<Hit>, RetrieveError> {
        let dense = match req.search_type {
            SearchType::Keyword => None,
            SearchType::Vector | SearchType::Hybrid => {
                let mut v = self.inner.embedder.embed(tenant, model, std::slice::from_ref(&req.query)).await?;
                v.pop()
            }
        };
        let query = Query {
            dense,
            text: req.query.clone(),
            kind: req.search_type,
            limit: req.top_k,
            filter: req.filter.clone(),
            min_score: req.min_score,
        };
        let vectors = self.inner.vectors.clone();
        let kb = kb_id.to_owned();
        Ok(blocking(move || vectors.search(&kb, &query)).await?)
    }
}

/// Runs a synchronous vector store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VectorError> + Send + 'static,
) -> Result<T, VectorError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| VectorError(format!("vector task failed: {e}")))?
}

/// The payload of chunk `index` of a source.
fn chunk_payload(
    source: &DataSourceRecord,
    file: &crate::store::FileRecord,
    index: usize,
    text: &str,
) -> Map<String, Value> {
    let mut metadata = source.metadata.as_object().cloned().unwrap_or_default();
    metadata.insert("filename".into(), Value::String(file.filename.clone()));
    metadata.insert("file_id".into(), Value::String(file.id.clone()));
    metadata.insert("content_type".into(), Value::String(file.content_type.clone()));
    let mut p = Map::new();
    p.insert("kb_id".into(), Value::String(source.kb_id.clone()));
    p.insert("source_id".into(), Value::String(source.id.clone()));
    p.insert("file_id".into(), Value::String(file.id.clone()));
    p.insert("filename".into(), Value::String(file.filename.clone()));
    p.insert("chunk_index".into(), Value::from(index as u64));
    p.insert("text".into(), Value::String(text.to_owned()));
    p.insert(crate::vector::filter::METADATA_KEY.into(), Value::Object(metadata));
    p
}
