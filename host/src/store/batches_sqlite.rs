//! SQLite implementation of [`BatchStore`].

use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::batches::{BatchEnd, BatchRecord, BatchResult, BatchStatus, BatchStore, BatchTransition};
use super::knowledge::FileRecord;
use super::sqlite::{SqliteStore, json_column, list_cursor, to_json};

/// The columns [`batch_from_row`] reads, in order; the counts come from the results.
const BATCH_COLUMNS: &str = "b.id, b.tenant, b.key_id, b.endpoint, b.input_file_id, b.completion_window, b.status, b.metadata, \
     b.errors, b.total, b.output_file_id, b.error_file_id, b.created_at, b.expires_at, b.in_progress_at, b.finalizing_at, \
     b.completed_at, b.failed_at, b.expired_at, b.cancelling_at, b.cancelled_at, \
     (SELECT COUNT(*) FROM batch_results r WHERE r.batch_id = b.id AND r.ok = 1), \
     (SELECT COUNT(*) FROM batch_results r WHERE r.batch_id = b.id AND r.ok = 0)";

/// A status column; an unknown value is an error, not a default.
fn status_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<BatchStatus> {
    let status: String = r.get(i)?;
    BatchStatus::parse(&status).ok_or_else(|| rusqlite::Error::InvalidColumnType(i, status, rusqlite::types::Type::Text))
}

fn batch_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BatchRecord> {
    let metadata: Option<String> = r.get(7)?;
    let count = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(BatchRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        key_id: r.get(2)?,
        endpoint: r.get(3)?,
        input_file_id: r.get(4)?,
        completion_window: r.get(5)?,
        status: status_column(r, 6)?,
        metadata: match metadata {
            Some(m) => Some(
                serde_json::from_str(&m)
                    .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e)))?,
            ),
            None => None,
        },
        errors: json_column(r, 8)?,
        total: count(9)?,
        output_file_id: r.get(10)?,
        error_file_id: r.get(11)?,
        created_at: r.get(12)?,
        expires_at: r.get(13)?,
        in_progress_at: r.get(14)?,
        finalizing_at: r.get(15)?,
        completed_at: r.get(16)?,
        failed_at: r.get(17)?,
        expired_at: r.get(18)?,
        cancelling_at: r.get(19)?,
        cancelled_at: r.get(20)?,
        completed: count(21)?,
        failed: count(22)?,
    })
}

fn insert_file(c: &rusqlite::Connection, f: &FileRecord) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO files (id, tenant, filename, purpose, bytes, content_type, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![f.id, f.tenant, f.filename, f.purpose, f.bytes, f.content_type, f.created_at],
    )
    .map(drop)
}

/// The statuses quoted for an SQL `IN` list (they are this module's own names, never input).
fn status_list(statuses: &[BatchStatus]) -> String {
    statuses.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
}

