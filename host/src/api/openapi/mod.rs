//! `GET /openapi.json`: the OpenAPI 3.1 document of the whole HTTP API, built from the
//! code. Each handler carries its own `#[utoipa::path]` (operation, parameters, the
//! answers it gives itself), and utoipa-axum's router registers a route together with
//! that documentation, so no endpoint can exist undocumented. The request and answer
//! types are the ones the handlers (de)serialize; the inference bodies, which the handler
//! components parse, are described in [`inference`]. What the layers around the routes
//! answer for every operation (a missing key, a rate limit, an unreadable body) is added
//! once here, by [`finish`], from the same facts the layers act on.

pub mod inference;

use utoipa::OpenApi;
use utoipa::openapi::RefOr;
use utoipa::openapi::content::Content;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{Object, Ref, Type};
use utoipa::openapi::security::{HttpAuthScheme, SecurityRequirement, SecurityScheme};

use super::error::ErrorResponse;

/// The security scheme every `/v1` operation names.
const BEARER: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tensoras",
        description = "A self-hosted, OpenAI-compatible inference platform: chat, completions and \
                       embeddings on local models, files, knowledge bases (RAG) and WebAssembly \
                       functions. Keys are `tns_...` bearer tokens.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(ErrorResponse)),
    tags(
        (name = "inference", description = "Chat, completions, embeddings and models (OpenAI's shapes)."),
        (name = "files", description = "Uploaded files (OpenAI's shapes)."),
        (name = "batches", description = "Batch jobs: a file of requests run in the background (OpenAI's shapes)."),
        (name = "knowledge-bases", description = "Knowledge bases, their data sources and retrieval."),
        (name = "functions", description = "WebAssembly functions deployed by users."),
        (name = "keys", description = "API keys, tenants, plans and usage."),
        (name = "server", description = "Health, metrics and this document."),
        (name = "console", description = "The web console's page and files (a person signs in with a key)."),
    )
)]
struct Base;

/// The document's frame: info, tags, the error schema and the bearer scheme.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            utoipa::openapi::security::HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("tns_...")
                .description(Some("An API key: `Authorization: Bearer tns_...`."))
                .build(),
        ),
    );
    doc
}

/// The answers of the layers around the routes (api/mod.rs), by status: the key check and
/// the rate limiter on `/v1`, the body and parameter extractors, and the storage errors
/// any handler may meet. Each is a component that the operations refer to.
const LAYER_ANSWERS: &[(&str, &str, &str, bool)] = &[
    ("400", "BadRequest", "The request is malformed (`invalid_request_error`, `param` names the field).", false),
    ("401", "Unauthorized", "No API key, or one that is unknown or revoked (`invalid_api_key`).", false),
    ("403", "Forbidden", "The key may not do this (`insufficient_permissions`).", false),
    ("404", "NotFound", "No such object (or one of another tenant's).", false),
    ("413", "TooLarge", "The body is larger than the server accepts (`request_too_large`).", false),
    ("415", "UnsupportedMediaType", "The body is not `Content-Type: application/json`.", false),
    (
        "429",
        "RateLimited",
        "Over the key's rate limit or the tenant's budget; `Retry-After` says when to retry where waiting helps.",
        true,
    ),
    ("500", "InternalError", "An internal error; the details are in the server's log.", false),
    (
        "503",
        "Overloaded",
        "The server is at capacity (`server_overloaded`) or its key store is unavailable; retry after `Retry-After`.",
        true,
    ),
    ("507", "InsufficientStorage", "The server's disk is full (`insufficient_storage`); nothing was stored.", false),
];

/// Adds to every operation the answers of the layers around it ([`LAYER_ANSWERS`]) and
/// the headers every answer may carry. An operation's own annotation wins where it
/// already documents a status.
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    for (_, name, description, retry) in LAYER_ANSWERS {
        let mut response = error_response(description);
        if *retry {
            response.headers.insert("Retry-After".into(), integer_header("Seconds to wait before retrying."));
        }
        headers(&mut response, true, false);
        components.responses.insert((*name).into(), RefOr::T(response));
    }
    add_links(doc);
    for (path, item) in doc.paths.paths.iter_mut() {
        let v1 = path.starts_with("/v1/");
        let with_path_params = path.contains('{');
        for (method, op) in operations(item) {
            op.operation_id = Some(operation_id(&method, path));
            if v1 {
                op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            }
            if op.responses.responses.contains_key("default") {
                // A deployed function's own answer: any status, any body, which the
                // layers' answers (a 401 before the function runs) are instances of.
                continue;
            }
            let has_body = op.request_body.is_some();
            let json_body = op.request_body.as_ref().is_some_and(|b| b.content.keys().any(|ct| ct == "application/json"));
            let has_query = op.parameters.iter().flatten().any(|p| matches!(p.parameter_in, ParameterIn::Query));
            let applies = |status: &str| match status {
                "401" | "403" | "429" | "503" | "500" | "507" => v1,
                "400" => has_body || has_query || with_path_params,
                "413" => has_body,
                "415" => json_body,
                "404" => with_path_params,
                _ => false,
            };
            for (status, response) in op.responses.responses.iter_mut() {
                if let RefOr::T(response) = response {
                    headers(response, v1, status.starts_with('2'));
                }
            }
            for (status, name, _, _) in LAYER_ANSWERS.iter().filter(|a| applies(a.0)) {
                op.responses
                    .responses
                    .entry((*status).into())
                    .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
            }
        }
    }
}

