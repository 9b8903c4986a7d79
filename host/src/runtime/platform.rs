//! The host side of what user functions import from the platform (world `platform` in
//! wit/worlds.wit): models (`ai`), knowledge-base retrieval (`retrieval`, the interface
//! the RAG handler uses too), the tenant's files (`files`) and a private key-value store
//! (`kv`).
//!
//! The runtime declares the ports and the domain implements them (docs/design/000):
//! [`Services`] is the platform as the key that invoked the function sees it (models and
//! knowledge bases of its tenant; the gateway implements it by running the same handler
//! components `/v1/chat/completions` runs), and [`KeyValue`] is one function's store
//! (the function registry implements it over the metadata store). What the manifest
//! allows is enforced here, once for every implementation: the grants (`models`,
//! `knowledge_bases`, `files`, `kv`) and the invocation's [`ModelBudget`].

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;
use wasmtime::component::{HasSelf, Resource};

use super::State;
use super::handler::{RetrievalError, RetrievalSearch, RetrievedChunk, Retriever};
use crate::limits::{Grants, ModelBudget};

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tensoras:platform/platform",
        imports: { default: async | trappable },
        with: {
            "tensoras:platform/retrieval": crate::runtime::handler::bindings::tensoras::platform::retrieval,
            "tensoras:platform/ai.completion-stream": super::CompletionStream,
        },
    });
}

use bindings::tensoras::platform::{ai, files, kv};

pub use ai::{AiError, Embeddings};
pub use files::{FileInfo, FilesError};

/// Largest key of a function's key-value store, in bytes.
pub const KV_MAX_KEY_BYTES: usize = 512;
/// Largest value, in bytes.
pub const KV_MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one function may hold.
pub const KV_MAX_KEYS: u64 = 10_000;
/// Most bytes one `files.read` returns, so a guest's memory limit, not the host's, bounds
/// what it holds of a large file.
pub const FILES_MAX_READ: u32 = 4 << 20;

/// Models and knowledge bases on behalf of the key that invoked a function.
pub trait Services: Send + Sync {
    /// Runs a chat completion request (a JSON object, already checked against the grants
    /// and capped to the budget). Returns the response body; with `stream`, the chunks go
    /// there as they are made and the body returned is empty.
    fn chat(&self, body: Value, stream: Option<mpsc::Sender<String>>) -> BoxFuture<'static, Result<String, AiError>>;
    /// Embeds `input` with `model`.
    fn embed(&self, model: String, input: Vec<String>) -> BoxFuture<'static, Result<Embeddings, AiError>>;
    /// Knowledge-base search within the invoking tenant.
    fn retriever(&self) -> Arc<dyn Retriever>;
    /// A file of the invoking tenant.
    fn file_info(&self, id: String) -> BoxFuture<'static, Result<FileInfo, FilesError>>;
    /// Up to `length` bytes of a file of the invoking tenant, from `offset`.
    fn read_file(&self, id: String, offset: u64, length: u32) -> BoxFuture<'static, Result<Vec<u8>, FilesError>>;
}

/// One function's key-value store (its tenant's copy of it).
pub trait KeyValue: Send + Sync + std::fmt::Debug {
    /// The value of `key`.
    fn get(&self, key: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>>;
    /// Sets `key`; false when the key is new and the store is full.
    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'static, Result<bool, String>>;
    /// Removes `key`; whether it was there.
    fn delete(&self, key: String) -> BoxFuture<'static, Result<bool, String>>;
    /// Keys starting with `prefix`, sorted.
    fn keys(&self, prefix: String) -> BoxFuture<'static, Result<Vec<String>, String>>;
}

/// What the platform imports of one invocation reach, and what it has spent.
pub(super) struct PlatformCtx {
    /// `None` where there is no invoking request (describing a tool at deploy, benchmarks).
    services: Option<Arc<dyn Services>>,
    kv: Option<Arc<dyn KeyValue>>,
    grants: Grants,
    budget: ModelBudget,
    calls: u32,
    generated: u64,
    /// The last refusal of a grant, so a failure the guest passes on can be reported as
    /// the refusal it is (see [`PlatformCtx::refused`]).
    refusal: Option<String>,
    /// Cloned into a stream while its call runs. A guest's model calls run one at a time,
    /// which is what keeps the nested instance slots from running out (runtime/admission.rs):
    /// a call while a stream is still generating is refused.
    streaming: Arc<()>,
}

impl PlatformCtx {
    pub(super) fn new(
        services: Option<Arc<dyn Services>>,
        kv: Option<Arc<dyn KeyValue>>,
        grants: Grants,
        budget: ModelBudget,
    ) -> Self {
        Self { services, kv, grants, budget, calls: 0, generated: 0, refusal: None, streaming: Arc::new(()) }
    }

