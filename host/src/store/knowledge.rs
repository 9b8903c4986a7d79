//! Metadata of uploaded files, knowledge bases and their data sources (ingestion jobs).
//!
//! The bytes of a file live in the object store ([`crate::files`]) and the vectors in the
//! vector store ([`crate::vector`]); these records are what ties them together per tenant.
//! A data source row is also the durable state of its ingestion job: a restart re-queues
//! every source that is not `completed` or `failed`.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// An uploaded file (OpenAI's file object, plus the tenant and the sniffed type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// `file-...`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Name the client gave.
    pub filename: String,
    /// OpenAI `purpose` (`assistants`, `knowledge_base`, ...).
    pub purpose: String,
    /// Size in bytes.
    pub bytes: u64,
    /// MIME type from magic bytes and the extension.
    pub content_type: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Which files to list.
#[derive(Debug, Clone, Default)]
pub struct FileQuery {
    /// Only this purpose.
    pub purpose: Option<String>,
    /// At most this many (the caller asks for one more to learn `has_more`).
    pub limit: u32,
    /// Newest first.
    pub descending: bool,
    /// Cursor: start after the file with this id.
    pub after: Option<String>,
}

/// A knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeBaseRecord {
    /// `kb_...`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Embedding model id (as installed; fixed once created, since vectors depend on it).
    pub embedding_model: String,
    /// How documents are cut into chunks.
    pub chunking: ChunkingStrategy,
    /// User metadata (a JSON object).
    pub metadata: serde_json::Value,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// State of one data source's ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceStatus {
    /// Queued, not started.
    Pending,
    /// Being parsed, chunked, embedded and upserted.
    Processing,
    /// Every chunk is in the vector store.
    Completed,
    /// Stopped with an error (see `error`).
    Failed,
}

impl SourceStatus {
    /// Name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "processing" => Some(Self::Processing),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Data sources in one status, across tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestionCount {
    /// Their status.
    pub status: SourceStatus,
    /// How many.
    pub sources: u64,
    /// Chunks they stored.
    pub chunks_done: u64,
    /// Chunks they will have stored when done (of those that know).
    pub chunks_total: u64,
}

/// One file attached to a knowledge base, and its ingestion job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSourceRecord {
    /// `ds_...`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Knowledge base.
    pub kb_id: String,
    /// The uploaded file.
    pub file_id: String,
    /// Metadata copied onto every chunk's payload (filterable at retrieval).
    pub metadata: serde_json::Value,
    /// Job state.
    pub status: SourceStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Chunks the document produced, once known.
    pub chunks_total: Option<u64>,
    /// Chunks already embedded and upserted (a restart continues from here).
    pub chunks_done: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Progress written by the ingestion worker.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceProgress {
    /// New state.
    pub status: SourceStatus,
    /// Failure reason.
    pub error: Option<String>,
    /// Total chunks, once known.
    pub chunks_total: Option<u64>,
    /// Chunks done.
    pub chunks_done: u64,
}

/// What is left to remove after a file's records were deleted: its bytes and the chunks of
/// the data sources it was. Recorded in the same transaction that deletes the records, and
/// forgotten once both are gone, so a crash in between is finished at the next start.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDeletion {
    /// Journal entry.
    pub id: i64,
    /// Owning tenant.
    pub tenant: String,
    /// The deleted file.
    pub file_id: String,
    /// `(kb_id, source_id)` of each data source deleted with it.
    pub sources: Vec<(String, String)>,
}

