//! Process configuration. Everything the server keeps lives under one data directory,
//! so a fresh directory is a fresh install.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root of all state: `tensoras.db`, deployed components, function storage, caches.
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Limits applied to a function whose manifest does not set them.
    pub default_limits: crate::runtime::Limits,
    /// Upper bounds no manifest may exceed (a deploy asking for more is refused).
    pub max_limits: crate::runtime::Limits,
    /// Requests running a guest instance at once (nested instances have a pool of their
    /// own); further requests wait for a slot as `admission` allows.
    pub max_instances: u32,
    /// How long and how many requests may wait for an instance slot.
    pub admission: crate::runtime::AdmissionOptions,
    /// Connection cap and request read deadlines.
    pub listen: ListenOptions,
    /// Limits of one inference request (chat, embeddings handlers).
    pub handler_limits: crate::runtime::Limits,
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
}

impl Config {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            max_body_bytes: 32 * 1024 * 1024,
            default_limits: crate::runtime::Limits {
                memory_bytes: 128 << 20,
                timeout: Duration::from_secs(10),
                fuel: 20_000_000_000,
            },
            // A tenant's function shares the host with everyone's: its asks are capped
            // (`serve --max-function-*`).
            max_limits: crate::runtime::Limits {
                memory_bytes: 256 << 20,
                timeout: Duration::from_secs(60),
                fuel: 100_000_000_000,
            },
            max_instances: 256,
            admission: crate::runtime::AdmissionOptions::default(),
            listen: ListenOptions::default(),
            handler_limits: crate::runtime::Limits { memory_bytes: 512 << 20, timeout: Duration::from_secs(600), fuel: u64::MAX },
            manifests_dir: PathBuf::from("models"),
            models_dir: default_models_dir(),
            handlers_dir: PathBuf::from("build/functions"),
            openai_aliases: false,
            ort: crate::inference::OrtOptions {
                library: None,
                threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                cuda: false,
                max_batch: 16,
                prefix_cache_bytes: 256 << 20,
                kv_in_place: true,
                nbits_kernel: true,
                spin_between_runs: false,
            },
            files_url: None,
            max_file_bytes: 512 << 20,
            url_sources_allow_private: false,
            address_policy: crate::net::AddressPolicy::default(),
            object_sources: std::collections::HashMap::new(),
            qdrant: None,
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
        self.data_dir.join("cache").join("wasmtime")
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
        Self { max_connections: 4096, header_timeout: Duration::from_secs(10), body_idle_timeout: Duration::from_secs(30) }
    }
}

/// `~/.cache/tensoras/models`, where `make` puts the default models: converted once and
/// shared by every data directory.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/tensoras/models"))
        .unwrap_or_else(|| PathBuf::from("models-data"))
}
