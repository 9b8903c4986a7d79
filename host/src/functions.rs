//! The registry of deployed functions: validates and stores uploads, keeps a prepared
//! (pre-instantiated) component per function in memory, and reloads everything from the
//! metadata store and the data directory at start-up so deployments survive restarts.
//!
//! Functions are owned by a tenant; lookups are always by `(tenant, name)`, so one
//! tenant can neither see nor call another's functions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::runtime::{Grants, HttpFunction, LimitsSpec, Runtime, Sandbox, ToolFunction};
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
}

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
    /// The tenant already has a function with that name.
    #[error("a function named '{0}' already exists; delete it first or choose another name")]
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
}

type Key = (String, String);

/// All deployed functions.
pub struct Registry {
    runtime: Arc<Runtime>,
    store: Arc<dyn MetadataStore>,
    config: Arc<Config>,
    deployed: RwLock<HashMap<Key, Arc<Deployed>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// Whether `s` is a valid function or tenant name.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Registry {
    /// Loads every stored function. One that fails to load is logged and skipped, so a
    /// single bad file cannot keep the server from starting.
    pub async fn open(runtime: Arc<Runtime>, store: Arc<dyn MetadataStore>, config: Arc<Config>) -> anyhow::Result<Self> {
        let records = store.all_functions().map_err(|e| anyhow::anyhow!("loading functions: {e}"))?;
        let registry = Self { runtime, store, config, deployed: RwLock::new(HashMap::new()) };
        let mut loaded = 0usize;
        for record in records {
            let path = registry.component_path(&record.tenant, &record.name);
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

    async fn load(&self, record: FunctionRecord, path: &std::path::Path) -> anyhow::Result<Deployed> {
        let bytes = tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))?;
        let exec = self.prepare(&record, bytes).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Deployed { record, exec })
    }

    fn component_path(&self, tenant: &str, name: &str) -> PathBuf {
        self.config.functions_dir().join(tenant).join(format!("{name}.wasm"))
    }

    fn sandbox(&self, record: &FunctionRecord) -> Sandbox {
        Sandbox {
            grants: record.grants.clone(),
            storage_dir: record
                .grants
                .storage
                .then(|| self.config.function_data_dir().join(&record.tenant).join(&record.name)),
        }
    }

    /// Compiles and links the component for its kind.
    async fn prepare(&self, record: &FunctionRecord, bytes: Vec<u8>) -> Result<Executable, DeployError> {
        let limits = record
            .limits
            .resolve(&self.config.default_limits, &self.config.max_limits)
            .map_err(|m| invalid("limits", m))?;
        let runtime = self.runtime.clone();
        // Compilation is CPU-bound and can take a while for big components.
        let component = tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(|e| DeployError::Internal(e.into()))?
            .map_err(|m| invalid("file", m))?;
        let sandbox = self.sandbox(record);
        Ok(match record.kind {
            FunctionKind::Tool => Executable::Tool(
                self.runtime.prepare_tool(&component, limits, sandbox).map_err(|m| invalid("file", m))?,
            ),
            FunctionKind::Http => Executable::Http(
                self.runtime.prepare_http(&component, limits, sandbox).map_err(|m| invalid("file", m))?,
            ),
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
            .ok_or_else(|| invalid("kind", format!("kind must be 'tool' or 'http', got {:?}", manifest.kind)))?;
        manifest.grants.validate().map_err(|m| invalid("grants", m))?;
        if kind == FunctionKind::Http && manifest.parameters.is_some() {
            return Err(invalid("parameters", "parameters apply to tool functions only"));
        }
        if let Some(p) = &manifest.parameters {
            check_parameters_schema(p)?;
        }
        if wasm.is_empty() {
            return Err(invalid("file", "missing component file"));
        }
        if self.get(tenant, &manifest.name).is_some() {
            return Err(DeployError::Conflict(manifest.name));
        }
        let mut record = FunctionRecord {
            tenant: tenant.to_owned(),
            name: manifest.name,
            kind,
            description: manifest.description.unwrap_or_default(),
            parameters: manifest.parameters,
            limits: manifest.limits,
            grants: manifest.grants,
            sha256: crate::auth::hex(&Sha256::digest(&wasm)),
            size_bytes: wasm.len() as u64,
            created_at: crate::unix_now(),
        };
        let exec = self.prepare(&record, wasm.clone()).await?;
        if let Executable::Tool(tool) = &exec {
            fill_from_describe(&self.runtime, tool, &mut record).await?;
        }

        // Write the file under a temporary name, claim the name in the database, then
        // move the file into place: a crash at any point leaves no half-deployed function.
        let path = self.component_path(tenant, &record.name);
        let tmp = path.with_extension(format!("wasm.{}.tmp", std::process::id()));
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.with_context(|| format!("creating {}", dir.display()))?;
        }
        tokio::fs::write(&tmp, &wasm).await.with_context(|| format!("writing {}", tmp.display()))?;
        match self.store.insert_function(&record) {
            Ok(()) => {}
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(match e {
                    StoreError::Conflict => DeployError::Conflict(record.name),
                    StoreError::Backend(e) => DeployError::Internal(e),
                });
            }
        }
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = self.store.delete_function(tenant, &record.name);
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(DeployError::Internal(anyhow::Error::from(e).context("storing the component")));
        }
        tracing::info!(tenant, function = %record.name, kind = kind.as_str(), "deployed function");
        Ok(self.insert(Deployed { record, exec }).record.clone())
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

    /// Removes a function, its component file and its storage; false if it did not exist.
    pub async fn delete(&self, tenant: &str, name: &str) -> anyhow::Result<bool> {
        let existed = self.store.delete_function(tenant, name).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Ok(mut map) = self.deployed.write() {
            map.remove(&(tenant.to_owned(), name.to_owned()));
        }
        if existed {
            let _ = tokio::fs::remove_file(self.component_path(tenant, name)).await;
            let _ = tokio::fs::remove_dir_all(self.config.function_data_dir().join(tenant).join(name)).await;
            tracing::info!(tenant, function = name, "deleted function");
        }
        Ok(existed)
    }
}

/// Tool parameters must be a JSON Schema object describing an object.
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
    let info = runtime
        .describe_tool(tool)
        .await
        .map_err(|e| invalid("file", format!("the tool's describe() failed: {e}")))?;
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

    #[test]
    fn names() {
        assert!(valid_name("calc"));
        assert!(valid_name("my-tool_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(65)));
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
