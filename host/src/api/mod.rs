//! The HTTP API (axum on hyper): routing, authentication and one module per endpoint
//! group. [`router`] builds the whole app from state, so tests can drive it without a
//! socket; [`serve`] binds it and shuts down gracefully.

mod authn;
mod batches;
mod console;
mod drain;
pub mod error;
pub mod extract;
mod files;
mod functions;
pub mod inference;
mod keys;
mod knowledge_bases;
mod listen;
mod metrics;
pub mod openapi;
mod ratelimit;
mod request_id;
mod responses;
mod tenants;
mod usage;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::routing::{any, get};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::functions::Registry;
use crate::runtime::Runtime;
use crate::store::MetadataStore;

pub use authn::Caller;
use error::ApiError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// Metadata database.
    pub store: Arc<dyn MetadataStore>,
    /// The wasm runtime.
    pub runtime: Arc<Runtime>,
    /// Deployed functions.
    pub functions: Arc<Registry>,
    /// Models.
    pub inference: Arc<crate::inference::Inference>,
    /// The road to the handler components, for endpoints and functions alike.
    pub gateway: crate::gateway::Gateway,
    /// Bytes of uploaded files.
    pub file_storage: crate::files::FileStorage,
    /// Knowledge bases: ingestion worker, vectors, retrieval.
    pub knowledge: crate::kb::Knowledge,
    /// Space kept so that deletes can free space on a full disk.
    pub reserve: Arc<crate::full_disk::Reserve>,
    /// Usage per key, model and day.
    pub meter: Arc<crate::usage::Meter>,
    /// Every key's rate-limit windows.
    pub limiter: Arc<crate::ratelimit::Limiter>,
    /// The batch worker.
    pub batches: crate::batches::Batches,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

impl AppState {
    /// Opens everything a server needs from its configuration: the database, the
    /// runtime, deployed functions, models and handler components; and clears what a
    /// crashed run left half done (docs/design/007-durability.md).
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let started = std::time::SystemTime::now();
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let reserve = Arc::new(crate::full_disk::Reserve::open(&config.data_dir));
        let store: Arc<dyn MetadataStore> = Arc::new(crate::store::sqlite::SqliteStore::open(&config.database_path())?);
        let runtime = Arc::new(
            Runtime::new(&crate::runtime::RuntimeOptions {
                pooling: true,
                max_instances: config.max_instances,
                max_memory_bytes: config.max_limits.memory_bytes.max(config.handler_limits.memory_bytes),
                cache_dir: Some(config.compile_cache_dir()),
            })?
            .with_admission(config.admission),
        );
        let functions = Arc::new(Registry::open(runtime.clone(), store.clone(), config.clone()).await?);
        let inference = Arc::new(crate::inference::Inference::load(
            &config.manifests_dir,
            &config.models_dir,
            config.openai_aliases,
            &config.ort,
        )?);
        let handlers = crate::gateway::Handlers::load(&runtime, &config.handlers_dir, config.handler_limits);
        let file_storage = crate::files::FileStorage::open(config.files_url.as_deref(), &config.objects_dir())?;
        if let Err(e) = file_storage.sweep(store.as_ref(), started).await {
            tracing::error!("sweeping the file storage: {e:#}");
        }
        let vectors: Arc<dyn crate::vector::VectorStore> = match &config.qdrant {
            Some(server) => Arc::new(crate::vector::server::ServerStore::connect(server).await?),
            None => Arc::new(crate::vector::edge::EdgeStore::open(&config.vectors_dir())?),
        };
        let embedder = crate::kb::Embedder::new(inference.clone());
        let knowledge = crate::kb::Knowledge::start(store.clone(), file_storage.clone(), vectors, embedder, reserve.clone())?;
        let limiter = crate::ratelimit::Limiter::new();
        let meter = crate::usage::Meter::new(store.clone(), limiter.clone());
        let gateway = crate::gateway::Gateway::new(
            runtime.clone(),
            inference.clone(),
            handlers,
            functions.clone(),
            knowledge.clone(),
            crate::files::Library::new(store.clone(), file_storage.clone()),
            meter.clone(),
        );
        let lines = Arc::new(batches::LineExecutor {
            inference: inference.clone(),
            gateway: gateway.clone(),
            store: store.clone(),
            meter: meter.clone(),
        });
        let batches = crate::batches::Batches::start(store.clone(), file_storage.clone(), lines, config.batch_concurrency);
        let state = Self {
            config,
            store,
            runtime,
            functions,
            inference,
            gateway,
            file_storage,
            knowledge,
            reserve,
            meter,
            limiter,
            batches,
        };
        files::finish_deletions(&state).await?;
        Ok(state)
    }
}

/// After a delete freed space: the disk space reserve is written again if a full disk
/// used it up (crate::full_disk).
async fn rearm_reserve(state: &AppState) {
    let reserve = state.reserve.clone();
    let _ = tokio::task::spawn_blocking(move || reserve.rearm()).await;
}

/// The whole application. Routes are registered with their documentation
/// (utoipa-axum's `routes!` reads each handler's `#[utoipa::path]`), and the document
/// is served at `/openapi.json`.
pub fn router(state: AppState) -> Router {
    let (router, mut doc) = documented_router(&state).split_for_parts();
    openapi::add_path::<__path_openapi_document>(&mut doc.paths);
    openapi::finish(&mut doc);
    let doc = openapi::to_json(&doc);
    router
        .route("/openapi.json", get(move || openapi_json(doc.clone())))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn(extract::openai_rejections))
        .layer(axum::middleware::from_fn(interactive))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn_with_state(drain::Limit(largest_body(&state)), drain::unread_rest))
        // Outermost, so that every answer has the id, errors of the layers above included.
        .layer(axum::middleware::from_fn(request_id::tag))
        .with_state(state)
}

