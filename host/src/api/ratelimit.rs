//! Rate limits on the HTTP API (docs/operations.md#rate-limits): every `/v1` request of a
//! key whose plan limits it is admitted by the [`Limiter`](crate::ratelimit::Limiter) or
//! refused with a 429, and every answer carries the key's windows in Tensoras'
//! `X-RateLimit-*` headers and OpenAI's `x-ratelimit-*-requests`/`-tokens` ones, so
//! clients written for either read them. Inference requests also reserve their tokens
//! ([`reserve_tokens`]) and are checked against the tenant's monthly budget.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use super::{AppState, Caller};
use crate::ratelimit::{Refusal, Status, Ticket};

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        crate::metrics::metrics().rate_limited.inc(&[r.reason.as_str()]);
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", r.message).code("rate_limit_exceeded");
        e.retry_after = r.retry_after;
        e
    }
}

/// Admits the request under the caller's plan; adds the rate-limit headers to the answer,
/// which holds the request's [`Ticket`] until its body (a whole stream) is sent.
pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(plan) =
        req.extensions().get::<Caller>().filter(|c| c.plan.limits_rate()).map(|c| (c.key_id.clone(), c.plan.clone()))
    else {
        return next.run(req).await;
    };
    let ticket = match state.limiter.admit(&plan.0, &plan.1) {
        Ok(ticket) => Arc::new(ticket),
        Err(refusal) => {
            let status = refusal.status;
            let mut response = ApiError::from(refusal).into_response();
            set_headers(response.headers_mut(), &status);
            return response;
        }
    };
    req.extensions_mut().insert(ticket.clone());
    let mut response = next.run(req).await;
    set_headers(response.headers_mut(), &ticket.status());
    if response.status() == StatusCode::TOO_MANY_REQUESTS && !response.headers().contains_key(axum::http::header::RETRY_AFTER) {
        // A 429 that waiting does not cure (a spent budget, a request larger than the
        // tokens per minute): the official SDKs would retry it, but not with this header.
        response.headers_mut().insert(HeaderName::from_static("x-should-retry"), HeaderValue::from_static("false"));
    }
    hold(response, ticket)
}

/// Keeps the ticket until the answer is sent. A stream gives it back as soon as its last
/// event is out, before the response's end reaches the client, so a client that read it
/// to the end finds its request no longer running.
fn hold(response: Response, ticket: Arc<Ticket>) -> Response {
    let streamed =
        response.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    response.map(|body| {
        if streamed {
            let chunks = body.into_data_stream();
            axum::body::Body::from_stream(futures::stream::unfold((chunks, Some(ticket)), |(mut chunks, ticket)| async move {
                use futures::StreamExt as _;
                let next = chunks.next().await;
                next.map(|chunk| (chunk, (chunks, ticket)))
            }))
        } else {
            axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                let _held = &ticket;
                frame
            }))
        }
    })
}

fn set_headers(headers: &mut HeaderMap, s: &Status) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    if let Some(q) = s.requests {
        put("x-ratelimit-limit", q.limit.to_string());
        put("x-ratelimit-remaining", q.remaining.to_string());
        put("x-ratelimit-reset", q.reset_at.to_string());
        put("x-ratelimit-limit-requests", q.limit.to_string());
        put("x-ratelimit-remaining-requests", q.remaining.to_string());
        put("x-ratelimit-reset-requests", format!("{}s", (q.reset_at - s.now).max(0)));
    }
    if let Some(q) = s.tokens {
        put("x-ratelimit-limit-tokens", q.limit.to_string());
        put("x-ratelimit-remaining-tokens", q.remaining.to_string());
        put("x-ratelimit-reset-tokens", format!("{}s", (q.reset_at - s.now).max(0)));
    }
}

/// What an inference request may cost, checked before it runs: the tenant's monthly
/// budget is not spent, and the tokens it may use (its prompt, estimated at four bytes a
/// token as OpenAI's limiter does, plus `max_tokens` per choice) fit in the key's window.
pub async fn admit_inference(state: &AppState, caller: &Caller, ticket: Option<&Ticket>, body: &Value) -> Result<(), ApiError> {
    check_budget(&state.meter, &caller.tenant, caller.monthly_budget_nano_usd).await?;
    if let Some(ticket) = ticket {
        ticket.reserve(token_estimate(body))?;
    }
    Ok(())
}

/// Refuses (429 `insufficient_quota`) when `tenant` has spent its monthly `budget`.
pub async fn check_budget(meter: &crate::usage::Meter, tenant: &str, budget: Option<u64>) -> Result<(), ApiError> {
    let Some(budget) = budget else { return Ok(()) };
    let spent = meter.month_cost(tenant).await.map_err(ApiError::internal)?;
    if spent < budget {
        return Ok(());
    }
    crate::metrics::metrics().rate_limited.inc(&["budget"]);
    Err(ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "insufficient_quota",
        format!(
            "You exceeded your current quota: tenant '{tenant}' has spent ${:.6} of its monthly budget of ${:.6}. \
             Ask the server's operator to raise it.",
            crate::usage::usd_from_nano(spent),
            crate::usage::usd_from_nano(budget)
        ),
    )
    .code("insufficient_quota"))
}

/// The most tokens a chat, completions or embeddings body may use.
fn token_estimate(body: &Value) -> u64 {
    let prompt = (body.to_string().len() as u64).div_ceil(4);
    let int = |name: &str| body.get(name).and_then(Value::as_u64);
    let generated = int("max_completion_tokens").or_else(|| int("max_tokens")).unwrap_or(0);
    let choices = int("n").unwrap_or(1).max(1);
    prompt.saturating_add(generated.saturating_mul(choices))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_counts_the_prompt_and_what_each_choice_may_generate() {
        let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(400)}]});
        let prompt = token_estimate(&body);
        assert!((100..=130).contains(&prompt), "{prompt}");
        let mut with_max = body.clone();
        with_max["max_tokens"] = 50.into();
        with_max["n"] = 2.into();
        assert_eq!(token_estimate(&with_max), (with_max.to_string().len() as u64).div_ceil(4) + 100);
    }
}
