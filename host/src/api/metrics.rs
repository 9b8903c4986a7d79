//! `GET /metrics` in Prometheus' text format (docs/operations.md#metrics), and the layer
//! that counts every HTTP answer. Like `/health` it needs no key: it holds counts only,
//! labelled by route template, model, function kind and reason, never by tenant or key.

use std::fmt::Write as _;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::inference::Graph;
use crate::metrics::{header, labels, metrics};

/// Counts the answer by route template (`unmatched` for unknown URLs), method and status,
/// and the time to its head.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Methods are any token a client sends: only the standard ones become labels.
    let method = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        .into_iter()
        .find(|m| req.method().as_str() == *m)
        .unwrap_or("other");
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let m = metrics();
    m.http_requests.inc(&[&route, method, response.status().as_str()]);
    m.http_duration.observe(&[&route], started.elapsed());
    response
}

/// One family of samples read now, one per label value.
fn family<V: std::fmt::Display>(out: &mut String, name: &str, help: &str, kind: &str, label: &str, samples: &[(String, V)]) {
    header(out, name, help, kind);
    for (value, v) in samples {
        let _ = writeln!(out, "{name}{} {v}", labels(&[label], &[value], None));
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: impl std::fmt::Display) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {v}");
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "Prometheus' text exposition format (no key needed).",
        content_type = "text/plain", body = String)))]
pub async fn scrape(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(16 << 10);
    metrics().write(&mut out);

    family(
        &mut out,
        "tensoras_build_info",
        "The running build.",
        "gauge",
        "version",
        &[(env!("CARGO_PKG_VERSION").to_owned(), 1)],
    );
    let a = state.runtime.admission();
    let slots = a.max_instances() as usize;
    gauge(&mut out, "tensoras_instance_slots", "Requests that may run a guest instance at once (--max-instances).", slots);
    gauge(&mut out, "tensoras_instances_busy", "Instance slots in use.", slots.saturating_sub(a.available()));
    gauge(&mut out, "tensoras_queue_depth", "Requests waiting for an instance slot (at most --max-queue).", a.waiting());
    gauge(
        &mut out,
        "tensoras_background_waiting",
        "Background calls (ingestion) waiting behind the interactive ones.",
        a.deferred(),
    );
    let models = a.model_queues();
    let per_model = |f: fn(&(String, usize, usize)) -> usize| -> Vec<(String, usize)> {
        models.iter().map(|q| (q.0.clone(), f(q))).collect()
    };
    family(
        &mut out,
        "tensoras_model_requests_running",
        "Inference requests running on a model (with --max-model-requests).",
        "gauge",
        "model",
        &per_model(|q| q.1),
    );
    family(
        &mut out,
        "tensoras_model_queue_depth",
        "Requests waiting for a model (at most --max-model-queue).",
        "gauge",
        "model",
        &per_model(|q| q.2),
    );

    // The decoders' schedulers, per installed chat model.
    let mut decoders: Vec<(String, crate::inference::decoder::Stats)> = Vec::new();
    for model in state.inference.catalog().all() {
        if let Some(Graph::Decoder(d)) = state.inference.get(&model.manifest.id).map(|l| &l.graph) {
            decoders.push((model.manifest.id.clone(), d.batch_stats()));
        }
    }
    let per = |f: fn(&crate::inference::decoder::Stats) -> u64| -> Vec<(String, u64)> {
        decoders.iter().map(|(m, s)| (m.clone(), f(s))).collect()
    };
    family(&mut out, "tensoras_decode_runs_total", "Batched decode runs, by model.", "counter", "model", &per(|s| s.decode_runs));
    family(
        &mut out,
        "tensoras_decode_steps_total",
        "Sequence steps (tokens) in those runs; steps per run is the mean batch size.",
        "counter",
        "model",
        &per(|s| s.decode_steps),
    );
    family(
        &mut out,
        "tensoras_decode_direct_steps_total",
        "Steps a lone sequence ran on its own thread, outside the batches.",
        "counter",
        "model",
        &per(|s| s.direct_steps),
    );
    family(&mut out, "tensoras_decode_batch_size_max", "Largest batch run so far.", "gauge", "model", &per(|s| s.largest_batch));
    family(&mut out, "tensoras_prefill_runs_total", "Prompt runs, by model.", "counter", "model", &per(|s| s.prefill_runs));
    family(
        &mut out,
        "tensoras_prefix_cache_hits_total",
        "Prompts that started from a cached prefix, by model.",
        "counter",
        "model",
        &per(|s| s.prefix_hits),
    );
    let ratio: Vec<(String, f64)> = decoders
        .iter()
        .map(|(m, s)| {
            (m.clone(), if s.prefill_runs == 0 { 0.0 } else { (s.prefix_hits as f64 / s.prefill_runs as f64).min(1.0) })
        })
        .collect();
    family(&mut out, "tensoras_prefix_cache_hit_ratio", "Prefix-cache hits per prompt run.", "gauge", "model", &ratio);
    family(
        &mut out,
        "tensoras_kv_cache_bytes",
        "Bytes of KV buffers held, prefix cache included.",
        "gauge",
        "model",
        &per(|s| s.kv_bytes),
    );

    // Ingestion: data sources per status, and their chunks.
    match state.store.ingestion_counts() {
        Ok(counts) => {
            let by = |f: fn(&crate::store::IngestionCount) -> u64| -> Vec<(String, u64)> {
                counts.iter().map(|c| (c.status.as_str().to_owned(), f(c))).collect()
            };
            family(
                &mut out,
                "tensoras_data_sources",
                "Knowledge-base data sources, by ingestion status.",
                "gauge",
                "status",
                &by(|c| c.sources),
            );
            family(
                &mut out,
                "tensoras_ingestion_chunks_stored",
                "Chunks stored by those data sources.",
                "gauge",
                "status",
                &by(|c| c.chunks_done),
            );
            family(
                &mut out,
                "tensoras_ingestion_chunks_planned",
                "Chunks those data sources will have stored once done (of those that know).",
                "gauge",
                "status",
                &by(|c| c.chunks_total),
            );
        }
        Err(e) => tracing::warn!("metrics: reading ingestion counts: {e}"),
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}