impl BatchStore for SqliteStore {
    fn insert_batch(&self, b: &BatchRecord) -> Result<(), StoreError> {
        let metadata = b.metadata.as_ref().map(to_json).transpose()?;
        let errors = to_json(&b.errors)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO batches (id, tenant, key_id, endpoint, input_file_id, completion_window, status, metadata, errors,
                     total, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    b.id,
                    b.tenant,
                    b.key_id,
                    b.endpoint,
                    b.input_file_id,
                    b.completion_window,
                    b.status.as_str(),
                    metadata,
                    errors,
                    b.total,
                    b.created_at,
                    b.expires_at
                ],
            )
            .map(drop)
        })
    }

    fn get_batch(&self, tenant: &str, id: &str) -> Result<Option<BatchRecord>, StoreError> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {BATCH_COLUMNS} FROM batches b WHERE b.tenant = ?1 AND b.id = ?2"))?
                .query_row(params![tenant, id], batch_from_row)
                .optional()
        })
    }

    fn batch_status(&self, id: &str) -> Result<Option<BatchStatus>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT status FROM batches WHERE id = ?1")?
                .query_row(params![id], |r| status_column(r, 0))
                .optional()
        })
    }

    fn list_batches(&self, tenant: &str, after: Option<&str>, limit: u32) -> Result<Option<Vec<BatchRecord>>, StoreError> {
        self.with(|c| {
            // The cursor is the (created_at, rowid) of the `after` batch, compared as a row
            // value: the rowid orders batches created in the same second as they were made.
            let position = "SELECT created_at, rowid FROM batches WHERE tenant = ?1 AND id = ?2";
            let Some(cursor) = list_cursor::<i64>(c, position, tenant, after)? else { return Ok(None) };
            let (at, row) = cursor.unzip();
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {BATCH_COLUMNS} FROM batches b WHERE b.tenant = ?1
                 AND (?2 IS NULL OR (b.created_at, b.rowid) < (?2, ?3))
                 ORDER BY b.created_at DESC, b.rowid DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![tenant, at, row, limit], batch_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
        })
    }

    fn next_open_batch(&self) -> Result<Option<BatchRecord>, StoreError> {
        let open: Vec<BatchStatus> = BatchStatus::ALL.into_iter().filter(|s| s.is_open()).collect();
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {BATCH_COLUMNS} FROM batches b WHERE b.status IN ({}) ORDER BY b.created_at, b.rowid LIMIT 1",
                status_list(&open)
            ))?
            .query_row([], batch_from_row)
            .optional()
        })
    }

    fn transition_batch(&self, id: &str, t: &BatchTransition<'_>) -> Result<bool, StoreError> {
        let errors = t.errors.map(|e| to_json(&e)).transpose()?;
        self.with(|c| {
            let sql = format!(
                "UPDATE batches SET status = ?2, {} = ?3, total = COALESCE(?4, total), errors = COALESCE(?5, errors)
                 WHERE id = ?1 AND status IN ({})",
                t.to.time_column(),
                status_list(t.from)
            );
            c.execute(&sql, params![id, t.to.as_str(), t.at, t.total, errors]).map(|n| n == 1)
        })
    }

    fn put_batch_result(&self, batch_id: &str, r: &BatchResult) -> Result<(), StoreError> {
        self.with(|c| {
            c.prepare_cached("INSERT OR IGNORE INTO batch_results (batch_id, line, ok, body) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![batch_id, r.line, r.ok, r.body])
                .map(drop)
        })
    }

    fn batch_lines_done(&self, batch_id: &str) -> Result<Vec<u64>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT line FROM batch_results WHERE batch_id = ?1 ORDER BY line")?;
            stmt.query_map([batch_id], |r| r.get(0))?.collect()
        })
    }

    fn batch_results(&self, batch_id: &str) -> Result<Vec<BatchResult>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT line, ok, body FROM batch_results WHERE batch_id = ?1 ORDER BY line")?;
            stmt.query_map([batch_id], |r| Ok(BatchResult { line: r.get(0)?, ok: r.get(1)?, body: r.get(2)? }))?.collect()
        })
    }

    fn end_batch(&self, id: &str, end: &BatchEnd) -> Result<bool, StoreError> {
        let from = [BatchStatus::InProgress, BatchStatus::Finalizing, BatchStatus::Cancelling];
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for f in [&end.output, &end.error].into_iter().flatten() {
                insert_file(&tx, f)?;
            }
            let sql = format!(
                "UPDATE batches SET status = ?2, {} = ?3, output_file_id = ?4, error_file_id = ?5
                 WHERE id = ?1 AND status IN ({})",
                end.status.time_column(),
                status_list(&from)
            );
            let output = end.output.as_ref().map(|f| &f.id);
            let error = end.error.as_ref().map(|f| &f.id);
            let ended = tx.execute(&sql, params![id, end.status.as_str(), end.at, output, error])? == 1;
            if ended {
                tx.commit()?;
            }
            Ok(ended)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KnowledgeStore;

    fn batch(id: &str, tenant: &str, created_at: i64) -> BatchRecord {
        BatchRecord {
            id: id.into(),
            tenant: tenant.into(),
            key_id: "key_1".into(),
            endpoint: "/v1/chat/completions".into(),
            input_file_id: "file-1".into(),
            completion_window: "24h".into(),
            status: BatchStatus::Validating,
            metadata: Some(serde_json::json!({"job": "nightly"})),
            errors: Vec::new(),
            total: 0,
            completed: 0,
            failed: 0,
            output_file_id: None,
            error_file_id: None,
            created_at,
            expires_at: created_at + 86_400,
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, s)
    }

    #[test]
    fn a_batch_runs_through_its_statuses_and_results_count_once() {
        let (_dir, s) = store();
        s.insert_batch(&batch("batch_a", "t1", 10)).unwrap();
        assert_eq!(s.next_open_batch().unwrap().unwrap().id, "batch_a");
        let start = BatchTransition {
            from: &[BatchStatus::Validating],
            to: BatchStatus::InProgress,
            at: 11,
            total: Some(3),
            errors: None,
        };
        assert!(s.transition_batch("batch_a", &start).unwrap());
        // Not twice: it is no longer validating.
        assert!(!s.transition_batch("batch_a", &start).unwrap());
        for (line, ok) in [(0, true), (2, false), (0, true)] {
            s.put_batch_result("batch_a", &BatchResult { line, ok, body: format!("{{\"line\":{line}}}") }).unwrap();
        }
        assert_eq!(s.batch_lines_done("batch_a").unwrap(), [0, 2]);
        let b = s.get_batch("t1", "batch_a").unwrap().unwrap();
        assert_eq!((b.status, b.total, b.completed, b.failed, b.in_progress_at), (BatchStatus::InProgress, 3, 1, 1, Some(11)));
        assert_eq!(b.metadata, Some(serde_json::json!({"job": "nightly"})));
        // Another tenant does not see it.
        assert!(s.get_batch("t2", "batch_a").unwrap().is_none());
        assert_eq!(s.batch_status("batch_a").unwrap(), Some(BatchStatus::InProgress));
        assert_eq!(s.batch_status("batch_none").unwrap(), None);

        let file = |id: &str| FileRecord {
            id: id.into(),
            tenant: "t1".into(),
            filename: format!("{id}.jsonl"),
            purpose: "batch_output".into(),
            bytes: 10,
            content_type: "application/jsonl".into(),
            created_at: 12,
        };
        let end = BatchEnd { status: BatchStatus::Completed, at: 12, output: Some(file("file-o")), error: Some(file("file-e")) };
        assert!(s.end_batch("batch_a", &end).unwrap());
        let b = s.get_batch("t1", "batch_a").unwrap().unwrap();
        assert_eq!(b.status, BatchStatus::Completed);
        assert_eq!(s.batch_status("batch_a").unwrap(), Some(BatchStatus::Completed));
        assert_eq!((b.output_file_id.as_deref(), b.error_file_id.as_deref()), (Some("file-o"), Some("file-e")));
        assert!(s.get_file("t1", "file-o").unwrap().is_some());
        assert!(s.next_open_batch().unwrap().is_none());
        // Ending again changes nothing and inserts no file.
        let again = BatchEnd { output: Some(file("file-x")), error: Some(file("file-y")), ..end };
        assert!(!s.end_batch("batch_a", &again).unwrap());
        assert!(s.get_file("t1", "file-x").unwrap().is_none());
    }

    #[test]
    fn batches_list_newest_first_per_tenant_with_a_cursor() {
        let (_dir, s) = store();
        // Made in one second, ids not in order: listed as they were made.
        for id in ["batch_z", "batch_a", "batch_m"] {
            s.insert_batch(&batch(id, "t1", 100)).unwrap();
        }
        s.insert_batch(&batch("batch_other", "t2", 200)).unwrap();
        let ids = |v: Vec<BatchRecord>| v.into_iter().map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(ids(s.list_batches("t1", None, 2).unwrap().unwrap()), ["batch_m", "batch_a"]);
        assert_eq!(ids(s.list_batches("t1", Some("batch_a"), 10).unwrap().unwrap()), ["batch_z"]);
        assert!(s.list_batches("t1", Some("batch_other"), 10).unwrap().is_none());
        // The oldest open batch goes first, whoever owns it.
        assert_eq!(s.next_open_batch().unwrap().unwrap().id, "batch_z");
    }
}
