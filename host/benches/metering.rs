//! What metering adds to a request (issue #21's target: under 50 µs, under 1 % of a
//! single stream's decode): `Meter::record`, the only part on the request path, and the
//! once-a-second flush of what accumulated, into a real SQLite file.
//!
//! `cargo bench -p tensoras --bench metering` (`make bench-metering`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tensoras::store::MetadataStore;
use tensoras::store::sqlite::SqliteStore;
use tensoras::usage::{Meter, Price};

fn metering(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetadataStore> = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let meter = Meter::new(store);
    let price = Price { input: 0.2, output: 0.6 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // A request's share: one record into a bucket that exists (a busy key's steady state).
    c.bench_function("record (existing bucket)", |b| {
        b.iter(|| meter.record("acme", "key_0123456789abcdef", "smollm2-135m-instruct", 812, 128, price));
    });
    // Flushing a second's worth: 50 keys × 2 models, upserted in one transaction.
    c.bench_function("flush 100 buckets", |b| {
        b.iter_batched(
            || {
                for key in 0..50 {
                    for model in ["smollm2-135m-instruct", "all-minilm-l6-v2"] {
                        meter.record("acme", &format!("key_{key:016x}"), model, 812, 128, price);
                    }
                }
            },
            |()| rt.block_on(meter.flush()),
            BatchSize::PerIteration,
        );
    });
}

criterion_group!(benches, metering);
criterion_main!(benches);
