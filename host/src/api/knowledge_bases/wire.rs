//! The bodies of the knowledge-base endpoints: the requests as the hand parsers of
//! `super` read them (documentation only: they parse `serde_json::Value`, so that each
//! error names its field), and the answers, which are serialized from these types.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::kb::{ChunkingKind, ChunkingStrategy};
use crate::store::DataSourceRecord;

// ---- The request bodies, as the hand parsers above read them (documentation only) ----

/// A metadata object: at most 64 keys, 256 counting those of nested objects, nested at
/// most 4 levels deep (itself included), and at most 16 KiB as JSON. Values may be any JSON.
#[derive(ToSchema)]
#[schema(max_properties = 64)]
#[allow(dead_code)] // Documents what `opt_metadata` accepts.
pub struct KnowledgeBaseMetadata {}

/// How documents are cut into chunks. Fields left out keep their current (or default)
/// values: `recursive`, 800 characters, 100 of overlap.
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the object `parse_chunking` reads by hand.
pub struct ChunkingStrategyParam {
    /// The algorithm: `recursive` (paragraphs, lines, sentences, words), `fixed_size`
    /// (windows of `chunk_size` characters) or `semantic` (breaks where the topic changes).
    #[serde(rename = "type")]
    #[schema(nullable = false, pattern = "^(recursive|fixed_size|semantic)$")]
    pub kind: Option<String>,
    /// Largest chunk, in characters.
    #[schema(nullable = false, minimum = 50, maximum = 20000)]
    pub chunk_size: Option<u64>,
    /// Characters repeated from the end of one chunk at the start of the next: at most
    /// half of `chunk_size`. Left out when `chunk_size` is given, the current overlap is
    /// kept where it fits and a tenth of `chunk_size` is taken otherwise.
    #[schema(nullable = false, minimum = 0, maximum = 10000)]
    pub chunk_overlap: Option<u64>,
}

/// The body of `POST /v1/knowledge-bases`. Other fields are ignored.
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the body `create` parses by hand from a JSON value.
pub struct CreateKnowledgeBase {
    /// A name for people: 1-256 characters, not all white space.
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    /// Free text, at most 4096 characters.
    #[schema(max_length = 4096)]
    pub description: Option<String>,
    /// An installed embedding model (id or alias); the server's default when left out.
    /// Fixed once created.
    #[schema(max_length = 256)]
    pub embedding_model: Option<String>,
    /// How documents are cut into chunks.
    pub chunking_strategy: Option<ChunkingStrategyParam>,
    /// Metadata for the caller's own use.
    pub metadata: Option<KnowledgeBaseMetadata>,
}

/// The body of `PATCH /v1/knowledge-bases/{id}`: the fields present change, the others
/// stay. Other fields are ignored.
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the body `update` parses by hand from a JSON value.
pub struct UpdateKnowledgeBase {
    /// A name for people: 1-256 characters, not all white space.
    #[schema(nullable = false, min_length = 1, max_length = 256)]
    pub name: Option<String>,
    /// Free text, at most 4096 characters; `null` removes it.
    #[schema(max_length = 4096)]
    pub description: Option<String>,
    /// Only the knowledge base's own model may be named: the stored vectors were made with it.
    #[schema(max_length = 256)]
    pub embedding_model: Option<String>,
    /// For sources ingested from now on; `null` leaves it.
    pub chunking_strategy: Option<ChunkingStrategyParam>,
    /// Replaces the metadata; `null` empties it.
    pub metadata: Option<KnowledgeBaseMetadata>,
}

/// The body of `POST /v1/knowledge-bases/{id}/data-sources`: one uploaded file, several,
/// or a URL to download into a new file (purpose `knowledge_base`) first. Send exactly
/// one of `file_id`, `file_ids` and `url`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documents the body `add_sources` parses by hand from a JSON value.
pub enum AddDataSources {
    /// One uploaded file; answered with its data source.
    File(AddFileSource),
    /// Several uploaded files; answered with a list of their data sources.
    Files(AddFileSources),
    /// A document to download; answered with its data source.
    Url(AddUrlSource),
}

