//! HTTP functions served at `/v1/functions/{name}/invoke`, bodies streamed both ways.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Server, assert_openai_error};
use serde_json::json;

#[tokio::test]
async fn echo_sees_method_path_query_and_body() {
    let s = Server::start().await;
    s.deploy_ok("echo", "echo", "http", json!({})).await;
    let c = s.client();

    let resp = c
        .put(s.url("/v1/functions/echo/invoke/foo/bar?x=1&y=two"))
        .bearer_auth(&s.key)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-echo-method"], "PUT");
    assert_eq!(resp.headers()["x-echo-path"], "/foo/bar?x=1&y=two");
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.text().await.unwrap(), "hello");

    let resp = c.get(s.url("/v1/functions/echo/invoke")).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.headers()["x-echo-path"], "/");
    assert_eq!(resp.headers()["x-echo-method"], "GET");

    let resp = c.get(s.url("/v1/functions/echo/invoke/status/418")).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 418);

    // Without a key the function is not reached.
    let resp = c.post(s.url("/v1/functions/echo/invoke")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_openai_error(&resp.json().await.unwrap());
}

#[tokio::test]
async fn large_bodies_stream_through() {
    let s = Server::start().await;
    s.deploy_ok("echo", "echo", "http", json!({"limits": {"memory_mb": 16}})).await;
    // 24 MiB through a function limited to 16 MiB of memory: only streaming can do it.
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks = 24;
    let stream = futures::stream::iter((0..chunks).map({
        let chunk = chunk.clone();
        move |_| Ok::<_, std::io::Error>(chunk.clone())
    }));
    let resp = s
        .client()
        .post(s.url("/v1/functions/echo/invoke"))
        .bearer_auth(&s.key)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), chunk.len() * chunks);
    assert!(body.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
}

#[tokio::test]
async fn response_starts_before_the_request_body_ends() {
    let s = Server::start().await;
    s.deploy_ok("echo", "echo", "http", json!({})).await;
    // The client sends one chunk, then waits until it has read the echo of that chunk
    // before sending the next: this only finishes if both directions stream.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(b"first;".to_vec())).unwrap();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        s.client().post(s.url("/v1/functions/echo/invoke")).bearer_auth(&s.key).body(reqwest::Body::wrap_stream(rx)).send(),
    )
    .await
    .expect("response head must arrive while the request body is still open")
    .unwrap();
    let mut resp = resp;
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.unwrap().unwrap().unwrap();
    assert_eq!(&first[..], b"first;");
    tx.unbounded_send(Ok(b"second".to_vec())).unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"second");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let s = Server::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), |c| c.max_body_bytes = 256 * 1024).await;
    s.deploy_ok("echo", "echo", "http", json!({})).await;
    let resp = s
        .client()
        .post(s.url("/v1/functions/echo/invoke"))
        .bearer_auth(&s.key)
        .body(vec![b'x'; 400 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_openai_error(&resp.json().await.unwrap());
}

#[tokio::test]
async fn wrong_kind_routes_are_explained() {
    let s = Server::start().await;
    s.deploy_ok("echo", "echo", "http", json!({})).await;
    s.deploy_ok("calc", "calc", "tool", json!({})).await;
    let (status, body) = s.call("echo", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(assert_openai_error(&body)["code"], "wrong_function_kind");
    let resp = s.client().post(s.url("/v1/functions/calc/invoke")).bearer_auth(&s.key).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 400);
}
