//! Roles and scopes over HTTP (docs/security.md): operator keys manage every tenant's keys,
//! tenant admin keys only their own tenant's, plain keys none; the last operator key cannot
//! be revoked; deploying and deleting functions needs a tenant admin, an operator or the
//! `functions:deploy` scope, while calling them stays open to every key of the tenant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, assert_openai_error, component};
use serde_json::{Value, json};

/// `GET /v1/keys[?query]` with `key`; status and body.
async fn list_keys(s: &Server, key: &str, query: &str) -> (u16, Value) {
    let resp = s.client().get(s.url(&format!("/v1/keys{query}"))).bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// `DELETE /v1/keys/{id}` with `key`; status and body.
async fn revoke(s: &Server, key: &str, id: &str) -> (u16, Value) {
    let resp = s.client().delete(s.url(&format!("/v1/keys/{id}"))).bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Creates a key with the operator key; returns (id, secret).
async fn operator_creates(s: &Server, body: Value) -> (String, String) {
    let (status, out) = s.create_key(&s.key, body).await;
    assert_eq!(status, 200, "{out}");
    (out["id"].as_str().unwrap().to_owned(), out["key"].as_str().unwrap().to_owned())
}

fn tenants_of(list: &Value) -> Vec<String> {
    let mut t: Vec<String> = list["data"].as_array().unwrap().iter().map(|k| k["tenant"].as_str().unwrap().to_owned()).collect();
    t.sort();
    t.dedup();
    t
}

fn ids_of(list: &Value) -> Vec<String> {
    list["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect()
}

async fn key_works(s: &Server, key: &str) -> bool {
    s.client().get(s.url("/v1/functions")).bearer_auth(key).send().await.unwrap().status() == 200
}

#[tokio::test]
async fn a_tenant_admin_manages_its_own_tenant_only() {
    let s = Server::start().await;
    let (_, c_admin) = operator_creates(&s, json!({"name": "c-admin", "tenant": "c", "role": "admin"})).await;
    let (default_id, default_member) = operator_creates(&s, json!({"name": "d", "tenant": "default"})).await;
    let (c_member_id, c_member) = operator_creates(&s, json!({"name": "c-member", "tenant": "c"})).await;

    // Listing: only tenant c, and asking for another tenant is refused.
    let (status, list) = list_keys(&s, &c_admin, "").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(tenants_of(&list), ["c"]);
    assert!(!ids_of(&list).contains(&default_id), "{list}");
    for query in ["?tenant=default", "?tenant=alpha"] {
        let (status, body) = list_keys(&s, &c_admin, query).await;
        assert_eq!(status, 403, "{query}: {body}");
        let e = assert_openai_error(&body);
        assert_eq!(e["param"], "tenant");
        assert!(!body.to_string().contains(&default_id), "{body}");
    }
    let (status, list) = list_keys(&s, &c_admin, "?tenant=c").await;
    assert_eq!((status, tenants_of(&list)), (200, vec!["c".to_owned()]));

    // Minting: not into another tenant, not an operator; into its own tenant, yes.
    let before = list_keys(&s, &s.key, "?tenant=default").await.1;
    let (status, body) = s.create_key(&c_admin, json!({"name": "x", "tenant": "default"})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(assert_openai_error(&body)["param"], "tenant");
    assert!(body.get("key").is_none() && !body.to_string().contains("tns_"), "{body}");
    assert_eq!(list_keys(&s, &s.key, "?tenant=default").await.1, before, "no key was minted into default");
    let (status, body) = s.create_key(&c_admin, json!({"name": "x", "role": "operator"})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(assert_openai_error(&body)["param"], "role");
    let (status, body) = s.create_key(&c_admin, json!({"name": "c2", "role": "admin"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["tenant"].as_str(), body["role"].as_str()), (Some("c"), Some("admin")));
    assert!(key_works(&s, body["key"].as_str().unwrap()).await);

    // Revoking: another tenant's key looks missing and keeps working; its own tenant's goes.
    let (status, body) = revoke(&s, &c_admin, &default_id).await;
    assert_eq!(status, 404, "{body}");
    assert_openai_error(&body);
    assert!(key_works(&s, &default_member).await);
    let (status, body) = revoke(&s, &c_admin, &c_member_id).await;
    assert_eq!(status, 200, "{body}");
    assert!(!key_works(&s, &c_member).await);

    // The operator sees and filters every tenant.
    let (status, list) = list_keys(&s, &s.key, "").await;
    assert_eq!(status, 200);
    assert_eq!(tenants_of(&list), ["alpha", "c", "default"]);
    assert!(!list.to_string().contains("tns_"), "secrets are never listed: {list}");
    assert_eq!(tenants_of(&list_keys(&s, &s.key, "?tenant=default").await.1), ["default"]);

    // Plain keys manage no keys at all.
    let (status, body) = list_keys(&s, &default_member, "").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(assert_openai_error(&body)["type"], "permission_error");
    let (status, _) = s.create_key(&default_member, json!({"name": "x"})).await;
    assert_eq!(status, 403);
    let (status, _) = revoke(&s, &default_member, &default_id).await;
    assert_eq!(status, 403);
    assert!(key_works(&s, &default_member).await);
}

#[tokio::test]
async fn a_tenant_admin_cannot_revoke_an_operator_key_of_its_tenant() {
    let s = Server::start().await;
    // The operator key lives in tenant alpha; alpha's admin sees it but may not revoke it.
    let (_, alpha_admin) = operator_creates(&s, json!({"name": "a", "role": "admin"})).await;
    let (_, list) = list_keys(&s, &alpha_admin, "").await;
    let op =
        list["data"].as_array().unwrap().iter().find(|k| k["role"] == "operator").unwrap()["id"].as_str().unwrap().to_owned();
    // A second operator, so the refusal is about the role, not about being the last one.
    operator_creates(&s, json!({"name": "op2", "tenant": "ops", "role": "operator"})).await;
    let (status, body) = revoke(&s, &alpha_admin, &op).await;
    assert_eq!(status, 403, "{body}");
    assert_openai_error(&body);
    assert!(key_works(&s, &s.key).await);
}

#[tokio::test]
async fn the_last_operator_key_cannot_be_revoked() {
    let s = Server::start().await;
    let (_, list) = list_keys(&s, &s.key, "").await;
    let first = list["data"][0]["id"].as_str().unwrap().to_owned();

    let (status, body) = revoke(&s, &s.key, &first).await;
    assert_eq!(status, 409, "{body}");
    let e = assert_openai_error(&body);
    assert_eq!(e["code"], "last_operator_key");
    assert!(e["message"].as_str().unwrap().contains("last active operator key"), "{body}");
    assert!(key_works(&s, &s.key).await);

    // With a second operator, the first can go; then the second is the last.
    let (second_id, second) = operator_creates(&s, json!({"name": "op2", "tenant": "ops", "role": "operator"})).await;
    let (status, body) = revoke(&s, &second, &first).await;
    assert_eq!(status, 200, "{body}");
    assert!(!key_works(&s, &s.key).await);
    let (status, body) = revoke(&s, &second, &second_id).await;
    assert_eq!(status, 409, "{body}");
    assert!(key_works(&s, &second).await);
    let (status, list) = list_keys(&s, &second, "").await;
    assert_eq!(status, 200, "the remaining operator still manages every tenant: {list}");
}

#[tokio::test]
async fn bad_roles_and_scopes_are_refused_with_the_param() {
    let s = Server::start().await;
    let cases = [
        (json!({"name": "k", "scopes": ["functions:deploy", "keys:write"]}), "scopes", "keys:write"),
        (json!({"name": "k", "scopes": "functions:deploy"}), "scopes", "array of strings"),
        (json!({"name": "k", "scopes": [7]}), "scopes", "array of strings"),
        (json!({"name": "k", "role": "root"}), "role", "role must be"),
        (json!({"name": "k", "role": "member", "admin": true}), "admin", "contradicts"),
        (json!({"name": "k", "tenant": "a b"}), "tenant", "tenant names"),
    ];
    for (body, param, needle) in cases {
        let (status, out) = s.create_key(&s.key, body.clone()).await;
        assert_eq!(status, 400, "{body}: {out}");
        let e = assert_openai_error(&out);
        assert_eq!(e["param"], param, "{body}: {out}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{body}: expected {needle:?} in {out}");
    }
    // An unknown field (a typo of `scopes`) is an error, not a key with fewer rights than meant.
    let (status, out) = s.create_key(&s.key, json!({"name": "k", "scope": ["functions:deploy"]})).await;
    assert_eq!(status, 400, "{out}");
    assert_openai_error(&out);
    // Duplicates collapse; `admin: true` still means a tenant admin.
    let (status, out) = s.create_key(&s.key, json!({"name": "k", "scopes": ["functions:deploy", "functions:deploy"]})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["scopes"], json!(["functions:deploy"]));
    assert_eq!(out["role"], "member");
    let (_, out) = s.create_key(&s.key, json!({"name": "k", "admin": true})).await;
    assert_eq!(out["role"], "admin");
}

#[tokio::test]
async fn deploying_needs_the_permission_and_calling_does_not() {
    let s = Server::start().await;
    let (_, plain) = operator_creates(&s, json!({"name": "plain", "tenant": "t"})).await;
    let (_, deployer) = operator_creates(&s, json!({"name": "ci", "tenant": "t", "scopes": ["functions:deploy"]})).await;
    let (_, admin) = operator_creates(&s, json!({"name": "admin", "tenant": "t", "role": "admin"})).await;

    let (status, body) = s.deploy_with_key(&plain, component("calc"), json!({"name": "calc", "kind": "tool"})).await;
    assert_eq!(status, 403, "{body}");
    let e = assert_openai_error(&body);
    assert_eq!(e["type"], "permission_error");
    assert!(e["message"].as_str().unwrap().contains("functions:deploy"), "{body}");
    let list: Value = s.client().get(s.url("/v1/functions")).bearer_auth(&plain).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"], json!([]), "the refused deploy left nothing behind");

    let (status, body) = s.deploy_with_key(&deployer, component("calc"), json!({"name": "calc", "kind": "tool"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.deploy_with_key(&admin, component("wordcount"), json!({"name": "wc", "kind": "tool"})).await;
    assert_eq!(status, 201, "{body}");

    // Every key of the tenant calls them.
    let resp = s
        .client()
        .post(s.url("/v1/functions/calc/call"))
        .bearer_auth(&plain)
        .json(&json!({"expression": "6*7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<Value>().await.unwrap()["output"].as_str().unwrap().contains("42"));

    // Deleting is the same permission.
    let resp = s.client().delete(s.url("/v1/functions/calc")).bearer_auth(&plain).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_openai_error(&resp.json().await.unwrap());
    let resp = s
        .client()
        .post(s.url("/v1/functions/calc/call"))
        .bearer_auth(&plain)
        .json(&json!({"expression": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the refused delete left the function in place");
    let resp = s.client().delete(s.url("/v1/functions/calc")).bearer_auth(&deployer).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = s.client().delete(s.url("/v1/functions/wc")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
