//! `/v1/files`: OpenAI's Files API. Uploads stream into the object store (never whole in
//! memory) with a size cap; the record is written only once the bytes are complete, so a
//! file that lists is a file whose content can be read.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::body_rejection;
use super::{AppState, Caller};
use crate::files::{PURPOSES, StoreError, sniff};
use crate::store::{FileDeletion, FileQuery, FileRecord};

/// The OpenAI file object.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileObject {
    id: String,
    #[schema(value_type = String, pattern = "^file$")]
    object: &'static str,
    /// Size in bytes.
    bytes: u64,
    /// Unix seconds.
    created_at: i64,
    /// Files do not expire here: always `null`.
    #[schema(value_type = Option<i64>)]
    expires_at: Option<()>,
    filename: String,
    purpose: String,
    /// Always `processed`: a file is listed only once its bytes are stored.
    #[schema(value_type = String, pattern = "^processed$")]
    status: &'static str,
    #[schema(value_type = Option<String>)]
    status_details: Option<()>,
    /// The media type sniffed from the bytes and the name (a Tensoras extension).
    content_type: String,
}

impl From<&FileRecord> for FileObject {
    fn from(f: &FileRecord) -> Self {
        Self {
            id: f.id.clone(),
            object: "file",
            bytes: f.bytes,
            created_at: f.created_at,
            expires_at: None,
            filename: f.filename.clone(),
            purpose: f.purpose.clone(),
            status: "processed",
            status_details: None,
            content_type: f.content_type.clone(),
        }
    }
}

/// A page of files.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    #[schema(value_type = String, pattern = "^list$")]
    object: &'static str,
    data: Vec<FileObject>,
    first_id: Option<String>,
    last_id: Option<String>,
    has_more: bool,
}

/// What a delete answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileDeleted {
    id: String,
    #[schema(value_type = String, pattern = "^file$")]
    object: &'static str,
    deleted: bool,
}

/// The multipart form of an upload. Other parts (`expires_after[...]`) are read and ignored.
#[derive(ToSchema)]
#[allow(dead_code)] // Read part by part from the stream (upload); here for the document.
pub struct UploadForm {
    /// The file's bytes; its part's filename names it.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// What the file is for.
    #[schema(pattern = "^(assistants|batch|fine-tune|vision|user_data|evals|knowledge_base)$")]
    purpose: String,
}

/// 404 for a file id the caller's tenant does not own (or that does not exist).
pub fn file_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No such File object: {id}")).param("id").code("file_not_found")
}

fn multipart_err(e: axum::extract::multipart::MultipartError) -> ApiError {
    body_rejection(e.status(), e.body_text())
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("File is larger than this server accepts ({limit} bytes)."),
    )
    .param("file")
    .code("file_too_large")
}

/// Longest `purpose` read; every valid one is far shorter, and a longer one is refused
/// without buffering (or echoing) it.
const MAX_PURPOSE_BYTES: usize = 64;

/// A text form field of at most `max` bytes, trimmed.
async fn bounded_text(field: &mut axum::extract::multipart::Field<'_>, max: usize) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_err)? {
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::invalid(format!("'purpose' must be at most {max} bytes."))
                .param("purpose")
                .code("invalid_value"));
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(bytes).map_err(|_| ApiError::invalid("'purpose' must be UTF-8 text.").param("purpose"))?;
    Ok(text.trim().to_owned())
}

fn validate_purpose(purpose: Option<String>) -> Result<String, ApiError> {
    let purpose = purpose.ok_or_else(|| ApiError::invalid("Missing required parameter: 'purpose'.").param("purpose"))?;
    if PURPOSES.contains(&purpose.as_str()) {
        Ok(purpose)
    } else {
        Err(ApiError::invalid(format!("'{purpose}' is not one of {PURPOSES:?} - 'purpose'",))
            .param("purpose")
            .code("invalid_value"))
    }
}

/// The record of a file whose bytes are stored; the content type is sniffed from its
/// first bytes and its name.
pub fn new_record(tenant: &str, id: &str, filename: String, purpose: String, bytes: u64, head: &[u8]) -> FileRecord {
    FileRecord {
        content_type: sniff::content_type(head, &filename).to_owned(),
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        filename,
        purpose,
        bytes,
        created_at: crate::unix_now(),
    }
}

/// A file part being streamed into storage.
struct Received {
    id: String,
    filename: String,
    bytes: u64,
    head: Vec<u8>,
}

