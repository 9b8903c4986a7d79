//! Shared fixtures for component tests: a real server on a loopback port with a fresh
//! data directory, and the guest components built from `functions/`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tensoras::api::{self, AppState};
use tensoras::config::Config;

/// A guest component built by `scripts/build-guests.sh`. Missing components fail the
/// test: they are part of the build, not optional.
pub fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("TENSORAS_FUNCTIONS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/functions"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; build the guests first with `bash scripts/build-guests.sh`", path.display()))
}

/// A running server.
pub struct Server {
    pub url: String,
    pub key: String,
    pub data: Arc<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(Arc::new(tempfile::tempdir().unwrap()), |_| {}).await
    }

    /// Starts a server on `data` (reused across restarts), adjusting the config first.
    pub async fn start_with(data: Arc<tempfile::TempDir>, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(data.path());
        config.max_instances = 16;
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        config.manifests_dir = repo.join("models");
        config.handlers_dir = repo.join("build/functions");
        // Function tests need no models; the inference path has its own end-to-end tests.
        config.models_dir = data.path().join("no-models");
        tweak(&mut config);
        let state = AppState::open(config).await.unwrap();
        let key = match std::fs::read_to_string(data.path().join("test-key")) {
            Ok(k) => k,
            Err(_) => {
                // The tests' own key is an operator (of tenant alpha), like a bootstrap key.
                let spec = tensoras::auth::KeySpec {
                    name: "test",
                    tenant: "alpha",
                    role: tensoras::auth::Role::Operator,
                    scopes: &[],
                    plan: None,
                };
                let (_, secret) = tensoras::auth::create_key(state.store.as_ref(), &spec).unwrap();
                std::fs::write(data.path().join("test-key"), &secret).unwrap();
                secret
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            api::serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self { url, key, data, shutdown: Some(tx), task: Some(task) }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self.data.clone()
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Creates a key for another tenant with the operator key: a tenant admin, or a plain
    /// member key.
    pub async fn key_for_tenant(&self, tenant: &str, admin: bool) -> String {
        let role = if admin { "admin" } else { "member" };
        let (status, body) =
            self.create_key(&self.key, serde_json::json!({"name": tenant, "tenant": tenant, "role": role})).await;
        assert_eq!(status, 200, "{body}");
        body["key"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/keys` with `caller`'s key; returns status and body.
    pub async fn create_key(&self, caller: &str, body: Value) -> (u16, Value) {
        let resp = self.client().post(self.url("/v1/keys")).bearer_auth(caller).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Deploys `wasm` with `manifest`; returns status and body.
    pub async fn deploy_with_key(&self, key: &str, wasm: Vec<u8>, manifest: Value) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(wasm).file_name("f.wasm"))
            .text("manifest", manifest.to_string());
        let resp = self.client().post(self.url("/v1/functions")).bearer_auth(key).multipart(form).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn deploy(&self, wasm: Vec<u8>, manifest: Value) -> (u16, Value) {
        self.deploy_with_key(&self.key, wasm, manifest).await
    }

    /// Deploys and asserts success.
    pub async fn deploy_ok(&self, name: &str, component_name: &str, kind: &str, extra: Value) {
        let mut manifest = serde_json::json!({"name": name, "kind": kind});
        if let (Some(m), Some(e)) = (manifest.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        let (status, body) = self.deploy(component(component_name), manifest).await;
        assert_eq!(status, 201, "deploy {name}: {body}");
    }

    /// Calls a tool; returns status and body.
    pub async fn call(&self, name: &str, args: Value) -> (u16, Value) {
        let resp = self
            .client()
            .post(self.url(&format!("/v1/functions/{name}/call")))
            .bearer_auth(&self.key)
            .json(&args)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
}

/// Asserts the OpenAI error shape and returns the `error` object.
pub fn assert_openai_error(body: &Value) -> &Value {
    let e = &body["error"];
    assert!(e["message"].is_string(), "no error.message in {body}");
    assert!(e["type"].is_string(), "no error.type in {body}");
    assert!(e.get("param").is_some(), "no error.param in {body}");
    assert!(e.get("code").is_some(), "no error.code in {body}");
    e
}
