//! What metering and rate limits add to a request (issue #21's target: under 50 µs, under
//! 1 % of a single stream's decode): `Meter::record`, the once-a-second flush of what
//! accumulated into a real SQLite file, and a limited key's admission (plan lookup of its
//! tenant, admit, token reservation, the headers' status, release) and budget check; what
//! `/metrics` adds (an answer counted and timed) and a model queue's turn.
//!
//! `cargo bench -p tensoras --bench metering` (`make bench-metering`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tensoras::store::MetadataStore;
use tensoras::store::sqlite::SqliteStore;
use tensoras::usage::{Meter, Price, Tokens};

/// A typical chat request's tokens, a third of its prompt from the prefix cache.
const TOKENS: Tokens = Tokens { input: 812, output: 128, cached: 256, batch: false };

fn metering(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetadataStore> = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let limiter = tensoras::ratelimit::Limiter::new();
    let meter = Meter::new(store.clone(), limiter.clone());
    let price = Price { input: 0.2, output: 0.6 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // A request's share: one record into a bucket that exists (a busy key's steady state).
    c.bench_function("record (existing bucket)", |b| {
        b.iter(|| meter.record("acme", "key_0123456789abcdef", "smollm2-135m-instruct", TOKENS, price));
    });
    // Flushing a second's worth: 50 keys × 2 models, upserted in one transaction.
    c.bench_function("flush 100 buckets", |b| {
        b.iter_batched(
            || {
                for key in 0..50 {
                    for model in ["smollm2-135m-instruct", "all-minilm-l6-v2"] {
                        meter.record("acme", &format!("key_{key:016x}"), model, TOKENS, price);
                    }
                }
            },
            |()| rt.block_on(meter.flush()),
            BatchSize::PerIteration,
        );
    });

    // A limited key's admission, as `api::ratelimit` runs it on every request: its
    // tenant's record from SQLite, then admit, reserve, status for the headers, release.
    // The limits are out of reach, so every iteration is admitted (the busy steady state).
    store
        .put_tenant(&tensoras::store::TenantRecord {
            name: "acme".into(),
            plan: Some("pro".into()),
            monthly_budget_nano_usd: Some(1),
        })
        .unwrap();
    let plan = Arc::new(tensoras::plans::Plan {
        name: "bench".into(),
        rpm: Some(u64::MAX / 4),
        tpm: Some(u64::MAX / 4),
        max_concurrent: Some(1 << 20),
        ..Default::default()
    });
    c.bench_function("tenant lookup (SQLite)", |b| b.iter(|| store.tenant("acme").unwrap()));
    c.bench_function("admit + reserve + status + release", |b| {
        b.iter(|| {
            let ticket = limiter.admit("key_0123456789abcdef", &plan).unwrap();
            ticket.reserve(940).unwrap();
            std::hint::black_box(ticket.status());
        });
    });
    // What `/metrics` adds to a request: its answer counted and timed (the API's layer).
    let m = tensoras::metrics::metrics();
    c.bench_function("metrics: answer counted and timed", |b| {
        b.iter(|| {
            m.http_requests.inc(&["/v1/chat/completions", "POST", "200"]);
            m.http_duration.observe(&["/v1/chat/completions"], std::time::Duration::from_millis(70));
        });
    });
    // A streamed token's event: classified (a JSON parse of the chunk) and timed.
    let mut clock = tensoras::metrics::TokenClock::new("smollm2-135m-instruct".to_owned(), std::time::Instant::now());
    let event = r#"{"id":"chatcmpl-4bf92f3577b34da6a3ce929d","object":"chat.completion.chunk","created":1765000000,"model":"smollm2-135m-instruct","system_fingerprint":"tensoras","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]}"#;
    c.bench_function("metrics: stream event classified and timed", |b| b.iter(|| clock.event(std::hint::black_box(event))));
    // With --max-model-requests: a request's model queue found, its turn taken and given back.
    let admission = tensoras::runtime::Admission::new(
        256,
        tensoras::limits::AdmissionOptions { max_model_requests: Some(64), ..Default::default() },
    );
    c.bench_function("model queue: turn taken and given back", |b| {
        b.iter(|| {
            let queue = admission.model_queue("smollm2-135m-instruct").unwrap();
            drop(std::hint::black_box(rt.block_on(queue.enter()).unwrap()));
        });
    });
    rt.block_on(meter.month_cost("acme")).unwrap();
    c.bench_function("budget check (month's spending, cached)", |b| b.iter(|| rt.block_on(meter.month_cost("acme")).unwrap()));
}

criterion_group!(benches, metering);
criterion_main!(benches);
