//! The WebAssembly runtime: one [`wasmtime::Engine`] for the process, components
//! compiled once (and cached on disk by wasmtime's cache), an `InstancePre` per
//! component, and a fresh [`wasmtime::Store`] per request.
//!
//! Every call runs under three limits: a memory cap (store limiter), a wall-clock
//! deadline (epoch interruption, backed by a tokio timeout for time spent in host
//! calls), and a fuel budget. A guest that traps, loops, exhausts memory or overflows
//! its stack fails only its own request; the host keeps serving. Guests yield to the
//! async executor at every epoch tick, so a spinning guest cannot starve the server's
//! other requests (or `/health`) of the worker threads.
//!
//! Admission ([`Admission`]): a request takes one of `max_instances` slots for its own
//! instance. Instances it starts while it runs (a server-side tool the chat handler calls)
//! are *nested*: they draw from a separate pool sized so that it can never run dry
//! (`max_instances` × [`MAX_NESTED_DEPTH`]), and never wait, so a parent never waits on a
//! slot that only another parent could free — the deadlock of nested calls sharing one
//! semaphore. The depth of a call comes from a task-local that each call sets for the host
//! calls its guest makes.

mod admission;
mod capture;
mod chat;
mod handler;
mod http;
mod outgoing;
mod platform;
mod state;
mod tool;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};

pub use self::admission::{Admission, MAX_NESTED_DEPTH, interactive};
pub use self::capture::{Invocation, InvocationLog, OUTPUT_CAP};
pub use self::chat::ChatFunction;
use crate::limits::{AdmissionOptions, Limits};

pub use self::handler::{
    HandlerCtx, HandlerError, HandlerFunction, HandlerRequest, HandlerResponse, RetrievalError, RetrievalSearch, RetrievedChunk,
    Retriever, Toolbox, Usage,
};
pub use self::http::{HttpFunction, HttpRequestBody};
pub use self::platform::{AiError, Embeddings, FileInfo, FilesError, KV_MAX_KEYS, KeyValue, Services};
use self::state::Guest;
pub use self::state::{Sandbox, State};
pub use self::tool::{ToolFunction, ToolInfo, ToolOutcome};

/// How often the epoch advances; deadlines are rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Options fixed for the life of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Pooling instance allocation (the default) or on-demand (for comparison).
    pub pooling: bool,
    /// Most instances alive at once; also the pool size.
    pub max_instances: u32,
    /// Largest linear memory any function may have.
    pub max_memory_bytes: usize,
    /// Directory for wasmtime's compiled-code cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
}

/// Why a call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Wall-clock limit reached.
    #[error("function exceeded its time limit of {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Fuel budget used up.
    #[error("function exceeded its CPU budget of {0} fuel units")]
    OutOfFuel(u64),
    /// Tried to grow memory past its limit.
    #[error("function exceeded its memory limit of {} MiB", .0 >> 20)]
    OutOfMemory(usize),
    /// Call stack exhausted.
    #[error("function overflowed its call stack")]
    StackOverflow,
    /// Any other trap (panic, unreachable, bad memory access, ...).
    #[error("function trapped: {0}")]
    Trap(String),
    /// The guest broke its contract (e.g. an HTTP function that never responded).
    #[error("function failed: {0}")]
    Guest(String),
    /// No instance slot became free within the queue's wait, or the queue was full.
    #[error("the server is at capacity ({0}); please retry shortly")]
    Overloaded(&'static str),
    /// Instances started instances deeper than [`MAX_NESTED_DEPTH`] (e.g. a tool that
    /// calls a model that calls the tool again).
    #[error("nested calls went deeper than {MAX_NESTED_DEPTH} levels")]
    TooDeep,
    /// A host-side failure unrelated to the guest.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// Process-wide runtime: engine, linker and the instance slots.
pub struct Runtime {
    engine: Engine,
    /// What user functions may import: WASI, wasi:http and the platform.
    linker: Linker<State>,
    /// What API handlers may import: WASI, wasi:nn and the Tensoras interfaces.
    handler_linker: Linker<State>,
    admission: Admission,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(opts: &RuntimeOptions) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true).consume_fuel(true).max_wasm_stack(1 << 20);
        if opts.pooling {
            // Room for every top-level slot and every nested one (see the module doc).
            let instances = admission::total_instances(opts.max_instances);
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(8))
                .total_memories(instances.saturating_mul(2))
                .total_tables(instances.saturating_mul(4))
                .total_stacks(instances)
                .max_memory_size(opts.max_memory_bytes);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        if let Some(dir) = &opts.cache_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            let cache = wasmtime::Cache::new(cache).map_err(anyhow::Error::from)?;
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("configuring wasmtime")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        platform::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        handler::add_output_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        let mut handler_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut handler_linker).map_err(anyhow::Error::from)?;
        handler::add_to_linker(&mut handler_linker).map_err(anyhow::Error::from)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("tensoras-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("starting the epoch thread")?;
        }
        Ok(Self {
            engine,
            linker,
            handler_linker,
            admission: Admission::new(opts.max_instances, AdmissionOptions::default()),
            ticker_stop,
        })
    }

    /// Sets how long and how many top-level requests may wait for a slot.
    #[must_use]
    pub fn with_admission(mut self, options: AdmissionOptions) -> Self {
        self.admission = Admission::new(self.admission.max_instances(), options);
        self
    }

    /// Slots and waiters, for tests and metrics.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles component bytes, refusing anything that is not a component with a
    /// message a user can act on.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, String> {
        match classify_binary(bytes) {
            BinaryKind::Component => {}
            BinaryKind::CoreModule => {
                return Err("the file is a core WebAssembly module, not a component; build for \
                            wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
                    .into());
            }
            BinaryKind::NotWasm => return Err("the file is not a WebAssembly binary".into()),
        }
        Component::new(&self.engine, bytes).map_err(|e| format!("invalid component: {e}"))
    }

    /// A fresh store with the call's limits armed.
    fn new_store(&self, limits: &Limits, sandbox: &Sandbox, guest: Guest) -> Result<Store<State>, InvokeError> {
        let state = State::new(sandbox, limits.memory_bytes, guest).map_err(InvokeError::Internal)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.fuel).map_err(|e| InvokeError::Internal(e.into()))?;
        // Every tick the guest yields to the executor (so other requests' tasks run on this
        // worker), and traps once the wall-clock deadline has passed.
        let deadline = std::time::Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
            }
        });
        Ok(store)
    }
}

