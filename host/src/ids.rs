//! Names and ids: random prefixed ids (`key_…`, `kb_…`, `file-…`), lower-case hex, and
//! the one rule for tenant, function and model names. A leaf: it imports no other module.

/// Random bytes from the OS. Failing to get them is unrecoverable for the caller.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("OS random source failed: {e}"))?;
    Ok(buf)
}

/// `prefix` followed by the hex of `N` random bytes, e.g. `random_id::<12>("kb_")`.
pub fn random_id<const N: usize>(prefix: &str) -> anyhow::Result<String> {
    Ok(format!("{prefix}{}", hex(&random_bytes::<N>()?)))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` is a valid tenant, function or model name: 1-64 characters of A-Z, a-z,
/// 0-9, `_` and `-` (safe as a path component and in a URL).
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_prefix_and_hex_of_their_bytes() {
        let id = random_id::<12>("kb_").unwrap();
        assert_eq!(id.len(), 3 + 24);
        assert!(id.starts_with("kb_") && id[3..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, random_id::<12>("kb_").unwrap());
        assert_eq!(hex(&[0, 0xab, 0x0f]), "00ab0f");
    }

    #[test]
    fn names_are_path_and_url_safe() {
        assert!(valid_name("calc"));
        assert!(valid_name("my-tool_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
