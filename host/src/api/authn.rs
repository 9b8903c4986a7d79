//! Bearer-key authentication for every `/v1` route.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use std::sync::Arc;

use axum::http::StatusCode;

use super::AppState;
use super::error::ApiError;
use crate::auth::{Role, Scope, hash_key, looks_like_key};
use crate::plans::Plan;

/// Who is calling, attached to the request by [`require_key`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// Key id (`key_...`).
    pub key_id: String,
    /// Tenant that owns what this caller creates.
    pub tenant: String,
    /// What it may manage: its tenant's keys (admin) or every tenant's (operator).
    pub role: Role,
    /// Extra permissions on top of the role.
    pub scopes: Vec<Scope>,
    /// The rate-limit plan that applies: the key's, its tenant's or the server's default.
    pub plan: Arc<Plan>,
    /// The tenant's monthly budget, in billionths of a dollar, if it has one.
    pub monthly_budget_nano_usd: Option<u64>,
}

impl Caller {
    /// Who the calls made for this request are made for.
    pub fn principal(&self) -> crate::gateway::Principal {
        crate::gateway::Principal { tenant: self.tenant.clone(), key_id: self.key_id.clone(), batch: false }
    }

    /// Deploying and deleting functions is a permission: code that runs in the server with
    /// the grants its manifest asks for (docs/security.md).
    pub fn require_deploy(&self) -> Result<(), ApiError> {
        if crate::auth::may_deploy(self.role, &self.scopes) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "Deploying or deleting functions needs a tenant admin key, an operator key, or a key with the '{}' scope.",
                Scope::FunctionsDeploy.as_str()
            )))
        }
    }
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
    let tenant = state.store.tenant(&key.tenant).map_err(ApiError::internal)?.unwrap_or_default();
    let plan = state.config.plans.resolve(key.plan.as_deref(), tenant.plan.as_deref()).map_err(|name| {
        // The plans file no longer has it: refused rather than served under another plan.
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("This key's rate-limit plan '{name}' is not configured on this server; ask its operator."),
        )
        .code("plan_not_configured")
    })?;
    req.extensions_mut().insert(Caller {
        key_id: key.id,
        tenant: key.tenant,
        role: key.role,
        scopes: key.scopes,
        plan,
        monthly_budget_nano_usd: tenant.monthly_budget_nano_usd,
    });
    Ok(next.run(req).await)
}
