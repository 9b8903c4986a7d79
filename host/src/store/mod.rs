//! Metadata: API keys, deployed functions, files and knowledge bases. [`MetadataStore`] is the data-access
//! boundary; SQLite ([`sqlite::SqliteStore`]) is its one implementation today. A backend
//! for replicated deployments (PostgreSQL, #26) would implement the same trait.

pub mod batches;
mod batches_sqlite;
pub mod knowledge;
mod knowledge_sqlite;
pub mod responses;
mod responses_sqlite;
pub mod sqlite;

pub use batches::{BatchEnd, BatchLineError, BatchRecord, BatchResult, BatchStatus, BatchStore, BatchTransition};
pub use knowledge::{
    DataSourceRecord, FileDeletion, FileQuery, FileRecord, IngestionCount, KnowledgeBaseRecord, KnowledgeStore, SourceProgress,
    SourceStatus,
};
pub use responses::{ResponseStore, StoredResponse};

use serde::{Deserialize, Serialize};

/// An API key as stored (never the secret itself).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    /// `key_...`.
    pub id: String,
    /// Human label.
    pub name: String,
    /// Tenant that owns everything created with this key.
    pub tenant: String,
    /// What the key may manage: its tenant's keys (admin) or every tenant's (operator).
    pub role: crate::access::Role,
    /// Extra permissions on top of the role, sorted, without duplicates.
    pub scopes: Vec<crate::access::Scope>,
    /// Unix seconds.
    pub created_at: i64,
    /// Rate-limit plan; `None` takes the tenant's, or the server's default.
    pub plan: Option<String>,
}

/// What the operator set for a tenant: its plan and spending cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRecord {
    /// Tenant name.
    pub name: String,
    /// Plan of its keys that have none of their own; `None` is the server's default.
    pub plan: Option<String>,
    /// Most it may spend in a calendar month (UTC), in billionths of a dollar.
    pub monthly_budget_nano_usd: Option<u64>,
}

/// A deployed function's manifest and bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionRecord {
    /// Owning tenant.
    pub tenant: String,
    /// Unique per tenant; part of its URL.
    pub name: String,
    /// Which deploy of the name this is: 1, 2, ... (rollback makes an older one serve).
    pub version: u32,
    /// `tool`, `http` or `chat`.
    pub kind: FunctionKind,
    /// Shown to models for tools.
    pub description: String,
    /// JSON Schema of tool arguments (tools only).
    pub parameters: Option<serde_json::Value>,
    /// Resource limits.
    pub limits: crate::limits::LimitsSpec,
    /// Capabilities granted beyond the deny-by-default sandbox.
    pub grants: crate::limits::Grants,
    /// SHA-256 of the component bytes.
    pub sha256: String,
    /// Component size in bytes.
    pub size_bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// The built-in handler this chat function stands in for, for its tenant (`rag`).
    pub replaces: Option<String>,
}

/// What a function exports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// Exports `tensoras:platform/tool`.
    Tool,
    /// Exports `wasi:http/incoming-handler`.
    Http,
    /// Exports `tensoras:platform/handler`: served as model `fn:NAME`.
    Chat,
}

impl FunctionKind {
    /// Name used in manifests and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Http => "http",
            Self::Chat => "chat",
        }
    }

    /// Parses a manifest `kind`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tool" => Some(Self::Tool),
            "http" => Some(Self::Http),
            "chat" => Some(Self::Chat),
            _ => None,
        }
    }
}

/// What [`MetadataStore::revoke_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The key is revoked now.
    Revoked,
    /// No active key with that id (in the given tenant).
    NotFound,
    /// The key is the last active operator key; it stays active so the server keeps an operator.
    LastOperator,
}

/// Failures of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was hit (e.g. a function name already used by the tenant).
    #[error("already exists")]
    Conflict,
    /// Anything else; details go to logs, not clients.
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

