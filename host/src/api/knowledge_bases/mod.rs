//! `/v1/knowledge-bases` (Tensoras extension): create, list, get, update and delete
//! knowledge bases; attach uploaded files as data sources (ingested in the background,
//! with a status each); retrieve chunks by vector, keyword or hybrid search.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

mod wire;

use wire::*;

use super::error::ApiError;
use super::extract::Json;
use super::files::{file_not_found, new_record};
use super::{AppState, Caller};
use crate::files::fetch::{FetchError, FetchPolicy};
use crate::kb::{ChunkingKind, ChunkingStrategy, Found, RetrieveError, RetrieveRequest, Searched};
use crate::store::{DataSourceRecord, KnowledgeBaseRecord, SourceStatus, StoreError};

const MAX_NAME: usize = 256;
const MAX_DESCRIPTION: usize = 4096;
const MAX_FILES_PER_REQUEST: usize = 500;

fn kb_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No knowledge base found with id '{id}'.")).code("knowledge_base_not_found")
}

fn source_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No data source found with id '{id}'.")).code("data_source_not_found")
}

fn internal(e: StoreError) -> ApiError {
    ApiError::internal(e)
}

fn new_id(prefix: &str) -> Result<String, ApiError> {
    crate::ids::random_id::<12>(prefix).map_err(ApiError::internal)
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| ApiError::invalid("The request body must be a JSON object."))
}

fn opt_string(obj: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ApiError::invalid(format!("'{key}' is longer than {max} characters.")).param(key)),
        Some(_) => Err(ApiError::invalid(format!("'{key}' must be a string.")).param(key)),
    }
}

/// An optional metadata object, within the bounds of [`crate::kb::check_metadata`]
/// (64 keys, 256 in all, 4 levels, 16 KiB as JSON): a data source's metadata is copied
/// onto every one of its chunks.
fn opt_metadata(obj: &Map<String, Value>, key: &str) -> Result<Option<Value>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            crate::kb::check_metadata(key, m).map_err(|why| ApiError::invalid(why).param(key))?;
            Ok(Some(Value::Object(m.clone())))
        }
        Some(_) => Err(ApiError::invalid(format!("'{key}' must be an object.")).param(key)),
    }
}

fn parse_chunking(v: &Value, base: ChunkingStrategy) -> Result<ChunkingStrategy, ApiError> {
    let param = "chunking_strategy";
    let obj = v.as_object().ok_or_else(|| ApiError::invalid("'chunking_strategy' must be an object.").param(param))?;
    let mut s = base;
    if let Some(t) = obj.get("type") {
        s.kind = match t.as_str() {
            Some("recursive") => ChunkingKind::Recursive,
            Some("fixed_size") => ChunkingKind::FixedSize,
            Some("semantic") => ChunkingKind::Semantic,
            _ => {
                return Err(ApiError::invalid("chunking_strategy.type must be 'recursive', 'fixed_size' or 'semantic'.")
                    .param("chunking_strategy.type"));
            }
        };
    }
    for (key, slot) in [("chunk_size", &mut s.chunk_size), ("chunk_overlap", &mut s.chunk_overlap)] {
        if let Some(v) = obj.get(key) {
            *slot = v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                ApiError::invalid(format!("chunking_strategy.{key} must be a non-negative integer."))
                    .param(format!("chunking_strategy.{key}"))
            })?;
        }
    }
    // A size given without an overlap keeps the default overlap only where it fits.
    if obj.get("chunk_overlap").is_none() && s.chunk_overlap * 2 > s.chunk_size {
        s.chunk_overlap = s.chunk_size / 10;
    }
    s.validate().map_err(|m| ApiError::invalid(m).param(param))?;
    Ok(s)
}

