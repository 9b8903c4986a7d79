//! `/v1/functions`: deploy, list, get and delete user components; call a tool with
//! JSON arguments; serve an HTTP function with bodies streamed both ways.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Json, body_rejection};
use super::{AppState, Caller};
use crate::functions::{DeployError, Executable, Manifest};
use crate::runtime::{HttpRequestBody, ToolOutcome};
use crate::store::{FunctionKind, FunctionRecord};

fn function_json(f: &FunctionRecord) -> Value {
    let mut v = json!({
        "id": f.name,
        "object": "function",
        "name": f.name,
        "version": f.version,
        "kind": f.kind.as_str(),
        "description": f.description,
        "limits": f.limits,
        "grants": f.grants,
        "sha256": f.sha256,
        "size_bytes": f.size_bytes,
        "created_at": f.created_at,
    });
    match f.kind {
        FunctionKind::Tool => v["parameters"] = f.parameters.clone().unwrap_or(Value::Null),
        FunctionKind::Http => v["url"] = Value::String(format!("/v1/functions/{}/invoke", f.name)),
        FunctionKind::Chat => {
            v["model"] = Value::String(format!("fn:{}", f.name));
            if let Some(handler) = &f.replaces {
                v["replaces"] = Value::String(handler.clone());
            }
        }
    }
    v
}

/// A function called the way another kind is: the message says how to call this one.
fn wrong_kind(f: &FunctionRecord) -> ApiError {
    let name = &f.name;
    let how = match f.kind {
        FunctionKind::Tool => format!("'{name}' is a tool; call it with POST /v1/functions/{name}/call"),
        FunctionKind::Http => format!("'{name}' is an HTTP function; send requests to /v1/functions/{name}/invoke"),
        FunctionKind::Chat => format!("'{name}' is a chat function; use it as model \"fn:{name}\" on /v1/chat/completions"),
    };
    ApiError::invalid(how).code("wrong_function_kind")
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("No function named '{name}'.")).code("function_not_found")
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Invalid { param, message } => ApiError::invalid(message).param(param),
            DeployError::NotFound(m) => ApiError::not_found(m).code("function_not_found"),
            DeployError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_request_error", m).param("replaces").code("handler_already_replaced")
            }
            DeployError::Internal(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

/// `POST /v1/functions`: multipart with `file` (the component) and `manifest` (JSON);
/// `name`, `kind`, `description` and `parameters` may also come as separate fields. Needs
/// the deploy permission (tenant admin, operator, or the `functions:deploy` scope).
pub async fn deploy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    mut form: Multipart,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    // Before the body is read: a key without the permission does not get to upload.
    caller.require_deploy()?;
    let mut manifest = Manifest::default();
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut wasm = Vec::new();
    let field_err = |e: axum::extract::multipart::MultipartError| body_rejection(e.status(), e.body_text());
    while let Some(field) = form.next_field().await.map_err(field_err)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => wasm = field.bytes().await.map_err(field_err)?.to_vec(),
            "manifest" => {
                let text = field.text().await.map_err(field_err)?;
                manifest = serde_json::from_str(&text)
                    .map_err(|e| ApiError::invalid(format!("manifest is not a valid manifest: {e}")).param("manifest"))?;
            }
            "name" | "kind" | "description" | "parameters" => {
                overrides.push((name, field.text().await.map_err(field_err)?));
            }
            other => return Err(ApiError::invalid(format!("unexpected form field '{other}'")).param(other.to_owned())),
        }
    }
    for (field, value) in overrides {
        match field.as_str() {
            "name" => manifest.name = value,
            "kind" => manifest.kind = value,
            "description" => manifest.description = Some(value),
            _ => {
                manifest.parameters = Some(
                    serde_json::from_str(&value)
                        .map_err(|e| ApiError::invalid(format!("parameters is not JSON: {e}")).param("parameters"))?,
                )
            }
        }
    }
    let record = state.functions.deploy(&caller.tenant, manifest, wasm).await?;
    Ok((StatusCode::CREATED, axum::Json(function_json(&record))))
}

/// `GET /v1/functions`.
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> axum::Json<Value> {
    let data: Vec<Value> = state.functions.list(&caller.tenant).iter().map(function_json).collect();
    axum::Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/functions/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let f = state.functions.get(&caller.tenant, &name).ok_or_else(|| not_found(&name))?;
    Ok(axum::Json(function_json(&f.record)))
}

/// `DELETE /v1/functions/{name}`: needs the deploy permission, like deploying.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    caller.require_deploy()?;
    let existed = state.reserve.freeing(|| state.functions.delete(&caller.tenant, &name)).await;
    if !existed.map_err(|e| ApiError::internal(format!("{e:#}")))? {
        return Err(not_found(&name));
    }
    super::rearm_reserve(&state).await;
    Ok(axum::Json(json!({"id": name, "object": "function", "deleted": true})))
}

