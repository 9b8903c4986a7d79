//! Stored responses of the Responses API (`/v1/responses`, `store` left true): what a
//! later request's `previous_response_id` continues, and what `GET /v1/responses/{id}`
//! answers. Each is its tenant's only.

use super::StoreError;

/// A stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// `resp_...`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The Response object, as answered.
    pub response: serde_json::Value,
    /// Every input item it was generated from (an earlier response's conversation
    /// included), as an array.
    pub input: serde_json::Value,
}

/// Data access for stored responses.
pub trait ResponseStore: Send + Sync {
    /// Stores a response (a second one with the same id replaces it).
    fn put_response(&self, r: &StoredResponse) -> Result<(), StoreError>;
    /// A tenant's stored response.
    fn get_response(&self, tenant: &str, id: &str) -> Result<Option<StoredResponse>, StoreError>;
    /// Deletes one; false when the tenant had none with that id.
    fn delete_response(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
}
