//! The one road to the handler components, and the platform as one key sees it.
//!
//! `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings` run their handler
//! components through [`Gateway::handle`]. So do deployed functions: a function's `ai.chat`
//! is a chat completion made on behalf of the key that invoked it ([`Gateway::on_behalf`],
//! the runtime's [`Services`] port), through the same handlers, with the same validation,
//! sampling, constrained decoding, server-side tools and knowledge bases; its tools and
//! knowledge bases are its tenant's. The runtime has already checked the function's
//! grants and budget when a call gets here.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::files::Library;
use crate::functions::{Executable, Registry};
use crate::inference::Inference;
use crate::inference::ports::ModelAccess;
use crate::kb::Knowledge;
use crate::limits::Limits;
use crate::runtime::{
    AiError, ChatFunction, Embeddings, FileInfo, FilesError, HandlerCtx, HandlerError, HandlerFunction, HandlerRequest,
    HandlerResponse, InvokeError, Retriever, Runtime, Services, Usage,
};
use crate::usage::{Meter, Price};

/// The handler components serving the inference endpoints.
#[derive(Debug, Clone, Default)]
pub struct Handlers {
    /// `functions/handlers/chat`: chat completions and completions.
    pub chat: Option<HandlerFunction>,
    /// `functions/handlers/rag`: chat completions that name `knowledge_bases`.
    pub rag: Option<HandlerFunction>,
    /// `functions/handlers/embeddings`.
    pub embeddings: Option<HandlerFunction>,
    /// `functions/handlers/responses`: `/v1/responses`, over chat-core.
    pub responses: Option<HandlerFunction>,
}

impl Handlers {
    /// Loads `chat.wasm`, `rag.wasm`, `embeddings.wasm` and `responses.wasm` from `dir`. A missing or broken handler is
    /// logged and its endpoints answer 503; the rest of the server still works.
    pub fn load(runtime: &Runtime, dir: &Path, limits: Limits) -> Self {
        let load = |name: &str| -> Option<HandlerFunction> {
            let path = dir.join(format!("{name}.wasm"));
            let result = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| runtime.compile(&bytes))
                .and_then(|c| runtime.prepare_handler(&c, limits));
            match result {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "{name} handler unavailable: {e}");
                    None
                }
            }
        };
        Self { chat: load("chat"), rag: load("rag"), embeddings: load("embeddings"), responses: load("responses") }
    }
}

/// Which endpoint a request body was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions` or `/v1/completions`.
    Completions,
    /// `/v1/embeddings`.
    Embeddings,
    /// `/v1/responses`.
    Responses,
}

/// The prefix of a model id that names a tenant's chat function (`fn:NAME`).
pub const FUNCTION_MODEL_PREFIX: &str = "fn:";

/// What serves a request.
#[derive(Debug, Clone)]
pub enum Target {
    /// A built-in handler component.
    Handler(HandlerFunction),
    /// A chat function of the caller's tenant (`fn:NAME`).
    Function(ChatFunction),
}

/// Why no target serves a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrouted {
    /// The built-in handler (its name) is not installed.
    HandlerMissing(&'static str),
    /// The tenant has no chat function of that name (the model id asked for).
    NoSuchFunction(String),
}

/// Who a call is made for: the tenant whose models, tools and knowledge bases it reaches,
/// and the key it counts against.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Tenant id.
    pub tenant: String,
    /// Key id (`key_...`).
    pub key_id: String,
    /// Whether the call is a line of a batch job (metered as such).
    pub batch: bool,
}

/// What a handler call ended with.
pub type HandlerResult = Result<Result<HandlerResponse, HandlerError>, InvokeError>;

/// The handlers and what they reach.
#[derive(Clone)]
pub struct Gateway {
    runtime: Arc<Runtime>,
    inference: Arc<Inference>,
    handlers: Handlers,
    functions: Arc<Registry>,
    knowledge: Knowledge,
    files: Library,
    meter: Arc<Meter>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("handlers", &self.handlers).finish_non_exhaustive()
    }
}

impl Gateway {
    /// Joins the parts.
    pub fn new(
        runtime: Arc<Runtime>,
        inference: Arc<Inference>,
        handlers: Handlers,
        functions: Arc<Registry>,
        knowledge: Knowledge,
        files: Library,
        meter: Arc<Meter>,
    ) -> Self {
        Self { runtime, inference, handlers, functions, knowledge, files, meter }
    }

    /// What serves a body a client of `tenant` sent to `endpoint`: as [`Gateway::route_builtin`]
    /// says, except that a grounded chat completion goes to the tenant's replacement of
    /// the RAG handler where it deployed one (a chat function with `"replaces": "rag"`).
    pub fn route(&self, endpoint: Endpoint, tenant: &str, body: &Value) -> Result<Target, Unrouted> {
        let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
        if endpoint == Endpoint::Completions && grounded(body) && !model.starts_with(FUNCTION_MODEL_PREFIX) {
            let replacement = self.functions.replacement(tenant, "rag");
            if let Some(Executable::Chat(f)) = replacement.as_deref().map(|d| &d.exec) {
                return Ok(Target::Function(f.clone()));
            }
        }
        self.route_builtin(endpoint, tenant, body)
    }

