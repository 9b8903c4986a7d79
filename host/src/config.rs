//! Process configuration. Everything the server keeps lives under one data directory,
//! so a fresh directory is a fresh install.

use std::path::PathBuf;
use std::time::Duration;

/// The server's defaults: one place for [`Config::new`] and the `serve` flags (which show
/// them in `--help`).
pub mod defaults {
    pub use crate::limits::{MAX_QUEUE, QUEUE_TIMEOUT_SECS};

    pub const MAX_BODY_BYTES: usize = 32 << 20;
    pub const MAX_INSTANCES: u32 = 256;
    pub const MAX_CONNECTIONS: usize = 4096;
    pub const HEADER_TIMEOUT_SECS: u64 = 10;
    pub const BODY_TIMEOUT_SECS: u64 = 30;
    pub const MANIFESTS_DIR: &str = "models";
    pub const HANDLERS_DIR: &str = "build/functions";
    pub const MAX_BATCH: usize = 16;
    pub const BATCH_CONCURRENCY: usize = 8;
    pub const PREFIX_CACHE_MB: usize = 256;
    pub const MAX_FILE_BYTES: u64 = 512 << 20;
    pub const MAX_FUNCTION_MEMORY_MB: usize = 256;
    pub const MAX_FUNCTION_TIMEOUT_MS: u64 = 60_000;
    pub const MAX_FUNCTION_FUEL: u64 = 100_000_000_000;
    pub const HANDLER_TIMEOUT_SECS: u64 = 600;
    pub const QDRANT_COLLECTION_PREFIX: &str = "tensoras_";
}

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root of all state: `tensoras.db`, deployed components, function storage, caches.
    pub data_dir: PathBuf,
    /// wasmtime's compiled-code cache, when not `<data_dir>/cache/wasmtime` (servers on
    /// one machine may share one: entries are keyed by the component's bytes).
    pub compile_cache: Option<PathBuf>,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Limits applied to a function whose manifest does not set them.
    pub default_limits: crate::limits::Limits,
    /// Upper bounds no manifest may exceed (a deploy asking for more is refused).
    pub max_limits: crate::limits::Limits,
    /// Requests running a guest instance at once (nested instances have a pool of their
    /// own); further requests wait for a slot as `admission` allows.
    pub max_instances: u32,
    /// How long and how many requests may wait for an instance slot.
    pub admission: crate::limits::AdmissionOptions,
    /// Lines of a batch job (`/v1/batches`) running at once.
    pub batch_concurrency: usize,
    /// Connection cap and request read deadlines.
    pub listen: ListenOptions,
    /// Limits of one inference request (chat, embeddings handlers).
    pub handler_limits: crate::limits::Limits,
    /// Model manifests (`models/*.toml`).
    pub manifests_dir: PathBuf,
    /// Converted model files, `<dir>/<model>/model.onnx` ...
    pub models_dir: PathBuf,
    /// Handler components (`chat.wasm`, `rag.wasm`, `embeddings.wasm`).
    pub handlers_dir: PathBuf,
    /// Whether OpenAI model names (gpt-4o-mini, ...) resolve to local models.
    pub openai_aliases: bool,
    /// ONNX Runtime library, threads and device.
    pub ort: crate::inference::OrtOptions,
    /// Object store for uploaded files (`memory://`, `file:///dir`, `s3://bucket/prefix`
    /// ...); `None` is `<data_dir>/objects`.
    pub files_url: Option<String>,
    /// Largest uploaded file, in bytes (413 above it).
    pub max_file_bytes: u64,
    /// Whether URL data sources may point at loopback/private/link-local addresses
    /// (every address, past `address_policy`).
    pub url_sources_allow_private: bool,
    /// Where outbound connections made for tenants (URL sources, function network
    /// grants) may go: public addresses plus the operator's allow-list.
    pub address_policy: crate::net::AddressPolicy,
    /// Object-store URL prefixes each tenant's data sources may read, by tenant; object
    /// URLs outside them are refused (the server's own credentials would read them).
    pub object_sources: std::collections::HashMap<String, Vec<String>>,
    /// Qdrant server for the knowledge bases' vectors; `None` keeps them in process
    /// (qdrant-edge) under `<data_dir>/vectors`.
    pub qdrant: Option<crate::vector::server::ServerOptions>,
    /// Rate-limit plans and the default one.
    pub plans: crate::plans::Plans,
}

