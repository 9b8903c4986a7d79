//! # handler-common
//!
//! What the OpenAI API handlers (`functions/handlers/chat-core` behind chat and rag, `functions/handlers/embeddings`)
//! share and that does not depend on their WIT worlds:
//!
//! - [`ApiError`]: an OpenAI error (`status`, `type`, `message`, `param`,
//!   `code`) that each handler converts into its own bindings'
//!   `handler-error`;
//! - [`fields`]: typed reads of request-body fields whose errors read like
//!   OpenAI's ("Invalid type for 'n': expected an integer, but got a string
//!   instead.") and name the field in `param`;
//! - [`ids`]: WASI randomness, response ids (`chatcmpl-…`) and `created`
//!   timestamps.
//!
//! Everything except [`ids::random_u64`] (and what calls it) is plain Rust
//! that runs natively, so the handlers' unit tests run with a host `cargo test`.
#![deny(missing_docs)]

pub mod fields;
pub mod ids;

/// An OpenAI-shaped error a handler answers with instead of trapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (400..=599).
    pub status: u16,
    /// OpenAI error `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The request field at fault (OpenAI `param`).
    pub param: Option<String>,
    /// Machine-readable code (OpenAI `code`).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400 `invalid_request_error` about `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status: 400, kind: "invalid_request_error", message: message.into(), param: Some(param.into()), code: None }
    }

    /// 400 `invalid_request_error` not tied to one field (e.g. a body that is
    /// not JSON).
    pub fn invalid_body(message: impl Into<String>) -> Self {
        Self { status: 400, kind: "invalid_request_error", message: message.into(), param: None, code: None }
    }

    /// Adds a machine-readable `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 404 `model_not_found`, worded like OpenAI's.
    pub fn model_not_found(model: &str) -> Self {
        Self {
            status: 404,
            kind: "invalid_request_error",
            message: format!("The model `{model}` does not exist or you do not have access to it."),
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// 500 `server_error` carrying the underlying failure's own message.
    pub fn server(message: impl Into<String>) -> Self {
        Self { status: 500, kind: "server_error", message: message.into(), param: None, code: None }
    }

    /// 404 for a path this handler does not serve (a host routing mistake
    /// rather than a client error, but answered the way an API would).
    pub fn unknown_path(path: &str) -> Self {
        Self {
            status: 404,
            kind: "invalid_request_error",
            message: format!("Unknown request URL: {path}."),
            param: None,
            code: Some("unknown_url"),
        }
    }
}

/// Exports `$ty` as the world's `tensoras:platform/handler`, answering with
/// `$handle(request) -> Result<Response, ApiError>`. Each handler crate has its
/// own generated bindings (in a `bindings` module at its root), so the
/// conversion from [`ApiError`] to that crate's `handler-error` is generated here
/// once instead of written in every handler.
#[macro_export]
macro_rules! export_handler {
    ($ty:ident, $handle:path) => {
        /// The exported handler.
        struct $ty;

        impl bindings::exports::tensoras::platform::handler::Guest for $ty {
            fn handle(
                req: bindings::exports::tensoras::platform::handler::Request,
            ) -> Result<bindings::exports::tensoras::platform::handler::Response, bindings::tensoras::platform::types::HandlerError>
            {
                $handle(req).map_err(|e: $crate::ApiError| bindings::tensoras::platform::types::HandlerError {
                    status: e.status,
                    kind: e.kind.to_owned(),
                    message: e.message,
                    param: e.param,
                    code: e.code.map(str::to_owned),
                })
            }
        }

        bindings::export!($ty with_types_in bindings);
    };
}

/// Defines `nn_error(what, err) -> ApiError` for the crate's generated
/// `wasi:nn` error type (at `crate::bindings::wasi::nn::errors`): a 500
/// `server_error` carrying the error code's WIT name and the host's message.
// `crate::bindings` is meant to be the calling crate's bindings, wherever the macro is used.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! nn_error_fn {
    () => {
        /// A wasi:nn error as a 500 with the backend's message.
        fn nn_error(what: &str, err: crate::bindings::wasi::nn::errors::Error) -> $crate::ApiError {
            use crate::bindings::wasi::nn::errors::ErrorCode;
            let code = match err.code() {
                ErrorCode::InvalidArgument => "invalid-argument",
                ErrorCode::InvalidEncoding => "invalid-encoding",
                ErrorCode::Timeout => "timeout",
                ErrorCode::RuntimeError => "runtime-error",
                ErrorCode::UnsupportedOperation => "unsupported-operation",
                ErrorCode::TooLarge => "too-large",
                ErrorCode::NotFound => "not-found",
                ErrorCode::Security => "security",
                ErrorCode::Unknown => "unknown",
            };
            $crate::ApiError::server(format!("wasi-nn {what} failed ({code}): {}", err.data()))
        }
    };
}
