//! `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and `/v1/models`.
//!
//! The host authenticates, checks the body is a JSON object naming an installed model,
//! and hands the raw body to the handler component, which owns every OpenAI semantic.
//! Streams: the handler pushes chunks through `output.send`; they become server-sent
//! events, ended by `data: [DONE]`. A client that goes away closes the channel, and the
//! handler stops generating at its next `send` and returns what it used, which is metered
//! (a handler that does not return is aborted after [`STREAM_GRACE`]). A non-streamed
//! request whose client goes away is dropped by hyper, and with it the [`HandlerTask`],
//! which aborts the handler: nobody is left to read its answer.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::error::{ApiError, ErrorResponse};
use super::extract::Json;
use super::openapi::inference::{
    ChatCompletion, ChatCompletionEvents, ChatCompletionRequest, Completion, CompletionEvents, CompletionRequest, EmbeddingList,
    EmbeddingRequest, ListObject, Model as ModelObject, ModelKind, ModelList, ModelObject as ModelTag, ModelPricing,
};
use super::{AppState, Caller};
use crate::gateway::{Endpoint, FUNCTION_MODEL_PREFIX, HandlerResult, Unrouted};
use crate::inference::{Inference, Model};
use crate::ratelimit::Ticket;
use crate::runtime::HandlerError;
use crate::store::{FunctionKind, FunctionRecord};

impl From<HandlerError> for ApiError {
    fn from(e: HandlerError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind: &'static str = match e.kind.as_str() {
            "invalid_request_error" => "invalid_request_error",
            "not_found_error" => "not_found_error",
            "rate_limit_error" => "rate_limit_error",
            "permission_error" => "permission_error",
            _ if status.is_client_error() => "invalid_request_error",
            _ => "server_error",
        };
        let mut out = ApiError::new(status, kind, e.message);
        out.param = e.param;
        out.code = e.code.map(Into::into);
        out
    }
}

/// `POST /v1/chat/completions`. A body naming `knowledge_bases` goes to the RAG handler,
/// which searches them (as the caller's tenant) before generating.
#[utoipa::path(post, path = "/chat/completions", tag = "inference", request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events of \
            `chat.completion.chunk` objects (`ChatCompletionChunk`) ended by `data: [DONE]`.",
            content((ChatCompletion = "application/json"), (ChatCompletionEvents = "text/event-stream"))),
        (status = 404, description = "No such model (`model_not_found`) or knowledge base.", body = ErrorResponse),
        (status = 502, description = "A chat function failed (`function_failed`).", body = ErrorResponse),
        (status = 504, description = "Past the server's time or CPU limit for one request.", body = ErrorResponse),
    ))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ticket: Option<Extension<Arc<Ticket>>>,
    OriginalUri(uri): OriginalUri,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    run(&state, &caller, ticket.map(|t| t.0), Endpoint::Completions, uri.path(), body, None).await
}

/// `POST /v1/completions`, the legacy text completions (the RAG handler refuses them).
#[utoipa::path(post, path = "/completions", tag = "inference", request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events of \
            `text_completion` objects ended by `data: [DONE]`.",
            content((Completion = "application/json"), (CompletionEvents = "text/event-stream"))),
        (status = 404, description = "No such model (`model_not_found`).", body = ErrorResponse),
        (status = 504, description = "Past the server's time or CPU limit for one request.", body = ErrorResponse),
    ))]
pub async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ticket: Option<Extension<Arc<Ticket>>>,
    OriginalUri(uri): OriginalUri,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    run(&state, &caller, ticket.map(|t| t.0), Endpoint::Completions, uri.path(), body, None).await
}

/// `POST /v1/embeddings`.
#[utoipa::path(post, path = "/embeddings", tag = "inference", request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "One embedding per input.", body = EmbeddingList),
        (status = 404, description = "No such model (`model_not_found`).", body = ErrorResponse),
        (status = 504, description = "Past the server's time or CPU limit for one request.", body = ErrorResponse),
    ))]
pub async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ticket: Option<Extension<Arc<Ticket>>>,
    OriginalUri(uri): OriginalUri,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    run(&state, &caller, ticket.map(|t| t.0), Endpoint::Embeddings, uri.path(), body, None).await
}

