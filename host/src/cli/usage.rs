//! `tensoras usage`: what keys used, per day, model, key or tenant, from a running server.

use serde_json::Value;

use super::functions::{Remote, send};

/// Usage report options (`GET /v1/usage`).
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// First day, YYYY-MM-DD (default: 29 days before --end).
    #[arg(long)]
    start: Option<String>,
    /// Last day, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    end: Option<String>,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Only this key (`key_...`).
    #[arg(long)]
    key: Option<String>,
    /// Only this tenant (operator keys; others see their own tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// Comma-separated: day, model, key, tenant.
    #[arg(long, default_value = "day,model")]
    group_by: String,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

pub async fn run(args: UsageArgs) -> anyhow::Result<()> {
    let mut query: Vec<(&str, &str)> = vec![("group_by", args.group_by.as_str())];
    for (name, value) in
        [("start", &args.start), ("end", &args.end), ("model", &args.model), ("key", &args.key), ("tenant", &args.tenant)]
    {
        if let Some(v) = value {
            query.push((name, v));
        }
    }
    let req = reqwest::Client::new().get(args.remote.url("/v1/usage")).query(&query);
    let report = send(req, &args.remote).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let dims: Vec<&str> = report["group_by"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let field = |d: &str| if d == "key" { "key_id".to_owned() } else { d.to_owned() };
    let mut header: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    header.extend(["requests", "input_tokens", "output_tokens", "cost_usd"].map(String::from));
    let row = |b: &Value| -> Vec<String> {
        let mut cells: Vec<String> = dims.iter().map(|d| b[field(d)].as_str().unwrap_or("-").to_owned()).collect();
        for n in ["requests", "input_tokens", "output_tokens"] {
            cells.push(b[n].as_u64().unwrap_or(0).to_string());
        }
        cells.push(format!("{:.6}", b["cost_usd"].as_f64().unwrap_or(0.0)));
        cells
    };
    let mut rows: Vec<Vec<String>> = report["data"].as_array().into_iter().flatten().map(row).collect();
    let mut total = row(&report["total"]);
    if let Some(first) = total.first_mut().filter(|_| !dims.is_empty()) {
        *first = "total".into();
    }
    rows.push(total);
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().chain([&header]).map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let print = |cells: &[String]| {
        let line: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    };
    println!("{} to {}", report["start"].as_str().unwrap_or("?"), report["end"].as_str().unwrap_or("?"));
    print(&header);
    rows.iter().for_each(|r| print(r));
    Ok(())
}
