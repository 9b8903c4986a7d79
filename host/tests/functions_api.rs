//! Deploying, listing, calling and deleting functions over HTTP; authentication,
//! tenant isolation, persistence across restarts and OpenAI-shaped errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, assert_openai_error, component};
use serde_json::{Value, json};

#[tokio::test]
async fn tool_deploy_call_list_get_delete() {
    let s = Server::start().await;
    // No description or parameters in the manifest: both come from the component.
    s.deploy_ok("calc", "calc", "tool", json!({})).await;

    let (status, out) = s.call("calc", json!({"expression": "2*(3+4)"})).await;
    assert_eq!(status, 200, "{out}");
    let result: Value = serde_json::from_str(out["output"].as_str().unwrap()).unwrap();
    assert_eq!(result["result"], json!(14));

    let (status, out) = s.call("calc", json!({"expression": "1/0"})).await;
    assert_eq!(status, 400);
    assert_eq!(assert_openai_error(&out)["code"], "invalid_tool_arguments");

    s.deploy_ok("wc", "wordcount", "tool", json!({"description": "Counts words"})).await;
    let (status, out) = s.call("wc", json!({"text": "one two three\nfour"})).await;
    assert_eq!(status, 200, "{out}");
    let counts: Value = serde_json::from_str(out["output"].as_str().unwrap()).unwrap();
    assert_eq!(counts["words"], 4);
    assert_eq!(counts["lines"], 2);

    let list: Value = s.client().get(s.url("/v1/functions")).bearer_auth(&s.key).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["calc", "wc"]);

    let calc: Value = s.client().get(s.url("/v1/functions/calc")).bearer_auth(&s.key).send().await.unwrap().json().await.unwrap();
    assert_eq!(calc["kind"], "tool");
    assert!(!calc["description"].as_str().unwrap().is_empty(), "{calc}");
    assert_eq!(calc["parameters"]["type"], "object");
    assert_eq!(calc["parameters"]["required"][0], "expression");
    let wc: Value = s.client().get(s.url("/v1/functions/wc")).bearer_auth(&s.key).send().await.unwrap().json().await.unwrap();
    assert_eq!(wc["description"], "Counts words");

    let resp = s.client().delete(s.url("/v1/functions/calc")).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (status, out) = s.call("calc", json!({"expression": "1"})).await;
    assert_eq!(status, 404);
    assert_eq!(assert_openai_error(&out)["code"], "function_not_found");
    let resp = s.client().delete(s.url("/v1/functions/calc")).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn invalid_uploads_are_refused_with_the_reason() {
    let s = Server::start().await;
    let cases: Vec<(Vec<u8>, Value, &str, &str)> = vec![
        (b"hello, not wasm".to_vec(), json!({"name": "a", "kind": "tool"}), "file", "not a WebAssembly binary"),
        (b"\0asm\x01\0\0\0".to_vec(), json!({"name": "a", "kind": "tool"}), "file", "core WebAssembly module"),
        (component("echo"), json!({"name": "a", "kind": "tool"}), "file", "tensoras:platform/tool"),
        (component("calc"), json!({"name": "a", "kind": "http"}), "file", "incoming-handler"),
        (component("calc"), json!({"name": "a b", "kind": "tool"}), "name", "function names"),
        (component("calc"), json!({"kind": "tool"}), "name", "missing function name"),
        (component("calc"), json!({"name": "a", "kind": "lambda"}), "kind", "kind must be"),
        (
            component("calc"),
            json!({"name": "a", "kind": "tool", "limits": {"memory_mb": 999999}}),
            "limits.memory_mb",
            "memory_mb",
        ),
        (component("calc"), json!({"name": "a", "kind": "tool", "limits": {"memory_mb": 257}}), "limits.memory_mb", "256"),
        (
            component("calc"),
            json!({"name": "a", "kind": "tool", "limits": {"timeout_ms": 300_000}}),
            "limits.timeout_ms",
            "60000",
        ),
        (component("calc"), json!({"name": "a", "kind": "tool", "limits": {"fuel": u64::MAX}}), "limits.fuel", "maximum"),
        (component("calc"), json!({"name": "a", "kind": "tool", "grants": {"network": ["nope"]}}), "grants", "grants.network"),
        (component("calc"), json!({"name": "a", "kind": "tool", "parameters": {"type": "string"}}), "parameters", "object"),
        (component("calc"), json!({"name": "a", "kind": "tool", "permissions": {}}), "manifest", "unknown field"),
        (Vec::new(), json!({"name": "a", "kind": "tool"}), "file", "missing component"),
    ];
    for (wasm, manifest, param, needle) in cases {
        let (status, body) = s.deploy(wasm, manifest.clone()).await;
        assert_eq!(status, 400, "{manifest}: {body}");
        let e = assert_openai_error(&body);
        assert_eq!(e["param"], param, "{manifest}: {body}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{manifest}: expected {needle:?} in {body}");
    }
}

