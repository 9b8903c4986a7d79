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
    let secret = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
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
        && secret[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a key may manage beyond the ordinary API of its tenant (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Uses its tenant's API; deploys functions only with the `functions:deploy` scope.
    Member,
    /// Tenant admin: manages the keys and functions of its own tenant only.
    Admin,
    /// Runs the server: manages keys of every tenant, including other operators.
    Operator,
}

impl Role {
    /// Name in the API, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Operator => "operator",
        }
    }

    /// Parses a name written by [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// A permission added to a key on top of its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// Deploy and delete functions of the key's tenant.
    #[serde(rename = "functions:deploy")]
    FunctionsDeploy,
}

impl Scope {
    /// Every scope, for messages listing the valid ones.
    pub const ALL: [Scope; 1] = [Scope::FunctionsDeploy];

    /// Name in the API, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FunctionsDeploy => "functions:deploy",
        }
    }

    /// Parses a name written by [`Scope::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Parses a list of scope names into a sorted set, naming the first unknown one.
    pub fn parse_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Self>, String> {
        let mut scopes = Vec::new();
        for name in names {
            let scope = Self::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope '{name}'; valid scopes: {}", known.join(", "))
            })?;
            scopes.push(scope);
        }
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }
}

/// Whether a key with `role` and `scopes` may deploy and delete functions of its tenant.
pub fn may_deploy(role: Role, scopes: &[Scope]) -> bool {
    role >= Role::Admin || scopes.contains(&Scope::FunctionsDeploy)
}

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
    anyhow::ensure!(crate::functions::valid_name(spec.tenant), "tenant names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'");
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
    let spec = KeySpec { name: "bootstrap", tenant: "default", role: Role::Operator, scopes: &[] };
    register_key(store, secret, &new_id("key")?, &spec)
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

        let spec = KeySpec { name: "second", tenant: "ops", role: Role::Operator, scopes: &[] };
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
