//! The registry of deployed functions: validates and stores uploads, keeps a prepared
//! (pre-instantiated) component per function in memory, and reloads everything from the
//! metadata store and the data directory at start-up so deployments survive restarts.
//!
//! Functions are owned by a tenant; lookups are always by `(tenant, name)`, so one
//! tenant can neither see nor call another's functions.
//!
//! A component is stored as `functions/<tenant>/<name>.<sha256>.wasm`, written (fsynced,
//! renamed into place) before its record, and removed after its record: a `kill -9` at
//! any point leaves either a loadable function or a file no record names, which the next
//! start removes ([`repair_components`], docs/design/007-durability.md).

pub mod logs;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::Context as _;
use futures::future::BoxFuture;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::files::disk::{TenantEntry, sync_dir, tenant_entries, write_durably};
use crate::ids::valid_name;
use crate::limits::{Grants, LimitsSpec};
use crate::runtime::{
    ChatFunction, HttpFunction, KV_MAX_KEYS, KeyValue, Runtime, Sandbox, Services, ToolFunction, ToolInfo, ToolOutcome, Toolbox,
};
use crate::store::{FunctionKind, FunctionRecord, MetadataStore, StoreError};

/// A deploy manifest, as uploaded next to the component.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique per tenant, `^[A-Za-z0-9_-]{1,64}$`.
    #[serde(default)]
    pub name: String,
    /// `tool` or `http`.
    #[serde(default)]
    pub kind: String,
    /// For tools: shown to the model; defaults to the component's own description.
    #[serde(default)]
    pub description: Option<String>,
    /// For tools: JSON Schema of the arguments; defaults to the component's own.
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Capabilities beyond the deny-by-default sandbox.
    #[serde(default)]
    pub grants: Grants,
    /// For chat functions: the built-in handler it stands in for, for its tenant's own
    /// requests. `"rag"`: the tenant's chat completions that name `knowledge_bases`.
    #[serde(default)]
    pub replaces: Option<String>,
}

/// The built-in handlers a tenant's chat function may replace (`replaces` in a manifest).
pub const REPLACEABLE: &[&str] = &["rag"];

/// Why a deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The upload is wrong; `param` names the part at fault.
    #[error("{message}")]
    Invalid {
        /// Manifest field or form part at fault.
        param: &'static str,
        /// What is wrong, for the client.
        message: String,
    },
    /// No such function, or no such version of it (rollback).
    #[error("{0}")]
    NotFound(String),
    /// Another function of the tenant already holds what this one asks for (`replaces`).
    #[error("{0}")]
    Conflict(String),
    /// A host failure.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn invalid(param: &'static str, message: impl Into<String>) -> DeployError {
    DeployError::Invalid { param, message: message.into() }
}

/// A deployed, ready-to-run function.
#[derive(Debug)]
pub struct Deployed {
    /// Its manifest and bookkeeping.
    pub record: FunctionRecord,
    /// The prepared component.
    pub exec: Executable,
}

/// The prepared component, by kind.
#[derive(Debug)]
pub enum Executable {
    /// A tool.
    Tool(ToolFunction),
    /// An HTTP function.
    Http(HttpFunction),
    /// A chat function, served as model `fn:NAME`.
    Chat(ChatFunction),
}

type Key = (String, String);

/// Versions kept per function for rollback (with their component files); older ones go.
const KEEP_VERSIONS: usize = 10;