/// Maps a wasmtime error to what the client is told.
fn classify(err: wasmtime::Error, state: &State, limits: &Limits) -> InvokeError {
    if state.memory_limit_hit() {
        return InvokeError::OutOfMemory(limits.memory_bytes);
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => InvokeError::Timeout(limits.timeout),
        Some(Trap::OutOfFuel) => InvokeError::OutOfFuel(limits.fuel),
        Some(Trap::StackOverflow) => InvokeError::StackOverflow,
        Some(trap) => InvokeError::Trap(trap.to_string()),
        None => InvokeError::Trap(format!("{err}")),
    }
}

/// What a binary claims to be, from its 8-byte header.
#[derive(Debug, PartialEq, Eq)]
enum BinaryKind {
    Component,
    CoreModule,
    NotWasm,
}

fn classify_binary(bytes: &[u8]) -> BinaryKind {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) => BinaryKind::Component,
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => BinaryKind::CoreModule,
        _ => BinaryKind::NotWasm,
    }
}

impl Runtime {
    /// Resolves a component's imports against what functions may use.
    fn instantiate_pre(&self, component: &Component) -> Result<wasmtime::component::InstancePre<State>, String> {
        self.linker
            .instantiate_pre(component)
            .map_err(|e| format!("component needs an import Tensoras does not provide to functions: {e}"))
    }

    /// Runs `f` against a fresh store for `guest` under the limits, mapping failures.
    async fn run<T>(
        &self,
        limits: &Limits,
        sandbox: &Sandbox,
        guest: Guest,
        f: impl for<'a> FnOnce(&'a mut Store<State>) -> futures::future::BoxFuture<'a, wasmtime::Result<T>>,
    ) -> Result<T, InvokeError> {
        let ticket = self.admission.admit().await?;
        let mut store = self.new_store(limits, sandbox, guest)?;
        // Host calls this guest makes run in the scope of its ticket: whatever instance
        // they start is nested one level deeper.
        let outcome = ticket.scope(tokio::time::timeout(limits.timeout, f(&mut store))).await;
        match outcome {
            Err(_) => Err(InvokeError::Timeout(limits.timeout)),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let err = classify(e, store.data(), limits);
                tracing::warn!(error = %err, "function call failed");
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_kinds() {
        assert_eq!(classify_binary(b"\0asm\x0d\x00\x01\x00rest"), BinaryKind::Component);
        assert_eq!(classify_binary(b"\0asm\x01\x00\x00\x00"), BinaryKind::CoreModule);
        assert_eq!(classify_binary(b"hello world"), BinaryKind::NotWasm);
        assert_eq!(classify_binary(b""), BinaryKind::NotWasm);
    }

    #[test]
    fn compile_rejects_non_components_with_a_reason() {
        let rt = Runtime::new(&RuntimeOptions { pooling: false, max_instances: 4, max_memory_bytes: 1 << 20, cache_dir: None })
            .unwrap();
        assert!(rt.compile(b"\0asm\x01\x00\x00\x00").unwrap_err().contains("core WebAssembly module"));
        assert!(rt.compile(b"PK\x03\x04zip").unwrap_err().contains("not a WebAssembly binary"));
        assert!(rt.compile(b"\0asm\x0d\x00\x01\x00\xff").unwrap_err().contains("invalid component"));
    }
}
