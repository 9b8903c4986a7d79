//! Knowledge bases: documents cut into chunks, embedded with the knowledge base's model
//! and stored in the vector store, retrievable by meaning, keywords or both.
//!
//! Lifecycle of a data source (one file in one knowledge base): the API records it as
//! `pending` and queues it; one background worker parses, chunks, embeds (in batches, on
//! the host, as `/v1/embeddings` would: see `embed`) and upserts, writing `chunks_done` to
//! the metadata store after each batch is durable in the vector store. The worker serves
//! tenants in turns, one step of one source per turn (see `ingest`), so a large upload of
//! one tenant delays another tenant's source by a batch, not by the whole upload. On
//! start-up every source still `pending` or `processing` is queued again and continues
//! after its last recorded batch; since point ids derive from (source, chunk index), a
//! batch that was stored but not yet recorded is simply overwritten, never duplicated.
//!
//! What one source may cost is bounded: its text by [`parse::text_limit`], its chunks by
//! [`chunk_limit`], a semantic cut's sentences by [`MAX_SENTENCES_PER_SOURCE`], its
//! metadata (copied onto every chunk) by [`check_metadata`]. Past a bound the source fails
//! with the reason in its `error`.

pub mod chunk;
pub mod embed;
mod ingest;
pub mod parse;
mod retriever;
mod search;

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

pub use chunk::{ChunkingKind, ChunkingStrategy};
pub use embed::{EmbedError, Embedder};
pub use search::{Found, MAX_QUERY_BYTES, MAX_TOP_K, Refused, Searched};

use crate::files::FileStorage;
use crate::store::{DataSourceRecord, MetadataStore};
use crate::vector::{MetadataFilter, SearchType, VectorError, VectorStore};

/// Most chunks one data source may have, whatever its size.
pub const MAX_CHUNKS_PER_SOURCE: usize = 100_000;

/// A source may have at most one chunk per this many bytes of its text. A correct cut
/// gives far fewer: at the smallest settings (`chunk_size` 50, overlap 25) the recursive
/// strategy averages at least about 17 characters per chunk, fixed windows 25, and the
/// semantic one's topic breaks are one adjacent pair in twenty; so this only stops a
/// cut that has gone wrong (empty or tiny pieces) before it is embedded.
pub const TEXT_BYTES_PER_CHUNK: usize = 8;

/// Chunks any source may have, however short its text.
const MIN_CHUNK_LIMIT: usize = 64;

/// Most sentences a `semantic` source embeds (each one costs an embedding, as a chunk
/// does): about 20 MB of ordinary prose.
pub const MAX_SENTENCES_PER_SOURCE: usize = 200_000;

/// The most chunks a source whose text is `text_bytes` long may have: one per
/// [`TEXT_BYTES_PER_CHUNK`] bytes, at most [`MAX_CHUNKS_PER_SOURCE`]. With the text at
/// most [`parse::text_limit`] of the file, this bounds the chunks by the file's size.
pub fn chunk_limit(text_bytes: usize) -> usize {
    (text_bytes / TEXT_BYTES_PER_CHUNK).clamp(MIN_CHUNK_LIMIT, MAX_CHUNKS_PER_SOURCE)
}

/// Largest `metadata` (of a data source or a knowledge base) as compact JSON, in bytes.
/// A data source's metadata is copied into the payload of every one of its chunks, so it
/// is paid once per chunk in the vector store and in every retrieval answer.
pub const MAX_METADATA_BYTES: usize = 16 << 10;

/// Most keys of `metadata` itself.
pub const MAX_METADATA_KEYS: usize = 64;

/// Most keys of `metadata` counting those of nested objects.
pub const MAX_METADATA_TOTAL_KEYS: usize = 256;

/// Deepest nesting of `metadata`: the object itself is level 1, an object or array in
/// it level 2, and so on.
pub const MAX_METADATA_DEPTH: usize = 4;

/// Checks a `metadata` object against the bounds above; the message names `param`.
pub fn check_metadata(param: &str, metadata: &Map<String, Value>) -> Result<(), String> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(format!("'{param}' may have at most {MAX_METADATA_KEYS} keys."));
    }
    // (deepest level, keys) of the values of an object or array at `level`.
    fn walk<'a>(values: impl Iterator<Item = &'a Value>, level: usize) -> (usize, usize) {
        values.fold((level, 0), |(depth, keys), v| {
            let (d, k) = match v {
                Value::Object(m) => {
                    let (d, k) = walk(m.values(), level + 1);
                    (d, k + m.len())
                }
                Value::Array(items) => walk(items.iter(), level + 1),
                _ => (level, 0),
            };
            (depth.max(d), keys + k)
        })
    }
    let (depth, nested) = walk(metadata.values(), 1);
    let keys = metadata.len() + nested;
    if depth > MAX_METADATA_DEPTH {
        return Err(format!("'{param}' may nest objects and arrays at most {MAX_METADATA_DEPTH} levels deep (itself included)."));
    }
    if keys > MAX_METADATA_TOTAL_KEYS {
        return Err(format!("'{param}' may have at most {MAX_METADATA_TOTAL_KEYS} keys in all, nested objects included."));
    }
    let bytes = metadata_bytes(metadata);
    if bytes > MAX_METADATA_BYTES {
        return Err(format!("'{param}' is {bytes} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed."));
    }
    Ok(())
}

/// The size of `metadata` as compact JSON.
pub fn metadata_bytes(metadata: &(impl serde::Serialize + ?Sized)) -> usize {
    serde_json::to_vec(metadata).map_or(usize::MAX, |b| b.len())
}

/// What the worker needs, shared with the API.
struct Inner {
    store: Arc<dyn MetadataStore>,
    files: FileStorage,
    vectors: Arc<dyn VectorStore>,
    embedder: Embedder,
    /// Given up when recording a failure meets a full disk (crate::full_disk).
    reserve: Arc<crate::full_disk::Reserve>,
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
        reserve: Arc<crate::full_disk::Reserve>,
    ) -> anyhow::Result<Self> {
        let inner = Arc::new(Inner { store, files, vectors, embedder, reserve });
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
}

/// Runs a synchronous vector store call on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, VectorError> + Send + 'static) -> Result<T, VectorError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| VectorError(format!("vector task failed: {e}")))?
}

/// The payload of chunk `index` of a source.
fn chunk_payload(source: &DataSourceRecord, file: &crate::store::FileRecord, index: usize, text: &str) -> Map<String, Value> {
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