/// Data access for files, knowledge bases and data sources.
pub trait KnowledgeStore: Send + Sync {
    /// Adds a file record.
    fn insert_file(&self, f: &FileRecord) -> Result<(), StoreError>;
    /// A tenant's file.
    fn get_file(&self, tenant: &str, id: &str) -> Result<Option<FileRecord>, StoreError>;
    /// A tenant's files, ordered by creation time; `None` when the `after` cursor is unknown.
    fn list_files(&self, tenant: &str, q: &FileQuery) -> Result<Option<Vec<FileRecord>>, StoreError>;
    /// Data sources of every tenant per status, with the chunks they have stored and
    /// (where known) will store: the ingestion progress `/metrics` reports.
    fn ingestion_counts(&self) -> Result<Vec<IngestionCount>, StoreError>;
    /// Bytes of all of a tenant's files (its plan may cap them).
    fn file_bytes(&self, tenant: &str) -> Result<u64, StoreError>;
    /// The `(tenant, id)` of every file (start-up compares them with the stored objects).
    fn file_keys(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Deletes a file record and its data sources in every knowledge base, and records
    /// what is left to remove, in one transaction; `None` when the file did not exist.
    fn delete_file(&self, tenant: &str, id: &str) -> Result<Option<FileDeletion>, StoreError>;
    /// Deletions whose bytes or chunks may still be there.
    fn pending_file_deletions(&self) -> Result<Vec<FileDeletion>, StoreError>;
    /// Forgets a deletion whose bytes and chunks are gone.
    fn finish_file_deletion(&self, id: i64) -> Result<(), StoreError>;

    /// Adds a knowledge base.
    fn insert_kb(&self, kb: &KnowledgeBaseRecord) -> Result<(), StoreError>;
    /// A tenant's knowledge base.
    fn get_kb(&self, tenant: &str, id: &str) -> Result<Option<KnowledgeBaseRecord>, StoreError>;
    /// A tenant's knowledge bases, oldest first.
    fn list_kbs(&self, tenant: &str) -> Result<Vec<KnowledgeBaseRecord>, StoreError>;
    /// Replaces name, description, chunking and metadata; false when it did not exist.
    fn update_kb(&self, kb: &KnowledgeBaseRecord) -> Result<bool, StoreError>;
    /// Deletes a knowledge base and its data sources (one transaction); false when it did
    /// not exist.
    fn delete_kb(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    /// Adds a data source.
    fn insert_source(&self, s: &DataSourceRecord) -> Result<(), StoreError>;
    /// One data source of a tenant's knowledge base.
    fn get_source(&self, tenant: &str, kb_id: &str, id: &str) -> Result<Option<DataSourceRecord>, StoreError>;
    /// The data sources of a knowledge base, oldest first.
    fn list_sources(&self, tenant: &str, kb_id: &str) -> Result<Vec<DataSourceRecord>, StoreError>;
    /// Every source of any tenant whose job has not finished (`pending` or `processing`).
    fn unfinished_sources(&self) -> Result<Vec<DataSourceRecord>, StoreError>;
    /// The sources, in any knowledge base of the tenant, that use a file.
    fn sources_of_file(&self, tenant: &str, file_id: &str) -> Result<Vec<DataSourceRecord>, StoreError>;
    /// Records job progress; false when the source is gone (its KB was deleted meanwhile).
    fn update_source(&self, id: &str, p: &SourceProgress) -> Result<bool, StoreError>;
    /// Deletes one data source; false when it did not exist.
    fn delete_source(&self, tenant: &str, kb_id: &str, id: &str) -> Result<bool, StoreError>;
}

/// How a knowledge base cuts documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkingStrategy {
    /// The algorithm.
    #[serde(rename = "type")]
    pub kind: ChunkingKind,
    /// Largest chunk, in characters.
    pub chunk_size: usize,
    /// Characters repeated from the end of one chunk at the start of the next.
    pub chunk_overlap: usize,
}

impl Default for ChunkingStrategy {
    fn default() -> Self {
        Self { kind: ChunkingKind::Recursive, chunk_size: 800, chunk_overlap: 100 }
    }
}

/// Chunking algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkingKind {
    /// Split on paragraphs, then lines, sentences, words; merge pieces up to the size.
    Recursive,
    /// Fixed windows of `chunk_size` characters, `chunk_overlap` apart from the next.
    FixedSize,
    /// Break where the topic changes (by embedding similarity of sentences).
    Semantic,
}
