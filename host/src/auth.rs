//! API keys: `tns_` + 43 url-safe random characters (256 bits). Only a SHA-256 of the
//! secret is stored; a key is shown once, when it is created. SHA-256 without a salt is
//! enough here because the secrets are random, not user-chosen passwords.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Prefix every Tensoras API key starts with.
pub const KEY_PREFIX: &str = "tns_";
/// Shortest secret accepted (prefix + 32 characters), also for bootstrap keys.
pub const MIN_KEY_LEN: usize = KEY_PREFIX.len() + 32;

/// A freshly generated key: the secret to show once, and what is stored.
#[derive(Debug)]
pub struct NewKey {
    /// The full secret, `tns_...`.
    pub secret: String,
    /// Stored lookup hash of the secret.
    pub hash: String,
    /// Non-secret id, `key_...`.
    pub id: String,
}

/// Random bytes from the OS. Failing to get them is unrecoverable for key generation.
fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("OS random source failed: {e}"))?;
    Ok(buf)
}

/// Generates a new API key.
pub fn generate_key() -> anyhow::Result<NewKey> {
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    );
    Ok(NewKey { hash: hash_key(&secret), id: new_id("key")?, secret })
}

/// A random id such as `key_3f9a...` (16 hex digits).
pub fn new_id(prefix: &str) -> anyhow::Result<String> {
    let bytes = random_bytes::<8>()?;
    Ok(format!("{prefix}_{}", hex(&bytes)))
}

/// The stored form of a key.
pub fn hash_key(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `secret` has the shape of a Tensoras key (checked before any lookup).
pub fn looks_like_key(secret: &str) -> bool {
    secret.len() >= MIN_KEY_LEN
        && secret.starts_with(KEY_PREFIX)
        && secret[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}


/// Creates and stores a key; returns its record and the secret to show once.
pub fn create_key(
    store: &dyn crate::store::MetadataStore,
    name: &str,
    tenant: &str,
    admin: bool,
) -> anyhow::Result<(crate::store::ApiKey, String)> {
    let new = generate_key()?;
    let key = register_key(store, &new.secret, &new.id, name, tenant, admin)?;
    Ok((key, new.secret))
}

/// Stores a key whose secret is given (the bootstrap key from `TENSORAS_API_KEY`).
pub fn register_key(
    store: &dyn crate::store::MetadataStore,
    secret: &str,
    id: &str,
    name: &str,
    tenant: &str,
    admin: bool,
) -> anyhow::Result<crate::store::ApiKey> {
    anyhow::ensure!(!name.trim().is_empty() && name.len() <= 256, "key names are 1-256 characters");
    anyhow::ensure!(
        crate::functions::valid_name(tenant),
        "tenant names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"
    );
    anyhow::ensure!(
        looks_like_key(secret),
        "API keys must start with '{KEY_PREFIX}' followed by at least 32 characters of A-Z, a-z, 0-9, '-' and '_'"
    );
    let key = crate::store::ApiKey {
        id: id.to_owned(),
        name: name.to_owned(),
        tenant: tenant.to_owned(),
        admin,
        created_at: crate::unix_now(),
    };
    store.insert_key(&key, &hash_key(secret)).map_err(|e| anyhow::anyhow!("storing the key: {e}"))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let k = generate_key().unwrap();
        assert!(k.secret.starts_with("tns_"));
        assert!(k.secret.len() >= MIN_KEY_LEN, "{}", k.secret);
        assert!(looks_like_key(&k.secret));
        assert_eq!(k.hash, hash_key(&k.secret));
        assert_ne!(k.hash, k.secret);
        assert!(k.id.starts_with("key_"));
        assert_ne!(generate_key().unwrap().secret, k.secret);
    }

    #[test]
    fn malformed_keys_are_rejected() {
        assert!(!looks_like_key("sk-abc"));
        assert!(!looks_like_key("tns_short"));
        assert!(!looks_like_key("tns_0123456789012345678901234567890!"));
        assert!(looks_like_key("tns_01234567890123456789012345678901"));
    }
}