    /// What serves a body sent to `endpoint` by `tenant` with no replacement: the tenant's
    /// chat function for a model `fn:NAME` (completions only), else the built-in handler
    /// (a chat completion naming `knowledge_bases` goes to the RAG handler). A function's
    /// own model calls are routed so: the replacement of the RAG handler delegating to it
    /// must reach the built-in one, not itself.
    pub fn route_builtin(&self, endpoint: Endpoint, tenant: &str, body: &Value) -> Result<Target, Unrouted> {
        let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
        if let (Endpoint::Completions, Some(name)) = (endpoint, model.strip_prefix(FUNCTION_MODEL_PREFIX)) {
            return match self.functions.get(tenant, name).as_deref().map(|d| &d.exec) {
                Some(Executable::Chat(f)) => Ok(Target::Function(f.clone())),
                _ => Err(Unrouted::NoSuchFunction(model.to_owned())),
            };
        }
        let (handler, name) = match endpoint {
            Endpoint::Embeddings => (&self.handlers.embeddings, "embeddings"),
            Endpoint::Responses => (&self.handlers.responses, "responses"),
            Endpoint::Completions if grounded(body) => (&self.handlers.rag, "RAG"),
            Endpoint::Completions => (&self.handlers.chat, "chat"),
        };
        handler.clone().map(Target::Handler).ok_or(Unrouted::HandlerMissing(name))
    }

    /// Runs `body` through `target` for `who`. With `output`, the target streams its
    /// chunks there.
    pub async fn handle(
        &self,
        who: &Principal,
        target: &Target,
        path: &str,
        body: &Value,
        output: Option<mpsc::Sender<String>>,
    ) -> HandlerResult {
        let req =
            HandlerRequest { body: body.to_string(), stream: output.is_some(), tenant: who.tenant.clone(), path: path.into() };
        let handler = match target {
            Target::Handler(h) => h,
            // A chat function reaches the platform as any function does, for the same key.
            Target::Function(f) => return self.runtime.call_chat(f, req, output, self.on_behalf(who.clone())).await,
        };
        let retrieval: Option<Arc<dyn Retriever>> = searches(body).then(|| self.knowledge.retriever(&who.tenant));
        let models = ModelAccess::new(self.inference.clone(), &who.tenant);
        let cached = models.cached_tokens();
        let ctx = HandlerCtx {
            models,
            output,
            // Tools the model calls act for the same key.
            tools: Some(self.functions.toolbox(&who.tenant, self.on_behalf(who.clone()))),
            retrieval,
        };
        let result = self.runtime.call_handler(handler, ctx, req).await;
        // Metered here, where models run, and only here: a chat function's own answer is
        // what its model calls (metered as they ran) produced, so it is not counted again.
        if let (Ok(Ok(response)), Some(model)) = (&result, body.get("model").and_then(Value::as_str)) {
            self.meter_call(who, model, response.usage, cached.load(std::sync::atomic::Ordering::Relaxed));
        }
        result
    }

    /// Counts a model execution for `who`, at the model's catalogue price; `cached` of its
    /// prompt tokens came from the prefix cache.
    fn meter_call(&self, who: &Principal, model: &str, usage: Usage, cached: u64) {
        let Some(m) = self.inference.get(model) else { return };
        let manifest = &m.model.manifest;
        let price = Price { input: manifest.price.input, output: manifest.price.output };
        let (input, output) = (u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens));
        // Never more than the prompt the handler reported (a handler counts its prompt its
        // own way; the prefix cache counts the tokens the model really skipped).
        let tokens = crate::usage::Tokens { input, output, cached: cached.min(input), batch: who.batch };
        // Under the model's canonical id, whatever alias the request used.
        self.meter.record(&who.tenant, &who.key_id, &manifest.id, tokens, price);
    }

    /// The platform as `who` sees it, for the functions it invokes.
    pub fn on_behalf(&self, who: Principal) -> Arc<dyn Services> {
        Arc::new(OnBehalf { gateway: self.clone(), who })
    }
}

fn grounded(body: &Value) -> bool {
    body.get("knowledge_bases").is_some_and(|v| !v.is_null())
}

/// Whether the handler may search the tenant's knowledge bases: a grounded chat
/// completion, or a response offered the `file_search` tool.
fn searches(body: &Value) -> bool {
    let file_search = |tools: &Vec<Value>| tools.iter().any(|t| t.get("type").and_then(Value::as_str) == Some("file_search"));
    grounded(body) || body.get("tools").and_then(Value::as_array).is_some_and(file_search)
}

/// [`Services`] for one principal.
struct OnBehalf {
    gateway: Gateway,
    who: Principal,
}

