//! Request extractors whose rejections use the OpenAI error shape instead of axum's
//! plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `axum::Json` with OpenAI-shaped rejections, for bodies that are JSON objects.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<ObjectOnly<T>>::from_request(req, state).await {
            Ok(axum::Json(ObjectOnly(v))) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Any JSON document, for a handler that checks the shape itself so that its error can
/// name the field at fault (a tool call's `arguments`).
#[derive(Debug)]
pub struct AnyJson(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for AnyJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Deserializes `T` from a JSON object only. serde's derived structs also accept an array
/// of their fields in order (`[null, null]` for a two-field struct), which no body of
/// this API is and no client means.
#[derive(Debug)]
struct ObjectOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the request body to be a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData)).map(ObjectOnly)
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

/// Rewrites any plain-text error answer (the rejections of axum's `Path`, `Query` and
/// `Multipart` extractors, and of any extractor added later) into the OpenAI error
/// object, so no route answers an SDK with a body it cannot parse. Answers of deployed
/// HTTP functions (`/v1/functions/{name}/invoke`) are the function's own and pass
/// through untouched.
pub async fn openai_rejections(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let invoke = is_function_invoke(req.uri().path());
    let response = next.run(req).await;
    let plain_text = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    if invoke || !plain_text || !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let status = response.status();
    // Rejection texts are short; anything longer is cut rather than buffered whole.
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let err = if status == StatusCode::PAYLOAD_TOO_LARGE {
        body_rejection(status, text)
    } else if status.is_server_error() {
        ApiError::new(status, "server_error", text)
    } else {
        ApiError::new(status, "invalid_request_error", text)
    };
    axum::response::IntoResponse::into_response(err)
}

/// `/v1/functions/{name}/invoke[/...]`.
fn is_function_invoke(path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').split('/');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()), (Some("v1"), Some("functions"), Some(_), Some("invoke")))
}

#[cfg(test)]
mod tests {
    use super::ObjectOnly;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Two {
        a: Option<u8>,
        b: Option<u8>,
    }

    #[test]
    fn bodies_are_objects_only() {
        let two: ObjectOnly<Two> = serde_json::from_str(r#"{"a": 1}"#).unwrap();
        assert_eq!(two.0, Two { a: Some(1), b: None });
        // A derived struct would take these as its fields in order.
        for body in ["[null, null]", "[1, 2]", "null", "3", "\"x\""] {
            let err = serde_json::from_str::<ObjectOnly<Two>>(body).unwrap_err().to_string();
            assert!(err.contains("JSON object"), "{body}: {err}");
            assert!(serde_json::from_str::<ObjectOnly<serde_json::Value>>(body).is_err(), "{body}");
        }
        let any: ObjectOnly<serde_json::Value> = serde_json::from_str(r#"{"x": [1]}"#).unwrap();
        assert_eq!(any.0, serde_json::json!({"x": [1]}));
    }
    #[test]
    fn function_invoke_paths() {
        assert!(super::is_function_invoke("/v1/functions/echo/invoke"));
        assert!(super::is_function_invoke("/v1/functions/echo/invoke/a/b"));
        assert!(!super::is_function_invoke("/v1/functions/echo"));
        assert!(!super::is_function_invoke("/v1/functions/echo/call"));
        assert!(!super::is_function_invoke("/v1/files/x/content"));
    }
}
