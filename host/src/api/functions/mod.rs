//! `/v1/functions`: deploy, list, get and delete user components; call a tool with
//! JSON arguments; serve an HTTP function with bodies streamed both ways.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use utoipa::ToSchema;

mod wire;

use wire::*;

use super::error::ApiError;
use super::extract::{AnyJson, Json, body_rejection};
use super::{AppState, Caller};
use crate::functions::{DeployError, Executable, Manifest};
use crate::runtime::{HttpRequestBody, ToolOutcome};
use crate::store::{FunctionKind, FunctionRecord};

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
/// the deploy permission (tenant admin, operator, or the `functions:deploy` scope). A name
/// already deployed gets a new version, which serves from then on.
#[utoipa::path(post, path = "/functions", tag = "functions",
    request_body(content = DeployForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The deployed function.", body = FunctionObject),
        (status = 409, description = "Another function already replaces that handler (`handler_already_replaced`).",
            body = super::error::ErrorResponse),
    ))]
pub async fn deploy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    mut form: Multipart,
) -> Result<(StatusCode, axum::Json<FunctionObject>), ApiError> {
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
    Ok((StatusCode::CREATED, axum::Json(FunctionObject::from(&record))))
}

/// `GET /v1/functions`: the caller's tenant's functions.
#[utoipa::path(get, path = "/functions", tag = "functions",
    responses((status = 200, description = "The functions.", body = FunctionList)))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> axum::Json<FunctionList> {
    let data = state.functions.list(&caller.tenant).iter().map(FunctionObject::from).collect();
    axum::Json(FunctionList { object: "list", data })
}

/// `GET /v1/functions/{name}`: a function (the version that serves).
#[utoipa::path(get, path = "/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses((status = 200, description = "The function.", body = FunctionObject)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<FunctionObject>, ApiError> {
    let f = state.functions.get(&caller.tenant, &name).ok_or_else(|| not_found(&name))?;
    Ok(axum::Json(FunctionObject::from(&f.record)))
}

/// `DELETE /v1/functions/{name}`: every version; needs the deploy permission, like deploying.
#[utoipa::path(delete, path = "/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses((status = 200, description = "Deleted, every version.", body = FunctionDeleted)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<FunctionDeleted>, ApiError> {
    caller.require_deploy()?;
    let existed = state.reserve.freeing(|| state.functions.delete(&caller.tenant, &name)).await;
    if !existed.map_err(|e| ApiError::internal(format!("{e:#}")))? {
        return Err(not_found(&name));
    }
    super::rearm_reserve(&state).await;
    Ok(axum::Json(FunctionDeleted { id: name, object: "function", deleted: true }))
}

/// `GET /v1/functions/{name}/versions`: every kept version, oldest first, the serving one
/// marked `active`.
#[utoipa::path(get, path = "/functions/{name}/versions", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses((status = 200, description = "The kept versions, oldest first.", body = FunctionVersionList)))]
pub async fn versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<FunctionVersionList>, ApiError> {
    let active = state.functions.get(&caller.tenant, &name).ok_or_else(|| not_found(&name))?.record.version;
    let versions = state.functions.versions(&caller.tenant, &name).map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let data = versions
        .iter()
        .map(|r| FunctionVersion {
            id: r.name.clone(),
            object: "function.version",
            details: r.into(),
            active: r.version == active,
        })
        .collect();
    Ok(axum::Json(FunctionVersionList { object: "list", data }))
}

/// The body of `POST /v1/functions/{name}/rollback`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// A kept version (`GET /v1/functions/{name}/versions`).
    #[schema(minimum = 1)]
    version: u32,
}

/// `POST /v1/functions/{name}/rollback` with `{"version": N}`: version N serves from now
/// on; requests already running finish on the version they started with.
#[utoipa::path(post, path = "/functions/{name}/rollback", tag = "functions", request_body = RollbackBody,
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "The function, now serving that version.", body = FunctionObject),
        (status = 409, description = "The version replaces a handler another function already replaces \
            (`handler_already_replaced`).", body = super::error::ErrorResponse),
    ))]
pub async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<RollbackBody>,
) -> Result<axum::Json<FunctionObject>, ApiError> {
    caller.require_deploy()?;
    let record = state.functions.rollback(&caller.tenant, &name, body.version).await?;
    Ok(axum::Json(FunctionObject::from(&record)))
}

