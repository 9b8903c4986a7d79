//! SQLite backend of [`MetadataStore`]: one file, WAL mode, so the CLI and a running
//! server can use the same database at once.
//!
//! `synchronous = FULL`: a write is on disk (the WAL fsynced) before it returns, so a
//! request that was answered survives a power loss too, not only a crash of the process
//! (docs/design/007-durability.md: 1.8-3.7 ms a commit on the project's VM, against
//! 0.1 ms with `NORMAL`; the server writes metadata a few times per request at most).
//! Every mutation that takes more than one statement runs in one transaction.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::{
    ApiKey, BatchCounts, FunctionKind, FunctionRecord, MetadataStore, Revocation, StoreError, TenantRecord, UsageCounts, UsageRow,
};
use crate::access::Role;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
///
/// Migration 4 replaces the global `admin` flag with roles (docs/security.md): the key that
/// `tensoras serve` created on first start (named `bootstrap`, tenant `default`) becomes the
/// operator; every other admin key becomes an admin of its own tenant only, so no key gains
/// reach it was not given. A server left without an active operator gets one back on start
/// (`TENSORAS_API_KEY`, or a new key printed once).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE functions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    parameters TEXT,
    limits TEXT NOT NULL,
    grants TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
"#,
    r#"
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX files_by_tenant ON files (tenant, created_at, id);
CREATE TABLE knowledge_bases (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    embedding_model TEXT NOT NULL,
    chunking TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX kbs_by_tenant ON knowledge_bases (tenant, created_at, id);
CREATE TABLE data_sources (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    kb_id TEXT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    file_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    chunks_total INTEGER,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX sources_by_kb ON data_sources (kb_id, created_at, id);
CREATE INDEX sources_by_status ON data_sources (status);
CREATE INDEX sources_by_file ON data_sources (tenant, file_id);
"#,
    r#"
CREATE TABLE file_deletions (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    file_id TEXT NOT NULL,
    sources TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
UPDATE api_keys SET role = CASE
    WHEN admin = 0 THEN 'member'
    WHEN name = 'bootstrap' AND tenant = 'default' THEN 'operator'
    ELSE 'admin'
END;
ALTER TABLE api_keys DROP COLUMN admin;
"#,
    r#"
CREATE TABLE function_kv (
    tenant TEXT NOT NULL,
    function TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (tenant, function, key)
) WITHOUT ROWID;
"#,
    // Every deploy is a version; `functions` points at the one that serves.
    r#"
CREATE TABLE function_versions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    parameters TEXT,
    limits TEXT NOT NULL,
    grants TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name, version)
);
INSERT INTO function_versions
    SELECT tenant, name, 1, kind, description, parameters, limits, grants, sha256, size_bytes, created_at FROM functions;
DROP TABLE functions;
CREATE TABLE functions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
INSERT INTO functions SELECT tenant, name, 1 FROM function_versions;
"#,
    // A chat function may stand in for a built-in handler (`replaces`) for its tenant.
    r#"
ALTER TABLE function_versions ADD COLUMN replaces TEXT;
"#,
    // Metering: what each key spent on each model each day.
    r#"
CREATE TABLE usage (
    day INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cost_nano_usd INTEGER NOT NULL,
    PRIMARY KEY (day, tenant, key_id, model)
) WITHOUT ROWID;
"#,
    // Rate-limit plans per key and per tenant; a tenant's monthly budget.
    r#"
ALTER TABLE api_keys ADD COLUMN plan TEXT;
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    plan TEXT,
    monthly_budget_nano_usd INTEGER
) WITHOUT ROWID;
"#,
    // Batches and the result of each of their request lines (store/batches.rs); usage
    // counts what batches ran apart as well.
    r#"
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    key_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    total INTEGER NOT NULL DEFAULT 0,
    output_file_id TEXT,
    error_file_id TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    in_progress_at INTEGER,
    finalizing_at INTEGER,
    completed_at INTEGER,
    failed_at INTEGER,
    expired_at INTEGER,
    cancelling_at INTEGER,
    cancelled_at INTEGER
);
CREATE INDEX batches_by_tenant ON batches (tenant, created_at);
CREATE INDEX batches_by_status ON batches (status, created_at);
CREATE TABLE batch_results (
    batch_id TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    line INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (batch_id, line)
) WITHOUT ROWID;
ALTER TABLE usage ADD COLUMN batch_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN batch_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN batch_output_tokens INTEGER NOT NULL DEFAULT 0;
"#,
    // Stored responses of the Responses API (store/responses.rs).
    r#"
CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    response TEXT NOT NULL,
    input TEXT NOT NULL
);
"#,
];

const VERSION_COLUMNS: &str = "v.tenant, v.name, v.version, v.kind, v.description, v.parameters, v.limits, v.grants, v.sha256, v.size_bytes, v.created_at, \
     v.replaces";

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FunctionRecord> {
    let kind: String = r.get(3)?;
    let parameters: Option<String> = r.get(5)?;
    Ok(FunctionRecord {
        tenant: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        kind: FunctionKind::parse(&kind)
            .ok_or_else(|| rusqlite::Error::InvalidColumnType(3, kind.clone(), rusqlite::types::Type::Text))?,
        description: r.get(4)?,
        parameters: match parameters {
            Some(p) => Some(
                serde_json::from_str(&p)
                    .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e)))?,
            ),
            None => None,
        },
        limits: json_column(r, 6)?,
        grants: json_column(r, 7)?,
        sha256: r.get(8)?,
        size_bytes: r.get(9)?,
        created_at: r.get(10)?,
        replaces: r.get(11)?,
    })
}

/// The embedded metadata store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        }
        let mut conn = Connection::open(path).with_context(|| format!("opening database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "database {} has schema version {version}, newer than this build understands ({}); upgrade tensoras",
                path.display(),
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql).with_context(|| format!("migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Self { conn: Mutex::new(conn) })
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Backend(anyhow::anyhow!("database lock poisoned")))?;
        f(&conn).map_err(|e| match e {
            rusqlite::Error::SqliteFailure(err, _) if err.code == ErrorCode::ConstraintViolation => StoreError::Conflict,
            other => StoreError::Backend(other.into()),
        })
    }
}

/// The columns [`key_from_row`] reads, in order.
const KEY_COLUMNS: &str = "id, name, tenant, role, scopes, created_at, plan";

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let role: String = r.get(3)?;
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        tenant: r.get(2)?,
        // An unknown role is corruption, not a reason to grant or drop rights silently.
        role: Role::parse(&role)
            .ok_or_else(|| rusqlite::Error::InvalidColumnType(3, role.clone(), rusqlite::types::Type::Text))?,
        scopes: json_column(r, 4)?,
        created_at: r.get(5)?,
        plan: r.get(6)?,
    })
}

/// A column holding JSON, decoded into `T`; a corrupt value is an error, not a default.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// Where the `after` row of a tenant's list stands, for keyset pagination: `position`
/// selects the sort key of the row whose tenant is `?1` and id `?2`. `Some(None)` when the
/// list starts at the top, `None` when the `after` row does not exist (the caller answers
/// that as a missing list, not an empty one).
pub(super) fn list_cursor<T: rusqlite::types::FromSql>(
    c: &Connection,
    position: &str,
    tenant: &str,
    after: Option<&str>,
) -> rusqlite::Result<Option<Option<(i64, T)>>> {
    let Some(after) = after else { return Ok(Some(None)) };
    let found = c.query_row(position, params![tenant, after], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    Ok(found.map(Some))
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.into()))
}