    /// Whether `failure`, the message a guest failed with, passes on a refused grant.
    pub(super) fn refused(&self, failure: &str) -> bool {
        self.refusal.as_deref().is_some_and(|r| failure.contains(r))
    }

    fn refuse(&mut self, what: String) -> AiError {
        self.refusal = Some(what.clone());
        AiError::NotPermitted(what)
    }

    fn services(&self) -> Result<Arc<dyn Services>, AiError> {
        self.services
            .clone()
            .ok_or_else(|| AiError::Failed("models are not available to this call (describing a tool at deploy)".into()))
    }

    /// Takes one model call from the budget.
    fn take_call(&mut self) -> Result<(), AiError> {
        if Arc::strong_count(&self.streaming) > 1 {
            return Err(AiError::InvalidRequest(
                "a streamed completion is still generating: read it to the end or drop it before the next model call".into(),
            ));
        }
        if self.calls >= self.budget.calls {
            return Err(AiError::LimitExceeded(format!(
                "this invocation has made its {} model calls (limits.max_model_calls)",
                self.budget.calls
            )));
        }
        self.calls += 1;
        Ok(())
    }

    /// Checks a chat request against the grants and the budget, and caps what it may
    /// generate to what the budget has left.
    fn admit_chat(&mut self, request: &str, stream: bool) -> Result<(Value, Arc<dyn Services>), AiError> {
        let mut body: Value =
            serde_json::from_str(request).map_err(|e| AiError::InvalidRequest(format!("the request is not valid JSON: {e}")))?;
        let obj = body.as_object_mut().ok_or_else(|| AiError::InvalidRequest("the request must be a JSON object".into()))?;
        let model = match obj.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => return Err(AiError::InvalidRequest("'model' must be a non-empty string".into())),
        };
        if !self.grants.allows_model(&model) {
            return Err(self.refuse(format!("model '{model}' is not granted to this function (grants.models)")));
        }
        let kbs = obj.get("knowledge_bases").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if let Some(kb) = kbs.iter().filter_map(Value::as_str).find(|kb| !self.grants.allows_knowledge_base(kb)) {
            let why = format!("knowledge base '{kb}' is not granted to this function (grants.knowledge_bases)");
            return Err(self.refuse(why));
        }
        let services = self.services()?;
        let left = self.budget.generated_tokens.saturating_sub(self.generated);
        let n = obj.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
        let per_choice = left / n;
        if per_choice == 0 {
            return Err(AiError::LimitExceeded(format!(
                "this invocation has generated its {} tokens (limits.max_generated_tokens)",
                self.budget.generated_tokens
            )));
        }
        // Cap whichever of the two length fields the request uses (both when it names both).
        let mut capped = false;
        for field in ["max_completion_tokens", "max_tokens"] {
            if let Some(asked) = obj.get(field).and_then(Value::as_u64) {
                obj.insert(field.into(), asked.min(per_choice).into());
                capped = true;
            }
        }
        if !capped {
            obj.insert("max_completion_tokens".into(), per_choice.into());
        }
        obj.insert("stream".into(), stream.into());
        if stream {
            // The last chunk's usage is how the budget learns what a stream generated.
            obj.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
        }
        self.take_call()?;
        Ok((body, services))
    }

    /// Charges what a response (or a stream's usage chunk) says was generated.
    fn charge(&mut self, json: &str) {
        if !json.contains("completion_tokens") {
            return;
        }
        let generated = serde_json::from_str::<Value>(json)
            .ok()
            .and_then(|v| v.pointer("/usage/completion_tokens").and_then(Value::as_u64))
            .unwrap_or(0);
        self.generated = self.generated.saturating_add(generated);
    }
}