/// The knowledge base object. `chunk_count` is the recorded progress of its sources
/// unless `stored_chunks` (counted in the vector store) is given.
fn kb_json(state: &AppState, kb: &KnowledgeBaseRecord, stored_chunks: Option<u64>) -> Result<KnowledgeBase, ApiError> {
    let sources = state.store.list_sources(&kb.tenant, &kb.id).map_err(internal)?;
    let count = |st: SourceStatus| sources.iter().filter(|s| s.status == st).count() as u64;
    Ok(KnowledgeBase {
        id: kb.id.clone(),
        object: "knowledge_base",
        name: kb.name.clone(),
        description: kb.description.clone(),
        embedding_model: kb.embedding_model.clone(),
        chunking_strategy: kb.chunking.into(),
        metadata: kb.metadata.clone(),
        created_at: kb.created_at,
        updated_at: kb.updated_at,
        data_source_counts: DataSourceCounts {
            pending: count(SourceStatus::Pending),
            processing: count(SourceStatus::Processing),
            completed: count(SourceStatus::Completed),
            failed: count(SourceStatus::Failed),
            total: sources.len() as u64,
        },
        chunk_count: stored_chunks.unwrap_or_else(|| sources.iter().map(|s| s.chunks_done).sum::<u64>()),
    })
}

fn lookup(state: &AppState, caller: &Caller, id: &str) -> Result<KnowledgeBaseRecord, ApiError> {
    state.store.get_kb(&caller.tenant, id).map_err(internal)?.ok_or_else(|| kb_not_found(id))
}

/// `POST /v1/knowledge-bases`: a new, empty knowledge base.
#[utoipa::path(post, path = "/knowledge-bases", tag = "knowledge-bases", request_body = CreateKnowledgeBase,
    responses((status = 201, description = "The new knowledge base.", body = KnowledgeBase)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, axum::Json<KnowledgeBase>), ApiError> {
    let obj = object(&body)?;
    let name = opt_string(obj, "name", MAX_NAME)?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Missing required parameter: 'name'.").param("name"))?;
    let embedder = state.knowledge.embedder();
    let embedding_model = match opt_string(obj, "embedding_model", MAX_NAME)? {
        Some(m) => embedder
            .resolve_model(&m)
            .map_err(|e| ApiError::invalid(e.to_string()).param("embedding_model").code("model_not_found"))?,
        None => embedder.default_model().ok_or_else(|| {
            ApiError::invalid("No embedding model is installed on this server; install one or name 'embedding_model'.")
                .param("embedding_model")
                .code("model_not_found")
        })?,
    };
    let chunking = match obj.get("chunking_strategy") {
        None | Some(Value::Null) => ChunkingStrategy::default(),
        Some(v) => parse_chunking(v, ChunkingStrategy::default())?,
    };
    if let Some(max) = caller.plan.knowledge_bases {
        // Concurrent creates may pass the cap by one each; a count is enough for a plan.
        let have = state.store.list_kbs(&caller.tenant).map_err(internal)?.len() as u64;
        if have >= max {
            return Err(ApiError::forbidden(format!(
                "Your plan '{}' allows {max} knowledge bases and you have {have}. Delete one, or ask the operator for a larger plan.",
                caller.plan.name
            ))
            .code("knowledge_base_limit_reached"));
        }
    }
    let now = crate::unix_now();
    let kb = KnowledgeBaseRecord {
        id: new_id("kb_")?,
        tenant: caller.tenant.clone(),
        name,
        description: opt_string(obj, "description", MAX_DESCRIPTION)?,
        embedding_model,
        chunking,
        metadata: opt_metadata(obj, "metadata")?.unwrap_or_else(|| json!({})),
        created_at: now,
        updated_at: now,
    };
    state.store.insert_kb(&kb).map_err(internal)?;
    Ok((StatusCode::CREATED, axum::Json(kb_json(&state, &kb, None)?)))
}

/// `GET /v1/knowledge-bases`: every knowledge base of the caller's tenant.
#[utoipa::path(get, path = "/knowledge-bases", tag = "knowledge-bases",
    responses((status = 200, description = "The knowledge bases.", body = KnowledgeBaseList)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<KnowledgeBaseList>, ApiError> {
    let kbs = state.store.list_kbs(&caller.tenant).map_err(internal)?;
    let data = kbs.iter().map(|kb| kb_json(&state, kb, None)).collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(KnowledgeBaseList { object: "list", data, has_more: false }))
}