/// What [`precheck`] found.
struct Checked {
    stream: bool,
    /// The installed model named, by its canonical id; `None` for a chat function (whose
    /// names are its tenant's, so its metrics count under `function`).
    installed: Option<String>,
}

/// Checks what the host must know before a handler runs: a JSON object, a model that
/// is installed (or a chat function's id), and a boolean `stream`.
fn precheck(inference: &Inference, body: &Value) -> Result<Checked, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::invalid("The request body must be a JSON object."))?;
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => return Err(ApiError::invalid("'model' must be a non-empty string.").param("model")),
        None => return Err(ApiError::invalid("you must provide a model parameter").param("model")),
    };
    // A chat function's model id (`fn:NAME`) is resolved with the caller's tenant.
    let installed = if model.starts_with(FUNCTION_MODEL_PREFIX) {
        None
    } else {
        let m = inference.get(model).ok_or_else(|| model_not_found(inference, model))?;
        Some(m.model.manifest.id.clone())
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("'stream' must be a boolean.").param("stream")),
    };
    Ok(Checked { stream, installed })
}

/// Sees what a request answered: the whole body, or each event of a stream (the
/// Responses API stores its responses from here).
pub(super) type Observer = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs a request through its handler and answers it, as JSON or server-sent events.
pub(super) async fn run(
    state: &AppState,
    caller: &Caller,
    ticket: Option<Arc<Ticket>>,
    endpoint: Endpoint,
    path: &str,
    body: Value,
    observer: Option<Observer>,
) -> Result<Response, ApiError> {
    let arrived = std::time::Instant::now();
    let Checked { stream, installed } = precheck(&state.inference, &body)?;
    super::ratelimit::admit_inference(state, caller, ticket.as_deref(), &body).await?;
    let target = state.gateway.route(endpoint, &caller.tenant, &body).map_err(unrouted)?;
    let (tx, mut rx) = if stream {
        let (tx, rx) = mpsc::channel::<String>(64);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (gateway, who, path) = (state.gateway.clone(), caller.principal(), path.to_owned());
    let queue = installed.as_deref().and_then(|m| state.runtime.admission().model_queue(m));
    // A task of its own so a stream's handler runs while its events are written; it
    // keeps the request's interactive admission and its span (the request id in its logs).
    let call = crate::runtime::interactive(async move {
        // The model's turn first (its own queue, when bounded), then a server slot.
        let _turn = match &queue {
            Some(q) => Some(q.enter().await?),
            None => None,
        };
        gateway.handle(&who, &target, &path, &body, tx).await
    });
    let grace = if stream { STREAM_GRACE } else { std::time::Duration::ZERO };
    let task = HandlerTask { handle: tokio::spawn(call.in_current_span()), grace, ticket };

    let Some(mut chunks) = rx.take() else {
        let response = join(task).await??;
        tracing::debug!(
            prompt_tokens = response.usage.prompt_tokens,
            completion_tokens = response.usage.completion_tokens,
            "handled"
        );
        let value: Value = serde_json::from_str(&response.body)
            .map_err(|e| ApiError::internal(format!("handler returned invalid JSON: {e}")))?;
        if let Some(observe) = &observer {
            observe(&response.body);
        }
        return Ok(axum::Json(value).into_response());
    };

    // Answer with an error status if the handler fails before its first chunk.
    let first = chunks.recv().await;
    let Some(first) = first else {
        join(task).await??;
        return Err(ApiError::internal("handler finished a stream without sending anything"));
    };
    let clock = crate::metrics::TokenClock::new(installed.unwrap_or_else(|| "function".to_owned()), arrived);
    let events = async_stream(first, chunks, task, clock, observer);
    Ok(Sse::new(events).into_response())
}

fn unrouted(e: Unrouted) -> ApiError {
    match e {
        Unrouted::HandlerMissing(name) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("The {name} handler component is not installed on this server."),
        )
        .code("handler_unavailable"),
        Unrouted::NoSuchFunction(model) => ApiError::not_found(format!(
            "The model `{model}` does not exist: no chat function of that name is deployed (kind \"chat\", see /v1/functions)."
        ))
        .param("model")
        .code("model_not_found"),
    }
}

