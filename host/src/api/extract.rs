//! Request extractors whose rejections use the OpenAI error shape instead of axum's
//! plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `axum::Json` with OpenAI-shaped rejections.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "Expected a request with 'Content-Type: application/json'.",
        ),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::invalid(format!("We could not parse the JSON body of your request: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => ApiError::invalid(format!("Invalid request body: {}", e.body_text())),
        JsonRejection::BytesRejection(e) => body_rejection(e.status(), e.body_text()),
        other => body_rejection(other.status(), other.body_text()),
    }
}

/// Maps a failure to read the body; too large becomes 413 in OpenAI's shape.
pub fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "invalid_request_error", "Request body is larger than this server accepts.")
            .code("request_too_large")
    } else {
        ApiError::new(status, "invalid_request_error", format!("Could not read the request body: {text}"))
    }
}
