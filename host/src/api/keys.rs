//! Admin API for keys: `POST/GET /v1/keys`, `DELETE /v1/keys/{id}`. Only admin keys
//! may call these; a key's secret appears once, in the create response.

use axum::Extension;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::Json;
use super::{AppState, Caller};
use crate::store::ApiKey;

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.admin { Ok(()) } else { Err(ApiError::forbidden("This operation needs an admin API key.")) }
}

fn key_json(k: &ApiKey) -> Value {
    json!({"id": k.id, "object": "api_key", "name": k.name, "tenant": k.tenant, "admin": k.admin, "created_at": k.created_at})
}

#[derive(Debug, Deserialize)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    admin: bool,
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateKey>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&caller)?;
    let tenant = body.tenant.unwrap_or(caller.tenant);
    if !crate::functions::valid_name(&tenant) {
        return Err(ApiError::invalid("tenant names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'").param("tenant"));
    }
    if body.name.trim().is_empty() || body.name.len() > 256 {
        return Err(ApiError::invalid("name must be 1-256 characters").param("name"));
    }
    let (key, secret) =
        crate::auth::create_key(state.store.as_ref(), &body.name, &tenant, body.admin).map_err(ApiError::internal)?;
    let mut out = key_json(&key);
    out["key"] = Value::String(secret);
    Ok(axum::Json(out))
}

pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&caller)?;
    let keys = state.store.list_keys().map_err(ApiError::internal)?;
    Ok(axum::Json(json!({"object": "list", "data": keys.iter().map(key_json).collect::<Vec<_>>()})))
}

pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&caller)?;
    if !state.store.revoke_key(&id).map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("No API key with id '{id}'.")).param("id"));
    }
    Ok(axum::Json(json!({"id": id, "object": "api_key", "deleted": true})))
}
