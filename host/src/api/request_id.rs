//! `x-request-id` on every answer, as OpenAI's API sends it (the official SDKs expose it as
//! `_request_id` in Python and `_request_id` / `request_id` in Node, for support tickets and
//! log searches). A client's own id is echoed when it is a plausible id, so a gateway's
//! trace id follows the request through; otherwise one is made up. Every log line written
//! while the request is handled carries it (a tracing span), and nothing else of the
//! request (no body, no key); one line per request says how it was answered (an access
//! log, JSON with `--log-format json`).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header, in both directions.
pub const HEADER: &str = "x-request-id";

/// Longest client id echoed.
const MAX_LEN: usize = 128;

/// Tags the request and its answer with an id.
pub async fn tag(req: Request, next: Next) -> Response {
    let id = req.headers().get(HEADER).and_then(|v| v.to_str().ok()).filter(|v| acceptable(v)).map_or_else(new_id, str::to_owned);
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        // For the trace exporter only (telemetry.rs reads them as the span's name, kind and
        // attributes), so recorded only when it runs: unrecorded, the logs do not show them.
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let tracing = crate::telemetry::exporting();
    if tracing {
        // The route's template (`/v1/files/{id}`) names the span: ids would make every name
        // unique.
        let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
        let name = route.as_ref().map_or_else(|| req.method().to_string(), |r| format!("{} {r}", req.method()));
        span.record("otel.name", name.as_str());
        span.record("otel.kind", "server");
        span.record("http.route", route.as_deref());
        let _ = span.set_parent(crate::telemetry::remote_context(req.headers()));
    }
    // Probes and scrapes come every few seconds: their successes are logged at debug only.
    let probe = matches!(req.uri().path(), "/health" | "/metrics");
    let started = std::time::Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    // The access log line: status and time to the answer's head (a stream goes on after).
    span.in_scope(|| {
        let (status, ms) = (response.status().as_u16(), started.elapsed().as_millis() as u64);
        if tracing {
            span.record("http.response.status_code", status);
        }
        if probe && response.status().is_success() {
            tracing::debug!(status, ms, "answered");
        } else {
            tracing::info!(status, ms, "answered");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// 1 to [`MAX_LEN`] characters of letters, digits and `-_.:` — what trace ids, UUIDs and
/// OpenAI's own `req_…` ids are made of; anything else could forge log lines or headers.
fn acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// `req_` and 16 random bytes in hex, like OpenAI's ids; a process-wide counter if the OS
/// random source fails, since an answer must not fail for want of an id.
fn new_id() -> String {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    crate::ids::random_id::<16>("req_").unwrap_or_else(|_| format!("req_local{}", FALLBACK.fetch_add(1, Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_echoed() {
        for ok in ["req_abc123", "4bf92f3577b34da6a3ce929d0e0e4736", "0af76519-16cd-43dd-8448-eb211c80319c", "svc.a:1"] {
            assert!(acceptable(ok), "{ok}");
        }
        for bad in ["", "a b", "x\r\nset-cookie: 1", "ä", &"x".repeat(MAX_LEN + 1)] {
            assert!(!acceptable(bad), "{bad:?}");
        }
        let id = new_id();
        assert!(id.starts_with("req_") && id.len() == 4 + 32 && acceptable(&id), "{id}");
        assert_ne!(id, new_id());
    }
}
