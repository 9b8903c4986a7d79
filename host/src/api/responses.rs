//! `/v1/responses`: OpenAI's Responses API. The responses handler component
//! (`functions/handlers/responses`, over chat-core) owns the request and answer shapes;
//! the host keeps the responses (`store`, default true) per tenant, continues a
//! `previous_response_id` by putting that response's conversation in front of `input`,
//! and answers `GET`/`DELETE` of a stored response and its input items.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{OriginalUri, Path, State};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorResponse};
use super::extract::Json;
use super::inference::Observer;
use super::{AppState, Caller};
use crate::gateway::Endpoint;
use crate::ratelimit::Ticket;
use crate::store::{MetadataStore, StoredResponse};

/// The body of `POST /v1/responses` (read by the responses handler; documentation only).
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the body the handler component parses.
pub struct CreateResponse {
    /// An installed chat model.
    model: String,
    /// A string (one user message) or an array of input items: messages
    /// (`{role, content}`, content a string or `input_text` parts), `function_call` and
    /// `function_call_output` items.
    #[schema(value_type = Value)]
    input: Value,
    /// A system message put first (not carried to a later `previous_response_id`).
    instructions: Option<String>,
    /// Most tokens to generate.
    #[schema(minimum = 1, maximum = 9223372036854775807i64)]
    max_output_tokens: Option<i64>,
    /// Function tools `{type: "function", name, description, parameters, strict}`, and a
    /// `{type: "file_search", vector_store_ids, max_num_results, ranking_options, filters}`
    /// tool whose `vector_store_ids` are knowledge-base ids.
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Value>,
    /// `{format: {type: "text" | "json_object" | "json_schema", name, schema, strict}}`.
    #[schema(value_type = Option<Object>)]
    text: Option<Value>,
    /// Continue the conversation of a stored response of this tenant.
    previous_response_id: Option<String>,
    /// Keep the response for `previous_response_id` and `GET` (default true).
    store: Option<bool>,
    /// Server-sent events (`response.created`, `response.output_text.delta`, ...,
    /// `response.completed`).
    stream: Option<bool>,
}

/// OpenAI's Response object (more fields than listed here are answered).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Documents the object the handler component writes.
pub struct ResponseObject {
    /// `resp_...`.
    id: String,
    #[schema(value_type = String, pattern = "^response$")]
    object: &'static str,
    created_at: i64,
    /// `completed` or `incomplete` (`incomplete_details.reason`: `max_output_tokens`).
    status: String,
    model: String,
    /// `message` and `function_call` items.
    #[schema(value_type = Vec<Object>)]
    output: Value,
    #[schema(value_type = Option<Object>)]
    usage: Value,
}

/// What a delete answers.
#[derive(Serialize, ToSchema)]
pub struct ResponseDeleted {
    id: String,
    #[schema(value_type = String, pattern = "^response$")]
    object: &'static str,
    deleted: bool,
}

/// A response's input items, oldest first.
#[derive(Serialize, ToSchema)]
pub struct InputItemList {
    #[schema(value_type = String, pattern = "^list$")]
    object: &'static str,
    #[schema(value_type = Vec<Object>)]
    data: Value,
    first_id: Option<String>,
    last_id: Option<String>,
    has_more: bool,
}

fn response_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Response with id '{id}' not found.")).param("response_id").code("response_not_found")
}

