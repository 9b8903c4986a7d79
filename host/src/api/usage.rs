//! `GET /v1/usage`: tokens, requests and cost per day, model, key or tenant. A key sees its
//! own tenant's usage; an operator key every tenant's (or one, with `tenant`).

use axum::Extension;
use axum::extract::{Query, State};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::{AppState, Caller};
use crate::auth::Role;
use crate::store::UsageCounts;
use crate::usage::{GroupBy, format_day, group, parse_day, today};

/// The longest span one report covers.
const MAX_DAYS: i64 = 366;
/// What a report covers without `start`: the last 30 days.
const DEFAULT_DAYS: i64 = 30;

fn counts_json(c: &UsageCounts) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("requests".into(), c.requests.into());
    m.insert("input_tokens".into(), c.input_tokens.into());
    m.insert("output_tokens".into(), c.output_tokens.into());
    m.insert("cached_tokens".into(), c.cached_tokens.into());
    m.insert("cost_usd".into(), crate::usage::usd_from_nano(c.cost_nano_usd).into());
    m
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
pub async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<axum::Json<Value>, ApiError> {
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
    let data: Vec<Value> = group(&rows, &by)
        .into_iter()
        .map(|(g, counts)| {
            total += counts;
            let mut m = Map::new();
            m.insert("object".into(), "usage.bucket".into());
            if let Some(day) = g.day {
                m.insert("day".into(), format_day(day).into());
            }
            if let Some(t) = g.tenant {
                m.insert("tenant".into(), t.into());
            }
            if let Some(k) = g.key_id {
                m.insert("key_id".into(), k.into());
            }
            if let Some(model) = g.model {
                m.insert("model".into(), model.into());
            }
            m.extend(counts_json(&counts));
            Value::Object(m)
        })
        .collect();
    let by: Vec<&str> = by.iter().map(|g| g.name()).collect();
    Ok(axum::Json(json!({
        "object": "list",
        "start": format_day(start),
        "end": format_day(end),
        "group_by": by,
        "data": data,
        "total": counts_json(&total),
    })))
}