/// All deployed functions.
pub struct Registry {
    runtime: Arc<Runtime>,
    store: Arc<dyn MetadataStore>,
    config: Arc<Config>,
    deployed: RwLock<HashMap<Key, Arc<Deployed>>>,
    /// Held while component files and records change together (deploy, delete), so two
    /// of them never interleave between a file and its record.
    writes: tokio::sync::Mutex<()>,
    /// Recent invocations of each function.
    logs: Arc<logs::Logs>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    /// Mends what a crash left in the functions folder ([`repair_components`]), then
    /// loads every stored function. One that fails to load is logged and skipped, so a
    /// single bad file cannot keep the server from starting.
    pub async fn open(runtime: Arc<Runtime>, store: Arc<dyn MetadataStore>, config: Arc<Config>) -> anyhow::Result<Self> {
        let started = SystemTime::now();
        let mut records = store.all_functions().map_err(|e| anyhow::anyhow!("loading functions: {e}"))?;
        let all = store.all_function_versions().map_err(|e| anyhow::anyhow!("loading function versions: {e}"))?;
        let (dir, data_dir) = (config.functions_dir(), config.function_data_dir());
        match tokio::task::spawn_blocking(move || repair_components(&dir, &data_dir, &all, started)).await? {
            Ok(repair) => {
                if repair.moved + repair.removed > 0 {
                    tracing::warn!(
                        moved = repair.moved,
                        removed = repair.removed,
                        "functions: mended what an interrupted run left"
                    );
                }
                for (tenant, name, version) in &repair.missing {
                    if records.iter().any(|r| (&r.tenant, &r.name, r.version) == (tenant, name, *version)) {
                        tracing::error!(tenant = %tenant, function = %name, version, "deployed function has no component file; removing its record");
                        store.delete_function(tenant, name).map_err(|e| anyhow::anyhow!("removing function {name}: {e}"))?;
                    } else {
                        tracing::warn!(tenant = %tenant, function = %name, version, "an older version has no component file; it cannot be rolled back to");
                    }
                }
                records.retain(|r| !repair.missing.contains(&(r.tenant.clone(), r.name.clone(), r.version)));
            }
            Err(e) => tracing::error!("checking the functions folder: {e}"),
        }
        let registry = Self {
            runtime,
            store,
            config,
            deployed: RwLock::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            logs: Arc::default(),
        };
        let mut loaded = 0usize;
        for record in records {
            let path = registry.component_path(&record);
            match registry.load(record.clone(), &path).await {
                Ok(d) => {
                    registry.insert(d);
                    loaded += 1;
                }
                Err(e) => tracing::error!(
                    tenant = %record.tenant, function = %record.name, path = %path.display(),
                    "could not load deployed function: {e:#}"
                ),
            }
        }
        tracing::info!(functions = loaded, "loaded deployed functions");
        Ok(registry)
    }