/// Streams the `file` part into storage under a fresh id. Over the limit → 413 and
/// nothing is kept.
async fn receive(
    state: &AppState,
    caller: &Caller,
    field: &mut axum::extract::multipart::Field<'_>,
) -> Result<Received, ApiError> {
    let filename = field.file_name().map(str::to_owned).unwrap_or_default();
    // The tenant's plan may cap its stored bytes; concurrent uploads of one tenant may
    // together pass the cap by up to one file each.
    let room = match caller.plan.storage_bytes() {
        Some(cap) => Some((cap, cap.saturating_sub(state.store.file_bytes(&caller.tenant).map_err(ApiError::internal)?))),
        None => None,
    };
    let limit = room.map_or(state.config.max_file_bytes, |(_, room)| room.min(state.config.max_file_bytes));
    match state.file_storage.store_stream(&caller.tenant, field, limit).await {
        Ok(s) => Ok(Received { id: s.id, filename, bytes: s.bytes, head: s.head }),
        Err(StoreError::TooLarge(_)) if room.is_some_and(|(_, room)| room < state.config.max_file_bytes) => {
            let (cap, room) = room.unwrap_or_default();
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!(
                    "This file does not fit in your storage: the plan '{}' allows {cap} bytes of files and {room} are left. \
                     Delete files, or ask the operator for a larger plan.",
                    caller.plan.name
                ),
            )
            .param("file")
            .code("storage_limit_exceeded"))
        }
        Err(StoreError::TooLarge(limit)) => Err(too_large(limit)),
        Err(StoreError::Source(e)) => Err(multipart_err(e)),
        Err(StoreError::Storage(e)) => Err(ApiError::internal(format!("{e:#}"))),
    }
}

/// `POST /v1/files`: multipart with `file` and `purpose`.
#[utoipa::path(post, path = "/files", tag = "files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The stored file.", body = FileObject)))]
pub async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = form.map_err(|e| {
        ApiError::new(e.status(), "invalid_request_error", format!("Expected a multipart/form-data body: {}", e.body_text()))
    })?;
    let mut purpose = None;
    let mut file: Option<Received> = None;
    let result: Result<(), ApiError> = async {
        while let Some(mut field) = form.next_field().await.map_err(multipart_err)? {
            let name = field.name().unwrap_or_default().to_owned();
            match name.as_str() {
                "file" if file.is_some() => {
                    return Err(ApiError::invalid("Only one 'file' part may be sent.").param("file"));
                }
                "file" => file = Some(receive(&state, &caller, &mut field).await?),
                "purpose" => purpose = Some(bounded_text(&mut field, MAX_PURPOSE_BYTES).await?),
                // Other fields (expires_after[...], future ones) are accepted and ignored.
                _ => while field.chunk().await.map_err(multipart_err)?.is_some() {},
            }
        }
        Ok(())
    }
    .await;
    let discard = |file: &Option<Received>| {
        let storage = state.file_storage.clone();
        let tenant = caller.tenant.clone();
        let id = file.as_ref().map(|f| f.id.clone());
        async move {
            if let Some(id) = id {
                let _ = storage.delete(&tenant, &id).await;
            }
        }
    };
    if let Err(e) = result {
        discard(&file).await;
        return Err(e);
    }
    let purpose = match validate_purpose(purpose) {
        Ok(p) => p,
        Err(e) => {
            discard(&file).await;
            return Err(e);
        }
    };
    let Some(file) = file else {
        return Err(ApiError::invalid("Missing required parameter: 'file'.").param("file"));
    };
    let filename = if file.filename.is_empty() { "upload".to_owned() } else { file.filename.clone() };
    let record = new_record(&caller.tenant, &file.id, filename, purpose, file.bytes, &file.head);
    if let Err(e) = state.store.insert_file(&record) {
        discard(&Some(file)).await;
        return Err(ApiError::internal(e));
    }
    tracing::info!(file_id = %record.id, bytes = record.bytes, content_type = %record.content_type, "file uploaded");
    Ok(axum::Json(FileObject::from(&record)).into_response())
}

/// Query of `GET /v1/files`. `limit` is read as text so that a bad one gets OpenAI's
/// message rather than the query parser's.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only files with this purpose.
    purpose: Option<String>,
    /// At most this many, 1 to 10000 (all by default).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(value_type = Option<String>, pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// A file id: the page starts after it.
    after: Option<String>,
}

/// `GET /v1/files`: newest first by default, cursor pagination with `after`.
#[utoipa::path(get, path = "/files", tag = "files", params(ListQuery),
    responses((status = 200, description = "A page of files.", body = FileList)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<FileList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("Invalid query string: {}", e.body_text())))?;
    let limit: u32 = match q.limit.as_deref() {
        None => 10_000,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::invalid("'limit' must be an integer from 1 to 10000.").param("limit"))?,
    };
    let descending = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::invalid("'order' must be 'asc' or 'desc'.").param("order")),
    };
    let query = FileQuery {
        purpose: q.purpose.filter(|p| !p.is_empty()),
        limit: limit + 1,
        descending,
        after: q.after.filter(|a| !a.is_empty()),
    };
    let mut files = state
        .store
        .list_files(&caller.tenant, &query)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::invalid("'after' does not name one of your files.").param("after"))?;
    let has_more = files.len() > limit as usize;
    files.truncate(limit as usize);
    Ok(axum::Json(FileList {
        object: "list",
        data: files.iter().map(FileObject::from).collect(),
        first_id: files.first().map(|f| f.id.clone()),
        last_id: files.last().map(|f| f.id.clone()),
        has_more,
    }))
}

