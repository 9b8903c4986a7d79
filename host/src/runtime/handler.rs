//! API handler components (`functions/handlers/{chat,rag,embeddings}`):
//! instantiating them, and what a handler call may reach ([`HandlerCtx`]).
//!
//! The host side of each imported interface is a file of its own. Where the backend sits
//! below the engine, the port sits beside it, with its own bindings, and is linked here
//! through a view of the store ([`crate::inference::ports`]: wasi:nn, the tokenizer and
//! the model catalogue). Where the backend is a domain module above the engine, the
//! engine declares the port as a trait that the domain implements, scoped to the caller's
//! tenant, and its host side is here: tool calls ([`toolbox`], implemented by the function
//! registry) and knowledge-base retrieval ([`retrieval`], implemented by `kb`). The stream
//! sink ([`output`]) is the engine's own. The world's bindings are those of `rag-handler`,
//! which includes the others' imports, so one linker serves all three handlers.

mod output;
mod retrieval;
mod toolbox;

use std::sync::Arc;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use wasmtime::component::{Component, HasSelf};

use super::{InvokeError, Runtime, Sandbox, State};
use crate::inference::Inference;
use crate::inference::ports::{ModelAccess, ModelsView};
use crate::limits::Limits;

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tensoras:platform/rag-handler",
        imports: {
            "tensoras:platform/retrieval.retrieve": async | trappable,
            "tensoras:platform/output.send": async | trappable,
            "tensoras:platform/toolbox.invoke": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:nn": crate::inference::ports::nn::bindings::wasi::nn,
            "tensoras:platform/tokenizer": crate::inference::ports::tokenizer::bindings::tensoras::platform::tokenizer,
            "tensoras:platform/models": crate::inference::ports::models::bindings::tensoras::platform::models,
        },
    });
}

pub use bindings::exports::tensoras::platform::handler::{Request as HandlerRequest, Response as HandlerResponse};
pub use bindings::tensoras::platform::retrieval::{Chunk as RetrievedChunk, RetrievalError, Search as RetrievalSearch};
pub use bindings::tensoras::platform::types::{HandlerError, Usage};
pub use retrieval::Retriever;
pub use toolbox::Toolbox;

/// What a handler call may reach besides its sandbox.
pub struct HandlerCtx {
    /// Models, for the caller's tenant.
    pub models: ModelAccess,
    /// Stream sink, for `stream: true` requests.
    pub output: Option<mpsc::Sender<String>>,
    /// The caller's tenant's deployed tools.
    pub tools: Option<Arc<dyn Toolbox>>,
    /// Knowledge-base search scoped to the caller's tenant (the RAG handler's).
    pub retrieval: Option<Arc<dyn Retriever>>,
}

impl HandlerCtx {
    /// A context that reaches models only: no stream, tools or retrieval.
    pub fn models_only(inference: Arc<Inference>) -> Self {
        Self { models: ModelAccess::new(inference, ""), output: None, tools: None, retrieval: None }
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
    use bindings::tensoras::platform::{output, retrieval, toolbox, types};
    crate::inference::ports::add_to_linker(linker, models_view)?;
    types::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    output::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    toolbox::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    retrieval::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    Ok(())
}

/// Adds the stream sink alone, for chat functions (user components served as models).
pub(super) fn add_output_to_linker(linker: &mut wasmtime::component::Linker<State>) -> wasmtime::Result<()> {
    bindings::tensoras::platform::output::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    bindings::tensoras::platform::types::add_to_linker::<State, HasSelf<State>>(linker, |s| s)
}

/// The model imports' view of a store.
fn models_view(state: &mut State) -> ModelsView<'_> {
    ModelsView::new(state.handler.as_ref().map(|h| &h.models), &mut state.table)
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
        self.run(&f.limits, &Sandbox::default(), super::Guest::Handler(ctx), move |store| {
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