impl MetadataStore for SqliteStore {
    fn count_operators(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM api_keys WHERE role = 'operator' AND revoked_at IS NULL", [], |r| r.get(0))
        })
    }

    fn insert_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
        let scopes = to_json(&key.scopes)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, name, tenant, key_hash, role, scopes, created_at, plan)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![key.id, key.name, key.tenant, hash, key.role.as_str(), scopes, key.created_at, key.plan],
            )
            .map(drop)
        })
    }

    fn find_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL"),
                [hash],
                key_from_row,
            )
            .optional()
        })
    }

    fn make_operator(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.with(|c| {
            c.execute("UPDATE api_keys SET role = 'operator', revoked_at = NULL WHERE key_hash = ?1", [hash])?;
            c.query_row(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"), [hash], key_from_row).optional()
        })
    }

    fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND (?1 IS NULL OR tenant = ?1)
                 ORDER BY created_at, id"
            ))?;
            stmt.query_map([tenant], key_from_row)?.collect()
        })
    }

    fn set_key_plan(&self, id: &str, tenant: Option<&str>, plan: Option<&str>) -> Result<Option<ApiKey>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "UPDATE api_keys SET plan = ?3 WHERE id = ?1 AND revoked_at IS NULL AND (?2 IS NULL OR tenant = ?2)
                     RETURNING {KEY_COLUMNS}"
                ),
                params![id, tenant, plan],
                key_from_row,
            )
            .optional()
        })
    }

    fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT name, plan, monthly_budget_nano_usd FROM tenants WHERE name = ?1")?
                .query_row([name], |r| {
                    let budget: Option<i64> = r.get(2)?;
                    Ok(TenantRecord {
                        name: r.get(0)?,
                        plan: r.get(1)?,
                        monthly_budget_nano_usd: budget.map(|b| u64::try_from(b).unwrap_or(0)),
                    })
                })
                .optional()
        })
    }

    fn put_tenant(&self, t: &TenantRecord) -> Result<(), StoreError> {
        let budget = t.monthly_budget_nano_usd.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        self.with(|c| {
            c.execute(
                "INSERT INTO tenants (name, plan, monthly_budget_nano_usd) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET plan = ?2, monthly_budget_nano_usd = ?3",
                params![t.name, t.plan, budget],
            )
            .map(drop)
        })
    }

    fn revoke_key(&self, id: &str, tenant: Option<&str>) -> Result<Revocation, StoreError> {
        self.with(|c| {
            // One statement, so the check for another operator and the revocation are atomic
            // also against a CLI revoking keys of the same database at the same time.
            let revoked = c.execute(
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE id = ?1 AND revoked_at IS NULL AND (?2 IS NULL OR tenant = ?2)
                   AND (role != 'operator'
                        OR (SELECT COUNT(*) FROM api_keys WHERE role = 'operator' AND revoked_at IS NULL) > 1)",
                params![id, tenant, crate::unix_now()],
            )?;
            if revoked > 0 {
                return Ok(Revocation::Revoked);
            }
            let operator: Option<bool> = c
                .query_row(
                    "SELECT role = 'operator' FROM api_keys WHERE id = ?1 AND revoked_at IS NULL AND (?2 IS NULL OR tenant = ?2)",
                    params![id, tenant],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(if operator == Some(true) { Revocation::LastOperator } else { Revocation::NotFound })
        })
    }

    fn put_function(&self, f: &FunctionRecord, keep: usize) -> Result<(FunctionRecord, Vec<FunctionRecord>), StoreError> {
        let parameters = f.parameters.as_ref().map(to_json).transpose()?;
        let limits = to_json(&f.limits)?;
        let grants = to_json(&f.grants)?;
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let version: u32 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM function_versions WHERE tenant = ?1 AND name = ?2",
                params![f.tenant, f.name],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO function_versions
                     (tenant, name, version, kind, description, parameters, limits, grants, sha256, size_bytes, created_at,
                      replaces)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    f.tenant,
                    f.name,
                    version,
                    f.kind.as_str(),
                    f.description,
                    parameters,
                    limits,
                    grants,
                    f.sha256,
                    f.size_bytes,
                    f.created_at,
                    f.replaces
                ],
            )?;
            tx.execute(
                "INSERT INTO functions (tenant, name, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, name) DO UPDATE SET version = excluded.version",
                params![f.tenant, f.name, version],
            )?;
            // The newest `keep` versions stay (this one among them), for rollback.
            let pruned: Vec<FunctionRecord> = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {VERSION_COLUMNS} FROM function_versions v WHERE v.tenant = ?1 AND v.name = ?2
                     ORDER BY v.version DESC LIMIT -1 OFFSET ?3"
                ))?;
                stmt.query_map(params![f.tenant, f.name, keep.max(1) as i64], version_row)?.collect::<Result<_, _>>()?
            };
            for old in &pruned {
                tx.execute(
                    "DELETE FROM function_versions WHERE tenant = ?1 AND name = ?2 AND version = ?3",
                    params![f.tenant, f.name, old.version],
                )?;
            }
            tx.commit()?;
            Ok((FunctionRecord { version, ..f.clone() }, pruned))
        })
    }

    fn all_functions(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {VERSION_COLUMNS} FROM functions f
                 JOIN function_versions v ON v.tenant = f.tenant AND v.name = f.name AND v.version = f.version
                 ORDER BY v.tenant, v.name"
            ))?;
            stmt.query_map([], version_row)?.collect()
        })
    }

    fn all_function_versions(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {VERSION_COLUMNS} FROM function_versions v ORDER BY v.tenant, v.name, v.version"))?;
            stmt.query_map([], version_row)?.collect()
        })
    }

    fn function_versions(&self, tenant: &str, name: &str) -> Result<Vec<FunctionRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {VERSION_COLUMNS} FROM function_versions v WHERE v.tenant = ?1 AND v.name = ?2 ORDER BY v.version"
            ))?;
            stmt.query_map(params![tenant, name], version_row)?.collect()
        })
    }

    fn activate_function(&self, tenant: &str, name: &str, version: u32) -> Result<Option<FunctionRecord>, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let record = tx
                .query_row(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM function_versions v
                         WHERE v.tenant = ?1 AND v.name = ?2 AND v.version = ?3"
                    ),
                    params![tenant, name, version],
                    version_row,
                )
                .optional()?;
            if record.is_some() {
                tx.execute("UPDATE functions SET version = ?3 WHERE tenant = ?1 AND name = ?2", params![tenant, name, version])?;
            }
            tx.commit()?;
            Ok(record)
        })
    }

    fn delete_function(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let existed = tx.execute("DELETE FROM functions WHERE tenant = ?1 AND name = ?2", params![tenant, name])? > 0;
            tx.execute("DELETE FROM function_versions WHERE tenant = ?1 AND name = ?2", params![tenant, name])?;
            tx.execute("DELETE FROM function_kv WHERE tenant = ?1 AND function = ?2", params![tenant, name])?;
            tx.commit()?;
            Ok(existed)
        })
    }

    fn kv_get(&self, tenant: &str, function: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM function_kv WHERE tenant = ?1 AND function = ?2 AND key = ?3",
                params![tenant, function, key],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn kv_set(&self, tenant: &str, function: &str, key: &str, value: &[u8], max_keys: u64) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let updated = tx.execute(
                "UPDATE function_kv SET value = ?4 WHERE tenant = ?1 AND function = ?2 AND key = ?3",
                params![tenant, function, key, value],
            )?;
            if updated == 0 {
                let n: u64 = tx.query_row(
                    "SELECT COUNT(*) FROM function_kv WHERE tenant = ?1 AND function = ?2",
                    params![tenant, function],
                    |r| r.get(0),
                )?;
                if n >= max_keys {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO function_kv (tenant, function, key, value) VALUES (?1, ?2, ?3, ?4)",
                    params![tenant, function, key, value],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    fn kv_delete(&self, tenant: &str, function: &str, key: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM function_kv WHERE tenant = ?1 AND function = ?2 AND key = ?3", params![tenant, function, key])
                .map(|n| n > 0)
        })
    }

    fn kv_keys(&self, tenant: &str, function: &str, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            // Keys sort as bytes (the BINARY collation), so the prefix range is exact
            // without LIKE's escaping and case rules.
            let mut stmt =
                c.prepare("SELECT key FROM function_kv WHERE tenant = ?1 AND function = ?2 AND key >= ?3 ORDER BY key")?;
            let rows = stmt.query_map(params![tenant, function, prefix], |r| r.get::<_, String>(0))?;
            let mut keys = Vec::new();
            for key in rows {
                let key = key?;
                if !key.starts_with(prefix) {
                    break;
                }
                keys.push(key);
            }
            Ok(keys)
        })
    }

    fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO usage
                         (day, tenant, key_id, model, requests, input_tokens, output_tokens, cached_tokens, cost_nano_usd,
                          batch_requests, batch_input_tokens, batch_output_tokens)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (day, tenant, key_id, model) DO UPDATE SET
                         requests = requests + excluded.requests,
                         input_tokens = input_tokens + excluded.input_tokens,
                         output_tokens = output_tokens + excluded.output_tokens,
                         cached_tokens = cached_tokens + excluded.cached_tokens,
                         cost_nano_usd = cost_nano_usd + excluded.cost_nano_usd,
                         batch_requests = batch_requests + excluded.batch_requests,
                         batch_input_tokens = batch_input_tokens + excluded.batch_input_tokens,
                         batch_output_tokens = batch_output_tokens + excluded.batch_output_tokens",
                )?;
                for r in rows {
                    let n = &r.counts;
                    stmt.execute(params![
                        r.day,
                        r.tenant,
                        r.key_id,
                        r.model,
                        sql_int(n.requests),
                        sql_int(n.input_tokens),
                        sql_int(n.output_tokens),
                        sql_int(n.cached_tokens),
                        sql_int(n.cost_nano_usd),
                        sql_int(n.batch.requests),
                        sql_int(n.batch.input_tokens),
                        sql_int(n.batch.output_tokens)
                    ])?;
                }
            }
            tx.commit()
        })
    }

    fn usage(&self, from: i64, to: i64, tenant: Option<&str>) -> Result<Vec<UsageRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT day, tenant, key_id, model, requests, input_tokens, output_tokens, cached_tokens, cost_nano_usd,
                        batch_requests, batch_input_tokens, batch_output_tokens
                 FROM usage WHERE day BETWEEN ?1 AND ?2 AND (?3 IS NULL OR tenant = ?3)
                 ORDER BY day, tenant, key_id, model",
            )?;
            let rows = stmt.query_map(params![from, to, tenant], |r| {
                let n = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                Ok(UsageRow {
                    day: r.get(0)?,
                    tenant: r.get(1)?,
                    key_id: r.get(2)?,
                    model: r.get(3)?,
                    counts: UsageCounts {
                        requests: n(4)?,
                        input_tokens: n(5)?,
                        output_tokens: n(6)?,
                        cached_tokens: n(7)?,
                        cost_nano_usd: n(8)?,
                        batch: BatchCounts { requests: n(9)?, input_tokens: n(10)?, output_tokens: n(11)? },
                    },
                })
            })?;
            rows.collect()
        })
    }
}

