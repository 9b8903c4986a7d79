//! Misbehaving guests fail only their own request, and the WASI sandbox grants nothing
//! a manifest does not ask for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, assert_openai_error};
use serde_json::{Value, json};

async fn expect_failure(s: &Server, name: &str, mode: &str, status: u16, code: &str) {
    let started = std::time::Instant::now();
    let (got, body) = s.call(name, json!({"mode": mode})).await;
    assert_eq!(got, status, "{mode}: {body}");
    let e = assert_openai_error(&body);
    assert_eq!(e["code"], code, "{mode}: {body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{mode} took {:?}", started.elapsed());
    // The host keeps serving: the same function still answers.
    let (got, body) = s.call(name, json!({"mode": "ok"})).await;
    assert_eq!(got, 200, "after {mode}: {body}");
}

#[tokio::test]
async fn misbehaving_guests_fail_alone() {
    let s = Server::start().await;
    s.deploy_ok("bad", "misbehave", "tool", json!({"limits": {"memory_mb": 32, "timeout_ms": 500}})).await;
    s.deploy_ok("burner", "misbehave", "tool", json!({"limits": {"fuel": 50_000_000, "timeout_ms": 60_000}})).await;

    expect_failure(&s, "bad", "trap", 500, "function_trapped").await;
    expect_failure(&s, "bad", "loop", 504, "function_timeout").await;
    expect_failure(&s, "bad", "alloc", 500, "function_memory_limit").await;
    expect_failure(&s, "bad", "stack", 500, "function_stack_overflow").await;
    expect_failure(&s, "burner", "loop", 504, "function_cpu_limit").await;

    // Many failures in parallel do not leak instance slots or take the server down.
    let calls = (0..20).map(|i| {
        let mode = ["trap", "stack", "alloc", "ok"][i % 4];
        let s = &s;
        async move { s.call("bad", json!({"mode": mode})).await.0 }
    });
    let statuses = futures::future::join_all(calls).await;
    assert_eq!(statuses.iter().filter(|&&c| c == 200).count(), 5, "{statuses:?}");
    let resp = s.client().get(s.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

async fn probe(s: &Server, name: &str, args: Value) -> Value {
    let (status, body) = s.call(name, args.clone()).await;
    assert_eq!(status, 200, "{args}: {body}");
    serde_json::from_str(body["output"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn wasi_is_deny_by_default() {
    let s = Server::start().await;
    s.deploy_ok("probe", "probe", "tool", json!({})).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();

    for args in [
        json!({"action": "read_file", "path": "/etc/passwd"}),
        json!({"action": "read_file", "path": "Cargo.toml"}),
        json!({"action": "list_dir", "path": "/"}),
        json!({"action": "write_file", "path": "/data/x", "content": "hi"}),
        json!({"action": "connect", "addr": addr}),
        json!({"action": "env", "name": "HOME"}),
        json!({"action": "env", "name": "PATH"}),
    ] {
        let out = probe(&s, "probe", args.clone()).await;
        assert_eq!(out["ok"], false, "{args} should be denied: {out}");
    }
}

#[tokio::test]
async fn grants_open_exactly_what_they_name() {
    let s = Server::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap().to_string();
    s.deploy_ok(
        "granted",
        "probe",
        "tool",
        json!({"grants": {"network": [addr.clone()], "env": {"GREETING": "hello"}, "storage": true}}),
    )
    .await;

    let out = probe(&s, "granted", json!({"action": "connect", "addr": addr})).await;
    assert_eq!(out["ok"], true, "{out}");
    let out = probe(&s, "granted", json!({"action": "connect", "addr": other_addr})).await;
    assert_eq!(out["ok"], false, "{out}");
    let out = probe(&s, "granted", json!({"action": "env", "name": "GREETING"})).await;
    assert_eq!(out, json!({"ok": true, "detail": "hello"}));
    let out = probe(&s, "granted", json!({"action": "env", "name": "HOME"})).await;
    assert_eq!(out["ok"], false, "{out}");

    let out = probe(&s, "granted", json!({"action": "write_file", "path": "/data/note.txt", "content": "kept"})).await;
    assert_eq!(out["ok"], true, "{out}");
    // A later request (a fresh instance) sees the file: storage persists.
    let out = probe(&s, "granted", json!({"action": "read_file", "path": "/data/note.txt"})).await;
    assert_eq!(out, json!({"ok": true, "detail": "kept"}));
    // Storage is the function's own directory, nothing above it.
    let out = probe(&s, "granted", json!({"action": "read_file", "path": "/data/../tensoras.db"})).await;
    assert_eq!(out["ok"], false, "{out}");
    let out = probe(&s, "granted", json!({"action": "read_file", "path": "/etc/passwd"})).await;
    assert_eq!(out["ok"], false, "{out}");
    drop(listener);
}