/// A streamed chat completion: its chunks, and the call that makes them. The call is
/// polled only while the guest waits for a chunk, inside the guest's host call, so it
/// stays within the invocation's deadline and nesting scope; dropping the stream drops
/// the call, which stops generation.
pub struct CompletionStream {
    chunks: mpsc::Receiver<String>,
    call: Option<BoxFuture<'static, Result<String, AiError>>>,
    failure: Option<AiError>,
    /// Held while `call` runs ([`PlatformCtx::streaming`]).
    busy: Option<Arc<()>>,
}

impl CompletionStream {
    async fn next(&mut self) -> Option<Result<String, AiError>> {
        loop {
            let Some(call) = self.call.as_mut() else {
                // The call is over: what it sent is buffered, then its failure, if any.
                return match self.chunks.recv().await {
                    Some(chunk) => Some(Ok(chunk)),
                    None => self.failure.take().map(Err),
                };
            };
            tokio::select! {
                biased;
                chunk = self.chunks.recv() => {
                    if let Some(chunk) = chunk {
                        return Some(Ok(chunk));
                    }
                    // Every sender is gone, so the call is finishing: wait for how it ends.
                    if let Some(call) = self.call.as_mut() {
                        let result = call.await;
                        self.finish(result);
                    }
                }
                result = call => self.finish(result),
            }
        }
    }

    fn finish(&mut self, result: Result<String, AiError>) {
        self.call = None;
        self.busy = None;
        if let Err(e) = result {
            self.failure = Some(e);
        }
    }
}

/// Adds the platform imports to the user functions' linker.
pub(super) fn add_to_linker(linker: &mut wasmtime::component::Linker<State>) -> wasmtime::Result<()> {
    ai::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    files::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    kv::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    crate::runtime::handler::bindings::tensoras::platform::retrieval::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    Ok(())
}

impl State {
    fn platform(&mut self) -> wasmtime::Result<&mut PlatformCtx> {
        self.platform.as_mut().ok_or_else(|| wasmtime::format_err!("platform imports used outside a function call"))
    }

    /// A user function's search: only granted knowledge bases, of the invoking tenant.
    pub(super) async fn retrieve_for_function(
        &mut self,
        kbs: Vec<String>,
        search: RetrievalSearch,
    ) -> wasmtime::Result<Result<Vec<RetrievedChunk>, RetrievalError>> {
        let p = self.platform()?;
        if let Some(kb) = kbs.iter().find(|kb| !p.grants.allows_knowledge_base(kb)) {
            p.refusal = Some(kb.clone());
            return Ok(Err(RetrievalError::NotPermitted(kb.clone())));
        }
        let Some(services) = p.services.clone() else {
            return Ok(Err(RetrievalError::Backend(
                "knowledge bases are not available to this call (describing a tool at deploy)".into(),
            )));
        };
        Ok(services.retriever().retrieve(kbs, search).await)
    }
}

impl ai::Host for State {
    async fn chat(&mut self, request: String) -> wasmtime::Result<Result<String, AiError>> {
        let p = self.platform()?;
        let (body, services) = match p.admit_chat(&request, false) {
            Ok(admitted) => admitted,
            Err(e) => return Ok(Err(e)),
        };
        let result = services.chat(body, None).await;
        if let Ok(response) = &result {
            self.platform()?.charge(response);
        }
        Ok(result)
    }

    async fn chat_stream(&mut self, request: String) -> wasmtime::Result<Result<Resource<CompletionStream>, AiError>> {
        let p = self.platform()?;
        let (body, services) = match p.admit_chat(&request, true) {
            Ok(admitted) => admitted,
            Err(e) => return Ok(Err(e)),
        };
        let (tx, rx) = mpsc::channel(16);
        let streaming = Some(self.platform()?.streaming.clone());
        let stream = CompletionStream { chunks: rx, call: Some(services.chat(body, Some(tx))), failure: None, busy: streaming };
        Ok(Ok(self.table.push(stream)?))
    }

    async fn embed(&mut self, model: String, input: Vec<String>) -> wasmtime::Result<Result<Embeddings, AiError>> {
        let p = self.platform()?;
        if !p.grants.allows_model(&model) {
            return Ok(Err(p.refuse(format!("model '{model}' is not granted to this function (grants.models)"))));
        }
        let services = match p.services().and_then(|s| p.take_call().map(|()| s)) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(services.embed(model, input).await)
    }
}