/// `get_v1_knowledge_bases_id` for `GET /v1/knowledge-bases/{id}`, `get_console_index` for
/// `GET /console/`: unique, as a method and a path are (handlers' own names repeat across modules: `get`, `list`...).
fn operation_id(method: &HttpMethod, path: &str) -> String {
    let method = serde_json::to_value(method).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let mut words: Vec<String> =
        path.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect();
    // `/console/` (the page) apart from `/console` (its redirect).
    if path.len() > 1 && path.ends_with('/') {
        words.push("index".to_owned());
    }
    format!("{method}_{}", words.join("_"))
}

/// Where the answer of a create names the object that other operations take: OpenAPI
/// links, which let a client (and schemathesis' stateful phase) follow a new object's id.
/// (from method, from path, status, link name, to method, to path, [(parameter, expression)])
type LinkSpec =
    (HttpMethod, &'static str, &'static str, &'static str, HttpMethod, &'static str, &'static [(&'static str, &'static str)]);

const LINKS: &[LinkSpec] = {
    use HttpMethod::{Delete, Get, Patch, Post};
    // Knowledge bases, files and keys: the new object's `id` is the path's `{id}`.
    const BY_ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
    const FUNCTION: &[(&str, &str)] = &[("name", "$response.body#/name")];
    const BATCH: &[(&str, &str)] = &[("batch_id", "$response.body#/id")];
    const RESPONSE: &[(&str, &str)] = &[("response_id", "$response.body#/id")];
    const SOURCE: &[(&str, &str)] = &[("id", "$request.path.id"), ("source_id", "$response.body#/id")];
    &[
        (Post, "/v1/knowledge-bases", "201", "GetKnowledgeBase", Get, "/v1/knowledge-bases/{id}", BY_ID),
        (Post, "/v1/knowledge-bases", "201", "UpdateKnowledgeBase", Patch, "/v1/knowledge-bases/{id}", BY_ID),
        (Post, "/v1/knowledge-bases", "201", "DeleteKnowledgeBase", Delete, "/v1/knowledge-bases/{id}", BY_ID),
        (Post, "/v1/knowledge-bases", "201", "AddDataSources", Post, "/v1/knowledge-bases/{id}/data-sources", BY_ID),
        (Post, "/v1/knowledge-bases", "201", "ListDataSources", Get, "/v1/knowledge-bases/{id}/data-sources", BY_ID),
        (Post, "/v1/knowledge-bases", "201", "Retrieve", Post, "/v1/knowledge-bases/{id}/retrieve", BY_ID),
        (
            Post,
            "/v1/knowledge-bases/{id}/data-sources",
            "202",
            "GetDataSource",
            Get,
            "/v1/knowledge-bases/{id}/data-sources/{source_id}",
            SOURCE,
        ),
        (
            Post,
            "/v1/knowledge-bases/{id}/data-sources",
            "202",
            "DeleteDataSource",
            Delete,
            "/v1/knowledge-bases/{id}/data-sources/{source_id}",
            SOURCE,
        ),
        (Post, "/v1/files", "200", "GetFile", Get, "/v1/files/{id}", BY_ID),
        (Post, "/v1/files", "200", "GetFileContent", Get, "/v1/files/{id}/content", BY_ID),
        (Post, "/v1/files", "200", "DeleteFile", Delete, "/v1/files/{id}", BY_ID),
        (Post, "/v1/responses", "200", "GetResponse", Get, "/v1/responses/{response_id}", RESPONSE),
        (Post, "/v1/responses", "200", "ResponseInputItems", Get, "/v1/responses/{response_id}/input_items", RESPONSE),
        (Post, "/v1/responses", "200", "DeleteResponse", Delete, "/v1/responses/{response_id}", RESPONSE),
        (Post, "/v1/batches", "200", "GetBatch", Get, "/v1/batches/{batch_id}", BATCH),
        (Post, "/v1/batches", "200", "CancelBatch", Post, "/v1/batches/{batch_id}/cancel", BATCH),
        (Post, "/v1/keys", "200", "UpdateKey", Patch, "/v1/keys/{id}", BY_ID),
        (Post, "/v1/keys", "200", "RevokeKey", Delete, "/v1/keys/{id}", BY_ID),
        (Post, "/v1/functions", "201", "GetFunction", Get, "/v1/functions/{name}", FUNCTION),
        (Post, "/v1/functions", "201", "FunctionVersions", Get, "/v1/functions/{name}/versions", FUNCTION),
        (Post, "/v1/functions", "201", "DeleteFunction", Delete, "/v1/functions/{name}", FUNCTION),
    ]
};

/// Adds [`LINKS`]; a link whose either end is not in the document is a bug (a test says so).
fn add_links(doc: &mut utoipa::openapi::OpenApi) {
    for (method, path, status, name, to_method, to_path, params) in LINKS {
        let link = params
            .iter()
            .fold(utoipa::openapi::link::LinkBuilder::new().operation_id(operation_id(to_method, to_path)), |b, (k, v)| {
                b.parameter(*k, *v)
            })
            .build();
        let Some(item) = doc.paths.paths.get_mut(*path) else { continue };
        let Some((_, op)) = operations(item).find(|(m, _)| m == method) else { continue };
        if let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) {
            response.links.insert((*name).into(), RefOr::T(link));
        }
    }
}