impl Services for OnBehalf {
    fn chat(&self, body: Value, stream: Option<mpsc::Sender<String>>) -> BoxFuture<'static, Result<String, AiError>> {
        let gateway = self.gateway.clone();
        let who = self.who.clone();
        Box::pin(async move {
            let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
            if !model.starts_with(FUNCTION_MODEL_PREFIX) && gateway.inference.get(model).is_none() {
                return Err(AiError::NotFound(format!("model '{model}' is not installed on this server")));
            }
            // A function may call a chat function (`fn:NAME`) as a model too.
            let target = gateway.route_builtin(Endpoint::Completions, &who.tenant, &body).map_err(|e| match e {
                Unrouted::HandlerMissing(name) => {
                    AiError::Failed(format!("the {name} handler component is not installed on this server"))
                }
                Unrouted::NoSuchFunction(model) => AiError::NotFound(format!("no chat function is deployed as model '{model}'")),
            })?;
            tracing::debug!(tenant = %who.tenant, key = %who.key_id, model, "model call from a function");
            match gateway.handle(&who, &target, "/v1/chat/completions", &body, stream).await {
                Ok(Ok(response)) => Ok(response.body),
                Ok(Err(e)) => Err(from_handler(e)),
                Err(e) => Err(from_invoke(e)),
            }
        })
    }

    fn embed(&self, model: String, input: Vec<String>) -> BoxFuture<'static, Result<Embeddings, AiError>> {
        let (gateway, who) = (self.gateway.clone(), self.who.clone());
        Box::pin(async move {
            let inference = gateway.inference.clone();
            if inference.get(&model).is_none() {
                return Err(AiError::NotFound(format!("model '{model}' is not installed on this server")));
            }
            if input.is_empty() {
                return Err(AiError::InvalidRequest("input must hold at least one text".into()));
            }
            // Tokenising and ONNX Runtime block: off the async workers.
            let metered = model.clone();
            let result = tokio::task::spawn_blocking(move || inference.embed_counted(&model, &input))
                .await
                .map_err(|e| AiError::Failed(format!("embedding task failed: {e}")))?;
            match result {
                Ok((vectors, tokens)) => {
                    // Embedded on the host, not by the embeddings handler: metered here.
                    let prompt_tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
                    // Encoders keep no cache: nothing of an embedding is cached.
                    gateway.meter_call(&who, &metered, Usage { prompt_tokens, completion_tokens: 0 }, 0);
                    Ok(Embeddings { vectors, prompt_tokens })
                }
                Err(e @ crate::inference::EmbeddingError::NotAnEncoder(_)) => Err(AiError::InvalidRequest(e.to_string())),
                Err(e @ crate::inference::EmbeddingError::Empty(_)) => Err(AiError::InvalidRequest(e.to_string())),
                Err(e) => Err(AiError::Failed(e.to_string())),
            }
        })
    }

    fn retriever(&self) -> Arc<dyn Retriever> {
        self.gateway.knowledge.retriever(&self.who.tenant)
    }

    fn file_info(&self, id: String) -> BoxFuture<'static, Result<FileInfo, FilesError>> {
        let files = self.gateway.files.clone();
        let tenant = self.who.tenant.clone();
        Box::pin(async move {
            // The record is one indexed SQLite read; not worth a blocking-pool hop.
            match files.record(&tenant, &id) {
                Ok(Some(f)) => Ok(FileInfo {
                    id: f.id,
                    filename: f.filename,
                    purpose: f.purpose,
                    bytes: f.bytes,
                    content_type: f.content_type,
                    created_at: f.created_at,
                }),
                Ok(None) => Err(FilesError::NotFound(id)),
                Err(e) => Err(FilesError::Failed(format!("{e:#}"))),
            }
        })
    }

    fn read_file(&self, id: String, offset: u64, length: u32) -> BoxFuture<'static, Result<Vec<u8>, FilesError>> {
        let files = self.gateway.files.clone();
        let tenant = self.who.tenant.clone();
        Box::pin(async move {
            match files.read(&tenant, &id, offset, length).await {
                Ok(Some(bytes)) => Ok(bytes.to_vec()),
                Ok(None) => Err(FilesError::NotFound(id)),
                Err(e) => Err(FilesError::Failed(format!("{e:#}"))),
            }
        })
    }
}

/// A handler's refusal, as the function sees it.
fn from_handler(e: HandlerError) -> AiError {
    match e.status {
        403 => AiError::NotPermitted(e.message),
        404 => AiError::NotFound(e.message),
        429 | 503 => AiError::Overloaded(e.message),
        400..=499 => AiError::InvalidRequest(e.message),
        _ => AiError::Failed(e.message),
    }
}

/// Why the handler did not run to an answer.
fn from_invoke(e: InvokeError) -> AiError {
    match e {
        InvokeError::TooDeep => AiError::LimitExceeded(e.to_string()),
        InvokeError::Overloaded(_) => AiError::Overloaded(e.to_string()),
        other => AiError::Failed(other.to_string()),
    }
}
