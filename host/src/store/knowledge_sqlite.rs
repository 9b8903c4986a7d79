//! SQLite implementation of [`KnowledgeStore`].

use rusqlite::{OptionalExtension, params};

use super::knowledge::{
    DataSourceRecord, FileQuery, FileRecord, KnowledgeBaseRecord, KnowledgeStore, SourceProgress, SourceStatus,
};
use super::sqlite::{SqliteStore, json_column, to_json};
use super::StoreError;

const FILE_COLUMNS: &str = "id, tenant, filename, purpose, bytes, content_type, created_at";
const KB_COLUMNS: &str =
    "id, tenant, name, description, embedding_model, chunking, metadata, created_at, updated_at";
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
            let cursor: Option<(i64, String)> = match &q.after {
                None => None,
                Some(after) => {
                    let found = c
                        .query_row(
                            "SELECT created_at, id FROM files WHERE tenant = ?1 AND id = ?2",
                            params![tenant, after],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    match found {
                        Some(pos) => Some(pos),
                        None => return Ok(None),
                    }
                }
            };
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

    fn delete_file(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| c.execute("DELETE FROM files WHERE tenant = ?1 AND id = ?2", params![tenant, id]).map(|n| n > 0))
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
            let mut stmt = c.prepare(&format!(
                "SELECT {KB_COLUMNS} FROM knowledge_bases WHERE tenant = ?1 ORDER BY created_at, id"
            ))?;
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
            c.execute("DELETE FROM data_sources WHERE tenant = ?1 AND kb_id = ?2", params![tenant, id])?;
            c.execute("DELETE FROM knowledge_bases WHERE tenant = ?1 AND id = ?2", params![tenant, id]).map(|n| n > 0)
        })
    }

    fn insert_source(&self, s: &DataSourceRecord) -> Result<(), StoreError> {
        let metadata = to_json(&s.metadata)?;
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO data_sources ({SOURCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
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
            c.execute(
                "DELETE FROM data_sources WHERE tenant = ?1 AND kb_id = ?2 AND id = ?3",
                params![tenant, kb_id, id],
            )
            .map(|n| n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kb::ChunkingStrategy;

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
        let q = |after: Option<&str>, descending| FileQuery {
            purpose: None,
            limit: 10,
            descending,
            after: after.map(Into::into),
        };
        let ids = |v: Vec<FileRecord>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list_files("t1", &q(None, true)).unwrap().unwrap()), ["file-c", "file-b", "file-a"]);
        assert_eq!(ids(store.list_files("t1", &q(Some("file-c"), true)).unwrap().unwrap()), ["file-b", "file-a"]);
        assert_eq!(ids(store.list_files("t1", &q(Some("file-a"), false)).unwrap().unwrap()), ["file-b", "file-c"]);
        assert!(store.list_files("t1", &q(Some("file-z"), false)).unwrap().is_none(), "foreign cursor");
        let batch = FileQuery { purpose: Some("batch".into()), ..q(None, false) };
        assert_eq!(ids(store.list_files("t1", &batch).unwrap().unwrap()), ["file-b"]);
        assert!(store.get_file("t2", "file-a").unwrap().is_none());
        assert!(!store.delete_file("t2", "file-a").unwrap());
        assert!(store.delete_file("t1", "file-a").unwrap());
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
        let source = DataSourceRecord {
            id: "ds_1".into(),
            tenant: "t".into(),
            kb_id: "kb_1".into(),
            file_id: "file-a".into(),
            metadata: serde_json::json!({}),
            status: SourceStatus::Pending,
            error: None,
            chunks_total: None,
            chunks_done: 0,
            created_at: 1,
            updated_at: 1,
        };
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