/// Runs a request line of a batch (crate::batches) as its endpoint would run the same
/// body from `who`: the same checks, routing and handler, but never streamed, outside the
/// interactive scope (an instance slot only while no API request waits for one) and past
/// the per-model queue (the batch worker bounds its own lines).
pub(super) async fn execute_line(
    inference: &Inference,
    gateway: &crate::gateway::Gateway,
    who: &crate::gateway::Principal,
    path: &str,
    body: Value,
) -> Result<Value, ApiError> {
    let Checked { stream, .. } = precheck(inference, &body)?;
    if stream {
        return Err(
            ApiError::invalid("Streaming is not available in a batch: leave 'stream' out or set it to false.").param("stream")
        );
    }
    let endpoint = if path == "/v1/embeddings" { Endpoint::Embeddings } else { Endpoint::Completions };
    let target = gateway.route(endpoint, &who.tenant, &body).map_err(unrouted)?;
    let response = match gateway.handle(who, &target, path, &body, None).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(ApiError::from(e)),
        Err(e) => return Err(ApiError::from_handler(e)),
    };
    serde_json::from_str(&response.body).map_err(|e| ApiError::internal(format!("handler returned invalid JSON: {e}")))
}

/// How long a stream's handler has, once its client went away, to notice (its next
/// `output.send` fails) and return what it used for metering before it is aborted.
const STREAM_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The handler's task, stopped when dropped unfinished (the client went away): aborted at
/// once, or after `grace` if it has not returned by then.
struct HandlerTask {
    handle: tokio::task::JoinHandle<HandlerResult>,
    grace: std::time::Duration,
    /// The request's rate-limit admission: its token reservation ends with the handler,
    /// whose real usage has been metered by then.
    ticket: Option<Arc<Ticket>>,
}

impl Drop for HandlerTask {
    fn drop(&mut self) {
        if self.handle.is_finished() {
            return;
        }
        tracing::info!("client went away: handler stopped");
        let abort = self.handle.abort_handle();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if !self.grace.is_zero() => {
                let grace = self.grace;
                rt.spawn(async move {
                    tokio::time::sleep(grace).await;
                    abort.abort();
                });
            }
            _ => abort.abort(),
        }
    }
}

async fn join(mut task: HandlerTask) -> Result<Result<crate::runtime::HandlerResponse, ApiError>, ApiError> {
    let result = (&mut task.handle).await;
    if let Some(ticket) = &task.ticket {
        ticket.release_tokens();
    }
    match result {
        Err(e) => Err(ApiError::internal(format!("handler task failed: {e}"))),
        Ok(Err(e)) => Err(ApiError::from_handler(e)),
        Ok(Ok(r)) => Ok(r.map_err(ApiError::from)),
    }
}

/// The SSE body: chunks as they come, an error event if the handler fails mid-stream,
/// then `[DONE]`. Dropping it (client gone) drops the receiver, which stops the handler.
fn async_stream(
    first: String,
    rx: mpsc::Receiver<String>,
    task: HandlerTask,
    clock: crate::metrics::TokenClock,
    observer: Option<Observer>,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    enum Phase {
        First(String, mpsc::Receiver<String>, HandlerTask, crate::metrics::TokenClock),
        Chunks(mpsc::Receiver<String>, HandlerTask, crate::metrics::TokenClock),
        Done,
    }
    let seen = move |chunk: &str| {
        if let Some(observe) = &observer {
            observe(chunk);
        }
    };
    futures::stream::unfold(Phase::First(first, rx, task, clock), move |phase| {
        let seen = seen.clone();
        async move {
            match phase {
                Phase::First(chunk, rx, task, mut clock) => {
                    clock.event(&chunk);
                    seen(&chunk);
                    Some((Ok(Event::default().data(chunk)), Phase::Chunks(rx, task, clock)))
                }
                Phase::Chunks(mut rx, task, mut clock) => match rx.recv().await {
                    Some(chunk) => {
                        clock.event(&chunk);
                        seen(&chunk);
                        Some((Ok(Event::default().data(chunk)), Phase::Chunks(rx, task, clock)))
                    }
                    None => {
                        let end = match join(task).await {
                            Ok(Ok(_)) => Event::default().data("[DONE]"),
                            Ok(Err(e)) | Err(e) => Event::default().data(
                                json!({"error": {
                                    "message": e.message, "type": e.kind, "param": e.param, "code": e.code
                                }})
                                .to_string(),
                            ),
                        };
                        Some((Ok(end), Phase::Done))
                    }
                },
                Phase::Done => None,
            }
        }
    })
}