/// One uploaded file as a data source.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only, see `AddDataSources`.
pub struct AddFileSource {
    /// `file` (the default).
    #[serde(rename = "type")]
    #[schema(pattern = "^file$")]
    pub kind: Option<String>,
    /// A file id of the caller's tenant (`POST /v1/files`).
    pub file_id: String,
    /// Copied onto every chunk, filterable at retrieval.
    pub metadata: Option<KnowledgeBaseMetadata>,
}

/// Several uploaded files as data sources.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only, see `AddDataSources`.
pub struct AddFileSources {
    /// `file` (the default).
    #[serde(rename = "type")]
    #[schema(pattern = "^file$")]
    pub kind: Option<String>,
    /// 1 to 500 file ids of the caller's tenant, none already a source of this knowledge base.
    #[schema(min_items = 1, max_items = 500)]
    pub file_ids: Vec<String>,
    /// Copied onto every chunk of every file, filterable at retrieval.
    pub metadata: Option<KnowledgeBaseMetadata>,
}

/// A document downloaded from a URL as a data source.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only, see `AddDataSources`.
pub struct AddUrlSource {
    /// `url` or `file`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(file|url)$")]
    pub kind: Option<String>,
    /// `http(s)://...`, or an object-store URL the operator allows the tenant. Private
    /// addresses are refused unless the server allows them.
    pub url: String,
    /// Copied onto every chunk, with `url` added (16 KiB as JSON in all), filterable at
    /// retrieval.
    pub metadata: Option<KnowledgeBaseMetadata>,
}

/// The body of `POST /v1/knowledge-bases/{id}/retrieve`. Other fields are ignored.
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the body `retrieve` parses by hand from a JSON value.
pub struct RetrieveBody {
    /// The text to search for: not blank, at most 32768 bytes (UTF-8).
    #[schema(min_length = 1, max_length = 32768)]
    pub query: String,
    /// Most chunks to return, 1 to 100; 10 by default.
    #[schema(minimum = 1, maximum = 100)]
    pub top_k: Option<u64>,
    /// `vector` (the default), `keyword` (BM25) or `hybrid` (both, fused by reciprocal rank).
    #[schema(nullable = false, pattern = "^(vector|keyword|hybrid)$")]
    pub search_type: Option<String>,
    /// Lowest score kept.
    pub min_score: Option<f64>,
    /// Conditions on the chunks' metadata: each key a metadata field (letters, digits,
    /// `_`, `-`, `.`), each value a string, number or boolean to equal, or an object of
    /// operators `$eq`, `$ne` (a scalar), `$gt`, `$gte`, `$lt`, `$lte` (a number) and `$in`
    /// (1 to 1000 strings or integers).
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    /// Whether each chunk carries its `metadata` (default `true`).
    pub include_metadata: Option<bool>,
}

// ---- The answers ----

/// How a knowledge base cuts documents.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkingStrategyObject {
    /// `recursive`, `fixed_size` or `semantic`.
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^(recursive|fixed_size|semantic)$")]
    pub kind: ChunkingKind,
    /// Largest chunk, in characters.
    pub chunk_size: u64,
    /// Characters repeated from the end of one chunk at the start of the next.
    pub chunk_overlap: u64,
}

impl From<ChunkingStrategy> for ChunkingStrategyObject {
    fn from(s: ChunkingStrategy) -> Self {
        Self { kind: s.kind, chunk_size: s.chunk_size as u64, chunk_overlap: s.chunk_overlap as u64 }
    }
}

/// A knowledge base's data sources by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSourceCounts {
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
    pub total: u64,
}

/// A knowledge base.
#[derive(Debug, Serialize, ToSchema)]
pub struct KnowledgeBase {
    /// `kb_...`.
    pub id: String,
    #[schema(value_type = String, pattern = "^knowledge_base$")]
    pub object: &'static str,
    pub name: String,
    pub description: Option<String>,
    /// The model its chunks are embedded with (fixed).
    pub embedding_model: String,
    /// How sources ingested from now on are cut.
    pub chunking_strategy: ChunkingStrategyObject,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    pub data_source_counts: DataSourceCounts,
    /// Chunks stored: counted in the vector store by `GET /v1/knowledge-bases/{id}`, the
    /// recorded progress of the sources elsewhere.
    pub chunk_count: u64,
}