/// `input` as an array of items, in the shape input items are listed in: a string is one
/// user message, and a message's string content one text part.
fn items(input: &Value) -> Vec<Value> {
    let message = |role: &str, text: &str| {
        let part = if role == "assistant" { "output_text" } else { "input_text" };
        // Listed items carry an id and a status, as OpenAI's do (the SDKs tell item types
        // apart by them).
        let id = crate::ids::random_id::<12>("msg_").unwrap_or_default();
        json!({"type": "message", "id": id, "status": "completed", "role": role, "content": [{"type": part, "text": text}]})
    };
    match input {
        Value::String(text) => vec![message("user", text)],
        Value::Array(items) => items
            .iter()
            .map(|item| match (item.get("role").and_then(Value::as_str), item.get("content").and_then(Value::as_str)) {
                (Some(role), Some(text)) if item.get("type").is_none_or(|t| t == "message") => message(role, text),
                _ => item.clone(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `POST /v1/responses`.
#[utoipa::path(post, path = "/responses", tag = "inference", request_body = CreateResponse,
    responses(
        (status = 200, description = "The response; with `stream: true`, server-sent events of the Responses \
            API ended by `data: [DONE]`.", body = ResponseObject),
        (status = 404, description = "No such model (`model_not_found`), previous response (`response_not_found`) \
            or knowledge base of a `file_search` tool (`knowledge_base_not_found`).",
            body = ErrorResponse),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ticket: Option<Extension<Arc<Ticket>>>,
    OriginalUri(uri): OriginalUri,
    Json(mut body): Json<Value>,
) -> Result<Response, ApiError> {
    let obj = body.as_object_mut().ok_or_else(|| ApiError::invalid("The request body must be a JSON object."))?;
    let keep = match obj.get("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("'store' must be a boolean.").param("store")),
    };
    let mut conversation = match obj.get("previous_response_id") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(id)) => {
            let prior = state.store.get_response(&caller.tenant, id).map_err(ApiError::internal)?;
            let prior = prior.ok_or_else(|| response_not_found(id).param("previous_response_id"))?;
            // What that response was generated from, then what it answered.
            let mut items = items(&prior.input);
            items.extend(items_of_output(&prior.response));
            items
        }
        Some(_) => return Err(ApiError::invalid("'previous_response_id' must be a string.").param("previous_response_id")),
    };
    if let Some(input) = obj.get("input").filter(|i| i.is_string() || i.is_array()) {
        conversation.extend(items(input));
        obj.insert("input".into(), Value::Array(conversation.clone()));
    }
    let observer: Option<Observer> = keep.then(|| keeper(state.store.clone(), caller.tenant.clone(), conversation));
    super::inference::run(&state, &caller, ticket.map(|t| t.0), Endpoint::Responses, uri.path(), body, observer).await
}

/// The output items of a stored Response object.
fn items_of_output(response: &Value) -> Vec<Value> {
    response.get("output").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// Stores the finished response of a request (a whole body, or a stream's
/// `response.completed` / `response.incomplete` event) with the items it was made from.
fn keeper(store: Arc<dyn MetadataStore>, tenant: String, input: Vec<Value>) -> Observer {
    let input = Value::Array(input);
    Arc::new(move |answer: &str| {
        // Only a final answer is stored; every other event is passed over cheaply.
        if !answer.contains("\"response\"") {
            return;
        }
        let Ok(value) = serde_json::from_str::<Value>(answer) else { return };
        let response = match value.get("type").and_then(Value::as_str) {
            Some("response.completed" | "response.incomplete") => value["response"].clone(),
            None if value["object"] == "response" => value,
            _ => return,
        };
        let Some(id) = response["id"].as_str().map(str::to_owned) else { return };
        let created_at = response["created_at"].as_i64().unwrap_or_else(crate::unix_now);
        let record = StoredResponse { id, tenant: tenant.clone(), created_at, response, input: input.clone() };
        if let Err(e) = store.put_response(&record) {
            tracing::error!(response_id = %record.id, "storing a response: {e}");
        }
    })
}

fn lookup(state: &AppState, caller: &Caller, id: &str) -> Result<StoredResponse, ApiError> {
    state.store.get_response(&caller.tenant, id).map_err(ApiError::internal)?.ok_or_else(|| response_not_found(id))
}

/// `GET /v1/responses/{response_id}`: a stored response.
#[utoipa::path(get, path = "/responses/{response_id}", tag = "inference",
    params(("response_id" = String, Path, description = "The response's id.")),
    responses((status = 200, description = "The response.", body = ResponseObject)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(lookup(&state, &caller, &id)?.response))
}

/// `GET /v1/responses/{response_id}/input_items`: what a stored response was made from,
/// the conversation of its `previous_response_id` included.
#[utoipa::path(get, path = "/responses/{response_id}/input_items", tag = "inference",
    params(("response_id" = String, Path, description = "The response's id.")),
    responses((status = 200, description = "Its input items, oldest first.", body = InputItemList)))]
pub async fn input_items(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<InputItemList>, ApiError> {
    let stored = lookup(&state, &caller, &id)?;
    let data = items(&stored.input);
    let id_of = |item: Option<&Value>| item.and_then(|i| i.get("id")).and_then(Value::as_str).map(str::to_owned);
    Ok(axum::Json(InputItemList {
        object: "list",
        first_id: id_of(data.first()),
        last_id: id_of(data.last()),
        has_more: false,
        data: Value::Array(data),
    }))
}

/// `DELETE /v1/responses/{response_id}`.
#[utoipa::path(delete, path = "/responses/{response_id}", tag = "inference",
    params(("response_id" = String, Path, description = "The response's id.")),
    responses((status = 200, description = "Deleted.", body = ResponseDeleted)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<ResponseDeleted>, ApiError> {
    if !state.store.delete_response(&caller.tenant, &id).map_err(ApiError::internal)? {
        return Err(response_not_found(&id));
    }
    Ok(axum::Json(ResponseDeleted { id, object: "response", deleted: true }))
}
