//! The host side of `tensoras:platform/retrieval`: the RAG handler's searches.
//!
//! The runtime knows nothing of knowledge bases; a request's [`HandlerCtx`] carries a
//! [`Retriever`] already scoped to the caller's tenant (the knowledge-base service
//! implements it), so a guest can only ever reach its own tenant's knowledge bases.
//! The WIT records (`search`, `chunk`, `retrieval-error`) are the trait's types.
//!
//! [`HandlerCtx`]: super::HandlerCtx

use futures::future::BoxFuture;

use super::State;
use super::bindings::tensoras::platform::retrieval::{self, Chunk, RetrievalError, Search};

/// Knowledge-base search for one tenant.
pub trait Retriever: Send + Sync {
    /// Searches knowledge bases `kbs` together (the WIT function's contract);
    /// `NotFound` names the first id this tenant does not own.
    fn retrieve(&self, kbs: Vec<String>, search: Search) -> BoxFuture<'static, Result<Vec<Chunk>, RetrievalError>>;
}

impl retrieval::Host for State {
    async fn retrieve(&mut self, kbs: Vec<String>, search: Search) -> wasmtime::Result<Result<Vec<Chunk>, RetrievalError>> {
        // The same import serves user functions, within their grants.
        if self.platform.is_some() {
            return self.retrieve_for_function(kbs, search).await;
        }
        let Some(retriever) = self.handler()?.retrieval.clone() else {
            return Ok(Err(RetrievalError::Backend("retrieval is not available to this handler".into())));
        };
        Ok(retriever.retrieve(kbs, search).await)
    }
}