/// The query of `GET /v1/functions/{name}/logs`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only invocations with a greater id (what a follower has not seen yet).
    after: Option<u64>,
    /// Most invocations to return (1..=200, default 50).
    #[param(minimum = 1, maximum = 200)] // crate::functions::logs::KEEP
    limit: Option<usize>,
}

/// `GET /v1/functions/{name}/logs`: the function's recent invocations, oldest first, with
/// what each wrote to stdout and stderr, and its counts since it was loaded.
#[utoipa::path(get, path = "/functions/{name}/logs", tag = "functions",
    params(("name" = String, Path, description = "The function's name."), LogsQuery),
    responses((status = 200, description = "The recent invocations, oldest first, and the counts.", body = FunctionLogs)))]
pub async fn logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<FunctionLogs>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::invalid(format!("Invalid query: {e}")))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=crate::functions::logs::KEEP).contains(&limit) {
        return Err(ApiError::invalid(format!("'limit' must be 1 to {}.", crate::functions::logs::KEEP)).param("limit"));
    }
    if state.functions.get(&caller.tenant, &name).is_none() {
        return Err(not_found(&name));
    }
    let (entries, stats) = state.functions.logs(&caller.tenant, &name, query.after, limit);
    let data = entries
        .iter()
        .map(|e| FunctionInvocation {
            id: e.id,
            object: "function.invocation",
            started_at_ms: e.invocation.started_at_ms,
            duration_ms: e.invocation.duration.as_secs_f64() * 1000.0,
            status: if e.invocation.error.is_some() { "error" } else { "ok" },
            error: e.invocation.error.clone(),
            output: e.invocation.output.clone(),
        })
        .collect();
    let mean_ms = if stats.invocations == 0 { 0.0 } else { stats.total_ms / stats.invocations as f64 };
    Ok(axum::Json(FunctionLogs {
        object: "list",
        data,
        stats: FunctionLogStats { invocations: stats.invocations, errors: stats.errors, mean_duration_ms: mean_ms },
    }))
}

/// `POST /v1/functions/{name}/call`: calls a tool; the body is its arguments object,
/// checked against its `parameters` by the tool itself.
#[utoipa::path(post, path = "/functions/{name}/call", tag = "functions",
    request_body(content = Object, description = "The tool's arguments: a JSON object its `parameters` describe."),
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "The tool's output.", body = ToolResult),
        (status = 422, description = "The tool ran and reported a failure (`tool_failed`).", body = super::error::ErrorResponse),
        (status = 502, description = "The tool broke its contract (`function_failed`).", body = super::error::ErrorResponse),
        (status = 504, description = "The tool passed its time limit (`function_timeout`) or CPU budget \
            (`function_cpu_limit`).", body = super::error::ErrorResponse),
    ))]
pub async fn call(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    AnyJson(arguments): AnyJson,
) -> Result<axum::Json<ToolResult>, ApiError> {
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
        ToolOutcome::Ok(output) => Ok(axum::Json(ToolResult {
            object: "function.result",
            name,
            output,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        })),
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

/// The captures of an invoke path by name: `name`, and `rest` on the longer route. An alias,
/// as utoipa's axum support reads a `Path<...>` argument as the parameters and cannot read a
/// map; the annotations name them.
type InvokePath = Path<HashMap<String, String>>;

/// `ANY /v1/functions/{name}/invoke[/{*rest}]`: sends the request to an HTTP function,
/// which sees `/{rest}?{query}`, its headers but the caller's `Authorization`, and its body
/// (any, streamed as is); its answer, streamed, is the function's own.
#[utoipa::path(method(get, post, put, patch, delete), path = "/functions/{name}/invoke", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses((status = "default", description = "The function's own answer.")))]
pub async fn invoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(params): InvokePath,
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

/// `ANY /v1/functions/{name}/invoke/{*rest}`: [`invoke`], the function seeing `/{rest}`.
#[utoipa::path(method(get, post, put, patch, delete), path = "/functions/{name}/invoke/{rest}", tag = "functions",
    params(("name" = String, Path, description = "The function's name."),
        ("rest" = String, Path, description = "The rest of the path, handed to the function (may contain '/').")),
    responses((status = "default", description = "The function's own answer.")))]
pub async fn invoke_rest(
    state: State<AppState>,
    caller: Extension<Caller>,
    params: InvokePath,
    req: Request,
) -> Result<Response, ApiError> {
    invoke(state, caller, params, req).await
}