    async fn load(&self, mut record: FunctionRecord, path: &std::path::Path) -> anyhow::Result<Deployed> {
        if let Err((_, why)) = record.limits.resolve(&self.config.default_limits, &self.config.max_limits) {
            // Deployed under higher maximums than this start's: it runs within today's.
            tracing::warn!(tenant = %record.tenant, function = %record.name, "{why}; running it at the maximum");
            record.limits = record.limits.clamped(&self.config.max_limits);
        }
        let bytes = tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))?;
        let sha256 = crate::ids::hex(&Sha256::digest(&bytes));
        anyhow::ensure!(sha256 == record.sha256, "the file's SHA-256 is {sha256}, not the deployed {}", record.sha256);
        let exec = self.prepare(&record, bytes).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Deployed { record, exec })
    }

    fn component_path(&self, record: &FunctionRecord) -> PathBuf {
        component_file(&self.config.functions_dir(), &record.tenant, &record.name, &record.sha256)
    }

    fn sandbox(&self, record: &FunctionRecord) -> Sandbox {
        let kv: Option<Arc<dyn KeyValue>> = record.grants.kv.then(|| {
            Arc::new(FunctionKv { store: self.store.clone(), tenant: record.tenant.clone(), function: record.name.clone() }) as _
        });
        Sandbox {
            grants: record.grants.clone(),
            storage_dir: record.grants.storage.then(|| self.config.function_data_dir().join(&record.tenant).join(&record.name)),
            addresses: Arc::new(self.config.address_policy.clone()),
            // Checked at deploy; a record from before the field existed gets the default.
            budget: record.limits.model_budget().unwrap_or_default(),
            kv,
            log: Some(self.logs.sink(&record.tenant, &record.name)),
        }
    }

    /// Compiles and links the component for its kind.
    async fn prepare(&self, record: &FunctionRecord, bytes: Vec<u8>) -> Result<Executable, DeployError> {
        let limits = record
            .limits
            .resolve(&self.config.default_limits, &self.config.max_limits)
            .map_err(|(field, m)| invalid(field, m))?;
        record.limits.model_budget().map_err(|(field, m)| invalid(field, m))?;
        let runtime = self.runtime.clone();
        // Compilation is CPU-bound and can take a while for big components.
        let component = tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(|e| DeployError::Internal(e.into()))?
            .map_err(|m| invalid("file", m))?;
        let sandbox = self.sandbox(record);
        Ok(match record.kind {
            FunctionKind::Tool => {
                Executable::Tool(self.runtime.prepare_tool(&component, limits, sandbox).map_err(|m| invalid("file", m))?)
            }
            FunctionKind::Http => {
                Executable::Http(self.runtime.prepare_http(&component, limits, sandbox).map_err(|m| invalid("file", m))?)
            }
            FunctionKind::Chat => {
                Executable::Chat(self.runtime.prepare_chat(&component, limits, sandbox).map_err(|m| invalid("file", m))?)
            }
        })
    }

    fn insert(&self, d: Deployed) -> Arc<Deployed> {
        let d = Arc::new(d);
        let key = (d.record.tenant.clone(), d.record.name.clone());
        if let Ok(mut map) = self.deployed.write() {
            map.insert(key, d.clone());
        }
        d
    }

    /// Validates, stores and activates a new function.
    pub async fn deploy(&self, tenant: &str, manifest: Manifest, wasm: Vec<u8>) -> Result<FunctionRecord, DeployError> {
        if manifest.name.is_empty() {
            return Err(invalid("name", "missing function name"));
        }
        if !valid_name(&manifest.name) {
            return Err(invalid("name", "function names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"));
        }
        let kind = FunctionKind::parse(&manifest.kind)
            .ok_or_else(|| invalid("kind", format!("kind must be 'tool', 'http' or 'chat', got {:?}", manifest.kind)))?;
        manifest.grants.validate().map_err(|m| invalid("grants", m))?;
        if kind != FunctionKind::Tool && manifest.parameters.is_some() {
            return Err(invalid("parameters", "parameters apply to tool functions only"));
        }
        if let Some(p) = &manifest.parameters {
            check_parameters_schema(p)?;
        }
        if let Some(handler) = &manifest.replaces {
            if !REPLACEABLE.contains(&handler.as_str()) {
                return Err(invalid("replaces", format!("replaces must be one of {REPLACEABLE:?}, got {handler:?}")));
            }
            if kind != FunctionKind::Chat {
                return Err(invalid("replaces", "only a chat function (kind 'chat') can replace a built-in handler"));
            }
        }
        if wasm.is_empty() {
            return Err(invalid("file", "missing component file"));
        }
        let mut record = FunctionRecord {
            tenant: tenant.to_owned(),
            name: manifest.name,
            version: 0, // the store numbers it
            kind,
            description: manifest.description.unwrap_or_default(),
            parameters: manifest.parameters,
            limits: manifest.limits,
            grants: manifest.grants,
            sha256: crate::ids::hex(&Sha256::digest(&wasm)),
            size_bytes: wasm.len() as u64,
            created_at: crate::unix_now(),
            replaces: manifest.replaces,
        };
        let exec = self.prepare(&record, wasm.clone()).await?;
        if let Executable::Tool(tool) = &exec {
            fill_from_describe(&self.runtime, tool, &mut record).await?;
        }

        // The bytes are durable under their final name before the record claims the name;
        // a crash in between leaves a file no record names, removed at the next start.
        let path = self.component_path(&record);
        let _writing = self.writes.lock().await;
        self.check_replacement(&record)?;
        let existed = tokio::fs::try_exists(&path).await.unwrap_or(false);
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_durably(&target, &wasm))
            .await
            .map_err(|e| DeployError::Internal(e.into()))?
            .with_context(|| format!("storing the component as {}", path.display()))?;
        let (record, pruned) = match self.store.put_function(&record, KEEP_VERSIONS) {
            Ok(stored) => stored,
            Err(e) => {
                // A file that was there already is another version's (same name and bytes).
                if !existed {
                    let _ = tokio::fs::remove_file(&path).await;
                }
                return Err(DeployError::Internal(match e {
                    StoreError::Backend(e) => e,
                    StoreError::Conflict => anyhow::anyhow!("storing the function: conflict"),
                }));
            }
        };
        // Requests that started on the version this replaces hold it until they finish.
        let deployed = self.insert(Deployed { record, exec }).record.clone();
        self.remove_pruned(&deployed, pruned).await;
        tracing::info!(tenant, function = %deployed.name, version = deployed.version, kind = kind.as_str(), "deployed function");
        Ok(deployed)
    }

    /// Removes the component files of pruned versions that no kept version shares.
    async fn remove_pruned(&self, current: &FunctionRecord, pruned: Vec<FunctionRecord>) {
        if pruned.is_empty() {
            return;
        }
        let kept = self.store.function_versions(&current.tenant, &current.name).unwrap_or_default();
        for old in pruned {
            if !kept.iter().any(|k| k.sha256 == old.sha256) {
                let _ = tokio::fs::remove_file(self.component_path(&old)).await;
            }
        }
    }

    /// The stored versions of a tenant's function, oldest first (empty when it does not exist).
    pub fn versions(&self, tenant: &str, name: &str) -> anyhow::Result<Vec<FunctionRecord>> {
        self.store.function_versions(tenant, name).map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    /// Makes a stored version of a function serve again (compiling it from its file).
    /// Requests in flight finish on the version they started with.
    pub async fn rollback(&self, tenant: &str, name: &str, version: u32) -> Result<FunctionRecord, DeployError> {
        let _writing = self.writes.lock().await;
        if self.get(tenant, name).is_none() {
            return Err(DeployError::NotFound(format!("No function named '{name}'.")));
        }
        let versions = self.versions(tenant, name)?;
        let Some(record) = versions.into_iter().find(|r| r.version == version) else {
            return Err(DeployError::NotFound(format!("Function '{name}' has no version {version}.")));
        };
        self.check_replacement(&record)?;
        let path = self.component_path(&record);
        let d = self.load(record, &path).await?;
        self.store
            .activate_function(tenant, name, version)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?
            .ok_or_else(|| DeployError::NotFound(format!("Function '{name}' has no version {version}.")))?;
        tracing::info!(tenant, function = name, version, "rolled back function");
        Ok(self.insert(d).record.clone())
    }

    /// One function per tenant may replace a built-in handler; refuses `record` if
    /// another serving function of its tenant already does. Called under `writes`.
    fn check_replacement(&self, record: &FunctionRecord) -> Result<(), DeployError> {
        let Some(handler) = &record.replaces else { return Ok(()) };
        match self.replacement(&record.tenant, handler) {
            Some(other) if other.record.name != record.name => Err(DeployError::Conflict(format!(
                "function '{}' already replaces the {handler} handler for this tenant; delete it, or roll it back to a \
                 version that does not, first",
                other.record.name
            ))),
            _ => Ok(()),
        }
    }

    /// The tenant's chat function that replaces built-in `handler`, if one does.
    pub fn replacement(&self, tenant: &str, handler: &str) -> Option<Arc<Deployed>> {
        let map = self.deployed.read().ok()?;
        // A scan: a tenant has few functions, and only grounded requests ask.
        map.values().find(|d| d.record.tenant == tenant && d.record.replaces.as_deref() == Some(handler)).cloned()
    }

    /// The recent invocations of a function of `tenant`, after id `after`, and its counts.
    pub fn logs(&self, tenant: &str, name: &str, after: Option<u64>, limit: usize) -> (Vec<logs::Entry>, logs::Stats) {
        self.logs.read(tenant, name, after, limit)
    }

    /// The runtime functions run on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// A tenant's function.
    pub fn get(&self, tenant: &str, name: &str) -> Option<Arc<Deployed>> {
        let map = self.deployed.read().ok()?;
        map.get(&(tenant.to_owned(), name.to_owned())).cloned()
    }

    /// A tenant's functions, by name.
    pub fn list(&self, tenant: &str) -> Vec<FunctionRecord> {
        let Ok(map) = self.deployed.read() else { return Vec::new() };
        let mut out: Vec<_> = map.values().filter(|d| d.record.tenant == tenant).map(|d| d.record.clone()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Removes a function, then its component file and its storage (left over after a
    /// crash, they go at the next start); false if it did not exist.
    pub async fn delete(&self, tenant: &str, name: &str) -> anyhow::Result<bool> {
        let _writing = self.writes.lock().await;
        let existed = self.store.delete_function(tenant, name).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        if let Ok(mut map) = self.deployed.write() {
            map.remove(&(tenant.to_owned(), name.to_owned()));
        }
        self.logs.forget(tenant, name);
        if existed {
            let dir = self.config.functions_dir().join(tenant);
            let owned = name.to_owned();
            let _ = tokio::task::spawn_blocking(move || remove_files_of(&dir, &owned)).await;
            let _ = tokio::fs::remove_dir_all(self.config.function_data_dir().join(tenant).join(name)).await;
            tracing::info!(tenant, function = name, "deleted function");
        }
        Ok(existed)
    }
}

/// One tenant's tool functions, as the chat handler lists and calls them.
struct TenantTools {
    registry: Arc<Registry>,
    tenant: String,
    services: Arc<dyn Services>,
}

impl Registry {
    /// The tools of `tenant`, for a handler call; what they reach of the platform is
    /// `services` (the key the request is made with).
    pub fn toolbox(self: &Arc<Self>, tenant: &str, services: Arc<dyn Services>) -> Arc<dyn Toolbox> {
        Arc::new(TenantTools { registry: self.clone(), tenant: tenant.to_owned(), services })
    }
}

impl Toolbox for TenantTools {
    fn available(&self) -> Vec<ToolInfo> {
        self.registry
            .list(&self.tenant)
            .into_iter()
            .filter(|f| f.kind == FunctionKind::Tool)
            .map(|f| ToolInfo {
                name: f.name,
                description: f.description,
                parameters: f.parameters.map(|p| p.to_string()).unwrap_or_else(|| "{}".into()),
            })
            .collect()
    }

    fn invoke(&self, name: String, arguments: String) -> BoxFuture<'static, Result<ToolOutcome, String>> {
        let deployed = self.registry.get(&self.tenant, &name);
        let runtime = self.registry.runtime.clone();
        let services = self.services.clone();
        Box::pin(async move {
            let Some(f) = deployed else {
                return Err(format!("no tool named {name:?}"));
            };
            let Executable::Tool(tool) = &f.exec else {
                return Err(format!("{name:?} is not a tool function"));
            };
            runtime.call_tool(tool, &arguments, Some(services)).await.map_err(|e| e.to_string())
        })
    }
}

/// One function's key-value store, in the metadata store. SQLite commits are fsynced, so
/// every operation runs on a blocking thread.
struct FunctionKv {
    store: Arc<dyn MetadataStore>,
    tenant: String,
    function: String,
}

impl std::fmt::Debug for FunctionKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionKv").field("tenant", &self.tenant).field("function", &self.function).finish()
    }
}