fn lookup(state: &AppState, caller: &Caller, id: &str) -> Result<FileRecord, ApiError> {
    state.store.get_file(&caller.tenant, id).map_err(ApiError::internal)?.ok_or_else(|| file_not_found(id))
}

/// `GET /v1/files/{id}`.
#[utoipa::path(get, path = "/files/{id}", tag = "files",
    params(("id" = String, Path, description = "The file's id.")),
    responses((status = 200, description = "The file.", body = FileObject)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<FileObject>, ApiError> {
    Ok(axum::Json(FileObject::from(&lookup(&state, &caller, &id)?)))
}

/// `GET /v1/files/{id}/content`: the bytes, streamed.
#[utoipa::path(get, path = "/files/{id}/content", tag = "files",
    params(("id" = String, Path, description = "The file's id.")),
    responses((status = 200, description = "The bytes, with the sniffed `Content-Type`.",
        content((String = "application/octet-stream"), (String = "*/*")))))]
pub async fn content(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = lookup(&state, &caller, &id)?;
    let stream =
        state.file_storage.stream(&caller.tenant, &id).await.map_err(|e| ApiError::internal(format!("file {id}: {e:#}")))?;
    let safe: String = record.filename.chars().map(|c| if c.is_control() || c == '"' || c == '\\' { '_' } else { c }).collect();
    let disposition = format!("attachment; filename=\"{safe}\"");
    let body =
        Body::from_stream(futures::StreamExt::map(stream, |r: object_store::Result<Bytes>| r.map_err(std::io::Error::other)));
    Ok((
        [
            (header::CONTENT_TYPE, record.content_type.clone()),
            (header::CONTENT_LENGTH, record.bytes.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// `DELETE /v1/files/{id}`: one transaction deletes the record and its data sources in
/// every knowledge base (so the id stops resolving at once) and journals the rest; then
/// the bytes and the sources' chunks go, and the journal entry with them. A crash in
/// between is finished at the next start ([`finish_deletions`]).
#[utoipa::path(delete, path = "/files/{id}", tag = "files",
    params(("id" = String, Path, description = "The file's id.")),
    responses((status = 200, description = "Deleted, with its data sources in every knowledge base.", body = FileDeleted)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<FileDeleted>, ApiError> {
    let deletion = state
        .reserve
        .freeing(|| async { state.store.delete_file(&caller.tenant, &id) })
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| file_not_found(&id))?;
    finish_deletion(&state, &deletion).await.map_err(|e| ApiError::internal(format!("{e:#}")))?;
    super::rearm_reserve(&state).await;
    Ok(axum::Json(FileDeleted { id, object: "file", deleted: true }))
}

/// Removes a deleted file's bytes and its sources' chunks, then forgets the journal entry.
/// Bytes that cannot be removed are only logged (they are unreachable without the record);
/// chunks that cannot are an error, since retrieval would still find them. Either way the
/// entry stays, for the next start to try again.
async fn finish_deletion(state: &AppState, deletion: &FileDeletion) -> anyhow::Result<()> {
    let bytes = state.file_storage.delete(&deletion.tenant, &deletion.file_id).await;
    if let Err(e) = &bytes {
        tracing::warn!(file_id = %deletion.file_id, "file record deleted but its bytes were not: {e:#}");
    }
    for (kb_id, source_id) in &deletion.sources {
        state.knowledge.delete_source_vectors(kb_id, source_id).await?;
    }
    if bytes.is_ok() {
        state.store.finish_file_deletion(deletion.id).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// At start-up: finishes the file deletions a crash interrupted. One that fails again is
/// logged and kept for the next start.
pub(super) async fn finish_deletions(state: &AppState) -> anyhow::Result<()> {
    let pending = state.store.pending_file_deletions().map_err(|e| anyhow::anyhow!("reading file deletions: {e}"))?;
    for deletion in &pending {
        match finish_deletion(state, deletion).await {
            Ok(()) => tracing::info!(file_id = %deletion.file_id, "retried an interrupted file deletion"),
            Err(e) => tracing::error!(file_id = %deletion.file_id, "finishing an interrupted file deletion: {e:#}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The document's pattern for `purpose` and the purposes the upload accepts are one list.
    #[test]
    fn upload_purposes_are_documented() {
        let schema = serde_json::to_value(<super::UploadForm as utoipa::PartialSchema>::schema()).unwrap();
        let pattern = schema["properties"]["purpose"]["pattern"].as_str().unwrap();
        assert_eq!(pattern, format!("^({})$", crate::files::PURPOSES.join("|")));
    }
}
