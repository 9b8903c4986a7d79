//! The HTTP API (axum on hyper): routing, authentication and one module per endpoint
//! group. [`router`] builds the whole app from state, so tests can drive it without a
//! socket; [`serve`] binds it and shuts down gracefully.

mod authn;
pub mod error;
pub mod extract;
mod functions;
mod keys;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get, post};

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
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/functions", post(functions::deploy).get(functions::list))
        .route("/functions/{name}", get(functions::get).delete(functions::delete))
        .route("/functions/{name}/call", post(functions::call))
        .route("/functions/{name}/invoke", any(functions::invoke))
        .route("/functions/{name}/invoke/{*rest}", any(functions::invoke))
        .route("/keys", post(keys::create).get(keys::list))
        .route("/keys/{id}", axum::routing::delete(keys::revoke))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authn::require_key));
    Router::new()
        .route("/health", get(health))
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("Unknown request URL: {}. Please check the URL and method.", uri.path()))
        .code("unknown_url")
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
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