/// `GET /v1/knowledge-bases/{id}`: a knowledge base, its chunks counted in the vector store.
#[utoipa::path(get, path = "/knowledge-bases/{id}", tag = "knowledge-bases",
    params(("id" = String, Path, description = "The knowledge base's id (`kb_...`).")),
    responses((status = 200, description = "The knowledge base.", body = KnowledgeBase)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<KnowledgeBase>, ApiError> {
    let kb = lookup(&state, &caller, &id)?;
    let stored = state.knowledge.count_vectors(&kb.id).await.map_err(ApiError::internal)?;
    Ok(axum::Json(kb_json(&state, &kb, Some(stored))?))
}

/// `PATCH /v1/knowledge-bases/{id}`: name, description, metadata, chunking (for sources
/// ingested from now on). The embedding model is fixed: stored vectors depend on it.
#[utoipa::path(patch, path = "/knowledge-bases/{id}", tag = "knowledge-bases", request_body = UpdateKnowledgeBase,
    params(("id" = String, Path, description = "The knowledge base's id (`kb_...`).")),
    responses((status = 200, description = "The knowledge base.", body = KnowledgeBase)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<axum::Json<KnowledgeBase>, ApiError> {
    let mut kb = lookup(&state, &caller, &id)?;
    let obj = object(&body)?;
    if let Some(m) = opt_string(obj, "embedding_model", MAX_NAME)? {
        let same = state.knowledge.embedder().resolve_model(&m).is_ok_and(|m| m == kb.embedding_model);
        if !same {
            return Err(ApiError::invalid(
                "'embedding_model' cannot change: the stored vectors were made with it. Create a new knowledge base instead.",
            )
            .param("embedding_model"));
        }
    }
    if obj.contains_key("name") {
        kb.name = opt_string(obj, "name", MAX_NAME)?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::invalid("'name' must be a non-empty string.").param("name"))?;
    }
    if obj.contains_key("description") {
        kb.description = opt_string(obj, "description", MAX_DESCRIPTION)?;
    }
    if obj.contains_key("metadata") {
        kb.metadata = opt_metadata(obj, "metadata")?.unwrap_or_else(|| json!({}));
    }
    if let Some(v) = obj.get("chunking_strategy").filter(|v| !v.is_null()) {
        kb.chunking = parse_chunking(v, kb.chunking)?;
    }
    kb.updated_at = crate::unix_now();
    if !state.store.update_kb(&kb).map_err(internal)? {
        return Err(kb_not_found(&id));
    }
    Ok(axum::Json(kb_json(&state, &kb, None)?))
}

/// `DELETE /v1/knowledge-bases/{id}`: the record, its data sources and its vectors.
#[utoipa::path(delete, path = "/knowledge-bases/{id}", tag = "knowledge-bases",
    params(("id" = String, Path, description = "The knowledge base's id (`kb_...`).")),
    responses((status = 200, description = "Deleted, with its data sources and chunks.", body = KnowledgeBaseDeleted)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<KnowledgeBaseDeleted>, ApiError> {
    if !state.reserve.freeing(|| async { state.store.delete_kb(&caller.tenant, &id) }).await.map_err(internal)? {
        return Err(kb_not_found(&id));
    }
    state.knowledge.drop_vectors(&id).await.map_err(ApiError::internal)?;
    super::rearm_reserve(&state).await;
    Ok(axum::Json(KnowledgeBaseDeleted { id, object: "knowledge_base.deleted", deleted: true }))
}

/// Downloads a URL data source into a new file (purpose `knowledge_base`) of the caller,
/// before the source is recorded, so a bad URL is answered at once.
async fn import_url(state: &AppState, caller: &Caller, url: &str) -> Result<String, ApiError> {
    let config = &state.config;
    let policy = FetchPolicy {
        max_bytes: config.max_file_bytes,
        addresses: if config.url_sources_allow_private {
            crate::net::AddressPolicy::allow_all()
        } else {
            config.address_policy.clone()
        },
        object_prefixes: config.object_sources.get(&caller.tenant).cloned().unwrap_or_default(),
    };
    let fetched = state.file_storage.fetch(&caller.tenant, url, policy).await.map_err(|e| match e {
        FetchError::NotAllowed(m) => ApiError::invalid(m).param("url").code("url_not_allowed"),
        FetchError::Failed(m) => ApiError::invalid(format!("Fetching the URL failed: {m}")).param("url").code("url_fetch_failed"),
        FetchError::TooLarge(limit) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The document is larger than this server accepts ({limit} bytes)."),
        )
        .param("url")
        .code("file_too_large"),
        FetchError::Storage(e) => ApiError::internal(format!("{e:#}")),
    })?;
    let s = &fetched.stored;
    let record = new_record(&caller.tenant, &s.id, fetched.filename.clone(), "knowledge_base".into(), s.bytes, &s.head);
    if let Err(e) = state.store.insert_file(&record) {
        let _ = state.file_storage.delete(&caller.tenant, &s.id).await;
        return Err(internal(e));
    }
    tracing::info!(file_id = %record.id, bytes = record.bytes, "fetched a URL data source");
    Ok(record.id)
}

/// `POST /v1/knowledge-bases/{id}/data-sources`: `{"file_id": ...}`, `{"file_ids": [...]}`
/// or `{"url": "https://..."}` (downloaded into a file first, see [`import_url`]);
/// optional `metadata` (copied onto every chunk, filterable; a URL source adds `url`).
/// Ingestion runs in the background: each source's `status` tells how far it got.
#[utoipa::path(post, path = "/knowledge-bases/{id}/data-sources", tag = "knowledge-bases", request_body = AddDataSources,
    params(("id" = String, Path, description = "The knowledge base's id (`kb_...`).")),
    responses(
        (status = 202, description = "Queued for ingestion: the data source (`file_id`, `url`) or a list of them (`file_ids`).",
            body = DataSourcesAdded),
        (status = 409, description = "A file is already a data source of this knowledge base (`data_source_exists`).",
            body = super::error::ErrorResponse),
    ))]
