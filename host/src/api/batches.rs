//! `/v1/batches`: OpenAI's Batch API. The jobs run in crate::batches; this module checks
//! what clients send, answers with OpenAI's batch object, and runs each request line
//! through the inference endpoints' own code ([`LineExecutor`]).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorResponse};
use super::extract::Json;
use super::{AppState, Caller};
use crate::batches::{COMPLETION_WINDOWS, Line, input};
use crate::gateway::{Gateway, Principal};
use crate::inference::Inference;
use crate::store::{BatchLineError, BatchRecord, BatchStatus, BatchTransition, MetadataStore};
use crate::usage::Meter;

/// Most metadata keys, longest key and value (OpenAI's bounds).
const MAX_METADATA_KEYS: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

/// OpenAI's batch object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Batch {
    /// `batch_...`.
    id: String,
    #[schema(value_type = String, pattern = "^batch$")]
    object: &'static str,
    /// The endpoint every line is sent to.
    #[schema(pattern = "^/v1/(chat/completions|completions|embeddings)$")]
    endpoint: String,
    /// Why the input file was refused (status `failed`).
    errors: Option<BatchErrors>,
    input_file_id: String,
    #[schema(pattern = "^24h$")]
    completion_window: String,
    /// `validating`, `failed`, `in_progress`, `finalizing`, `completed`, `expired`,
    /// `cancelling` or `cancelled`.
    #[schema(pattern = "^(validating|failed|in_progress|finalizing|completed|expired|cancelling|cancelled)$")]
    status: &'static str,
    /// The answers of the lines that succeeded (JSONL, purpose `batch_output`).
    output_file_id: Option<String>,
    /// The lines that failed.
    error_file_id: Option<String>,
    created_at: i64,
    in_progress_at: Option<i64>,
    expires_at: Option<i64>,
    finalizing_at: Option<i64>,
    completed_at: Option<i64>,
    failed_at: Option<i64>,
    expired_at: Option<i64>,
    cancelling_at: Option<i64>,
    cancelled_at: Option<i64>,
    request_counts: RequestCounts,
    /// The metadata given at creation.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Problems of an input file.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchErrors {
    #[schema(value_type = String, pattern = "^list$")]
    object: &'static str,
    data: Vec<BatchError>,
}

/// One problem of an input file.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchError {
    /// `invalid_json_line`, `missing_required_parameter`, `invalid_custom_id`,
    /// `duplicate_custom_id`, `invalid_method`, `invalid_url`, `mismatched_url`,
    /// `invalid_body`, `empty_file`, `too_many_requests`, `file_not_found` or `server_error`.
    code: String,
    message: String,
    param: Option<String>,
    /// The 1-based line of the input file, when the problem is one line's.
    line: Option<u64>,
}

/// Request lines of a batch by outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestCounts {
    total: u64,
    completed: u64,
    failed: u64,
}

impl From<BatchRecord> for Batch {
    fn from(b: BatchRecord) -> Self {
        let errors = (!b.errors.is_empty()).then(|| BatchErrors {
            object: "list",
            data: b
                .errors
                .into_iter()
                .map(|BatchLineError { code, message, param, line }| BatchError { code, message, param, line })
                .collect(),
        });
        Self {
            id: b.id,
            object: "batch",
            endpoint: b.endpoint,
            errors,
            input_file_id: b.input_file_id,
            completion_window: b.completion_window,
            status: b.status.as_str(),
            output_file_id: b.output_file_id,
            error_file_id: b.error_file_id,
            created_at: b.created_at,
            in_progress_at: b.in_progress_at,
            expires_at: Some(b.expires_at),
            finalizing_at: b.finalizing_at,
            completed_at: b.completed_at,
            failed_at: b.failed_at,
            expired_at: b.expired_at,
            cancelling_at: b.cancelling_at,
            cancelled_at: b.cancelled_at,
            request_counts: RequestCounts { total: b.total, completed: b.completed, failed: b.failed },
            metadata: b.metadata,
        }
    }
}

/// A page of batches, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    #[schema(value_type = String, pattern = "^list$")]
    object: &'static str,
    data: Vec<Batch>,
    first_id: Option<String>,
    last_id: Option<String>,
    has_more: bool,
}

