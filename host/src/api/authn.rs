//! Bearer-key authentication for every `/v1` route.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::auth::{hash_key, looks_like_key};

/// Who is calling, attached to the request by [`require_key`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// Key id (`key_...`).
    pub key_id: String,
    /// Tenant that owns what this caller creates.
    pub tenant: String,
    /// Whether the key may manage keys.
    pub admin: bool,
}

/// Rejects requests without a valid `Authorization: Bearer tns_...` key.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(secret) = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))) else {
        return Err(ApiError::unauthorized(
            "You didn't provide an API key. You need to provide your API key in an Authorization header \
             using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        ));
    };
    let secret = secret.trim();
    let invalid = || ApiError::unauthorized("Incorrect API key provided. Tensoras keys start with 'tns_'.");
    if !looks_like_key(secret) {
        return Err(invalid());
    }
    let key = state.store.find_key_by_hash(&hash_key(secret)).map_err(ApiError::internal)?.ok_or_else(invalid)?;
    req.extensions_mut().insert(Caller { key_id: key.id, tenant: key.tenant, admin: key.admin });
    Ok(next.run(req).await)
}