fn model_json(m: &Model) -> ModelObject {
    ModelObject {
        id: m.manifest.id.clone(),
        object: ModelTag::Model,
        created: installed_at(m) as i64,
        owned_by: m.manifest.owned_by.clone(),
        kind: match m.manifest.kind {
            crate::inference::ModelKind::Chat => ModelKind::Chat,
            crate::inference::ModelKind::Embedding => ModelKind::Embedding,
        },
        context_length: Some(m.context_length()),
        aliases: Some(m.manifest.aliases.clone()),
        pricing: Some(ModelPricing { input_per_million: m.manifest.price.input, output_per_million: m.manifest.price.output }),
        description: None,
    }
}

/// When the model's files were written (unix seconds), as OpenAI's `created`.
fn installed_at(m: &Model) -> u64 {
    m.installed
        .as_ref()
        .and_then(|i| std::fs::metadata(i.graph_path()).ok())
        .and_then(|meta| meta.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// `GET /v1/models`: the models this server can serve, and the caller's tenant's chat
/// functions (`fn:NAME`). Clients offer this list to their users, so catalogue entries that
/// are not installed (listed by `tensoras models list`) stay out of it: each would answer
/// `model_not_found`.
#[utoipa::path(get, path = "/models", tag = "inference",
    responses((status = 200, description = "Installed models and chat functions.", body = ModelList)))]
pub async fn list_models(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> axum::Json<ModelList> {
    let mut data: Vec<ModelObject> =
        state.inference.catalog().all().filter(|m| state.inference.get(&m.manifest.id).is_some()).map(model_json).collect();
    data.extend(state.functions.list(&caller.tenant).iter().filter(|f| f.kind == FunctionKind::Chat).map(function_model_json));
    data.sort_by(|a, b| a.id.cmp(&b.id));
    axum::Json(ModelList { object: ListObject::List, data })
}

/// `GET /v1/models/{id}`: an installed model, by id or alias, or a chat function.
#[utoipa::path(get, path = "/models/{id}", tag = "inference",
    params(("id" = String, Path, description = "A model's id or alias, or `fn:NAME` for a chat function.")),
    responses((status = 200, description = "The model.", body = ModelObject)))]
pub async fn get_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<ModelObject>, ApiError> {
    if let Some(name) = id.strip_prefix(FUNCTION_MODEL_PREFIX) {
        return match state.functions.get(&caller.tenant, name) {
            Some(f) if f.record.kind == FunctionKind::Chat => Ok(axum::Json(function_model_json(&f.record))),
            _ => Err(model_not_found(&state.inference, &id)),
        };
    }
    match state.inference.get(&id) {
        Some(loaded) => Ok(axum::Json(model_json(&loaded.model))),
        None => Err(model_not_found(&state.inference, &id)),
    }
}

/// A chat function as `/v1/models` lists it.
fn function_model_json(f: &FunctionRecord) -> ModelObject {
    ModelObject {
        id: format!("{FUNCTION_MODEL_PREFIX}{}", f.name),
        object: ModelTag::Model,
        created: f.created_at,
        owned_by: f.tenant.clone(),
        kind: ModelKind::Function,
        context_length: None,
        aliases: None,
        pricing: None,
        description: Some(f.description.clone()),
    }
}

/// 404 `model_not_found`, saying how to install the model when the catalogue has it.
fn model_not_found(inference: &Inference, model: &str) -> ApiError {
    let message = match inference.catalog().get(model) {
        Some(m) => format!(
            "The model `{model}` is in the catalogue but not installed on this server. Install it with \
             `tensoras models import` (models directory: see `tensoras models list`); installed models are listed \
             at /v1/models (id `{}`).",
            m.manifest.id
        ),
        None => format!("The model `{model}` does not exist or you do not have access to it."),
    };
    ApiError::not_found(message).param("model").code("model_not_found")
}