impl ai::HostCompletionStream for State {
    async fn next(&mut self, stream: Resource<CompletionStream>) -> wasmtime::Result<Option<Result<String, AiError>>> {
        let item = self.table.get_mut(&stream)?.next().await;
        if let Some(Ok(chunk)) = &item {
            self.platform()?.charge(chunk);
        }
        Ok(item)
    }

    async fn drop(&mut self, stream: Resource<CompletionStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl kv::Host for State {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.get(key).await.map_err(kv::KvError::Failed))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > KV_MAX_VALUE_BYTES {
            return Ok(Err(kv::KvError::TooLarge(format!(
                "the value is {} bytes; values are at most {KV_MAX_VALUE_BYTES}",
                value.len()
            ))));
        }
        Ok(match store.set(key, value).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(kv::KvError::TooLarge(format!("the store already holds its {KV_MAX_KEYS} keys"))),
            Err(e) => Err(kv::KvError::Failed(e)),
        })
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.delete(key).await.map_err(kv::KvError::Failed))
    }

    async fn keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.keys(prefix).await.map_err(kv::KvError::Failed))
    }
}

impl files::Host for State {
    async fn info(&mut self, id: String) -> wasmtime::Result<Result<FileInfo, FilesError>> {
        Ok(match self.files_services() {
            Ok(services) => services.file_info(id).await,
            Err(e) => Err(e),
        })
    }

    async fn read(&mut self, id: String, offset: u64, length: u32) -> wasmtime::Result<Result<Vec<u8>, FilesError>> {
        Ok(match self.files_services() {
            Ok(services) => services.read_file(id, offset, length.min(FILES_MAX_READ)).await,
            Err(e) => Err(e),
        })
    }
}

impl State {
    /// The invoking tenant's files, if the manifest grants `files`.
    fn files_services(&mut self) -> Result<Arc<dyn Services>, FilesError> {
        let p = self.platform.as_mut().ok_or(FilesError::NotPermitted)?;
        if !p.grants.files {
            p.refusal = Some("grants.files".into());
            return Err(FilesError::NotPermitted);
        }
        p.services
            .clone()
            .ok_or_else(|| FilesError::Failed("files are not available to this call (describing a tool at deploy)".into()))
    }

    /// The function's store, if its manifest grants `kv`.
    fn kv_store(&mut self) -> Result<Arc<dyn KeyValue>, kv::KvError> {
        let p = self.platform.as_mut().ok_or(kv::KvError::NotPermitted)?;
        match (&p.kv, p.grants.kv) {
            (Some(store), true) => Ok(store.clone()),
            _ => {
                p.refusal = Some("grants.kv".into());
                Err(kv::KvError::NotPermitted)
            }
        }
    }
}

