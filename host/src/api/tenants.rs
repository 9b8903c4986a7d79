//! `GET/PATCH /v1/tenants/{name}`: a tenant's rate-limit plan and monthly budget, and what
//! it spent this month. Operators set them; a tenant admin may read its own tenant's.

use axum::Extension;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Json;
use super::keys::check_plan;
use super::{AppState, Caller};
use crate::auth::Role;
use crate::store::TenantRecord;
use crate::usage::{nano_from_usd, usd_from_nano};

/// A tenant's plan and budget, and what it spent this calendar month (UTC).
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantObject {
    #[schema(value_type = String, pattern = "^tenant$")]
    object: &'static str,
    name: String,
    /// The tenant's own plan; `null` takes the server's default.
    plan: Option<String>,
    /// The plan in force.
    effective_plan: String,
    /// Dollars per calendar month; `null` for no budget.
    monthly_budget_usd: Option<f64>,
    spent_this_month_usd: f64,
}

async fn tenant_json(state: &AppState, t: &TenantRecord) -> Result<TenantObject, ApiError> {
    let spent = state.meter.month_cost(&t.name).await.map_err(ApiError::internal)?;
    Ok(TenantObject {
        object: "tenant",
        name: t.name.clone(),
        plan: t.plan.clone(),
        effective_plan: t.plan.as_deref().unwrap_or(state.config.plans.default_name()).to_owned(),
        monthly_budget_usd: t.monthly_budget_nano_usd.map(usd_from_nano),
        spent_this_month_usd: usd_from_nano(spent),
    })
}

fn load(state: &AppState, name: &str) -> Result<TenantRecord, ApiError> {
    if !crate::ids::valid_name(name) {
        return Err(ApiError::invalid("tenant names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'").param("name"));
    }
    let t = state.store.tenant(name).map_err(ApiError::internal)?;
    Ok(t.unwrap_or(TenantRecord { name: name.to_owned(), ..TenantRecord::default() }))
}

/// `GET /v1/tenants/{name}`: an operator reads any tenant, a tenant admin its own.
#[utoipa::path(get, path = "/tenants/{name}", tag = "keys",
    params(("name" = String, Path, description = "The tenant.")),
    responses((status = 200, description = "The tenant.", body = TenantObject)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<TenantObject>, ApiError> {
    let own = caller.role == Role::Admin && caller.tenant == name;
    if caller.role != Role::Operator && !own {
        return Err(ApiError::forbidden(format!(
            "Reading a tenant's plan and budget needs an operator key, or an admin key of that tenant ('{}').",
            caller.tenant
        )));
    }
    let t = load(&state, &name)?;
    Ok(axum::Json(tenant_json(&state, &t).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// A plan, or `null` for the server's default; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    plan: Option<Option<String>>,
    /// Dollars per calendar month, or `null` for none; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, minimum = 0)]
    monthly_budget_usd: Option<Option<f64>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /v1/tenants/{name}` (operators only).
#[utoipa::path(patch, path = "/tenants/{name}", tag = "keys", request_body = UpdateTenant,
    params(("name" = String, Path, description = "The tenant.")),
    responses((status = 200, description = "The tenant.", body = TenantObject)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<UpdateTenant>,
) -> Result<axum::Json<TenantObject>, ApiError> {
    if caller.role != Role::Operator {
        return Err(ApiError::forbidden("Only an operator key may set a tenant's plan or budget."));
    }
    let mut t = load(&state, &name)?;
    if let Some(plan) = body.plan {
        check_plan(&state, &caller, plan.as_deref())?;
        t.plan = plan;
    }
    if let Some(budget) = body.monthly_budget_usd {
        t.monthly_budget_nano_usd = match budget {
            None => None,
            Some(usd) => Some(
                nano_from_usd(usd)
                    .ok_or_else(|| ApiError::invalid("monthly_budget_usd must be a number >= 0").param("monthly_budget_usd"))?,
            ),
        };
    }
    state.store.put_tenant(&t).map_err(ApiError::internal)?;
    tracing::info!(by = %caller.key_id, tenant = %t.name, plan = ?t.plan, budget = ?t.monthly_budget_nano_usd, "set a tenant's plan");
    Ok(axum::Json(tenant_json(&state, &t).await?))
}
