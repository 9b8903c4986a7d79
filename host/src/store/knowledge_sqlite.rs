//! SQLite implementation of [`KnowledgeStore`].

use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::knowledge::{
    DataSourceRecord, FileDeletion, FileQuery, FileRecord, IngestionCount, KnowledgeBaseRecord, KnowledgeStore, SourceProgress,
    SourceStatus,
};
use super::sqlite::{SqliteStore, json_column, list_cursor, to_json};

const FILE_COLUMNS: &str = "id, tenant, filename, purpose, bytes, content_type, created_at";
const KB_COLUMNS: &str = "id, tenant, name, description, embedding_model, chunking, metadata, created_at, updated_at";
const SOURCE_COLUMNS: &str =
    "id, tenant, kb_id, file_id, metadata, status, error, chunks_total, chunks_done, created_at, updated_at";

fn file_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        filename: r.get(2)?,
        purpose: r.get(3)?,
        bytes: r.get(4)?,
        content_type: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn kb_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KnowledgeBaseRecord> {
    Ok(KnowledgeBaseRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        embedding_model: r.get(4)?,
        chunking: json_column(r, 5)?,
        metadata: json_column(r, 6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn source_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DataSourceRecord> {
    let status: String = r.get(5)?;
    Ok(DataSourceRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        kb_id: r.get(2)?,
        file_id: r.get(3)?,
        metadata: json_column(r, 4)?,
        status: SourceStatus::parse(&status)
            .ok_or_else(|| rusqlite::Error::InvalidColumnType(5, status.clone(), rusqlite::types::Type::Text))?,
        error: r.get(6)?,
        chunks_total: r.get(7)?,
        chunks_done: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

impl KnowledgeStore for SqliteStore {
    fn ingestion_counts(&self) -> Result<Vec<IngestionCount>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT status, COUNT(*), COALESCE(SUM(chunks_done), 0), COALESCE(SUM(chunks_total), 0)
                 FROM data_sources GROUP BY status ORDER BY status",
            )?;
            let rows = stmt.query_map([], |r| {
                let status: String = r.get(0)?;
                let n = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                Ok((status, n(1)?, n(2)?, n(3)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (status, sources, chunks_done, chunks_total) = row?;
                // A status this build does not know is skipped, not a failed scrape.
                if let Some(status) = SourceStatus::parse(&status) {
                    out.push(IngestionCount { status, sources, chunks_done, chunks_total });
                }
            }
            Ok(out)
        })
    }

    fn file_bytes(&self, tenant: &str) -> Result<u64, StoreError> {
        self.with(|c| {
            let bytes: i64 = c
                .prepare_cached("SELECT COALESCE(SUM(bytes), 0) FROM files WHERE tenant = ?1")?
                .query_row([tenant], |r| r.get(0))?;
            Ok(u64::try_from(bytes).unwrap_or(0))
        })
    }

    fn insert_file(&self, f: &FileRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO files ({FILE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![f.id, f.tenant, f.filename, f.purpose, f.bytes, f.content_type, f.created_at],
            )
            .map(drop)
        })
    }

    fn get_file(&self, tenant: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {FILE_COLUMNS} FROM files WHERE tenant = ?1 AND id = ?2"),
                params![tenant, id],
                file_from_row,
            )
            .optional()
        })
    }

    fn list_files(&self, tenant: &str, q: &FileQuery) -> Result<Option<Vec<FileRecord>>, StoreError> {
        self.with(|c| {
            // The cursor is the (created_at, id) of the `after` file, compared as a row value.
            let position = "SELECT created_at, id FROM files WHERE tenant = ?1 AND id = ?2";
            let Some(cursor) = list_cursor::<String>(c, position, tenant, q.after.as_deref())? else { return Ok(None) };
            let (cmp, order) = if q.descending { ("<", "DESC") } else { (">", "ASC") };
            let sql = format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE tenant = ?1 AND (?2 IS NULL OR purpose = ?2)
                 AND (?3 IS NULL OR (created_at, id) {cmp} (?3, ?4))
                 ORDER BY created_at {order}, id {order} LIMIT ?5"
            );
            let (at, id) = cursor.unzip();
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params![tenant, q.purpose, at, id, q.limit], file_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
        })
    }

    fn file_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT tenant, id FROM files")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })
    }

    fn delete_file(&self, tenant: &str, id: &str) -> Result<Option<FileDeletion>, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            if tx.execute("DELETE FROM files WHERE tenant = ?1 AND id = ?2", params![tenant, id])? == 0 {
                return Ok(None);
            }
            let sources: Vec<(String, String)> = tx
                .prepare("SELECT kb_id, id FROM data_sources WHERE tenant = ?1 AND file_id = ?2 ORDER BY created_at, id")?
                .query_map(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            tx.execute("DELETE FROM data_sources WHERE tenant = ?1 AND file_id = ?2", params![tenant, id])?;
            let journal = serde_json::to_string(&sources).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            tx.execute(
                "INSERT INTO file_deletions (tenant, file_id, sources) VALUES (?1, ?2, ?3)",
                params![tenant, id, journal],
            )?;
            let deletion =
                FileDeletion { id: tx.last_insert_rowid(), tenant: tenant.to_owned(), file_id: id.to_owned(), sources };
            tx.commit()?;
            Ok(Some(deletion))
        })
    }

    fn pending_file_deletions(&self) -> Result<Vec<FileDeletion>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT id, tenant, file_id, sources FROM file_deletions ORDER BY id")?;
            stmt.query_map([], |r| {
                Ok(FileDeletion { id: r.get(0)?, tenant: r.get(1)?, file_id: r.get(2)?, sources: json_column(r, 3)? })
            })?
            .collect()
        })
    }

    fn finish_file_deletion(&self, id: i64) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM file_deletions WHERE id = ?1", [id]).map(drop))
    }

    fn insert_kb(&self, kb: &KnowledgeBaseRecord) -> Result<(), StoreError> {
        let chunking = to_json(&kb.chunking)?;
        let metadata = to_json(&kb.metadata)?;
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO knowledge_bases ({KB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    kb.id,
                    kb.tenant,
                    kb.name,
                    kb.description,
                    kb.embedding_model,
                    chunking,
                    metadata,
                    kb.created_at,
                    kb.updated_at
                ],
            )
            .map(drop)
        })
    }

    fn get_kb(&self, tenant: &str, id: &str) -> Result<Option<KnowledgeBaseRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {KB_COLUMNS} FROM knowledge_bases WHERE tenant = ?1 AND id = ?2"),
                params![tenant, id],
                kb_from_row,
            )
            .optional()
        })
    }

    fn list_kbs(&self, tenant: &str) -> Result<Vec<KnowledgeBaseRecord>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {KB_COLUMNS} FROM knowledge_bases WHERE tenant = ?1 ORDER BY created_at, id"))?;
            stmt.query_map([tenant], kb_from_row)?.collect()
        })
    }

    fn update_kb(&self, kb: &KnowledgeBaseRecord) -> Result<bool, StoreError> {
        let chunking = to_json(&kb.chunking)?;
        let metadata = to_json(&kb.metadata)?;
        self.with(|c| {
            c.execute(
                "UPDATE knowledge_bases SET name = ?3, description = ?4, chunking = ?5, metadata = ?6, updated_at = ?7
                 WHERE tenant = ?1 AND id = ?2",
                params![kb.tenant, kb.id, kb.name, kb.description, chunking, metadata, kb.updated_at],
            )
            .map(|n| n > 0)
        })
    }

    fn delete_kb(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute("DELETE FROM data_sources WHERE tenant = ?1 AND kb_id = ?2", params![tenant, id])?;
            let deleted = tx.execute("DELETE FROM knowledge_bases WHERE tenant = ?1 AND id = ?2", params![tenant, id])?;
            tx.commit()?;
            Ok(deleted > 0)
        })
    }

    fn insert_source(&self, s: &DataSourceRecord) -> Result<(), StoreError> {
        let metadata = to_json(&s.metadata)?;
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO data_sources ({SOURCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    s.id,
                    s.tenant,
                    s.kb_id,
                    s.file_id,
                    metadata,
                    s.status.as_str(),
                    s.error,
                    s.chunks_total,
                    s.chunks_done,
                    s.created_at,
                    s.updated_at
                ],
            )
            .map(drop)
        })
    }

    fn get_source(&self, tenant: &str, kb_id: &str, id: &str) -> Result<Option<DataSourceRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {SOURCE_COLUMNS} FROM data_sources WHERE tenant = ?1 AND kb_id = ?2 AND id = ?3"),
                params![tenant, kb_id, id],
                source_from_row,
            )
            .optional()
        })
    }

    fn list_sources(&self, tenant: &str, kb_id: &str) -> Result<Vec<DataSourceRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {SOURCE_COLUMNS} FROM data_sources WHERE tenant = ?1 AND kb_id = ?2 ORDER BY created_at, id"
            ))?;
            stmt.query_map(params![tenant, kb_id], source_from_row)?.collect()
        })
    }

    fn unfinished_sources(&self) -> Result<Vec<DataSourceRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {SOURCE_COLUMNS} FROM data_sources WHERE status IN ('pending', 'processing')
                 ORDER BY created_at, id"
            ))?;
            stmt.query_map([], source_from_row)?.collect()
        })
    }

    fn sources_of_file(&self, tenant: &str, file_id: &str) -> Result<Vec<DataSourceRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {SOURCE_COLUMNS} FROM data_sources WHERE tenant = ?1 AND file_id = ?2 ORDER BY created_at, id"
            ))?;
            stmt.query_map(params![tenant, file_id], source_from_row)?.collect()
        })
    }

    fn update_source(&self, id: &str, p: &SourceProgress) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE data_sources SET status = ?2, error = ?3, chunks_total = ?4, chunks_done = ?5, updated_at = ?6
                 WHERE id = ?1",
                params![id, p.status.as_str(), p.error, p.chunks_total, p.chunks_done, crate::unix_now()],
            )
            .map(|n| n > 0)
        })
    }

    fn delete_source(&self, tenant: &str, kb_id: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM data_sources WHERE tenant = ?1 AND kb_id = ?2 AND id = ?3", params![tenant, kb_id, id])
                .map(|n| n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::knowledge::ChunkingStrategy;

    fn file(tenant: &str, id: &str, purpose: &str, at: i64) -> FileRecord {
        FileRecord {
            id: id.into(),
            tenant: tenant.into(),
            filename: format!("{id}.txt"),
            purpose: purpose.into(),
            bytes: 3,
            content_type: "text/plain".into(),
            created_at: at,
        }
    }

    #[test]
    fn files_list_with_cursor_purpose_and_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        for (i, id) in ["file-a", "file-b", "file-c"].iter().enumerate() {
            store.insert_file(&file("t1", id, if i == 1 { "batch" } else { "assistants" }, i as i64)).unwrap();
        }
        store.insert_file(&file("t2", "file-z", "assistants", 9)).unwrap();
        let q =
            |after: Option<&str>, descending| FileQuery { purpose: None, limit: 10, descending, after: after.map(Into::into) };
        let ids = |v: Vec<FileRecord>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list_files("t1", &q(None, true)).unwrap().unwrap()), ["file-c", "file-b", "file-a"]);
        assert_eq!(ids(store.list_files("t1", &q(Some("file-c"), true)).unwrap().unwrap()), ["file-b", "file-a"]);
        assert_eq!(ids(store.list_files("t1", &q(Some("file-a"), false)).unwrap().unwrap()), ["file-b", "file-c"]);
        assert!(store.list_files("t1", &q(Some("file-z"), false)).unwrap().is_none(), "foreign cursor");
        let batch = FileQuery { purpose: Some("batch".into()), ..q(None, false) };
        assert_eq!(ids(store.list_files("t1", &batch).unwrap().unwrap()), ["file-b"]);
        assert!(store.get_file("t2", "file-a").unwrap().is_none());
        assert!(store.delete_file("t2", "file-a").unwrap().is_none());
        assert!(store.delete_file("t1", "file-a").unwrap().is_some());
        let mut keys = store.file_keys().unwrap();
        keys.sort();
        let expected: Vec<(String, String)> =
            [("t1", "file-b"), ("t1", "file-c"), ("t2", "file-z")].iter().map(|(t, i)| ((*t).into(), (*i).into())).collect();
        assert_eq!(keys, expected);
    }

    fn kb(id: &str) -> KnowledgeBaseRecord {
        KnowledgeBaseRecord {
            id: id.into(),
            tenant: "t".into(),
            name: "docs".into(),
            description: None,
            embedding_model: "all-minilm-l6-v2".into(),
            chunking: ChunkingStrategy::default(),
            metadata: serde_json::json!({}),
            created_at: 1,
            updated_at: 1,
        }
    }

    fn source(id: &str, kb_id: &str, file_id: &str) -> DataSourceRecord {
        DataSourceRecord {
            id: id.into(),
            tenant: "t".into(),
            kb_id: kb_id.into(),
            file_id: file_id.into(),
            metadata: serde_json::json!({}),
            status: SourceStatus::Pending,
            error: None,
            chunks_total: None,
            chunks_done: 0,
            created_at: 1,
            updated_at: 1,
        }
    }

    /// Deleting a file takes its data sources along and journals what is left to remove;
    /// the journal survives a reopen (a crash) until each entry is finished.
    #[test]
    fn deleting_a_file_journals_its_bytes_and_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).unwrap();
        store.insert_file(&file("t", "file-a", "knowledge_base", 1)).unwrap();
        store.insert_file(&file("t", "file-b", "knowledge_base", 2)).unwrap();
        store.insert_kb(&kb("kb_1")).unwrap();
        store.insert_kb(&kb("kb_2")).unwrap();
        store.insert_source(&source("ds_1", "kb_1", "file-a")).unwrap();
        store.insert_source(&source("ds_2", "kb_2", "file-a")).unwrap();
        store.insert_source(&source("ds_3", "kb_1", "file-b")).unwrap();

        let deletion = store.delete_file("t", "file-a").unwrap().unwrap();
        assert_eq!(deletion.file_id, "file-a");
        assert_eq!(deletion.sources, [("kb_1".to_owned(), "ds_1".to_owned()), ("kb_2".to_owned(), "ds_2".to_owned())]);
        assert!(store.get_file("t", "file-a").unwrap().is_none());
        assert!(store.sources_of_file("t", "file-a").unwrap().is_empty());
        assert_eq!(store.list_sources("t", "kb_1").unwrap().len(), 1, "the other file's source stays");
        assert!(store.delete_file("t", "file-a").unwrap().is_none(), "nothing journaled twice");
        drop(store);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.pending_file_deletions().unwrap(), std::slice::from_ref(&deletion));
        store.finish_file_deletion(deletion.id).unwrap();
        assert!(store.pending_file_deletions().unwrap().is_empty());
    }

    #[test]
    fn durability_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let (mode, sync): (String, i64) = store
            .with(|c| {
                Ok((c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?, c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
            })
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2), "WAL with synchronous = FULL (2)");
    }

    #[test]
    fn kb_and_sources_round_trip_and_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let mut kb = KnowledgeBaseRecord {
            id: "kb_1".into(),
            tenant: "t".into(),
            name: "docs".into(),
            description: None,
            embedding_model: "all-minilm-l6-v2".into(),
            chunking: ChunkingStrategy::default(),
            metadata: serde_json::json!({"team": "a"}),
            created_at: 1,
            updated_at: 1,
        };
        store.insert_kb(&kb).unwrap();
        kb.name = "renamed".into();
        assert!(store.update_kb(&kb).unwrap());
        assert_eq!(store.get_kb("t", "kb_1").unwrap().unwrap(), kb);
        let source = source("ds_1", "kb_1", "file-a");
        store.insert_source(&source).unwrap();
        assert_eq!(store.unfinished_sources().unwrap().len(), 1);
        let done = SourceProgress { status: SourceStatus::Completed, error: None, chunks_total: Some(4), chunks_done: 4 };
        assert!(store.update_source("ds_1", &done).unwrap());
        assert!(store.unfinished_sources().unwrap().is_empty());
        assert_eq!(store.sources_of_file("t", "file-a").unwrap()[0].chunks_done, 4);
        assert!(store.delete_kb("t", "kb_1").unwrap());
        assert!(store.list_sources("t", "kb_1").unwrap().is_empty());
        assert!(!store.update_source("ds_1", &done).unwrap());
    }
}
