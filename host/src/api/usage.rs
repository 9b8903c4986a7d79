//! `GET /v1/usage`: tokens, requests and cost per day, model, key or tenant. A key sees its
//! own tenant's usage; an operator key every tenant's (or one, with `tenant`).

use axum::Extension;
use axum::extract::{Query, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::{AppState, Caller};
use crate::auth::Role;
use crate::store::UsageCounts;
use crate::usage::{GroupBy, format_day, group, parse_day, today};

/// The longest span one report covers.
const MAX_DAYS: i64 = 366;
/// What a report covers without `start`: the last 30 days.
const DEFAULT_DAYS: i64 = 30;

/// What a span of requests used.
#[derive(Debug, Serialize, ToSchema)]
pub struct Counts {
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    /// At the catalogue's prices (0 for a model without a price).
    cost_usd: f64,
    /// Of these, what batch jobs (`/v1/batches`) ran.
    batch: BatchUsage,
}

/// What batch jobs ran, included in the totals beside it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchUsage {
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
}

impl From<&UsageCounts> for Counts {
    fn from(c: &UsageCounts) -> Self {
        Self {
            requests: c.requests,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cached_tokens: c.cached_tokens,
            cost_usd: crate::usage::usd_from_nano(c.cost_nano_usd),
            batch: BatchUsage {
                requests: c.batch.requests,
                input_tokens: c.batch.input_tokens,
                output_tokens: c.batch.output_tokens,
            },
        }
    }
}

/// One group of the report: the fields named by `group_by` say which.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    #[schema(value_type = String, pattern = "^usage\\.bucket$")]
    object: &'static str,
    /// `YYYY-MM-DD` (UTC), when grouped by day.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = Date)]
    day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    model: Option<String>,
    #[serde(flatten)]
    counts: Counts,
}

/// `GET /v1/usage`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    #[schema(value_type = String, pattern = "^list$")]
    object: &'static str,
    /// First day covered, `YYYY-MM-DD`.
    #[schema(format = Date)]
    start: String,
    /// Last day covered, `YYYY-MM-DD`.
    #[schema(format = Date)]
    end: String,
    /// What the buckets are grouped by.
    group_by: Vec<&'static str>,
    data: Vec<Bucket>,
    total: Counts,
}

/// The last value given for `name`, if any (a repeated parameter's last one wins).
fn last<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn day_param(params: &[(String, String)], name: &'static str) -> Result<Option<i64>, ApiError> {
    match last(params, name) {
        None => Ok(None),
        Some(v) => parse_day(v)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{name} must be a date as YYYY-MM-DD, got {v:?}")).param(name)),
    }
}

/// `GET /v1/usage?start=YYYY-MM-DD&end=YYYY-MM-DD&model=&key=&tenant=&group_by=day,model`.
/// The parameters are read as pairs, as `group_by` may repeat; unknown ones are a 400.
#[utoipa::path(get, path = "/usage", tag = "keys",
    params(
        ("start" = Option<String>, Query, format = Date, description = "First day (UTC); 30 days before `end` by default."),
        ("end" = Option<String>, Query, format = Date, description = "Last day (UTC); today by default. At most 366 days in all."),
        ("model" = Option<String>, Query, description = "Only this model (any of its names)."),
        ("key" = Option<String>, Query, description = "Only this key's id."),
        ("tenant" = Option<String>, Query, description = "Only this tenant (operators; others see their own)."),
        ("group_by" = Option<String>, Query, description = "Comma-separated `day`, `model`, `key`, `tenant`; `day,model` by default."),
    ),
    responses((status = 200, description = "The report.", body = UsageReport)))]
pub async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<axum::Json<UsageReport>, ApiError> {
    if let Some((k, _)) =
        params.iter().find(|(k, _)| !["start", "end", "model", "key", "tenant", "group_by"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(format!("unknown query parameter '{k}'")).param(k.clone()));
    }
    let one = |name: &str| last(&params, name).filter(|v| !v.is_empty()).map(str::to_owned);
    let end = day_param(&params, "end")?.unwrap_or_else(today);
    let start = day_param(&params, "start")?.unwrap_or(end - (DEFAULT_DAYS - 1));
    if start > end {
        return Err(ApiError::invalid("start must not be after end").param("start"));
    }
    if end - start >= MAX_DAYS {
        return Err(ApiError::invalid(format!("a report covers at most {MAX_DAYS} days")).param("start"));
    }
    let mut by = Vec::new();
    let names: Vec<String> =
        params.iter().filter(|(k, _)| k == "group_by").flat_map(|(_, v)| v.split(',').map(str::to_owned)).collect();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let g = GroupBy::parse(name).ok_or_else(|| {
            ApiError::invalid(format!("group_by takes day, model, key and tenant, not '{name}'")).param("group_by")
        })?;
        if !by.contains(&g) {
            by.push(g);
        }
    }
    if names.is_empty() {
        by = vec![GroupBy::Day, GroupBy::Model];
    }
    let tenant = match (caller.role, one("tenant")) {
        (Role::Operator, wanted) => wanted,
        (_, Some(wanted)) if wanted != caller.tenant => {
            return Err(ApiError::forbidden(format!(
                "Only an operator key sees other tenants' usage; this key sees its own tenant's ('{}').",
                caller.tenant
            ))
            .param("tenant"));
        }
        _ => Some(caller.tenant.clone()),
    };

    let mut rows = state.meter.read(start, end, tenant.as_deref()).await.map_err(ApiError::internal)?;
    if let Some(model) = one("model") {
        // Under the canonical id it was recorded with, whichever alias the filter names.
        let model = state.inference.get(&model).map_or(model, |m| m.model.manifest.id.clone());
        rows.retain(|r| r.model == model);
    }
    if let Some(key) = one("key") {
        rows.retain(|r| r.key_id == key);
    }
    let mut total = UsageCounts::default();
    let data = group(&rows, &by)
        .into_iter()
        .map(|(g, counts)| {
            total += counts;
            Bucket {
                object: "usage.bucket",
                day: g.day.map(format_day),
                tenant: g.tenant,
                key_id: g.key_id,
                model: g.model,
                counts: Counts::from(&counts),
            }
        })
        .collect();
    Ok(axum::Json(UsageReport {
        object: "list",
        start: format_day(start),
        end: format_day(end),
        group_by: by.iter().map(|g| g.name()).collect(),
        data,
        total: Counts::from(&total),
    }))
}