/// `GET /v1/functions/{name}/versions`: every kept version, oldest first, the serving one
/// marked `active`.
pub async fn versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let active = state.functions.get(&caller.tenant, &name).ok_or_else(|| not_found(&name))?.record.version;
    let versions = state.functions.versions(&caller.tenant, &name).map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let data: Vec<Value> = versions
        .iter()
        .map(|r| {
            let mut v = function_json(r);
            v["object"] = json!("function.version");
            v["active"] = json!(r.version == active);
            v
        })
        .collect();
    Ok(axum::Json(json!({"object": "list", "data": data})))
}

/// The body of `POST /v1/functions/{name}/rollback`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    version: u32,
}

/// `POST /v1/functions/{name}/rollback` with `{"version": N}`: version N serves from now
/// on; requests already running finish on the version they started with.
pub async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<RollbackBody>,
) -> Result<axum::Json<Value>, ApiError> {
    caller.require_deploy()?;
    let record = state.functions.rollback(&caller.tenant, &name, body.version).await?;
    Ok(axum::Json(function_json(&record)))
}

/// The query of `GET /v1/functions/{name}/logs`.
#[derive(Debug, serde::Deserialize)]
pub struct LogsQuery {
    /// Only invocations with a greater id (what a follower has not seen yet).
    after: Option<u64>,
    /// Most invocations to return (1..=200, default 50).
    limit: Option<usize>,
}

/// `GET /v1/functions/{name}/logs`: the function's recent invocations, oldest first, with
/// what each wrote to stdout and stderr, and its counts since it was loaded.
pub async fn logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::invalid(format!("Invalid query: {e}")))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=crate::functions::logs::KEEP).contains(&limit) {
        return Err(ApiError::invalid(format!("'limit' must be 1 to {}.", crate::functions::logs::KEEP)).param("limit"));
    }
    if state.functions.get(&caller.tenant, &name).is_none() {
        return Err(not_found(&name));
    }
    let (entries, stats) = state.functions.logs(&caller.tenant, &name, query.after, limit);
    let data: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "object": "function.invocation",
                "started_at_ms": e.invocation.started_at_ms,
                "duration_ms": e.invocation.duration.as_secs_f64() * 1000.0,
                "status": if e.invocation.error.is_some() { "error" } else { "ok" },
                "error": e.invocation.error,
                "output": e.invocation.output,
            })
        })
        .collect();
    let mean_ms = if stats.invocations == 0 { 0.0 } else { stats.total_ms / stats.invocations as f64 };
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "stats": {"invocations": stats.invocations, "errors": stats.errors, "mean_duration_ms": mean_ms},
    })))
}

/// `POST /v1/functions/{name}/call`: the body is the tool's arguments object.
pub async fn call(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(arguments): Json<Value>,
) -> Result<axum::Json<Value>, ApiError> {
    let f = state.functions.get(&caller.tenant, &name).ok_or_else(|| not_found(&name))?;
    let Executable::Tool(tool) = &f.exec else {
        return Err(wrong_kind(&f.record));
    };
    if !arguments.is_object() {
        return Err(ApiError::invalid("The request body must be a JSON object of tool arguments.").param("arguments"));
    }
    let started = std::time::Instant::now();
    let services = state.gateway.on_behalf(caller.principal());
    match state.runtime.call_tool(tool, &arguments.to_string(), Some(services)).await? {
        ToolOutcome::Ok(output) => Ok(axum::Json(json!({
            "object": "function.result",
            "name": name,
            "output": output,
            "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        }))),
        ToolOutcome::InvalidArguments(m) => Err(ApiError::invalid(format!("Invalid arguments for '{name}': {m}"))
            .param("arguments")
            .code("invalid_tool_arguments")),
        ToolOutcome::Refused(m) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "permission_error", format!("Function '{name}' failed: {m}"))
                .code("permission_denied"))
        }
        ToolOutcome::Failed(m) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "function_error", format!("Function '{name}' failed: {m}"))
                .code("tool_failed"))
        }
    }
}

/// `ANY /v1/functions/{name}/invoke[/{*rest}]`: the function sees `/{rest}?{query}`,
/// without the caller's `Authorization` header.
pub async fn invoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(params): Path<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    let name = params.get("name").cloned().unwrap_or_default();
    let f = state.functions.get(&caller.tenant, &name).ok_or_else(|| not_found(&name))?;
    let Executable::Http(http_fn) = &f.exec else {
        return Err(wrong_kind(&f.record));
    };
    let limit = state.config.max_body_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(body_rejection(StatusCode::PAYLOAD_TOO_LARGE, String::new()));
    }
    let (mut parts, body) = req.into_parts();
    let rest = params.get("rest").map(String::as_str).unwrap_or("");
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    parts.uri = format!("http://{host}{path_and_query}")
        .parse()
        .map_err(|_| ApiError::invalid("The request URL could not be forwarded to the function."))?;
    parts.headers.remove(header::AUTHORIZATION);
    let body: HttpRequestBody = http_body_util::Limited::new(body, limit)
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                wasmtime_wasi_http::Error::HttpRequestBodySize(None)
            } else {
                wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
            }
        })
        .boxed_unsync();
    let services = state.gateway.on_behalf(caller.principal());
    let resp = state.runtime.handle_http(http_fn, hyper::Request::from_parts(parts, body), Some(services)).await?;
    Ok(resp.map(Body::new).into_response())
}