pub async fn add_sources(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, axum::Json<DataSourcesAdded>), ApiError> {
    let kb = lookup(&state, &caller, &id)?;
    let obj = object(&body)?;
    let kind = obj.get("type").and_then(Value::as_str);
    if let Some(t) = kind.filter(|t| !matches!(*t, "file" | "url")) {
        return Err(ApiError::invalid(format!(
            "Data source type '{t}' is not supported; use 'file' (uploaded file ids) or 'url'."
        ))
        .param("type"));
    }
    let mut metadata = opt_metadata(obj, "metadata")?.unwrap_or_else(|| json!({}));
    let (single, ids): (bool, Vec<String>) = match (obj.get("file_id"), obj.get("file_ids"), obj.get("url")) {
        (None, None, Some(Value::String(url))) => {
            // The URL joins the metadata copied onto every chunk: its size is checked with
            // it, before anything is downloaded.
            metadata["url"] = Value::String(url.clone());
            let bytes = crate::kb::metadata_bytes(&metadata);
            if bytes > crate::kb::MAX_METADATA_BYTES {
                return Err(ApiError::invalid(format!(
                    "'metadata' with the 'url' added is {bytes} bytes as JSON; at most {} are allowed.",
                    crate::kb::MAX_METADATA_BYTES
                ))
                .param("url"));
            }
            let file_id = import_url(&state, &caller, url).await?;
            (true, vec![file_id])
        }
        (None, None, Some(_)) => return Err(ApiError::invalid("'url' must be a string.").param("url")),
        (_, _, Some(_)) => return Err(ApiError::invalid("Send 'url' or file ids, not both.").param("url")),
        _ if kind == Some("url") => return Err(ApiError::invalid("Missing required parameter: 'url'.").param("url")),
        (Some(Value::String(f)), None, None) => (true, vec![f.clone()]),
        (None, Some(Value::Array(items)), None) if !items.is_empty() && items.len() <= MAX_FILES_PER_REQUEST => {
            let ids = items.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>();
            (false, ids.ok_or_else(|| ApiError::invalid("'file_ids' must be an array of file ids.").param("file_ids"))?)
        }
        (Some(_), Some(_), None) => return Err(ApiError::invalid("Send 'file_id' or 'file_ids', not both.").param("file_ids")),
        _ => {
            return Err(ApiError::invalid(format!(
                "Missing required parameter: 'file_id' (a string), 'file_ids' (1 to {MAX_FILES_PER_REQUEST} strings) or 'url'."
            ))
            .param("file_ids"));
        }
    };
    let existing = state.store.list_sources(&caller.tenant, &kb.id).map_err(internal)?;
    let param = if single { "file_id" } else { "file_ids" };
    for (i, file_id) in ids.iter().enumerate() {
        if state.store.get_file(&caller.tenant, file_id).map_err(internal)?.is_none() {
            return Err(file_not_found(file_id).param(param));
        }
        if existing.iter().any(|s| &s.file_id == file_id) || ids[..i].contains(file_id) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!("File {file_id} is already a data source of this knowledge base."),
            )
            .param(param)
            .code("data_source_exists"));
        }
    }
    let now = crate::unix_now();
    let mut created = Vec::new();
    for file_id in ids {
        let s = DataSourceRecord {
            id: new_id("ds_")?,
            tenant: caller.tenant.clone(),
            kb_id: kb.id.clone(),
            file_id,
            metadata: metadata.clone(),
            status: SourceStatus::Pending,
            error: None,
            chunks_total: None,
            chunks_done: 0,
            created_at: now,
            updated_at: now,
        };
        state.store.insert_source(&s).map_err(internal)?;
        state.knowledge.enqueue(&s);
        created.push(s);
    }
    let body = if single {
        DataSourcesAdded::One(Box::new(DataSource::from(&created[0])))
    } else {
        DataSourcesAdded::Many(DataSourceBatch { object: "list", data: created.iter().map(DataSource::from).collect() })
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)))
}