/// Each deploy of a name is a version; the newest serves until a rollback picks another,
/// across a restart too.
#[tokio::test]
async fn redeploys_are_versions_and_rollback_restores_one() {
    let s = Server::start().await;
    s.deploy_ok("f", "calc", "tool", json!({})).await;
    let (status, body) = s.deploy(component("wordcount"), json!({"name": "f", "kind": "tool"})).await;
    assert_eq!((status, body["version"].as_u64()), (201, Some(2)), "{body}");
    let (status, out) = s.call("f", json!({"text": "a b c"})).await;
    assert_eq!(status, 200, "{out}");
    let versions = |s: &Server| {
        let (c, url, key) = (s.client(), s.url("/v1/functions/f/versions"), s.key.clone());
        async move {
            let v: Value = c.get(url).bearer_auth(key).send().await.unwrap().json().await.unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| (v["version"].as_u64().unwrap(), v["active"] == true))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(versions(&s).await, [(1, false), (2, true)]);

    let rollback = |s: &Server, body: Value| {
        let (c, url, key) = (s.client(), s.url("/v1/functions/f/rollback"), s.key.clone());
        async move {
            let resp = c.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = rollback(&s, json!({"version": 1})).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(1)), "{body}");
    let (status, out) = s.call("f", json!({"expression": "6*7"})).await;
    assert_eq!(status, 200, "{out}");
    let (status, body) = rollback(&s, json!({"version": 9})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(assert_openai_error(&body)["code"], "function_not_found");
    let (status, body) = rollback(&s, json!({"version": "one"})).await;
    assert_eq!(status, 400, "{body}");
    assert_openai_error(&body);

    let s = Server::start_with(s.stop().await, |_| {}).await;
    assert_eq!(versions(&s).await, [(1, true), (2, false)]);
    let (status, out) = s.call("f", json!({"expression": "6*7"})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(rollback(&s, json!({"version": 2})).await.0, 200);
    let (status, out) = s.call("f", json!({"text": "a b"})).await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn keys_are_required_and_tenants_are_isolated() {
    let s = Server::start().await;
    s.deploy_ok("calc", "calc", "tool", json!({})).await;
    let c = s.client();

    let resp = c.get(s.url("/v1/functions")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(assert_openai_error(&resp.json().await.unwrap())["code"], "invalid_api_key");
    for bad in ["tns_0123456789012345678901234567890123456789abc", "sk-not-ours", ""] {
        let resp = c.get(s.url("/v1/functions")).bearer_auth(bad).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
        assert_eq!(assert_openai_error(&resp.json().await.unwrap())["code"], "invalid_api_key");
    }

    let beta = s.key_for_tenant("beta", false).await;
    assert!(beta.starts_with("tns_") && beta.len() >= 36);
    let list: Value = c.get(s.url("/v1/functions")).bearer_auth(&beta).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"], json!([]));
    let resp =
        c.post(s.url("/v1/functions/calc/call")).bearer_auth(&beta).json(&json!({"expression": "1"})).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    // Beta's admin may delete beta's functions, and sees alpha's as missing.
    let beta_admin = s.key_for_tenant("beta", true).await;
    let resp = c.delete(s.url("/v1/functions/calc")).bearer_auth(&beta_admin).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    // The same name in another tenant is a different function (deployed by beta's admin:
    // a plain key may not deploy, tests/keys_api.rs).
    let (status, body) = s.deploy_with_key(&beta_admin, component("wordcount"), json!({"name": "calc", "kind": "tool"})).await;
    assert_eq!(status, 201, "{body}");
    let resp = c.post(s.url("/v1/functions/calc/call")).bearer_auth(&beta).json(&json!({"text": "a b"})).send().await.unwrap();
    assert_eq!(resp.status(), 200, "every key of the tenant may call its functions");

    // Non-admin keys cannot manage keys.
    let resp = c.get(s.url("/v1/keys")).bearer_auth(&beta).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_openai_error(&resp.json().await.unwrap());

    // Revoked keys stop working.
    let keys: Value = c.get(s.url("/v1/keys")).bearer_auth(&s.key).send().await.unwrap().json().await.unwrap();
    let beta_id = keys["data"].as_array().unwrap().iter().find(|k| k["tenant"] == "beta" && k["role"] == "member").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(keys.to_string().find("tns_").is_none(), "secrets must never be listed: {keys}");
    let resp = c.delete(s.url(&format!("/v1/keys/{beta_id}"))).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c.get(s.url("/v1/functions")).bearer_auth(&beta).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn functions_survive_a_restart() {
    let s = Server::start().await;
    s.deploy_ok("calc", "calc", "tool", json!({"limits": {"memory_mb": 32}})).await;
    s.deploy_ok("echo", "echo", "http", json!({})).await;
    let data = s.stop().await;

    let s = Server::start_with(data, |_| {}).await;
    let (status, out) = s.call("calc", json!({"expression": "6*7"})).await;
    assert_eq!(status, 200, "{out}");
    assert!(out["output"].as_str().unwrap().contains("42"));
    let f: Value = s.client().get(s.url("/v1/functions/calc")).bearer_auth(&s.key).send().await.unwrap().json().await.unwrap();
    assert_eq!(f["limits"]["memory_mb"], 32);
    let resp = s.client().post(s.url("/v1/functions/echo/invoke")).bearer_auth(&s.key).body("again").send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "again");
}

/// The states a `kill -9` during a deploy or a delete could leave (here made by hand on a
/// stopped server): a record whose component never made it (an older version renamed the
/// file after the record), a component without a record, a deleted function's storage.
/// The restart leaves neither a name taken but unloadable nor a file nobody owns.
#[tokio::test]
async fn a_restart_repairs_what_a_killed_deploy_left() {
    let s = Server::start().await;
    s.deploy_ok("calc", "calc", "tool", json!({})).await;
    s.deploy_ok("kept", "calc", "tool", json!({})).await;
    let data = s.stop().await;
    let dir = data.path().join("functions/alpha");
    let files = || {
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    let [calc, kept] = <[String; 2]>::try_from(files()).unwrap();
    assert!(calc.starts_with("calc.") && calc.ends_with(".wasm"), "{calc}");
    std::fs::remove_file(dir.join(&calc)).unwrap();
    std::fs::write(dir.join("ghost.0123.wasm"), b"bytes of a deploy killed before its record").unwrap();
    std::fs::create_dir_all(data.path().join("function-data/alpha/ghost")).unwrap();

    let s = Server::start_with(data, |_| {}).await;
    assert_eq!(files(), [kept], "the component without a record is gone");
    assert!(!s.data.path().join("function-data/alpha/ghost").exists());
    let (status, out) = s.call("kept", json!({"expression": "6*7"})).await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = s.call("calc", json!({"expression": "1"})).await;
    assert_eq!(status, 404, "{out}");
    s.deploy_ok("calc", "calc", "tool", json!({})).await; // the name is free again
    let (status, out) = s.call("calc", json!({"expression": "6*7"})).await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn malformed_requests_get_openai_errors() {
    let s = Server::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), |c| c.max_body_bytes = 256 * 1024).await;
    s.deploy_ok("calc", "calc", "tool", json!({})).await;
    let c = s.client();
    let call = s.url("/v1/functions/calc/call");

    let resp =
        c.post(&call).bearer_auth(&s.key).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_openai_error(&resp.json().await.unwrap());

    let resp = c.post(&call).bearer_auth(&s.key).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 415);
    assert_openai_error(&resp.json().await.unwrap());

    let resp = c.post(&call).bearer_auth(&s.key).json(&json!(["not", "an", "object"])).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(assert_openai_error(&resp.json().await.unwrap())["param"], "arguments");

    let big = json!({"expression": "1".repeat(400 * 1024)});
    let resp = c.post(&call).bearer_auth(&s.key).json(&big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_openai_error(&resp.json().await.unwrap());

    let resp = c.get(s.url("/v1/no/such/route")).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_openai_error(&resp.json().await.unwrap());

    let resp = c.put(s.url("/v1/functions")).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_openai_error(&resp.json().await.unwrap());

    let resp = c.get(s.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
