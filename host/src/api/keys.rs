//! Key management: `POST/GET /v1/keys`, `DELETE /v1/keys/{id}`. Operator keys manage the
//! keys of every tenant; tenant admin keys only those of their own tenant (and never
//! operator keys); other keys none (docs/security.md). A key's secret appears once, in the
//! create response.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Json;
use super::{AppState, Caller};
use crate::auth::{KeySpec, Role, Scope};
use crate::store::{ApiKey, Revocation};

/// Members may not manage keys at all.
fn require_manager(caller: &Caller) -> Result<(), ApiError> {
    if caller.role >= Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("Managing API keys needs a tenant admin or operator key."))
    }
}

/// Tenant admins reach their own tenant only; the 403 names only the caller's own tenant.
fn require_tenant(caller: &Caller, tenant: &str) -> Result<(), ApiError> {
    if caller.role == Role::Operator || caller.tenant == tenant {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("A tenant admin key manages the keys of its own tenant ('{}') only.", caller.tenant))
            .param("tenant"))
    }
}

/// An API key as the API shows it (never its secret, but once at creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyObject {
    /// The key's id (not its secret).
    id: String,
    #[schema(value_type = String, pattern = "^api_key$")]
    object: &'static str,
    /// A name for people.
    name: String,
    /// The tenant whose resources the key reaches.
    tenant: String,
    /// `member`, `admin` or `operator`.
    #[schema(value_type = String, pattern = "^(member|admin|operator)$")]
    role: Role,
    /// Permissions beyond the role's, e.g. `functions:deploy`.
    #[schema(value_type = Vec<String>)]
    scopes: Vec<Scope>,
    /// The key's own rate-limit plan; `null` takes its tenant's.
    plan: Option<String>,
    /// Unix seconds.
    created_at: i64,
    /// The secret, `tns_...`: in the answer to the create request only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key: Option<String>,
}

impl From<&ApiKey> for KeyObject {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.clone(),
            object: "api_key",
            name: k.name.clone(),
            tenant: k.tenant.clone(),
            role: k.role,
            scopes: k.scopes.clone(),
            plan: k.plan.clone(),
            created_at: k.created_at,
            key: None,
        }
    }
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    #[schema(value_type = String, pattern = "^list$")]
    object: &'static str,
    data: Vec<KeyObject>,
}

/// What a revoke answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyDeleted {
    id: String,
    #[schema(value_type = String, pattern = "^api_key$")]
    object: &'static str,
    deleted: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A name for people, 1-256 characters.
    #[schema(min_length = 1, max_length = 256)]
    name: String,
    /// The tenant the key belongs to (1-64 of A-Z, a-z, 0-9, `_`, `-`); the caller's own by default.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    tenant: Option<String>,
    /// `member` (default), `admin` or `operator`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(member|admin|operator)$")]
    role: Option<String>,
    /// The older spelling of `"role": "admin"`; kept so existing scripts keep working.
    #[serde(default)]
    admin: Option<bool>,
    /// Extra permissions, e.g. `["functions:deploy"]`; checked by hand so a bad value names
    /// `scopes` as the param.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    scopes: Option<Value>,
    /// Rate-limit plan (operators only); none takes the tenant's.
    #[serde(default)]
    plan: Option<String>,
}

fn parse_role(role: Option<&str>, admin: Option<bool>) -> Result<Role, ApiError> {
    let from_admin = admin.map(|a| if a { Role::Admin } else { Role::Member });
    let Some(name) = role else {
        return Ok(from_admin.unwrap_or(Role::Member));
    };
    let role = Role::parse(name)
        .ok_or_else(|| ApiError::invalid(format!("role must be 'member', 'admin' or 'operator', not '{name}'")).param("role"))?;
    if from_admin.is_some_and(|a| a != role) {
        return Err(ApiError::invalid("admin contradicts role; send only role").param("admin"));
    }
    Ok(role)
}

fn parse_scopes(scopes: Option<&Value>) -> Result<Vec<Scope>, ApiError> {
    let invalid = |m: String| ApiError::invalid(m).param("scopes");
    match scopes {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            let names = items
                .iter()
                .map(|v| v.as_str().ok_or_else(|| invalid("scopes must be an array of strings".into())))
                .collect::<Result<Vec<&str>, _>>()?;
            Scope::parse_all(names).map_err(invalid)
        }
        Some(_) => Err(invalid("scopes must be an array of strings".into())),
    }
}

