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

/// A server whose operator lets functions reach loopback (as a trusted setup would).
async fn server_allowing_loopback() -> Server {
    let allow = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    Server::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), move |c| {
        c.address_policy = tensoras::net::AddressPolicy::new(allow);
    })
    .await
}

/// Whether a connection reached `listener` (already made connections wait in its backlog,
/// so this needs no waiting: the probe's connect finished before its call returned).
fn accepted(listener: &std::net::TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

#[tokio::test]
async fn network_grants_never_reach_internal_addresses() {
    let s = Server::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // IPv6 loopback may be missing on a CI machine; the refusal is checked either way.
    let listener6 = std::net::TcpListener::bind("[::1]:0").ok();
    let port6 = listener6.as_ref().map_or(port, |l| l.local_addr().unwrap().port());
    let server_port = s.url.rsplit(':').next().unwrap().to_owned();
    let cases = [
        ("*", format!("127.0.0.1:{port}")),
        ("*", format!("127.0.0.1:{server_port}")),
        ("*", format!("[::ffff:127.0.0.1]:{port}")),
        ("*", format!("[::127.0.0.1]:{port}")),
        ("*", format!("[64:ff9b::7f00:1]:{port}")),
        ("*", format!("[2002:7f00:1::]:{port}")),
        ("*", "169.254.169.254:80".to_owned()),
        ("*", "10.0.0.1:80".to_owned()),
        ("127.0.0.1:*", format!("127.0.0.1:{port}")),
        ("169.254.169.254:80", "169.254.169.254:80".to_owned()),
        ("[::1]:*", format!("[::1]:{port6}")),
        ("[64:ff9b::7f00:1]:*", format!("[64:ff9b::7f00:1]:{port}")),
        ("[2002:7f00:1::]:*", format!("[2002:7f00:1::]:{port}")),
    ];
    for (i, (grant, addr)) in cases.iter().enumerate() {
        let name = format!("net{i}");
        s.deploy_ok(&name, "probe", "tool", json!({"grants": {"network": [grant]}})).await;
        let out = probe(&s, &name, json!({"action": "connect", "addr": addr})).await;
        assert_eq!(out["ok"], false, "grant {grant} let the function reach {addr}: {out}");
        // Refused by the sandbox, before any packet: not refused by the peer, not timed out.
        // wasmtime-wasi itself rejects IPv4-mapped and IPv4-compatible addresses on IPv6
        // sockets before asking the host (the address policy refuses them too, for HTTP).
        let detail = out["detail"].as_str().unwrap();
        let wasi_refuses = addr.contains("::ffff:") || addr.contains("[::127.");
        let refused = detail.contains("access-denied") || (wasi_refuses && detail.contains("invalid-argument"));
        assert!(refused, "grant {grant}, {addr}: {out}");
    }
    assert!(!accepted(&listener), "a function reached the loopback listener");
    if let Some(l6) = &listener6 {
        assert!(!accepted(l6), "a function reached the IPv6 loopback listener");
    }

    // The same grants work once the operator allows loopback: the refusals above came
    // from the address policy, and the listener can see a connection.
    let trusted = server_allowing_loopback().await;
    trusted.deploy_ok("lo", "probe", "tool", json!({"grants": {"network": [format!("127.0.0.1:{port}")]}})).await;
    let out = probe(&trusted, "lo", json!({"action": "connect", "addr": format!("127.0.0.1:{port}")})).await;
    assert_eq!(out["ok"], true, "{out}");
    assert!(accepted(&listener), "the allowed connection did not arrive");
    // The allow-list widens the policy, never the grants.
    let out = probe(&trusted, "lo", json!({"action": "connect", "addr": format!("127.0.0.1:{server_port}")})).await;
    assert_eq!(out["ok"], false, "{out}");
}

#[tokio::test]
async fn grants_open_exactly_what_they_name() {
    let s = server_allowing_loopback().await;
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
