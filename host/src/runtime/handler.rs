//! API handler components (`functions/handlers/chat`, `functions/handlers/rag`, `functions/handlers/embeddings`):
//! instantiating them, and what a handler call may reach ([`HandlerCtx`]). The host side
//! of each imported interface is a file of its own: wasi:nn on our ONNX Runtime backend
//! ([`nn`]), tokenizers and chat templates ([`tokenizer`]), the model catalogue
//! ([`models`]), the stream output sink ([`output`]), tool calls ([`tools`]) and
//! knowledge-base retrieval ([`retrieval`]). The bindings are those of `rag-handler`,
//! which includes the others' imports, so one linker serves all three.

mod models;
mod nn;
mod output;
mod retrieval;
mod tokenizer;
mod tools;

use std::sync::Arc;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use wasmtime::component::{Component, HasSelf};

use super::{InvokeError, Runtime, Sandbox, State};
use crate::inference::Inference;
use crate::limits::Limits;
pub use nn::{NnContext, NnErrorResource, NnGraph, NnTensor};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tensoras:platform/rag-handler",
        imports: {
            "tensoras:platform/retrieval.retrieve": async | trappable,
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            "tensoras:platform/output.send": async | trappable,
            "tensoras:platform/tools.invoke": async | trappable,
            "tensoras:platform/tokenizer.encode": async | trappable,
            "tensoras:platform/tokenizer.encode-text": async | trappable,
            "tensoras:platform/tokenizer.encode-chat": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:nn/graph.graph": super::NnGraph,
            "wasi:nn/inference.graph-execution-context": super::NnContext,
            "wasi:nn/tensor.tensor": super::NnTensor,
            "wasi:nn/errors.error": super::NnErrorResource,
        },
    });
}

pub use bindings::exports::tensoras::platform::handler::{Request as HandlerRequest, Response as HandlerResponse};
pub use bindings::tensoras::platform::retrieval::{Chunk as RetrievedChunk, RetrievalError, Search as RetrievalSearch};
pub use bindings::tensoras::platform::types::{HandlerError, Usage};
pub use retrieval::Retriever;
pub use tools::Toolbox;

/// What a handler call may reach besides its sandbox.
pub struct HandlerCtx {
    /// Models.
    pub inference: Arc<Inference>,
    /// Stream sink, for `stream: true` requests.
    pub output: Option<mpsc::Sender<String>>,
    /// The caller's tenant's deployed tools.
    pub tools: Option<Arc<dyn Toolbox>>,
    /// Knowledge-base search scoped to the caller's tenant (the RAG handler's).
    pub retrieval: Option<Arc<dyn Retriever>>,
    /// The caller's tenant: cached prompt prefixes are shared only within it.
    pub tenant: String,
}

impl HandlerCtx {
    /// The tenant as a prefix-cache scope.
    fn prefix_scope(&self) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(&self.tenant)
    }

    /// A context that reaches models only: no stream, tools or retrieval.
    pub fn models_only(inference: Arc<Inference>) -> Self {
        Self { inference, output: None, tools: None, retrieval: None, tenant: String::new() }
    }
}

/// A handler component ready to instantiate.
#[derive(Clone)]
pub struct HandlerFunction {
    pre: bindings::RagHandlerPre<State>,
    /// Limits of one request.
    pub limits: Limits,
}

impl std::fmt::Debug for HandlerFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerFunction").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// Adds the handler imports (beyond WASI) to a linker.
pub(super) fn add_to_linker(linker: &mut wasmtime::component::Linker<State>) -> wasmtime::Result<()> {
    bindings::RagHandler::add_to_linker::<State, HasSelf<State>>(linker, |s| s)
}

impl Runtime {
    /// Links a handler component; the error says what is missing.
    pub fn prepare_handler(&self, component: &Component, limits: Limits) -> Result<HandlerFunction, String> {
        let pre = self
            .handler_linker
            .instantiate_pre(component)
            .map_err(|e| format!("handler needs an import the host does not provide: {e}"))?;
        let pre = bindings::RagHandlerPre::new(pre)
            .map_err(|e| format!("component does not export `tensoras:platform/handler@0.1.0`: {e}"))?;
        Ok(HandlerFunction { pre, limits })
    }

    /// Runs one API request through a handler.
    pub async fn call_handler(
        &self,
        f: &HandlerFunction,
        ctx: HandlerCtx,
        req: HandlerRequest,
    ) -> Result<Result<HandlerResponse, HandlerError>, InvokeError> {
        let pre = f.pre.clone();
        self.run_with(&f.limits, &Sandbox::default(), Some(ctx), move |store| {
            async move {
                let inst = pre.instantiate_async(&mut *store).await?;
                inst.tensoras_platform_handler().call_handle(&mut *store, &req).await
            }
            .boxed()
        })
        .await
    }
}

impl State {
    fn handler(&self) -> wasmtime::Result<&HandlerCtx> {
        self.handler.as_ref().ok_or_else(|| wasmtime::format_err!("handler imports used outside a handler call"))
    }
}

impl bindings::tensoras::platform::types::Host for State {}