/// `GET /v1/knowledge-bases/{id}/data-sources`: every data source of a knowledge base.
#[utoipa::path(get, path = "/knowledge-bases/{id}/data-sources", tag = "knowledge-bases",
    params(("id" = String, Path, description = "The knowledge base's id (`kb_...`).")),
    responses((status = 200, description = "The data sources.", body = DataSourceList)))]
pub async fn list_sources(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<DataSourceList>, ApiError> {
    let kb = lookup(&state, &caller, &id)?;
    let sources = state.store.list_sources(&caller.tenant, &kb.id).map_err(internal)?;
    Ok(axum::Json(DataSourceList { object: "list", data: sources.iter().map(DataSource::from).collect(), has_more: false }))
}

/// `GET /v1/knowledge-bases/{id}/data-sources/{source_id}`: a data source and its progress.
#[utoipa::path(get, path = "/knowledge-bases/{id}/data-sources/{source_id}", tag = "knowledge-bases",
    params(("id" = String, Path, description = "The knowledge base's id (`kb_...`)."), ("source_id" = String, Path, description = "The data source's id (`ds_...`).")),
    responses((status = 200, description = "The data source.", body = DataSource)))]
pub async fn get_source(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, source_id)): Path<(String, String)>,
) -> Result<axum::Json<DataSource>, ApiError> {
    let kb = lookup(&state, &caller, &id)?;
    let s = state
        .store
        .get_source(&caller.tenant, &kb.id, &source_id)
        .map_err(internal)?
        .ok_or_else(|| source_not_found(&source_id))?;
    Ok(axum::Json(DataSource::from(&s)))
}

/// `DELETE /v1/knowledge-bases/{id}/data-sources/{source_id}`: the source and its chunks
/// (the file stays).
#[utoipa::path(delete, path = "/knowledge-bases/{id}/data-sources/{source_id}", tag = "knowledge-bases",
    params(("id" = String, Path, description = "The knowledge base's id (`kb_...`)."), ("source_id" = String, Path, description = "The data source's id (`ds_...`).")),
    responses((status = 200, description = "Deleted, with its chunks.", body = DataSourceDeleted)))]
pub async fn delete_source(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, source_id)): Path<(String, String)>,
) -> Result<axum::Json<DataSourceDeleted>, ApiError> {
    let kb = lookup(&state, &caller, &id)?;
    let deleted = state.reserve.freeing(|| async { state.store.delete_source(&caller.tenant, &kb.id, &source_id) }).await;
    if !deleted.map_err(internal)? {
        return Err(source_not_found(&source_id));
    }
    state.knowledge.delete_source_vectors(&kb.id, &source_id).await.map_err(ApiError::internal)?;
    super::rearm_reserve(&state).await;
    Ok(axum::Json(DataSourceDeleted { id: source_id, object: "knowledge_base.data_source.deleted", deleted: true }))
}