/// Creates a key; its secret is in this answer and nowhere else, ever.
#[utoipa::path(post, path = "/keys", tag = "keys", request_body = CreateKey,
    responses((status = 200, description = "The new key, with its secret in `key`.", body = KeyObject)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateKey>,
) -> Result<axum::Json<KeyObject>, ApiError> {
    require_manager(&caller)?;
    let tenant = body.tenant.clone().unwrap_or_else(|| caller.tenant.clone());
    if !crate::ids::valid_name(&tenant) {
        return Err(ApiError::invalid("tenant names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'").param("tenant"));
    }
    if body.name.trim().is_empty() || body.name.len() > 256 {
        return Err(ApiError::invalid("name must be 1-256 characters").param("name"));
    }
    let role = parse_role(body.role.as_deref(), body.admin)?;
    let scopes = parse_scopes(body.scopes.as_ref())?;
    require_tenant(&caller, &tenant)?;
    if role == Role::Operator && caller.role != Role::Operator {
        return Err(ApiError::forbidden("Only an operator key may create operator keys.").param("role"));
    }
    if body.plan.is_some() {
        check_plan(&state, &caller, body.plan.as_deref())?;
    }
    let spec = KeySpec { name: &body.name, tenant: &tenant, role, scopes: &scopes, plan: body.plan.as_deref() };
    let (key, secret) = crate::auth::create_key(state.store.as_ref(), &spec).map_err(ApiError::internal)?;
    tracing::info!(by = %caller.key_id, key_id = %key.id, tenant = %key.tenant, role = key.role.as_str(), "created an API key");
    let mut out = KeyObject::from(&key);
    out.key = Some(secret);
    Ok(axum::Json(out))
}

/// Plans are the operator's to give (or take back, `None`): a tenant admin could otherwise
/// lift its own limits. An unknown plan is a 400 that lists the known ones.
pub(super) fn check_plan(state: &AppState, caller: &Caller, plan: Option<&str>) -> Result<(), ApiError> {
    if caller.role != Role::Operator {
        return Err(ApiError::forbidden("Only an operator key may set rate-limit plans.").param("plan"));
    }
    if let Some(plan) = plan
        && state.config.plans.get(plan).is_none()
    {
        return Err(ApiError::invalid(format!(
            "Unknown plan '{plan}'; this server's plans are: {}.",
            state.config.plans.names().join(", ")
        ))
        .param("plan")
        .code("plan_not_found"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// The new plan; `null` drops the key's own (it takes its tenant's).
    plan: Option<String>,
}

/// `PATCH /v1/keys/{id}`: sets a key's plan (operators only).
#[utoipa::path(patch, path = "/keys/{id}", tag = "keys", request_body = UpdateKey,
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key.", body = KeyObject)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<UpdateKey>,
) -> Result<axum::Json<KeyObject>, ApiError> {
    require_manager(&caller)?;
    check_plan(&state, &caller, body.plan.as_deref())?;
    let key = state.store.set_key_plan(&id, None, body.plan.as_deref()).map_err(ApiError::internal)?;
    let key = key.ok_or_else(|| ApiError::not_found(format!("No API key with id '{id}'.")).param("id"))?;
    tracing::info!(by = %caller.key_id, key_id = %id, plan = ?key.plan, "set a key's plan");
    Ok(axum::Json(KeyObject::from(&key)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeys {
    /// Only this tenant's keys.
    tenant: Option<String>,
}

/// Lists the keys the caller manages: an operator every tenant's, a tenant admin its own.
#[utoipa::path(get, path = "/keys", tag = "keys", params(ListKeys),
    responses((status = 200, description = "The keys.", body = KeyList)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ListKeys>,
) -> Result<axum::Json<KeyList>, ApiError> {
    require_manager(&caller)?;
    let tenant = match (caller.role, query.tenant) {
        (Role::Operator, wanted) => wanted,
        (_, Some(wanted)) => {
            require_tenant(&caller, &wanted)?;
            Some(wanted)
        }
        (_, None) => Some(caller.tenant.clone()),
    };
    let keys = state.store.list_keys(tenant.as_deref()).map_err(ApiError::internal)?;
    Ok(axum::Json(KeyList { object: "list", data: keys.iter().map(KeyObject::from).collect() }))
}

/// Revokes a key; the last active operator key cannot be (409).
#[utoipa::path(delete, path = "/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id.")),
    responses(
        (status = 200, description = "Revoked.", body = KeyDeleted),
        (status = 409, description = "The last active operator key (`last_operator_key`).", body = super::error::ErrorResponse),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<KeyDeleted>, ApiError> {
    require_manager(&caller)?;
    let not_found = || ApiError::not_found(format!("No API key with id '{id}'.")).param("id");
    // A tenant admin sees another tenant's key as missing, so ids of other tenants leak nothing.
    let within = if caller.role == Role::Operator { None } else { Some(caller.tenant.as_str()) };
    if let Some(tenant) = within {
        let keys = state.store.list_keys(Some(tenant)).map_err(ApiError::internal)?;
        let key = keys.iter().find(|k| k.id == id).ok_or_else(not_found)?;
        // Roles only ever grow (an operator key is never demoted), so this check cannot go stale.
        if key.role == Role::Operator {
            return Err(ApiError::forbidden("Only an operator key may revoke an operator key.").param("id"));
        }
    }
    match state.store.revoke_key(&id, within).map_err(ApiError::internal)? {
        Revocation::Revoked => {}
        Revocation::NotFound => return Err(not_found()),
        Revocation::LastOperator => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!(
                    "'{id}' is the last active operator key; create another operator key before revoking it, \
                     so the server is not left without one."
                ),
            )
            .param("id")
            .code("last_operator_key"));
        }
    }
    tracing::info!(by = %caller.key_id, key_id = %id, "revoked an API key");
    Ok(axum::Json(KeyDeleted { id, object: "api_key", deleted: true }))
}
