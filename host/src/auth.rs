//! API keys: `tns_` + 43 url-safe random characters (256 bits). Only a SHA-256 of the
//! secret is stored; a key is shown once, when it is created. SHA-256 without a salt is
//! enough here because the secrets are random, not user-chosen passwords.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::ids::{hex, random_bytes, random_id, valid_name};

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

/// Generates a new API key.
pub fn generate_key() -> anyhow::Result<NewKey> {
    let secret = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
    Ok(NewKey { hash: hash_key(&secret), id: random_id::<8>("key_")?, secret })
}

/// The stored form of a key.
pub fn hash_key(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` has the shape of a Tensoras key (checked before any lookup).
pub fn looks_like_key(secret: &str) -> bool {
    secret.len() >= MIN_KEY_LEN
        && secret.starts_with(KEY_PREFIX)
        && secret[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub use crate::access::{Role, Scope, may_deploy};

/// What a new key is: its label, tenant, role and extra scopes.
#[derive(Debug, Clone)]
pub struct KeySpec<'a> {
    /// Human label.
    pub name: &'a str,
    /// Tenant that will own what the key creates.
    pub tenant: &'a str,
    /// What it may manage.
    pub role: Role,
    /// Extra permissions.
    pub scopes: &'a [Scope],
    /// Rate-limit plan; `None` takes the tenant's.
    pub plan: Option<&'a str>,
}

/// Creates and stores a key; returns its record and the secret to show once.
pub fn create_key(store: &dyn crate::store::MetadataStore, spec: &KeySpec<'_>) -> anyhow::Result<(crate::store::ApiKey, String)> {
    let new = generate_key()?;
    let key = register_key(store, &new.secret, &new.id, spec)?;
    Ok((key, new.secret))
}

/// Stores a key whose secret is given (the bootstrap key from `TENSORAS_API_KEY`).
pub fn register_key(
    store: &dyn crate::store::MetadataStore,
    secret: &str,
    id: &str,
    spec: &KeySpec<'_>,
) -> anyhow::Result<crate::store::ApiKey> {
    anyhow::ensure!(!spec.name.trim().is_empty() && spec.name.len() <= 256, "key names are 1-256 characters");
    anyhow::ensure!(valid_name(spec.tenant), "tenant names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'");
    anyhow::ensure!(
        looks_like_key(secret),
        "API keys must start with '{KEY_PREFIX}' followed by at least 32 characters of A-Z, a-z, 0-9, '-' and '_'"
    );
    let key = crate::store::ApiKey {
        id: id.to_owned(),
        name: spec.name.to_owned(),
        tenant: spec.tenant.to_owned(),
        role: spec.role,
        scopes: spec.scopes.to_vec(),
        created_at: crate::unix_now(),
        plan: spec.plan.map(str::to_owned),
    };
    store.insert_key(&key, &hash_key(secret)).map_err(|e| anyhow::anyhow!("storing the key: {e}"))?;
    Ok(key)
}

/// Makes sure the operator's bootstrap secret (`TENSORAS_API_KEY`) is an active operator
/// key: a key stored with that secret is reactivated (if revoked) and made an operator,
/// otherwise a new operator key of tenant `default` is stored. So a restart with the same
/// secret always works and always recovers operator access (docs/security.md).
pub fn ensure_operator_key(store: &dyn crate::store::MetadataStore, secret: &str) -> anyhow::Result<crate::store::ApiKey> {
    anyhow::ensure!(
        looks_like_key(secret),
        "API keys must start with '{KEY_PREFIX}' followed by at least 32 characters of A-Z, a-z, 0-9, '-' and '_'"
    );
    if let Some(key) = store.make_operator(&hash_key(secret)).map_err(|e| anyhow::anyhow!("restoring the key: {e}"))? {
        return Ok(key);
    }
    let spec = KeySpec { name: "bootstrap", tenant: "default", role: Role::Operator, scopes: &[], plan: None };
    register_key(store, secret, &random_id::<8>("key_")?, &spec)
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

    #[test]
    fn scopes_parse_strictly_and_deploy_needs_a_role_or_the_scope() {
        assert_eq!(Scope::parse_all(["functions:deploy", "functions:deploy"]), Ok(vec![Scope::FunctionsDeploy]));
        assert_eq!(Scope::parse_all([]), Ok(vec![]));
        let err = Scope::parse_all(["functions:deploy", "keys:admin"]).unwrap_err();
        assert!(err.contains("'keys:admin'") && err.contains("functions:deploy"), "{err}");
        assert!(Scope::parse_all(["Functions:Deploy"]).is_err());
        for role in [Role::Member, Role::Admin, Role::Operator] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert!(!may_deploy(Role::Member, &[]));
        assert!(may_deploy(Role::Member, &[Scope::FunctionsDeploy]));
        assert!(may_deploy(Role::Admin, &[]));
        assert!(may_deploy(Role::Operator, &[]));
    }

    /// What `tensoras serve` does with `TENSORAS_API_KEY` on every start: the same secret
    /// twice is no unique-hash failure, and a revoked or demoted key comes back an operator.
    #[test]
    fn the_bootstrap_secret_is_an_operator_on_every_start() {
        use crate::store::{MetadataStore, Revocation};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let secret = generate_key().unwrap().secret;
        let first = ensure_operator_key(&store, &secret).unwrap();
        assert_eq!((first.role, first.tenant.as_str(), first.name.as_str()), (Role::Operator, "default", "bootstrap"));
        let again = ensure_operator_key(&store, &secret).unwrap();
        assert_eq!(again.id, first.id, "a restart reuses the stored key");
        assert_eq!(store.list_keys(None).unwrap().len(), 1);

        let spec = KeySpec { name: "second", tenant: "ops", role: Role::Operator, scopes: &[], plan: None };
        let (second, _) = create_key(&store, &spec).unwrap();
        assert_eq!(store.revoke_key(&first.id, None).unwrap(), Revocation::Revoked);
        assert!(store.find_key_by_hash(&hash_key(&secret)).unwrap().is_none());
        assert_eq!(ensure_operator_key(&store, &secret).unwrap().id, first.id);
        assert_eq!(store.find_key_by_hash(&hash_key(&secret)).unwrap().unwrap().role, Role::Operator);
        assert_eq!(store.revoke_key(&second.id, None).unwrap(), Revocation::Revoked);
        assert_eq!(store.revoke_key(&first.id, None).unwrap(), Revocation::LastOperator);
        assert!(ensure_operator_key(&store, "not-a-key").is_err());
    }
}