/// A page of knowledge bases (all of them).
#[derive(Debug, Serialize, ToSchema)]
pub struct KnowledgeBaseList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<KnowledgeBase>,
    /// Always `false`.
    pub has_more: bool,
}

/// Why a data source failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSourceError {
    pub message: String,
}

/// A file attached to a knowledge base, with its ingestion's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSource {
    /// `ds_...`.
    pub id: String,
    #[schema(value_type = String, pattern = "^knowledge_base\\.data_source$")]
    pub object: &'static str,
    pub knowledge_base_id: String,
    /// Always `file` (a URL source is downloaded into a file first).
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^file$")]
    pub kind: &'static str,
    pub file_id: String,
    /// `pending`, `processing`, `completed` or `failed`.
    #[schema(value_type = String, pattern = "^(pending|processing|completed|failed)$")]
    pub status: &'static str,
    /// Why it failed; `null` unless `status` is `failed`.
    pub error: Option<DataSourceError>,
    /// Chunks the document produced, once known.
    pub chunks_total: Option<u64>,
    /// Chunks already embedded and stored.
    pub chunks_done: u64,
    /// Copied onto every chunk (a URL source's includes `url`).
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl From<&DataSourceRecord> for DataSource {
    fn from(s: &DataSourceRecord) -> Self {
        Self {
            id: s.id.clone(),
            object: "knowledge_base.data_source",
            knowledge_base_id: s.kb_id.clone(),
            kind: "file",
            file_id: s.file_id.clone(),
            status: s.status.as_str(),
            error: s.error.as_ref().map(|m| DataSourceError { message: m.clone() }),
            chunks_total: s.chunks_total,
            chunks_done: s.chunks_done,
            metadata: s.metadata.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A page of data sources (all of them).
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSourceList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<DataSource>,
    /// Always `false`.
    pub has_more: bool,
}

/// The data sources added by one request with `file_ids`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSourceBatch {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<DataSource>,
}

/// What adding data sources answers: the one source (`file_id` or `url`), or the list
/// (`file_ids`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DataSourcesAdded {
    /// For `file_id` or `url`.
    One(Box<DataSource>),
    /// For `file_ids`.
    Many(DataSourceBatch),
}

/// What deleting a knowledge base answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct KnowledgeBaseDeleted {
    pub id: String,
    #[schema(value_type = String, pattern = "^knowledge_base\\.deleted$")]
    pub object: &'static str,
    pub deleted: bool,
}

/// What deleting a data source answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSourceDeleted {
    pub id: String,
    #[schema(value_type = String, pattern = "^knowledge_base\\.data_source\\.deleted$")]
    pub object: &'static str,
    pub deleted: bool,
}

/// One chunk found by a retrieval.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetrievedChunk {
    #[schema(value_type = String, pattern = "^knowledge_base\\.chunk$")]
    pub object: &'static str,
    /// The chunk's point id.
    pub id: String,
    /// Cosine similarity (`vector`), BM25 score (`keyword`) or fused reciprocal-rank score
    /// (`hybrid`).
    pub score: f64,
    #[schema(value_type = Option<String>)]
    pub text: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub file_id: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub filename: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub data_source_id: Option<Value>,
    /// The chunk's place in its document, from 0.
    #[schema(value_type = Option<u64>)]
    pub chunk_index: Option<Value>,
    /// The source's metadata with `filename`, `file_id` and `content_type` added; left
    /// out with `include_metadata: false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, required = false)]
    pub metadata: Option<Value>,
}

/// What a retrieval answers: the chunks, best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetrieveResult {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub knowledge_base_id: String,
    pub query: String,
    /// `vector`, `keyword` or `hybrid`.
    #[schema(value_type = String, pattern = "^(vector|keyword|hybrid)$")]
    pub search_type: &'static str,
    pub data: Vec<RetrievedChunk>,
}
