//! The one error type of the HTTP API: every failure becomes OpenAI's error object
//! `{"error":{"message","type","param","code"}}` with a fitting status. Internal details
//! go to the log; clients get a message they can act on.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::runtime::InvokeError;

/// An API failure.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI `type`.
    pub kind: &'static str,
    /// OpenAI `message`.
    pub message: String,
    /// OpenAI `param`.
    pub param: Option<String>,
    /// OpenAI `code`.
    pub code: Option<Cow<'static, str>>,
    /// Seconds for a `Retry-After` header (overload), which the official SDKs honour.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A generic error.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), param: None, code: None, retry_after: None }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 404 `invalid_request_error`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    /// 401 with OpenAI's `invalid_api_key` code.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message).code("invalid_api_key")
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message).code("insufficient_permissions")
    }

    /// 500 with a generic message; the cause is logged, not returned. Every failure of
    /// the server's own storage comes through here, so this is where a full disk (ENOSPC,
    /// EDQUOT, SQLite's `SQLITE_FULL`, in whichever layer's words) becomes a 507
    /// [`Self::insufficient_storage`] instead.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let cause = format!("{cause:#}");
        if crate::full_disk::is_full(&cause) {
            tracing::error!("storage full: {cause}");
            return Self::insufficient_storage();
        }
        tracing::error!("internal error: {cause}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The server had an error while processing your request.")
    }

    /// 507 `insufficient_storage`: the data directory's disk (or quota) is full, so the
    /// request stored nothing. A 5xx, as it is the server's condition, and the status
    /// HTTP has for it (RFC 4918).
    pub fn insufficient_storage() -> Self {
        Self::new(StatusCode::INSUFFICIENT_STORAGE, "server_error", crate::full_disk::MESSAGE).code("insufficient_storage")
    }

    /// 503 `server_overloaded` with a `Retry-After`: the server is at capacity.
    pub fn overloaded(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message).code("server_overloaded");
        e.retry_after = Some(1);
        e
    }

    /// Sets `param`.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub fn code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = Some(code.into());
        self
    }
}

/// The body of every error answer, as OpenAI writes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorBody,
}

/// OpenAI's error object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A message for people, saying what to change.
    pub message: String,
    /// `invalid_request_error`, `not_found_error`, `permission_error`, `rate_limit_error`,
    /// `server_error`, `timeout_error` or `function_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault, where one is.
    pub param: Option<String>,
    /// A stable code for programs (`invalid_api_key`, `model_not_found`, `rate_limit_exceeded`...).
    #[schema(value_type = Option<String>)]
    pub code: Option<Cow<'static, str>>,
}

impl ApiError {
    /// The status and the error object of the answer (without its headers).
    pub fn into_parts(self) -> (StatusCode, ErrorResponse) {
        let body =
            ErrorResponse { error: ErrorBody { message: self.message, kind: self.kind, param: self.param, code: self.code } };
        (self.status, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after;
        let (status, body) = self.into_parts();
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl ApiError {
    /// A built-in handler's failure (chat, completions, embeddings, RAG): the same status
    /// and code as a function's, worded for the request, since the client deployed no
    /// function, and naming the server setting that bounds it.
    pub fn from_handler(e: InvokeError) -> Self {
        let message = match &e {
            InvokeError::Timeout(t) => Some(format!(
                "the request exceeded the server's time limit of {} ms per inference request (--handler-timeout-secs)",
                t.as_millis()
            )),
            InvokeError::OutOfFuel(fuel) => {
                Some(format!("the request exceeded its CPU budget of {fuel} fuel units (the server's --handler-fuel)"))
            }
            InvokeError::OutOfMemory(bytes) => {
                Some(format!("the request's handler exceeded its memory limit of {} MiB", bytes >> 20))
            }
            InvokeError::StackOverflow => Some("the request's handler overflowed its call stack".to_owned()),
            InvokeError::Trap(why) => Some(format!("the request's handler trapped: {why}")),
            InvokeError::Guest(why) => Some(format!("the request's handler failed: {why}")),
            InvokeError::Overloaded(_) | InvokeError::TooDeep | InvokeError::Internal(_) => None,
        };
        let mut api = Self::from(e);
        if let Some(message) = message {
            api.message = message;
        }
        api
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        let message = e.to_string();
        match e {
            InvokeError::Timeout(_) => Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout_error", message).code("function_timeout"),
            InvokeError::OutOfFuel(_) => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout_error", message).code("function_cpu_limit")
            }
            InvokeError::OutOfMemory(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "function_error", message).code("function_memory_limit")
            }
            InvokeError::StackOverflow => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "function_error", message).code("function_stack_overflow")
            }
            InvokeError::Trap(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "function_error", message).code("function_trapped")
            }
            InvokeError::Guest(_) => Self::new(StatusCode::BAD_GATEWAY, "function_error", message).code("function_failed"),
            InvokeError::Overloaded(_) => Self::overloaded(message),
            InvokeError::TooDeep => Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).code("nesting_too_deep"),
            InvokeError::Internal(e) => Self::internal(format!("{e:#}")),
        }
    }
}