impl Config {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            compile_cache: None,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            default_limits: crate::limits::Limits {
                memory_bytes: 128 << 20,
                timeout: Duration::from_secs(10),
                fuel: 20_000_000_000,
            },
            // A tenant's function shares the host with everyone's: its asks are capped
            // (`serve --max-function-*`).
            max_limits: crate::limits::Limits {
                memory_bytes: defaults::MAX_FUNCTION_MEMORY_MB << 20,
                timeout: Duration::from_millis(defaults::MAX_FUNCTION_TIMEOUT_MS),
                fuel: defaults::MAX_FUNCTION_FUEL,
            },
            max_instances: defaults::MAX_INSTANCES,
            admission: crate::limits::AdmissionOptions::default(),
            batch_concurrency: defaults::BATCH_CONCURRENCY,
            listen: ListenOptions::default(),
            handler_limits: crate::limits::Limits {
                memory_bytes: 512 << 20,
                timeout: Duration::from_secs(defaults::HANDLER_TIMEOUT_SECS),
                fuel: u64::MAX,
            },
            manifests_dir: PathBuf::from(defaults::MANIFESTS_DIR),
            models_dir: default_models_dir(),
            handlers_dir: PathBuf::from(defaults::HANDLERS_DIR),
            openai_aliases: false,
            ort: crate::inference::OrtOptions {
                library: None,
                threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                cuda: false,
                max_batch: defaults::MAX_BATCH,
                prefix_cache_bytes: defaults::PREFIX_CACHE_MB << 20,
                kv_in_place: true,
                nbits_kernel: true,
                spin_between_runs: false,
            },
            files_url: None,
            max_file_bytes: defaults::MAX_FILE_BYTES,
            url_sources_allow_private: false,
            address_policy: crate::net::AddressPolicy::default(),
            object_sources: std::collections::HashMap::new(),
            qdrant: None,
            plans: crate::plans::Plans::default(),
        }
    }

    /// SQLite metadata database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("tensoras.db")
    }

    /// Deployed components, `functions/<tenant>/<name>.<sha256>.wasm`.
    pub fn functions_dir(&self) -> PathBuf {
        self.data_dir.join("functions")
    }

    /// Private storage granted to functions, `function-data/<tenant>/<name>/`.
    pub fn function_data_dir(&self) -> PathBuf {
        self.data_dir.join("function-data")
    }

    /// The object store when no URL is configured; uploaded files are `files/...` in it.
    pub fn objects_dir(&self) -> PathBuf {
        self.data_dir.join("objects")
    }

    /// Embedded vector store (qdrant-edge shards, one per knowledge base).
    pub fn vectors_dir(&self) -> PathBuf {
        self.data_dir.join("vectors")
    }

    /// wasmtime's compiled-code cache, so a restart does not recompile components.
    pub fn compile_cache_dir(&self) -> PathBuf {
        self.compile_cache.clone().unwrap_or_else(|| self.data_dir.join("cache").join("wasmtime"))
    }
}

/// How the server accepts connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOptions {
    /// Most connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Deadline for a request's head (request line and headers), from its first byte.
    pub header_timeout: Duration,
    /// Longest a request body may send nothing before the request fails.
    pub body_idle_timeout: Duration,
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self {
            max_connections: defaults::MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(defaults::HEADER_TIMEOUT_SECS),
            body_idle_timeout: Duration::from_secs(defaults::BODY_TIMEOUT_SECS),
        }
    }
}

/// `models` under [`crate::cache_root`], where `make` puts the default models: converted once and
/// shared by every data directory.
pub fn default_models_dir() -> PathBuf {
    crate::cache_root().map(|c| c.join("models")).unwrap_or_else(|| PathBuf::from("models-data"))
}
