//! `tensoras serve`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tensoras::api::{self, AppState};
use tensoras::config::{Config, defaults};
use tensoras::store::MetadataStore;

use super::DataDirArg;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TENSORAS_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "TENSORAS_PORT", default_value_t = 8080)]
    port: u16,
    #[command(flatten)]
    data: DataDirArg,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TENSORAS_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Most requests running a guest instance at once (each may start nested instances
    /// of its own: an embedding for RAG, a server-side tool).
    #[arg(long, env = "TENSORAS_MAX_INSTANCES", default_value_t = defaults::MAX_INSTANCES)]
    max_instances: u32,
    /// Longest a request waits for a free instance before a 503 `server_overloaded`.
    #[arg(long, env = "TENSORAS_QUEUE_TIMEOUT_SECS", default_value_t = defaults::QUEUE_TIMEOUT_SECS)]
    queue_timeout_secs: u64,
    /// Most requests waiting for an instance at once; past it, a 503 at once.
    #[arg(long, env = "TENSORAS_MAX_QUEUE", default_value_t = defaults::MAX_QUEUE)]
    max_queue: usize,
    /// Most inference requests running on one model at once (unset: only --max-instances
    /// bounds them); past it they wait in the model's own queue.
    #[arg(long, env = "TENSORAS_MAX_MODEL_REQUESTS", value_parser = clap::value_parser!(u32).range(1..))]
    max_model_requests: Option<u32>,
    /// Most requests waiting for one model at once; past it, a 503 at once.
    #[arg(long, env = "TENSORAS_MAX_MODEL_QUEUE", default_value_t = defaults::MAX_QUEUE)]
    max_model_queue: usize,
    /// Most client connections open at once; more wait in the kernel's backlog.
    #[arg(long, env = "TENSORAS_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "TENSORAS_HEADER_TIMEOUT_SECS", default_value_t = defaults::HEADER_TIMEOUT_SECS)]
    header_timeout_secs: u64,
    /// Seconds a request body may send nothing before the request fails.
    #[arg(long, env = "TENSORAS_BODY_TIMEOUT_SECS", default_value_t = defaults::BODY_TIMEOUT_SECS)]
    body_timeout_secs: u64,
    /// Operator key: stored (or reactivated, if revoked) as an operator key on every start.
    #[arg(long, env = "TENSORAS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Export each request's trace span to this OpenTelemetry collector (OTLP over HTTP, base
    /// URL such as `http://127.0.0.1:4318`; spans go to `/v1/traces`). OpenTelemetry's own
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, `_PROTOCOL` (`http/protobuf`, `http/json`) and `_HEADERS`
    /// work too. Off when neither is set.
    #[arg(long, env = "TENSORAS_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Folder of model manifests (`*.toml`).
    #[arg(long, env = "TENSORAS_MODEL_MANIFESTS", default_value = defaults::MANIFESTS_DIR)]
    manifests: PathBuf,
    /// Folder of converted models [default: ~/.cache/tensoras/models].
    #[arg(long, env = "TENSORAS_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// Folder with the handler components `chat.wasm`, `rag.wasm` and `embeddings.wasm`.
    #[arg(long, env = "TENSORAS_HANDLERS_DIR", default_value = defaults::HANDLERS_DIR)]
    handlers_dir: PathBuf,
    /// Let OpenAI model names (gpt-4o-mini, text-embedding-3-small, ...) resolve to local models.
    #[arg(long, env = "TENSORAS_OPENAI_ALIASES")]
    openai_aliases: bool,
    /// ONNX Runtime shared library [default: found in the project's Python environment].
    #[arg(long, env = "TENSORAS_ORT_LIB")]
    ort_lib: Option<PathBuf>,
    /// Threads per model for ONNX Runtime [default: all cores].
    #[arg(long, env = "TENSORAS_THREADS")]
    threads: Option<usize>,
    /// Most concurrent sequences of one chat model stepped together in one ONNX Runtime
    /// run (continuous batching); 1 turns batching off.
    #[arg(long, env = "TENSORAS_MAX_BATCH", default_value_t = defaults::MAX_BATCH)]
    max_batch: usize,
    /// Lines of a batch job (`/v1/batches`) running at once. They run only in capacity
    /// no API request is waiting for; fewer leave more of each decoder step to
    /// interactive requests.
    #[arg(long, env = "TENSORAS_BATCH_CONCURRENCY", default_value_t = defaults::BATCH_CONCURRENCY)]
    batch_concurrency: usize,
    /// Memory per chat model for the KV caches of finished requests, reused by prompts
    /// that start with the same tokens (next turns, shared system prompts), in MiB; 0 off.
    #[arg(long, env = "TENSORAS_PREFIX_CACHE_MB", default_value_t = defaults::PREFIX_CACHE_MB)]
    prefix_cache_mb: usize,
    /// Copy each chat model's KV cache every step instead of updating it in place (what
    /// graphs without GroupQueryAttention always do); for comparisons.
    #[arg(long, env = "TENSORAS_KV_COPY")]
    kv_copy: bool,
    /// Run 4-bit weights on ONNX Runtime's MatMulNBits kernel instead of tensoras' own
    /// AVX-512 one (both exact in f32); for comparisons.
    #[arg(long, env = "TENSORAS_ORT_MATMUL")]
    ort_matmul: bool,
    /// Keep ONNX Runtime's threads spinning between runs (its default) instead of parking
    /// them when a run ends; for comparisons.
    #[arg(long, env = "TENSORAS_ORT_SPIN")]
    ort_spin: bool,
    /// Object store for uploaded files: `file:///dir`, `memory://`, or (with the
    /// `cloud-storage` build feature) `s3://bucket/prefix`, `gs://...`, `az://...`
    /// [default: <data-dir>/objects].
    #[arg(long, env = "TENSORAS_FILES_URL")]
    files_url: Option<String>,
    /// Largest uploaded file, in bytes.
    #[arg(long, env = "TENSORAS_MAX_FILE_BYTES", default_value_t = defaults::MAX_FILE_BYTES)]
    max_file_bytes: u64,
    /// Let knowledge-base URL sources fetch from loopback, private and link-local
    /// addresses (refused by default: the server would be a proxy into its network).
    #[arg(long, env = "TENSORAS_URL_SOURCES_ALLOW_PRIVATE")]
    url_sources_allow_private: bool,
    /// Non-public address ranges (CIDR, e.g. `10.1.0.0/16,fd00::/8`) that URL data sources
    /// and functions' network grants may reach anyway; loopback, private, link-local and
    /// other non-public addresses are refused otherwise, whatever a grant names.
    #[arg(long, env = "TENSORAS_ALLOW_PRIVATE_NETWORK", value_delimiter = ',', value_name = "CIDR")]
    allow_private_network: Vec<tensoras::net::Cidr>,
    /// `TENANT=URL_PREFIX`: an object-store prefix (`s3://bucket/tenant-a/`) whose objects
    /// that tenant's `s3://`/`gs://`/`az://` data sources may read with the server's cloud
    /// credentials (repeatable; object URLs are refused otherwise).
    #[arg(long, env = "TENSORAS_TENANT_OBJECT_SOURCES", value_delimiter = ',', value_name = "TENANT=URL")]
    tenant_object_source: Vec<String>,
    #[command(flatten)]
    plans: super::PlansArg,
    /// The plan of keys whose key and tenant have none (`unlimited` limits nothing).
    #[arg(long, env = "TENSORAS_DEFAULT_PLAN", value_name = "PLAN")]
    default_plan: Option<String>,
    /// wasmtime's compiled-code cache [default: <data-dir>/cache/wasmtime]. Servers on one
    /// machine may share one, so a component compiled by one is not compiled again.
    #[arg(long, env = "TENSORAS_COMPILE_CACHE_DIR")]
    compile_cache_dir: Option<PathBuf>,
    /// Most memory a function's manifest may ask for, in MiB.
    #[arg(long, env = "TENSORAS_MAX_FUNCTION_MEMORY_MB", default_value_t = defaults::MAX_FUNCTION_MEMORY_MB)]
    max_function_memory_mb: usize,
    /// Longest wall-clock deadline a function's manifest may ask for, in milliseconds.
    #[arg(long, env = "TENSORAS_MAX_FUNCTION_TIMEOUT_MS", default_value_t = defaults::MAX_FUNCTION_TIMEOUT_MS)]
    max_function_timeout_ms: u64,
    /// Largest CPU budget (wasmtime fuel, about one unit per instruction) a function's
    /// manifest may ask for per call.
    #[arg(long, env = "TENSORAS_MAX_FUNCTION_FUEL", default_value_t = defaults::MAX_FUNCTION_FUEL)]
    max_function_fuel: u64,
    /// Longest one inference request (chat, completions, embeddings) may run, in seconds;
    /// past it the handler is stopped: a 504 before a stream starts, an error event after.
    #[arg(long, env = "TENSORAS_HANDLER_TIMEOUT_SECS", default_value_t = defaults::HANDLER_TIMEOUT_SECS)]
    handler_timeout_secs: u64,
    /// CPU budget of one inference request's handler, in wasmtime fuel (about one unit
    /// per wasm instruction; the model's own compute is not counted) [default: unlimited].
    #[arg(long, env = "TENSORAS_HANDLER_FUEL")]
    handler_fuel: Option<u64>,
    /// Device for model execution: `cpu` or `cuda` (falls back to CPU with a warning).
    #[arg(long, env = "TENSORAS_DEVICE", default_value = "cpu", value_parser = ["cpu", "cuda"])]
    device: String,
    /// Qdrant server (gRPC) for knowledge-base vectors, e.g. `http://qdrant:6334`
    /// [default: embedded qdrant-edge under <data-dir>/vectors].
    #[arg(long, env = "TENSORAS_QDRANT_URL")]
    qdrant_url: Option<String>,
    /// API key of the Qdrant server.
    #[arg(long, env = "TENSORAS_QDRANT_API_KEY", hide_env_values = true, requires = "qdrant_url")]
    qdrant_api_key: Option<String>,
    /// Prefix of the Qdrant collection names (one per knowledge base), so several
    /// deployments can share a server.
    #[arg(long, env = "TENSORAS_QDRANT_COLLECTION_PREFIX", default_value = defaults::QDRANT_COLLECTION_PREFIX)]
    qdrant_collection_prefix: String,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::new(&args.data.data_dir);
    config.max_body_bytes = args.max_body_bytes;
    config.compile_cache = args.compile_cache_dir;
    config.max_instances = args.max_instances.max(1);
    config.admission = tensoras::limits::AdmissionOptions {
        queue_timeout: Duration::from_secs(args.queue_timeout_secs),
        max_waiting: args.max_queue,
        max_model_requests: args.max_model_requests.map(|n| n as usize),
        max_model_waiting: args.max_model_queue,
    };
    config.listen = tensoras::config::ListenOptions {
        max_connections: args.max_connections.max(1),
        header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        body_idle_timeout: Duration::from_secs(args.body_timeout_secs.max(1)),
    };
    config.manifests_dir = args.manifests;
    if let Some(dir) = args.models_dir {
        config.models_dir = dir;
    }
    config.handlers_dir = args.handlers_dir;
    config.openai_aliases = args.openai_aliases;
    config.ort.library = args.ort_lib.or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
    if let Some(t) = args.threads {
        config.ort.threads = t.max(1);
    }
    config.ort.cuda = args.device == "cuda";
    config.ort.max_batch = args.max_batch.max(1);
    config.batch_concurrency = args.batch_concurrency.max(1);
    config.ort.prefix_cache_bytes = args.prefix_cache_mb << 20;
    config.ort.kv_in_place = !args.kv_copy;
    config.ort.nbits_kernel = !args.ort_matmul;
    config.ort.spin_between_runs = args.ort_spin;
    config.files_url = args.files_url;
    config.max_file_bytes = args.max_file_bytes;
    config.url_sources_allow_private = args.url_sources_allow_private;
    config.address_policy = tensoras::net::AddressPolicy::new(args.allow_private_network);
    for entry in &args.tenant_object_source {
        let (tenant, prefix) = entry.split_once('=').filter(|(t, p)| !t.is_empty() && p.contains("://")).with_context(|| {
            format!("--tenant-object-source {entry:?} must be TENANT=URL_PREFIX, e.g. team-a=s3://bucket/team-a/")
        })?;
        config.object_sources.entry(tenant.to_owned()).or_default().push(prefix.to_owned());
    }
    config.plans = args.plans.load()?;
    if let Some(name) = &args.default_plan {
        config.plans.set_default(name).context("--default-plan")?;
    }
    config.max_limits = tensoras::limits::Limits {
        memory_bytes: args.max_function_memory_mb.max(1) << 20,
        timeout: Duration::from_millis(args.max_function_timeout_ms.max(1)),
        fuel: args.max_function_fuel.max(1),
    };
    config.handler_limits.timeout = Duration::from_secs(args.handler_timeout_secs.max(1));
    if let Some(fuel) = args.handler_fuel {
        config.handler_limits.fuel = fuel.max(1);
    }
    config.qdrant = args.qdrant_url.map(|url| tensoras::vector::server::ServerOptions {
        url,
        api_key: args.qdrant_api_key,
        collection_prefix: args.qdrant_collection_prefix,
    });

    let state = AppState::open(config).await?;
    bootstrap_key(state.store.as_ref(), args.api_key.as_deref())?;

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    tracing::info!(data_dir = %state.config.data_dir.display(), "Tensoras listening on http://{addr}");
    api::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Makes sure the server has an operator key, so keys can always be managed. With
/// `TENSORAS_API_KEY` that secret is (again) an active operator key on every start: a
/// restart with the same secret never trips over the stored hash, and recovers operator
/// access if the key was revoked. Without it, a server with no active operator key (a
/// fresh data directory) creates one and prints it once.
fn bootstrap_key(store: &dyn MetadataStore, env_key: Option<&str>) -> anyhow::Result<()> {
    if let Some(secret) = env_key {
        let key =
            tensoras::auth::ensure_operator_key(store, secret).context("TENSORAS_API_KEY cannot be used as the operator key")?;
        tracing::info!(key_id = %key.id, tenant = %key.tenant, "TENSORAS_API_KEY is an active operator key");
        return Ok(());
    }
    if store.count_operators().map_err(|e| anyhow::anyhow!("{e}"))? > 0 {
        return Ok(());
    }
    let spec = tensoras::auth::KeySpec {
        name: "bootstrap",
        tenant: "default",
        role: tensoras::auth::Role::Operator,
        scopes: &[],
        plan: None,
    };
    let (key, secret) = tensoras::auth::create_key(store, &spec)?;
    // Shown once on the console, like `tensoras keys create`; never logged.
    println!("Created an operator API key ({}); it is shown only now:\n\n    {secret}\n", key.id);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
