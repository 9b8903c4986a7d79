//! Randomness, response ids and timestamps from WASI.
//!
//! Randomness comes straight from `wasi:random/random` (bound here, like
//! `functions/fixtures/probe` binds sockets) instead of the `getrandom` crate: one
//! import, no extra dependencies, and the host already links every WASI p2
//! interface for guests.

use std::time::{SystemTime, UNIX_EPOCH};

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        inline: r#"
            package tensoras:handler-common;

            world random {
                import wasi:random/random@0.2.12;
            }
        "#,
        path: ["../../../wit/deps/random.wit"],
        world: "tensoras:handler-common/random",
        generate_all,
    });
}

/// 64 bits from the host's secure random source. Only callable inside a
/// component (natively the import traps).
pub fn random_u64() -> u64 {
    bindings::wasi::random::random::get_random_u64()
}

/// Alphabet of OpenAI's ids (`chatcmpl-` + 29 alphanumerics).
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Length of the random part of an id, as in OpenAI's.
pub const ID_LEN: usize = 29;

/// `prefix` followed by [`ID_LEN`] random alphanumerics, e.g. `chatcmpl-…`.
pub fn random_id(prefix: &str) -> String {
    let bytes = bindings::wasi::random::random::get_random_bytes(ID_LEN as u64);
    id_from_bytes(prefix, &bytes)
}

/// Maps random bytes onto the id alphabet. The slight modulo bias is
/// irrelevant for an identifier.
pub fn id_from_bytes(prefix: &str, bytes: &[u8]) -> String {
    let mut id = String::with_capacity(prefix.len() + bytes.len());
    id.push_str(prefix);
    id.extend(bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char));
    id
}

/// Seconds since the Unix epoch (OpenAI's `created`); 0 if the clock is
/// before the epoch.
pub fn unix_time() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_alphanumerics() {
        let id = id_from_bytes("chatcmpl-", &[0, 61, 62, 255]);
        assert_eq!(id, "chatcmpl-A9AH");
    }
}