/// The largest request body any route accepts: an upload, or any other body.
fn largest_body(state: &AppState) -> u64 {
    state.config.max_file_bytes.max(state.config.max_body_bytes as u64)
}

/// Every route, and the document of each.
fn documented_router(state: &AppState) -> OpenApiRouter<AppState> {
    // Uploads have their own cap (checked while streaming, with a precise 413); the body
    // limit only leaves room for the multipart framing around it.
    let upload_limit = usize::try_from(state.config.max_file_bytes).unwrap_or(usize::MAX).saturating_add(1 << 20);
    let (schemas, paths, files) = routes!(files::upload, files::list);
    let files = (schemas, paths, files.layer(DefaultBodyLimit::max(upload_limit)));
    let v1 = OpenApiRouter::new()
        .routes(routes!(inference::chat_completions))
        .routes(routes!(inference::completions))
        .routes(routes!(inference::embeddings))
        .routes(routes!(responses::create))
        .routes(routes!(responses::get, responses::delete))
        .routes(routes!(responses::input_items))
        .routes(routes!(inference::list_models))
        .routes(routes!(inference::get_model))
        .routes(routes!(functions::deploy, functions::list))
        .routes(routes!(functions::get, functions::delete))
        .routes(routes!(functions::call))
        .routes(routes!(functions::logs))
        .routes(routes!(functions::versions))
        .routes(routes!(functions::rollback))
        // A deployed HTTP function answers any method, OPTIONS (CORS) included, so these
        // two are routed for every method and documented for the usual ones below.
        .route("/functions/{name}/invoke", any(functions::invoke))
        .route("/functions/{name}/invoke/{*rest}", any(functions::invoke_rest))
        .routes(files)
        .routes(routes!(files::get, files::delete))
        .routes(routes!(files::content))
        .routes(routes!(batches::create, batches::list))
        .routes(routes!(batches::get))
        .routes(routes!(batches::cancel))
        .routes(routes!(knowledge_bases::create, knowledge_bases::list))
        .routes(routes!(knowledge_bases::get, knowledge_bases::update, knowledge_bases::delete))
        .routes(routes!(knowledge_bases::add_sources, knowledge_bases::list_sources))
        .routes(routes!(knowledge_bases::get_source, knowledge_bases::delete_source))
        .routes(routes!(knowledge_bases::retrieve))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke, keys::update))
        .routes(routes!(usage::report))
        .routes(routes!(tenants::get, tenants::update))
        // Layers run outside in: the key is checked, then the request is admitted.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), ratelimit::limit))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authn::require_key));
    let mut v1 = v1;
    openapi::add_path::<functions::__path_invoke>(&mut v1.get_openapi_mut().paths);
    openapi::add_path::<functions::__path_invoke_rest>(&mut v1.get_openapi_mut().paths);
    let mut app = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health))
        .routes(routes!(metrics::scrape))
        .routes(routes!(console::redirect))
        .routes(routes!(console::index))
        // A wildcard (the file's path may hold '/'), routed by hand like the invoke routes.
        .route("/console/{*path}", get(console::asset))
        .nest("/v1", v1);
    openapi::add_path::<console::__path_asset>(&mut app.get_openapi_mut().paths);
    app
}

/// `GET /openapi.json`: this document (no key needed).
#[utoipa::path(get, path = "/openapi.json", tag = "server",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server.", body = Object)))]
#[allow(dead_code)] // The route serves the document built once in `router`; this carries its documentation.
async fn openapi_document() {}

async fn openapi_json(doc: bytes::Bytes) -> axum::response::Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], doc).into_response()
}

/// Every HTTP request is interactive: it waits for an instance slot only as long as
/// the admission queue allows (background ingestion waits as long as it takes).
async fn interactive(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    crate::runtime::interactive(next.run(req)).await
}

/// `GET /health`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
    instances: Instances,
}

/// How busy the instance slots are.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Instances {
    /// Slots running a request now.
    busy: usize,
    /// Slots in all (`--max-instances`).
    slots: usize,
    /// Requests waiting for a slot.
    waiting: usize,
}

/// `GET /health`: alive, with how busy the instance slots are (no key needed; counts only).
#[utoipa::path(get, path = "/health", tag = "server", responses((status = 200, description = "Alive.", body = Health)))]
async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> axum::Json<Health> {
    let a = state.runtime.admission();
    let slots = a.max_instances() as usize;
    axum::Json(Health {
        status: "ok",
        instances: Instances { busy: slots.saturating_sub(a.available()), slots, waiting: a.waiting() },
    })
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("Unknown request URL: {}. Please check the URL and method.", uri.path())).code("unknown_url")
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("Method {method} is not allowed for {}.", uri.path()),
    )
    .code("method_not_allowed")
}

/// Binds and serves until `shutdown` resolves; in-flight requests are allowed to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let knowledge = state.knowledge.clone();
    let batches = state.batches.clone();
    let meter = state.meter.clone();
    let metering = meter.start();
    let options = state.config.listen;
    let served = listen::serve(listener, router(state), options, shutdown).await;
    // Stop ingestion after its current batch; unfinished sources resume on the next start.
    knowledge.shutdown().await;
    // Lines running now run again on the next start (their results were not stored).
    batches.shutdown().await;
    // What the requests that just finished used.
    metering.abort();
    meter.flush().await;
    served
}