fn parse_retrieve(obj: &Map<String, Value>) -> Result<RetrieveRequest, ApiError> {
    let query = match obj.get("query") {
        Some(Value::String(q)) => q.clone(),
        Some(_) => return Err(ApiError::invalid("'query' must be a non-empty string.").param("query")),
        None => return Err(ApiError::invalid("Missing required parameter: 'query'.").param("query")),
    };
    let top_k = match obj.get("top_k") {
        None | Some(Value::Null) => 10,
        // Anything but an integer is out of range (u64::MAX), with the range's message.
        Some(v) => v.as_u64().unwrap_or(u64::MAX),
    };
    let search_type = match obj.get("search_type") {
        None => "vector",
        Some(v) => v.as_str().unwrap_or("(not a string)"),
    };
    let min_score = match obj.get("min_score") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().unwrap_or(f64::NAN)),
    };
    let filters = obj.get("filters").unwrap_or(&Value::Null);
    RetrieveRequest::new(query, top_k, search_type, filters, min_score).map_err(|r| ApiError::invalid(r.message).param(r.param))
}

/// `POST /v1/knowledge-bases/{id}/retrieve`: the chunks that best match a query, by
/// meaning (`vector`), keywords (`keyword`) or both (`hybrid`).
#[utoipa::path(post, path = "/knowledge-bases/{id}/retrieve", tag = "knowledge-bases", request_body = RetrieveBody,
    params(("id" = String, Path, description = "The knowledge base's id (`kb_...`).")),
    responses((status = 200, description = "The chunks found, best first.", body = RetrieveResult)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<axum::Json<RetrieveResult>, ApiError> {
    let kb = lookup(&state, &caller, &id)?;
    let obj = object(&body)?;
    let req = parse_retrieve(obj)?;
    let include_metadata = match obj.get("include_metadata") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("'include_metadata' must be a boolean.").param("include_metadata")),
    };
    let kbs = [Searched { id: kb.id.clone(), embedding_model: kb.embedding_model.clone() }];
    let found = state.knowledge.retrieve(&kbs, &req).await.map_err(|e| match e {
        RetrieveError::Embed(e) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", e.to_string()).code("embedding_unavailable")
        }
        RetrieveError::Vector(e) => ApiError::internal(e),
    })?;
    let data = found
        .into_iter()
        .map(|Found { hit: mut h, .. }| {
            let p = &mut h.payload;
            let metadata = include_metadata
                .then(|| p.remove(crate::vector::filter::METADATA_KEY).unwrap_or_else(|| Value::Object(Map::new())));
            RetrievedChunk {
                object: "knowledge_base.chunk",
                id: h.id.to_string(),
                // As `json!` wrote it: the f32 widened.
                score: f64::from(h.score),
                text: p.remove("text"),
                file_id: p.remove("file_id"),
                filename: p.remove("filename"),
                data_source_id: p.remove("source_id"),
                chunk_index: p.remove("chunk_index"),
                metadata,
            }
        })
        .collect();
    Ok(axum::Json(RetrieveResult {
        object: "list",
        knowledge_base_id: kb.id,
        query: req.query,
        search_type: req.search_type.as_str(),
        data,
    }))
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema as _;

    use super::{MAX_DESCRIPTION, MAX_NAME, wire};

    /// The documented lengths are literals in `#[schema]` attributes (utoipa takes no
    /// constants there); this keeps them equal to the limits `create` and `update` check.
    #[test]
    fn documented_lengths_are_the_checked_ones() {
        for schema in [wire::CreateKnowledgeBase::schema(), wire::UpdateKnowledgeBase::schema()] {
            let json = serde_json::to_value(&schema).unwrap();
            let max = |field: &str| json["properties"][field]["maxLength"].as_u64().map(|n| n as usize);
            assert_eq!(max("name"), Some(MAX_NAME), "{json}");
            assert_eq!(max("embedding_model"), Some(MAX_NAME), "{json}");
            assert_eq!(max("description"), Some(MAX_DESCRIPTION), "{json}");
        }
    }
}