/// The body of `POST /v1/batches` (read by hand, so each error names its field).
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the body `create` parses from a JSON value.
pub struct CreateBatch {
    /// A file uploaded with purpose `batch`: JSONL, one request per line,
    /// `{"custom_id", "method": "POST", "url", "body"}`, at most 50,000 lines.
    #[schema(min_length = 1)]
    input_file_id: String,
    /// Where every line goes.
    #[schema(pattern = "^/v1/(chat/completions|completions|embeddings)$")]
    endpoint: String,
    /// `24h`.
    #[schema(pattern = "^24h$")]
    completion_window: String,
    /// Up to 16 string values, keys up to 64 characters, values up to 512.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

/// Query of `GET /v1/batches`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A batch id: the page starts after it.
    after: Option<String>,
    /// 1 to 100 (20 by default).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

fn batch_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No batch found with id '{id}'.")).param("batch_id").code("batch_not_found")
}

fn required_string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) => Err(ApiError::invalid(format!("Missing required parameter: '{key}'.")).param(key)),
        Some(_) => Err(ApiError::invalid(format!("'{key}' must be a non-empty string.")).param(key)),
    }
}

fn metadata(obj: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let m = match obj.get("metadata") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::invalid("'metadata' must be an object of strings.").param("metadata")),
    };
    if m.len() > MAX_METADATA_KEYS {
        return Err(ApiError::invalid(format!("'metadata' may hold at most {MAX_METADATA_KEYS} keys.")).param("metadata"));
    }
    for (k, v) in m {
        let fits = k.chars().count() <= MAX_METADATA_KEY && v.as_str().is_some_and(|v| v.chars().count() <= MAX_METADATA_VALUE);
        if !fits {
            return Err(ApiError::invalid(format!(
                "metadata['{k}']: keys are at most {MAX_METADATA_KEY} characters, values strings of at most {MAX_METADATA_VALUE}."
            ))
            .param("metadata"));
        }
    }
    Ok(Some(Value::Object(m.clone())))
}

/// `POST /v1/batches`: a batch of the requests in an uploaded file. It answers at once
/// (`validating`); the file is checked and run in the background.
#[utoipa::path(post, path = "/batches", tag = "batches", request_body = CreateBatch,
    responses(
        (status = 200, description = "The new batch.", body = Batch),
        (status = 404, description = "No such input file (`file_not_found`).", body = ErrorResponse),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Result<axum::Json<Batch>, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::invalid("The request body must be a JSON object."))?;
    let input_file_id = required_string(obj, "input_file_id")?;
    let endpoint = required_string(obj, "endpoint")?;
    if !input::ENDPOINTS.contains(&endpoint) {
        return Err(ApiError::invalid(format!("'endpoint' must be one of {}, not '{endpoint}'.", input::ENDPOINTS.join(", ")))
            .param("endpoint"));
    }
    let window = required_string(obj, "completion_window")?;
    let Some((window, seconds)) = COMPLETION_WINDOWS.iter().find(|(w, _)| *w == window) else {
        return Err(ApiError::invalid(format!("'completion_window' must be '24h', not '{window}'.")).param("completion_window"));
    };
    let metadata = metadata(obj)?;
    let file = state
        .store
        .get_file(&caller.tenant, input_file_id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| super::files::file_not_found(input_file_id).param("input_file_id"))?;
    if file.purpose != "batch" {
        return Err(ApiError::invalid(format!(
            "The input file {input_file_id} has purpose '{}'; a batch reads a file uploaded with purpose 'batch'.",
            file.purpose
        ))
        .param("input_file_id"));
    }
    let now = crate::unix_now();
    let record = BatchRecord {
        id: crate::ids::random_id::<12>("batch_").map_err(ApiError::internal)?,
        tenant: caller.tenant.clone(),
        key_id: caller.key_id.clone(),
        endpoint: endpoint.to_owned(),
        input_file_id: input_file_id.to_owned(),
        completion_window: (*window).to_owned(),
        status: BatchStatus::Validating,
        metadata,
        errors: Vec::new(),
        total: 0,
        completed: 0,
        failed: 0,
        output_file_id: None,
        error_file_id: None,
        created_at: now,
        expires_at: now + seconds,
        in_progress_at: None,
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
    };
    state.store.insert_batch(&record).map_err(ApiError::internal)?;
    state.batches.wake();
    tracing::info!(batch_id = %record.id, endpoint = %record.endpoint, "batch created");
    Ok(axum::Json(record.into()))
}

fn lookup(state: &AppState, caller: &Caller, id: &str) -> Result<BatchRecord, ApiError> {
    state.store.get_batch(&caller.tenant, id).map_err(ApiError::internal)?.ok_or_else(|| batch_not_found(id))
}

