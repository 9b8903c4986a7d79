//! The function's private key-value store (needs `"kv": true` in the manifest's grants).
//! It lives in the server's database, survives restarts, and goes when the function is
//! deleted. Keys are 1 to 512 bytes, values up to 1 MiB, at most 10 000 keys.
//!
//! ```no_run
//! let visits: u64 = tensoras_guest::kv::get_string("visits")?.and_then(|v| v.parse().ok()).unwrap_or(0);
//! tensoras_guest::kv::set("visits", (visits + 1).to_string())?;
//! # Ok::<(), tensoras_guest::Error>(())
//! ```

use crate::Error;
use crate::wit::platform::tensoras::platform::kv as raw;

/// The value of `key`, if set.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(raw::get(key)?)
}

/// The value of `key` as text (lossy where it is not UTF-8).
pub fn get_string(key: &str) -> Result<Option<String>, Error> {
    Ok(get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Sets `key` to `value`.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
    Ok(raw::set(key, value.as_ref())?)
}

/// Removes `key`; whether it was set.
pub fn delete(key: &str) -> Result<bool, Error> {
    Ok(raw::delete(key)?)
}

/// Keys starting with `prefix`, sorted.
pub fn keys(prefix: &str) -> Result<Vec<String>, Error> {
    Ok(raw::keys(prefix)?)
}
