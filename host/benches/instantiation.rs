//! Per-request cost of running a guest: instantiate + call of a small tool component
//! and a hot HTTP-function request, with the pooling allocator (what `serve` uses) and
//! with on-demand allocation, measured in the same run. Needs the guests built
//! (`bash scripts/build-guests.sh`). Run: `make bench`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt as _, Full};
use tensoras::limits::Limits;
use tensoras::runtime::{Runtime, RuntimeOptions, Sandbox};

fn component(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../build/functions/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-guests.sh", path.display()))
}

fn limits() -> Limits {
    Limits { memory_bytes: 64 << 20, timeout: std::time::Duration::from_secs(10), fuel: 1_000_000_000 }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let calc = component("calc");
    let echo = component("echo");
    for (label, pooling) in [("pooling", true), ("on_demand", false)] {
        let runtime =
            Runtime::new(&RuntimeOptions { pooling, max_instances: 64, max_memory_bytes: 256 << 20, cache_dir: None }).unwrap();
        let tool = runtime.prepare_tool(&runtime.compile(&calc).unwrap(), limits(), Sandbox::default()).unwrap();
        let http = runtime.prepare_http(&runtime.compile(&echo).unwrap(), limits(), Sandbox::default()).unwrap();

        c.bench_function(&format!("tool_instantiate_and_call/{label}"), |b| {
            b.iter(|| rt.block_on(runtime.call_tool(&tool, r#"{"expression":"6*7"}"#, None)).unwrap())
        });
        c.bench_function(&format!("http_function_request/{label}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let body = Full::new(Bytes::from_static(b"hello")).map_err(|e| match e {}).boxed_unsync();
                    let req = hyper::Request::post("http://localhost/bench").body(body).unwrap();
                    let resp = runtime.handle_http(&http, req, None).await.unwrap();
                    resp.into_body().collect().await.unwrap().to_bytes()
                })
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