/// Data access for keys and functions. Methods are short and synchronous: SQLite answers
/// in microseconds, and a networked backend would wrap its own pool.
pub trait MetadataStore: KnowledgeStore + BatchStore + ResponseStore + Send + Sync {
    /// Number of active operator keys.
    fn count_operators(&self) -> Result<u64, StoreError>;
    /// Stores a new key by hash.
    fn insert_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError>;
    /// Finds an active key by the hash of its secret.
    fn find_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Makes the key stored with `hash`, active or revoked, an active operator key; `None`
    /// when no key has that hash.
    fn make_operator(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Active keys, of one tenant or (`None`) of all.
    fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes an active key, only within `tenant` when one is given, and never the last
    /// active operator key (checked and revoked atomically).
    fn revoke_key(&self, id: &str, tenant: Option<&str>) -> Result<Revocation, StoreError>;
    /// Sets (or with `None` clears) an active key's plan, only within `tenant` when one is
    /// given; the updated key, or `None` when there is no such key.
    fn set_key_plan(&self, id: &str, tenant: Option<&str>, plan: Option<&str>) -> Result<Option<ApiKey>, StoreError>;
    /// A tenant's settings, if the operator set any.
    fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError>;
    /// Stores a tenant's settings, replacing earlier ones.
    fn put_tenant(&self, t: &TenantRecord) -> Result<(), StoreError>;

    /// Stores `f` as the next version of its function (1 for a new name), makes it the one
    /// that serves, and drops the versions older than the newest `keep`; returns the record
    /// with its version, and the dropped versions (their component files may go).
    fn put_function(&self, f: &FunctionRecord, keep: usize) -> Result<(FunctionRecord, Vec<FunctionRecord>), StoreError>;
    /// The serving version of every function of every tenant (loaded at start-up).
    fn all_functions(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Every stored version of every function (whose component files are in use).
    fn all_function_versions(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    /// The stored versions of one function, oldest first.
    fn function_versions(&self, tenant: &str, name: &str) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Makes a stored version the one that serves; `None` when there is no such version.
    fn activate_function(&self, tenant: &str, name: &str, version: u32) -> Result<Option<FunctionRecord>, StoreError>;
    /// Deletes a function, every version, and its key-value store; false when it did not exist.
    fn delete_function(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    /// The value of `key` in a function's key-value store.
    fn kv_get(&self, tenant: &str, function: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key`; false (and nothing written) when it is new and the store already
    /// holds `max_keys` keys.
    fn kv_set(&self, tenant: &str, function: &str, key: &str, value: &[u8], max_keys: u64) -> Result<bool, StoreError>;
    /// Removes `key`; whether it was there.
    fn kv_delete(&self, tenant: &str, function: &str, key: &str) -> Result<bool, StoreError>;
    /// Keys starting with `prefix`, sorted.
    fn kv_keys(&self, tenant: &str, function: &str, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Adds `rows` to the usage of their (day, tenant, key, model), in one transaction:
    /// all of them count, or none.
    fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError>;
    /// Usage rows of days `from..=to` (days since 1970-01-01), of one tenant or (`None`)
    /// of all, ordered by day, tenant, key and model.
    fn usage(&self, from: i64, to: i64, tenant: Option<&str>) -> Result<Vec<UsageRow>, StoreError>;
}

/// What one key spent on one model on one day (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    /// Days since 1970-01-01.
    pub day: i64,
    /// The key's tenant.
    pub tenant: String,
    /// Key id (`key_...`).
    pub key_id: String,
    /// Model id.
    pub model: String,
    /// The counts.
    pub counts: UsageCounts,
}

/// Requests, tokens and cost, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    /// Requests that ran the model.
    pub requests: u64,
    /// Prompt tokens read.
    pub input_tokens: u64,
    /// Tokens generated.
    pub output_tokens: u64,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u64,
    /// Cost at the catalogue's prices when recorded, in billionths of a US dollar (so sums
    /// are exact).
    pub cost_nano_usd: u64,
    /// Of these, what batch jobs ran (`/v1/batches`).
    pub batch: BatchCounts,
}

/// What batch jobs ran: counted in [`UsageCounts`]' totals, and apart here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Request lines that ran the model.
    pub requests: u64,
    /// Their prompt tokens.
    pub input_tokens: u64,
    /// Their generated tokens.
    pub output_tokens: u64,
}

impl std::ops::AddAssign for UsageCounts {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cached_tokens += o.cached_tokens;
        self.cost_nano_usd += o.cost_nano_usd;
        self.batch.requests += o.batch.requests;
        self.batch.input_tokens += o.batch.input_tokens;
        self.batch.output_tokens += o.batch.output_tokens;
    }
}
