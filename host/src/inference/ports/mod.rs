//! The host side of the WIT interfaces that model execution backs: `wasi:nn` ([`nn`]),
//! `tensoras:platform/tokenizer` ([`tokenizer`]) and `tensoras:platform/models`
//! ([`models`]).
//!
//! Each interface generates its own bindings here and is implemented on a [`ModelsView`]:
//! the request's [`ModelAccess`] and its resource table, not the runtime's store. A world
//! that imports them (the handler world in runtime/handler.rs) reuses these bindings
//! through bindgen's `with` and links them with [`add_to_linker`], given a projection of
//! its store's data onto the view. This is the shape of wasmtime-wasi-nn's `WasiNnView`
//! and Spin's factors. It keeps each port beside its backend, and it keeps the engine free
//! of it: nothing here imports the runtime.

pub mod models;
pub mod nn;
pub mod tokenizer;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use wasmtime::component::{HasData, Linker, ResourceTable};

use super::Inference;

/// What one request's model imports reach: the installed models, and the prefix-cache
/// scope of its tenant (cached prompt prefixes are shared only within a tenant). It also
/// counts the prompt tokens its sequences found in the prefix cache, for the usage.
#[derive(Debug, Clone)]
pub struct ModelAccess {
    inference: Arc<Inference>,
    scope: u64,
    cached_tokens: Arc<AtomicU64>,
}

impl ModelAccess {
    /// The models, for a request of `tenant`.
    pub fn new(inference: Arc<Inference>, tenant: &str) -> Self {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        Self { inference, scope: BuildHasherDefault::<DefaultHasher>::default().hash_one(tenant), cached_tokens: Arc::default() }
    }

    /// The request's count of prompt tokens served from the prefix cache, shared: it still
    /// reads after the access moved into the request's store.
    pub fn cached_tokens(&self) -> Arc<AtomicU64> {
        self.cached_tokens.clone()
    }
}

/// A request's view for the model imports: what it may reach (`None` outside a handler
/// call, where they trap), and the table its resources live in.
pub struct ModelsView<'a> {
    access: Option<&'a ModelAccess>,
    table: &'a mut ResourceTable,
}

impl<'a> ModelsView<'a> {
    pub fn new(access: Option<&'a ModelAccess>, table: &'a mut ResourceTable) -> Self {
        Self { access, table }
    }

    fn access(&self) -> wasmtime::Result<&'a ModelAccess> {
        self.access.ok_or_else(|| wasmtime::format_err!("model imports used outside a handler call"))
    }

    fn inference(&self) -> wasmtime::Result<&'a Inference> {
        Ok(&self.access()?.inference)
    }
}

struct HasModels;

impl HasData for HasModels {
    type Data<'a> = ModelsView<'a>;
}

/// Adds `wasi:nn`, `tokenizer` and `models` to `linker`; `get` projects the store's data
/// onto the view.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> ModelsView<'_>) -> wasmtime::Result<()> {
    nn::add_to_linker(linker, get)?;
    tokenizer::bindings::tensoras::platform::tokenizer::add_to_linker::<T, HasModels>(linker, get)?;
    models::bindings::tensoras::platform::models::add_to_linker::<T, HasModels>(linker, get)?;
    Ok(())
}