/// The operations of a path, by method.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Options, item.options.as_mut()),
        (HttpMethod::Head, item.head.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
        (HttpMethod::Trace, item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

/// An error answer in OpenAI's shape.
pub fn error_response(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert("application/json".into(), Content::new(Some(Ref::from_schema_name("ErrorResponse"))));
    response
}

/// The headers every answer may carry: the request id, and on `/v1` the key's rate-limit
/// windows in both Tensoras' and OpenAI's names (api/ratelimit.rs; absent for a key whose
/// plan sets no limit, so none is required).
fn headers(response: &mut Response, v1: bool, success: bool) {
    response
        .headers
        .entry("x-request-id".into())
        .or_insert_with(|| string_header("The request's id: the client's own `x-request-id`, or one made up."));
    if !v1 {
        return;
    }
    for (name, description) in [
        ("X-RateLimit-Limit", "Requests per minute the key's plan allows."),
        ("X-RateLimit-Remaining", "Requests left in the current minute."),
        ("X-RateLimit-Reset", "When the request window resets, in unix seconds."),
        ("x-ratelimit-limit-requests", "Requests per minute the key's plan allows."),
        ("x-ratelimit-remaining-requests", "Requests left in the current minute."),
        ("x-ratelimit-limit-tokens", "Tokens per minute the key's plan allows."),
        ("x-ratelimit-remaining-tokens", "Tokens left in the current minute."),
    ] {
        response.headers.entry(name.into()).or_insert_with(|| integer_header(description));
    }
    for (name, description) in [
        ("x-ratelimit-reset-requests", "Time until the request window resets, as OpenAI writes it (`1s`, `6m0s`)."),
        ("x-ratelimit-reset-tokens", "Time until the token window resets, as OpenAI writes it."),
    ] {
        response.headers.entry(name.into()).or_insert_with(|| string_header(description));
    }
    if !success {
        response
            .headers
            .entry("x-should-retry".into())
            .or_insert_with(|| string_header("`false` on a 429 that waiting does not cure (a spent budget)."));
    }
}

fn integer_header(description: &str) -> Header {
    HeaderBuilder::new().schema(Object::with_type(Type::Integer)).description(Some(description)).build()
}

fn string_header(description: &str) -> Header {
    HeaderBuilder::new().schema(Object::with_type(Type::String)).description(Some(description)).build()
}

/// Documents an operation whose route is registered by hand (a route that takes every
/// method, or one whose answer is built elsewhere).
pub fn add_path<P: utoipa::Path>(paths: &mut utoipa::openapi::path::Paths) {
    paths.add_path_operation(P::path(), P::methods(), P::operation());
}

/// The document, serialized once when the router is built.
pub fn to_json(doc: &utoipa::openapi::OpenApi) -> bytes::Bytes {
    match serde_json::to_value(doc) {
        Ok(mut value) => {
            camel_case_links(&mut value);
            bytes::Bytes::from(value.to_string())
        }
        Err(e) => {
            tracing::error!("serializing the OpenAPI document: {e}");
            bytes::Bytes::from_static(b"{}")
        }
    }
}

/// utoipa 5 writes a link's fields in Rust's spelling (`operation_id`, `request_body`);
/// OpenAPI's are `operationId` and `requestBody`, and a reader finds no target without them.
fn camel_case_links(value: &mut serde_json::Value) {
    let Some(paths) = value.get_mut("paths").and_then(|p| p.as_object_mut()) else { return };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut())
        .filter_map(|answer| answer.get_mut("links").and_then(|l| l.as_object_mut()))
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (from, to) in [("operation_id", "operationId"), ("operation_ref", "operationRef"), ("request_body", "requestBody")] {
            if let Some(v) = link.remove(from) {
                link.insert(to.to_owned(), v);
            }
        }
    }
}