impl FunctionKv {
    fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn MetadataStore, &str, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, String>> {
        let (store, tenant, function) = (self.store.clone(), self.tenant.clone(), self.function.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || op(store.as_ref(), &tenant, &function))
                .await
                .map_err(|e| format!("key-value task failed: {e}"))?
                .map_err(|e| {
                    tracing::error!("function key-value store: {e:#}");
                    "the key-value store failed".to_owned()
                })
        })
    }
}

impl KeyValue for FunctionKv {
    fn get(&self, key: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>> {
        self.run(move |s, t, f| s.kv_get(t, f, &key))
    }

    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'static, Result<bool, String>> {
        self.run(move |s, t, f| s.kv_set(t, f, &key, &value, KV_MAX_KEYS))
    }

    fn delete(&self, key: String) -> BoxFuture<'static, Result<bool, String>> {
        self.run(move |s, t, f| s.kv_delete(t, f, &key))
    }

    fn keys(&self, prefix: String) -> BoxFuture<'static, Result<Vec<String>, String>> {
        self.run(move |s, t, f| s.kv_keys(t, f, &prefix))
    }
}

/// The file of a deployed component, `<dir>/<tenant>/<name>.<sha256>.wasm`: the hash ties
/// the bytes to the record that describes them, so a record never names another
/// deploy's bytes (a redeploy of the name after a delete writes a new file).
fn component_file(dir: &Path, tenant: &str, name: &str, sha256: &str) -> PathBuf {
    dir.join(tenant).join(format!("{name}.{sha256}.wasm"))
}