/// `GET /v1/batches/{batch_id}`.
#[utoipa::path(get, path = "/batches/{batch_id}", tag = "batches",
    params(("batch_id" = String, Path, description = "The batch's id.")),
    responses((status = 200, description = "The batch.", body = Batch)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<Batch>, ApiError> {
    Ok(axum::Json(lookup(&state, &caller, &id)?.into()))
}

/// `POST /v1/batches/{batch_id}/cancel`: no more lines start; those running finish, and
/// what ran is in the output files (`cancelling`, then `cancelled`). Cancelling a batch
/// that is cancelling or cancelled answers it as it is.
#[utoipa::path(post, path = "/batches/{batch_id}/cancel", tag = "batches",
    params(("batch_id" = String, Path, description = "The batch's id.")),
    responses(
        (status = 200, description = "The batch, `cancelling` (or already `cancelled`).", body = Batch),
        (status = 409, description = "The batch has ended (`batch_not_cancellable`).", body = ErrorResponse),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<Batch>, ApiError> {
    let batch = lookup(&state, &caller, &id)?;
    let t = BatchTransition {
        from: &[BatchStatus::Validating, BatchStatus::InProgress],
        to: BatchStatus::Cancelling,
        at: crate::unix_now(),
        total: None,
        errors: None,
    };
    if state.store.transition_batch(&id, &t).map_err(ApiError::internal)? {
        state.batches.wake();
        tracing::info!(batch_id = %id, "batch cancelling");
    } else if !matches!(lookup(&state, &caller, &id)?.status, BatchStatus::Cancelling | BatchStatus::Cancelled) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "invalid_request_error",
            format!("Cannot cancel a batch with status '{}'.", batch.status.as_str()),
        )
        .param("batch_id")
        .code("batch_not_cancellable"));
    }
    Ok(axum::Json(lookup(&state, &caller, &id)?.into()))
}

/// `GET /v1/batches`: the caller's tenant's batches, newest first.
#[utoipa::path(get, path = "/batches", tag = "batches", params(ListQuery),
    responses((status = 200, description = "A page of batches.", body = BatchList)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<BatchList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("Invalid query string: {}", e.body_text())))?;
    let limit: u32 = match q.limit.as_deref() {
        None => 20,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("'limit' must be an integer from 1 to 100.").param("limit"))?,
    };
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    let mut page = state
        .store
        .list_batches(&caller.tenant, after, limit + 1)
        .map_err(ApiError::internal)?
        // None only for an `after` that is not one of the tenant's batches.
        .ok_or_else(|| ApiError::invalid("'after' does not name one of your batches.").param("after"))?;
    let has_more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let data: Vec<Batch> = page.into_iter().map(Batch::from).collect();
    Ok(axum::Json(BatchList {
        object: "list",
        first_id: data.first().map(|b| b.id.clone()),
        last_id: data.last().map(|b| b.id.clone()),
        has_more,
        data,
    }))
}

/// Runs batch lines through the inference endpoints' code, for the batch worker.
pub struct LineExecutor {
    /// Installed models.
    pub inference: Arc<Inference>,
    /// The handlers.
    pub gateway: Gateway,
    /// For the tenant's budget.
    pub store: Arc<dyn MetadataStore>,
    /// What the tenant spent.
    pub meter: Arc<Meter>,
}

impl crate::batches::Executor for LineExecutor {
    fn execute(&self, line: Line) -> BoxFuture<'static, (u16, Value)> {
        let Line { tenant, key_id, url, body } = line;
        let who = Principal { tenant, key_id, batch: true };
        let (inference, gateway, store, meter) =
            (self.inference.clone(), self.gateway.clone(), self.store.clone(), self.meter.clone());
        Box::pin(async move {
            let result = async {
                // Read per line: the operator may change the budget while a batch runs.
                let budget = store.tenant(&who.tenant).map_err(ApiError::internal)?.and_then(|t| t.monthly_budget_nano_usd);
                super::ratelimit::check_budget(&meter, &who.tenant, budget).await?;
                super::inference::execute_line(&inference, &gateway, &who, &url, body).await
            }
            .await;
            match result {
                Ok(answer) => (200, answer),
                Err(e) => {
                    let (status, body) = e.into_parts();
                    (status.as_u16(), serde_json::to_value(body).unwrap_or(Value::Null))
                }
            }
        })
    }
}