/// SQLite integers are signed; counts beyond i64 (never reached) saturate.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Grants, LimitsSpec};

    fn record(tenant: &str, name: &str) -> FunctionRecord {
        FunctionRecord {
            tenant: tenant.into(),
            name: name.into(),
            version: 1,
            kind: FunctionKind::Tool,
            description: "d".into(),
            parameters: Some(serde_json::json!({"type": "object"})),
            limits: LimitsSpec { memory_mb: Some(64), ..Default::default() },
            grants: Grants::default(),
            sha256: "00".into(),
            size_bytes: 3,
            created_at: 1,
            replaces: None,
        }
    }

    fn key(id: &str, tenant: &str, role: Role) -> ApiKey {
        ApiKey { id: id.into(), name: "n".into(), tenant: tenant.into(), role, scopes: Vec::new(), created_at: 5, plan: None }
    }

    #[test]
    fn keys_round_trip_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let mut k1 = key("key_1", "t", Role::Admin);
        k1.scopes = vec![crate::access::Scope::FunctionsDeploy];
        store.insert_key(&k1, "h1").unwrap();
        assert!(matches!(store.insert_key(&k1, "h1"), Err(StoreError::Conflict)));
        let found = store.find_key_by_hash("h1").unwrap().unwrap();
        assert_eq!((found.tenant.as_str(), found.role, found.scopes), ("t", Role::Admin, k1.scopes.clone()));
        assert!(store.find_key_by_hash("h2").unwrap().is_none());
        store.insert_key(&key("key_2", "u", Role::Member), "h2").unwrap();
        assert_eq!(store.list_keys(None).unwrap().len(), 2);
        let only_u: Vec<String> = store.list_keys(Some("u")).unwrap().into_iter().map(|k| k.id).collect();
        assert_eq!(only_u, ["key_2"]);
        // Scoped to another tenant, the key is not there.
        assert_eq!(store.revoke_key("key_1", Some("u")).unwrap(), Revocation::NotFound);
        assert_eq!(store.revoke_key("key_1", Some("t")).unwrap(), Revocation::Revoked);
        assert_eq!(store.revoke_key("key_1", None).unwrap(), Revocation::NotFound);
        assert!(store.find_key_by_hash("h1").unwrap().is_none());
        assert_eq!(store.list_keys(None).unwrap().len(), 1);
    }

    #[test]
    fn the_last_operator_key_stays_and_a_known_secret_becomes_operator_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        store.insert_key(&key("key_op1", "default", Role::Operator), "h1").unwrap();
        store.insert_key(&key("key_op2", "c", Role::Operator), "h2").unwrap();
        assert_eq!(store.count_operators().unwrap(), 2);
        assert_eq!(store.revoke_key("key_op1", None).unwrap(), Revocation::Revoked);
        assert_eq!(store.revoke_key("key_op2", None).unwrap(), Revocation::LastOperator);
        assert_eq!(store.count_operators().unwrap(), 1);
        assert!(store.find_key_by_hash("h2").unwrap().is_some(), "the refused revocation left the key working");

        // A revoked key's secret brings it back as an operator; a member's is promoted.
        let back = store.make_operator("h1").unwrap().unwrap();
        assert_eq!((back.id.as_str(), back.role), ("key_op1", Role::Operator));
        assert!(store.find_key_by_hash("h1").unwrap().is_some());
        store.insert_key(&key("key_m", "c", Role::Member), "h3").unwrap();
        assert_eq!(store.make_operator("h3").unwrap().unwrap().role, Role::Operator);
        assert!(store.make_operator("h4").unwrap().is_none());
        assert_eq!(store.count_operators().unwrap(), 3);
    }

    /// A database written before roles existed: the serve-created bootstrap key becomes the
    /// operator, other admins are admins of their own tenant, the rest members; all still work.
    #[test]
    fn migration_4_turns_the_global_admin_flag_into_roles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            for (i, sql) in MIGRATIONS.iter().take(3).enumerate() {
                let tx = conn.transaction().unwrap();
                tx.execute_batch(sql).unwrap();
                tx.pragma_update(None, "user_version", i + 1).unwrap();
                tx.commit().unwrap();
            }
            let rows = [
                ("key_boot", "bootstrap", "default", "hb", 1),
                ("key_ci", "ci", "default", "hc", 1),
                ("key_c", "bootstrap", "c", "hd", 1),
                ("key_m", "m", "default", "hm", 0),
            ];
            for (id, name, tenant, hash, admin) in rows {
                conn.execute(
                    "INSERT INTO api_keys (id, name, tenant, key_hash, admin, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                    params![id, name, tenant, hash, admin],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let role = |hash: &str| store.find_key_by_hash(hash).unwrap().unwrap().role;
        assert_eq!(role("hb"), Role::Operator);
        assert_eq!(role("hc"), Role::Admin);
        assert_eq!(role("hd"), Role::Admin);
        assert_eq!(role("hm"), Role::Member);
        assert!(store.list_keys(None).unwrap().iter().all(|k| k.scopes.is_empty()));
    }

    #[test]
    fn usage_adds_up_per_day_tenant_key_and_model() {
        let store = SqliteStore::open(&tempfile::tempdir().unwrap().path().join("t.db")).unwrap();
        let row = |day, tenant: &str, model: &str, n| UsageRow {
            day,
            tenant: tenant.into(),
            key_id: "key_1".into(),
            model: model.into(),
            counts: UsageCounts {
                requests: 1,
                input_tokens: n,
                output_tokens: n,
                cached_tokens: 0,
                cost_nano_usd: 7,
                batch: BatchCounts::default(),
            },
        };
        store.add_usage(&[row(10, "a", "m", 5), row(10, "b", "m", 1)]).unwrap();
        store.add_usage(&[row(10, "a", "m", 3), row(11, "a", "m", 1)]).unwrap();
        let a = store.usage(10, 11, Some("a")).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            a[0].counts,
            UsageCounts {
                requests: 2,
                input_tokens: 8,
                output_tokens: 8,
                cached_tokens: 0,
                cost_nano_usd: 14,
                batch: BatchCounts::default()
            }
        );
        assert_eq!(store.usage(10, 10, None).unwrap().len(), 2);
        assert!(store.usage(12, 20, None).unwrap().is_empty());
    }

    #[test]
    fn each_put_is_a_version_per_tenant_and_they_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.put_function(&record("a", "calc"), 10).unwrap().0.version, 1);
            assert_eq!(store.put_function(&record("b", "calc"), 10).unwrap().0.version, 1);
            let v2 = FunctionRecord { sha256: "02".into(), replaces: Some("rag".into()), ..record("a", "calc") };
            assert_eq!(store.put_function(&v2, 10).unwrap(), (FunctionRecord { version: 2, ..v2.clone() }, vec![]));
        }
        let store = SqliteStore::open(&path).unwrap();
        let all = store.all_functions().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].version, all[0].sha256.as_str(), all[0].replaces.as_deref()), (2, "02", Some("rag")));
        assert_eq!(store.function_versions("a", "calc").unwrap().iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2]);
        // Rollback: version 1 serves again; an unknown version changes nothing.
        assert_eq!(store.activate_function("a", "calc", 1).unwrap().unwrap(), record("a", "calc"));
        assert_eq!(store.all_functions().unwrap()[0], record("a", "calc"));
        assert!(store.activate_function("a", "calc", 9).unwrap().is_none());
        assert_eq!(store.all_function_versions().unwrap().len(), 3);
        assert!(store.delete_function("a", "calc").unwrap());
        assert!(!store.delete_function("a", "calc").unwrap());
        assert_eq!(store.all_functions().unwrap().len(), 1);
        assert_eq!(store.all_function_versions().unwrap().len(), 1);
        // A name deployed again after a delete starts at version 1.
        assert_eq!(store.put_function(&record("a", "calc"), 10).unwrap().0.version, 1);
    }

    #[test]
    fn old_versions_are_pruned_past_the_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        for v in 1..=3 {
            let (r, pruned) = store.put_function(&record("a", "f"), 2).unwrap();
            assert_eq!(r.version, v);
            assert_eq!(pruned.iter().map(|r| r.version).collect::<Vec<_>>(), if v == 3 { vec![1] } else { vec![] });
        }
        assert_eq!(store.function_versions("a", "f").unwrap().iter().map(|r| r.version).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn function_kv_is_scoped_capped_and_deleted_with_its_function() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        store.put_function(&record("a", "f"), 10).unwrap();
        assert!(store.kv_set("a", "f", "k1", b"one", 2).unwrap());
        assert!(store.kv_set("a", "f", "k2", b"two", 2).unwrap());
        // Full: a new key is refused, replacing one is not.
        assert!(!store.kv_set("a", "f", "k3", b"three", 2).unwrap());
        assert!(store.kv_set("a", "f", "k1", b"uno", 2).unwrap());
        assert_eq!(store.kv_get("a", "f", "k1").unwrap().as_deref(), Some(&b"uno"[..]));
        // Another tenant's or function's store is another store.
        assert_eq!(store.kv_get("b", "f", "k1").unwrap(), None);
        assert_eq!(store.kv_get("a", "g", "k1").unwrap(), None);
        assert!(store.kv_set("a", "f%", "k_x", b"", 10).unwrap());
        // Prefixes are literal (no LIKE wildcards) and keys come sorted.
        assert_eq!(store.kv_keys("a", "f", "k").unwrap(), ["k1", "k2"]);
        assert_eq!(store.kv_keys("a", "f", "k_").unwrap(), Vec::<String>::new());
        assert_eq!(store.kv_keys("a", "f%", "").unwrap(), ["k_x"]);
        assert!(store.kv_delete("a", "f", "k2").unwrap());
        assert!(!store.kv_delete("a", "f", "k2").unwrap());
        assert!(store.delete_function("a", "f").unwrap());
        assert_eq!(store.kv_keys("a", "f", "").unwrap(), Vec::<String>::new());
        assert_eq!(store.kv_keys("a", "f%", "").unwrap(), ["k_x"]);
    }
}