/// The function a file in a tenant's folder belongs to. Names have no `.`, so it is what
/// comes before the first one: `calc` of `calc.<sha256>.wasm`, of its temporary
/// `calc.<sha256>.wasm.tmp` and of the `calc.wasm` that older versions wrote.
fn file_owner(file_name: &str) -> &str {
    file_name.split('.').next().unwrap_or_default()
}

/// Removes every file of function `name` in a tenant's folder.
fn remove_files_of(tenant_dir: &Path, name: &str) -> std::io::Result<()> {
    for entry in std::fs::read_dir(tenant_dir)? {
        let entry = entry?;
        if file_owner(&entry.file_name().to_string_lossy()) == name {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// What [`repair_components`] found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// `(tenant, name, version)` of records whose bytes are nowhere (a deploy by an older
    /// release that died between its record and its file, or a lost file): a serving
    /// version's function must go, so the name can be deployed again.
    pub missing: Vec<(String, String, u32)>,
    /// Components found under another name (older versions' `<name>.wasm` or a temporary
    /// file) with the record's hash, moved into place.
    pub moved: usize,
    /// Files and storage folders no record names, removed.
    pub removed: usize,
}

/// Brings the functions folder in line with the records at start-up: every record gets
/// its component file (moved into place where an older layout or a cut-off rename left
/// it, by hash) or is reported missing, and every component file, temporary file and
/// `function-data` folder no record names is removed. Entries modified since `before`
/// (this start) are left alone.
pub fn repair_components(
    functions_dir: &Path,
    data_dir: &Path,
    records: &[FunctionRecord],
    before: SystemTime,
) -> std::io::Result<Repair> {
    let mut repair = Repair::default();
    let mut keep = HashSet::new();
    for r in records {
        let path = component_file(functions_dir, &r.tenant, &r.name, &r.sha256);
        if !path.is_file() {
            if !adopt(&path, &r.name, &r.sha256)? {
                repair.missing.push((r.tenant.clone(), r.name.clone(), r.version));
                continue;
            }
            repair.moved += 1;
        }
        keep.insert(path);
    }
    let named: HashSet<(String, String)> = records
        .iter()
        .filter(|r| !repair.missing.contains(&(r.tenant.clone(), r.name.clone(), r.version)))
        .map(|r| (r.tenant.clone(), r.name.clone()))
        .collect();
    repair.removed += sweep_tenants(functions_dir, before, |e| keep.contains(&e.path))?;
    repair.removed += sweep_tenants(data_dir, before, |e| named.contains(&(e.tenant.clone(), e.name.clone())))?;
    Ok(repair)
}

/// Looks in `path`'s folder for a file of function `name` holding the bytes with hash
/// `sha256` and moves it to `path`; false when there is none.
fn adopt(path: &Path, name: &str, sha256: &str) -> std::io::Result<bool> {
    let Some(dir) = path.parent() else { return Ok(false) };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if file_owner(&entry.file_name().to_string_lossy()) != name || !entry.file_type()?.is_file() {
            continue;
        }
        if crate::ids::hex(&Sha256::digest(std::fs::read(entry.path())?)) == sha256 {
            std::fs::rename(entry.path(), path)?;
            sync_dir(dir)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes the entries of `root/<tenant>/` that `keep` does not want and that were
/// modified before `before`; returns how many.
fn sweep_tenants(root: &Path, before: SystemTime, keep: impl Fn(&TenantEntry) -> bool) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in tenant_entries(root)? {
        if !keep(&entry) && entry.modified_before(before) {
            entry.remove()?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn check_parameters_schema(p: &serde_json::Value) -> Result<(), DeployError> {
    let obj = p.as_object().ok_or_else(|| invalid("parameters", "parameters must be a JSON Schema object"))?;
    match obj.get("type") {
        None => Ok(()),
        Some(t) if t == "object" => Ok(()),
        Some(t) => Err(invalid("parameters", format!("parameters must describe an object (\"type\": \"object\"), got {t}"))),
    }
}

/// Fills description and parameters the manifest left out from the tool's `describe()`.
async fn fill_from_describe(runtime: &Runtime, tool: &ToolFunction, record: &mut FunctionRecord) -> Result<(), DeployError> {
    if !record.description.is_empty() && record.parameters.is_some() {
        return Ok(());
    }
    let info = runtime.describe_tool(tool).await.map_err(|e| invalid("file", format!("the tool's describe() failed: {e}")))?;
    if record.description.is_empty() {
        record.description = info.description;
    }
    if record.parameters.is_none() {
        let schema: serde_json::Value = serde_json::from_str(&info.parameters)
            .map_err(|e| invalid("file", format!("the tool's describe() returned parameters that are not JSON: {e}")))?;
        check_parameters_schema(&schema)?;
        record.parameters = Some(schema);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, name: &str, bytes: &[u8]) -> FunctionRecord {
        FunctionRecord {
            tenant: tenant.into(),
            name: name.into(),
            version: 1,
            kind: FunctionKind::Tool,
            description: String::new(),
            parameters: None,
            limits: LimitsSpec::default(),
            grants: Grants::default(),
            sha256: crate::ids::hex(&Sha256::digest(bytes)),
            size_bytes: bytes.len() as u64,
            created_at: 1,
            replaces: None,
        }
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Every state a killed deploy or delete (of this version or an older one) can leave
    /// is brought back to: each record with its bytes, or reported; nothing else.
    #[test]
    fn repair_brings_the_folder_in_line_with_the_records() {
        let root = tempfile::tempdir().unwrap();
        let (dir, data) = (root.path().join("functions"), root.path().join("function-data"));
        let ok = record("t", "ok", b"ok v2");
        write(&component_file(&dir, "t", "ok", &ok.sha256), b"ok v2");
        write(&component_file(&dir, "t", "ok", &record("t", "ok", b"ok v1").sha256), b"ok v1"); // deleted, then redeployed
        write(&dir.join("t/ok.0123.wasm.tmp"), b"ok v"); // killed while writing
        let legacy = record("t", "legacy", b"legacy");
        write(&dir.join("t/legacy.wasm"), b"legacy"); // an older version's layout
        let cut = record("t", "cut", b"cut v2");
        write(&dir.join("t/cut.wasm"), b"cut v1"); // an older version: the old bytes ...
        write(&dir.join("t/cut.wasm.4242.tmp"), b"cut v2"); // ... and the rename it never did
        let lost = record("u", "lost", b"lost");
        write(&dir.join("u/lost.wasm"), b"something else");
        write(&component_file(&dir, "t", "gone", &ok.sha256), b"ok v2"); // killed before its record
        std::fs::create_dir_all(data.join("t/ok")).unwrap();
        std::fs::create_dir_all(data.join("t/gone")).unwrap(); // a deleted function's storage
        std::fs::create_dir_all(data.join("u/lost")).unwrap();

        std::thread::sleep(std::time::Duration::from_millis(50)); // coarse file times
        let started = SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let fresh = component_file(&dir, "t", "fresh", &ok.sha256);
        write(&fresh, b"ok v2"); // a deploy of this run

        let records = [ok.clone(), legacy.clone(), cut.clone(), lost];
        let repair = repair_components(&dir, &data, &records, started).unwrap();
        assert_eq!(repair.missing, [("u".to_owned(), "lost".to_owned(), 1)]);
        assert_eq!(repair.moved, 2);
        let mut left: Vec<String> =
            tenant_entries(&dir).unwrap().into_iter().map(|e| format!("{}/{}", e.tenant, e.name)).collect();
        left.sort();
        let mut expected: Vec<String> = [&ok, &legacy, &cut]
            .iter()
            .map(|r| format!("t/{}.{}.wasm", r.name, r.sha256))
            .chain([format!("t/fresh.{}.wasm", ok.sha256)])
            .collect();
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(std::fs::read(component_file(&dir, "t", "cut", &cut.sha256)).unwrap(), b"cut v2");
        let data_left: Vec<String> =
            tenant_entries(&data).unwrap().into_iter().map(|e| format!("{}/{}", e.tenant, e.name)).collect();
        assert_eq!(data_left, ["t/ok"]);
        assert_eq!(repair.removed, 7, "ok v1, ok's temporary, cut v1, lost's and gone's files; two storage folders");
    }

    #[test]
    fn file_owners() {
        assert_eq!(file_owner("calc.0a1b.wasm"), "calc");
        assert_eq!(file_owner("calc.0a1b.wasm.tmp"), "calc");
        assert_eq!(file_owner("calc.wasm"), "calc");
    }

    #[test]
    fn manifests_reject_unknown_fields() {
        assert!(serde_json::from_str::<Manifest>(r#"{"name":"a","kind":"tool","grantz":{}}"#).is_err());
        let m: Manifest = serde_json::from_str(r#"{"name":"a","kind":"tool","limits":{"memory_mb":8}}"#).unwrap();
        assert_eq!(m.limits.memory_mb, Some(8));
    }

    #[test]
    fn parameter_schemas_must_describe_objects() {
        assert!(check_parameters_schema(&serde_json::json!({"type":"object"})).is_ok());
        assert!(check_parameters_schema(&serde_json::json!({"type":"string"})).is_err());
        assert!(check_parameters_schema(&serde_json::json!([1])).is_err());
    }
}
