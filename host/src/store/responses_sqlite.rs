//! SQLite implementation of [`ResponseStore`].

use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::responses::{ResponseStore, StoredResponse};
use super::sqlite::{SqliteStore, json_column, to_json};

impl ResponseStore for SqliteStore {
    fn put_response(&self, r: &StoredResponse) -> Result<(), StoreError> {
        let (response, input) = (to_json(&r.response)?, to_json(&r.input)?);
        self.with(|c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO responses (id, tenant, created_at, response, input) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![r.id, r.tenant, r.created_at, response, input])
            .map(drop)
        })
    }

    fn get_response(&self, tenant: &str, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT id, tenant, created_at, response, input FROM responses WHERE tenant = ?1 AND id = ?2")?
                .query_row(params![tenant, id], |r| {
                    Ok(StoredResponse {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        created_at: r.get(2)?,
                        response: json_column(r, 3)?,
                        input: json_column(r, 4)?,
                    })
                })
                .optional()
        })
    }

    fn delete_response(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| c.execute("DELETE FROM responses WHERE tenant = ?1 AND id = ?2", params![tenant, id]).map(|n| n == 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_response_is_stored_per_tenant_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        let r = StoredResponse {
            id: "resp_1".into(),
            tenant: "t1".into(),
            created_at: 5,
            response: json!({"id": "resp_1", "output": []}),
            input: json!([{"role": "user", "content": "hi"}]),
        };
        s.put_response(&r).unwrap();
        assert_eq!(s.get_response("t1", "resp_1").unwrap(), Some(r));
        assert_eq!(s.get_response("t2", "resp_1").unwrap(), None);
        assert!(!s.delete_response("t2", "resp_1").unwrap());
        assert!(s.delete_response("t1", "resp_1").unwrap());
        assert_eq!(s.get_response("t1", "resp_1").unwrap(), None);
    }
}
