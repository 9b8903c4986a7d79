//! Tensoras host: an OpenAI-compatible API server whose request handlers and user
//! functions run as sandboxed WebAssembly components.
//!
//! Layout: [`api`] is the HTTP surface (one module per endpoint group), [`runtime`] owns
//! the wasmtime engine and per-request instantiation, [`functions`] is the registry of
//! deployed components, [`gateway`] the one road to the handler components (for the
//! endpoints and for functions' model calls), [`store`] the metadata database, [`auth`] API keys; [`files`],
//! [`kb`] and [`vector`] hold uploaded files, knowledge bases and their vectors; [`net`] is
//! the outbound address policy.

pub mod access;
pub mod api;
pub mod auth;
pub mod batches;
pub mod config;
pub mod files;
pub mod full_disk;
pub mod functions;
pub mod gateway;
pub mod ids;
pub mod inference;
pub mod kb;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod plans;
pub mod ratelimit;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod usage;
pub mod vector;

/// Where `make` keeps what is built once per machine (converted models, Python
/// environments, build caches): `$TENSORAS_CACHE`, as scripts/env.sh has it, else
/// `~/.cache/tensoras`; `None` with neither set.
pub fn cache_root() -> Option<std::path::PathBuf> {
    std::env::var_os("TENSORAS_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/tensoras")))
}

/// Seconds since the Unix epoch, as OpenAI's `created` fields use.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