fn check_key(key: &str) -> Result<(), kv::KvError> {
    if key.is_empty() || key.len() > KV_MAX_KEY_BYTES {
        return Err(kv::KvError::TooLarge(format!("keys are 1 to {KV_MAX_KEY_BYTES} bytes; this one is {}", key.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers nothing: these tests stop at admission.
    struct Nowhere;

    impl Services for Nowhere {
        fn chat(&self, _: Value, _: Option<mpsc::Sender<String>>) -> BoxFuture<'static, Result<String, AiError>> {
            Box::pin(async { Err(AiError::Failed("nowhere".into())) })
        }
        fn embed(&self, _: String, _: Vec<String>) -> BoxFuture<'static, Result<Embeddings, AiError>> {
            Box::pin(async { Err(AiError::Failed("nowhere".into())) })
        }
        fn retriever(&self) -> Arc<dyn Retriever> {
            unreachable!("not reached at admission")
        }
        fn file_info(&self, _: String) -> BoxFuture<'static, Result<FileInfo, FilesError>> {
            unreachable!("not reached at admission")
        }
        fn read_file(&self, _: String, _: u64, _: u32) -> BoxFuture<'static, Result<Vec<u8>, FilesError>> {
            unreachable!("not reached at admission")
        }
    }

    fn ctx(models: &[&str], kbs: &[&str], budget: ModelBudget) -> PlatformCtx {
        let grants = Grants {
            models: models.iter().map(|s| s.to_string()).collect(),
            knowledge_bases: kbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        PlatformCtx::new(Some(Arc::new(Nowhere)), None, grants, budget)
    }

    fn admit(p: &mut PlatformCtx, body: Value) -> Result<Value, AiError> {
        p.admit_chat(&body.to_string(), false).map(|(b, _)| b)
    }

    #[test]
    fn ungranted_models_and_knowledge_bases_are_refused_and_remembered() {
        let mut p = ctx(&["m"], &["kb_a"], ModelBudget::DEFAULT);
        let err = admit(&mut p, serde_json::json!({"model": "other"})).unwrap_err();
        let AiError::NotPermitted(why) = err else { panic!("{err:?}") };
        assert!(why.contains("grants.models"), "{why}");
        assert!(p.refused(&format!("tool failed: not permitted: {why}")));
        assert!(!p.refused("something else"));
        let err = admit(&mut p, serde_json::json!({"model": "m", "knowledge_bases": ["kb_a", "kb_b"]})).unwrap_err();
        assert!(matches!(&err, AiError::NotPermitted(w) if w.contains("kb_b")), "{err:?}");
        assert!(admit(&mut p, serde_json::json!({"model": "m", "knowledge_bases": ["kb_a"]})).is_ok());
        // Refusals take nothing from the budget.
        assert_eq!(p.calls, 1);
        let mut any = ctx(&["*"], &["*"], ModelBudget::DEFAULT);
        assert!(admit(&mut any, serde_json::json!({"model": "x", "knowledge_bases": ["kb_z"]})).is_ok());
    }

    #[test]
    fn generation_is_capped_to_what_the_budget_has_left() {
        let mut p = ctx(&["m"], &[], ModelBudget { calls: 10, generated_tokens: 100 });
        let body = admit(&mut p, serde_json::json!({"model": "m"})).unwrap();
        assert_eq!(body["max_completion_tokens"], 100);
        assert_eq!(body["stream"], false);
        let body = admit(&mut p, serde_json::json!({"model": "m", "max_tokens": 30})).unwrap();
        assert_eq!((body["max_tokens"].as_u64(), body.get("max_completion_tokens")), (Some(30), None));
        p.charge(r#"{"usage": {"prompt_tokens": 5, "completion_tokens": 80}}"#);
        let body = admit(&mut p, serde_json::json!({"model": "m", "max_tokens": 30, "n": 2})).unwrap();
        assert_eq!(body["max_tokens"], 10, "20 left over two choices");
        p.charge(r#"{"usage": {"completion_tokens": 20}}"#);
        let err = admit(&mut p, serde_json::json!({"model": "m"})).unwrap_err();
        assert!(matches!(&err, AiError::LimitExceeded(w) if w.contains("max_generated_tokens")), "{err:?}");
        // A stream asks for its usage, which is how it is charged.
        let mut p = ctx(&["m"], &[], ModelBudget::DEFAULT);
        let (body, _) = p.admit_chat(r#"{"model": "m", "stream": false}"#, true).unwrap();
        assert_eq!((body["stream"].as_bool(), body["stream_options"]["include_usage"].as_bool()), (Some(true), Some(true)));
    }

    #[test]
    fn calls_stop_at_the_budget_and_while_a_stream_generates() {
        let mut p = ctx(&["m"], &[], ModelBudget { calls: 2, generated_tokens: 1000 });
        assert!(admit(&mut p, serde_json::json!({"model": "m"})).is_ok());
        let streaming = p.streaming.clone();
        let err = admit(&mut p, serde_json::json!({"model": "m"})).unwrap_err();
        assert!(matches!(&err, AiError::InvalidRequest(w) if w.contains("stream")), "{err:?}");
        drop(streaming);
        assert!(admit(&mut p, serde_json::json!({"model": "m"})).is_ok());
        let err = admit(&mut p, serde_json::json!({"model": "m"})).unwrap_err();
        assert!(matches!(&err, AiError::LimitExceeded(w) if w.contains("max_model_calls")), "{err:?}");
        for bad in [r#"not json"#, r#"[1]"#, r#"{"model": ""}"#] {
            assert!(matches!(p.admit_chat(bad, false), Err(AiError::InvalidRequest(_))), "{bad}");
        }
    }
}
