//! A full disk under the data directory (docs/design/007-durability.md, "A full disk").
//!
//! Every layer that writes there (SQLite, object_store, qdrant-edge, component files)
//! reports ENOSPC or EDQUOT in its own words, wrapped in its own error type; what they
//! share is the rendered text, which is what reaches [`crate::api::error::ApiError::internal`]
//! and the ingestion worker. [`is_full`] recognises it there, in one place, so a full disk
//! is a 507 with a message a client can act on, not an opaque 500.
//!
//! Freeing space needs a little space: deleting a file or a function commits a SQLite
//! transaction first (record before bytes), which appends to the WAL. [`Reserve`] keeps
//! a small file under the data directory that is given up when such a delete meets a
//! full disk, so the delete goes through, and that is re-created once space is back.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a client is told when a write found no space.
pub const MESSAGE: &str = "The server's storage is full, so nothing was stored. Free space by deleting files, \
                           functions or knowledge bases, or ask the operator to add storage, then retry.";

/// Whether a rendered error (with its causes, `{:#}`) says that the disk or the quota
/// is full: ENOSPC or EDQUOT as Rust renders an OS error (`(os error 28)`, `(os error
/// 122)`) or as the OS words it, and SQLite's `SQLITE_FULL`.
pub fn is_full(rendered: &str) -> bool {
    const MARKERS: &[&str] =
        &["(os error 28)", "(os error 122)", "No space left on device", "Disk quota exceeded", "database or disk is full"];
    MARKERS.iter().any(|m| rendered.contains(m))
}

/// Size of the reserve: room for many delete transactions (a few WAL pages each).
pub const RESERVE_BYTES: usize = 1 << 20;

/// A file of [`RESERVE_BYTES`] under the data directory, given up so that deletes can
/// free space on a full disk.
#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Reserve {
    /// The reserve at `<data_dir>/space-reserve`, written now if it is missing or short
    /// (a full disk at start-up is logged: the server still starts).
    pub fn open(data_dir: &Path) -> Self {
        let reserve = Self { path: data_dir.join("space-reserve"), lock: Mutex::new(()) };
        reserve.rearm();
        reserve
    }

    /// Writes the reserve again if it is gone (after [`Self::release`]) and there is room.
    pub fn rearm(&self) {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= RESERVE_BYTES as u64) {
            return;
        }
        // Zeros are written, not a sparse length: the blocks must really be taken.
        let written = std::fs::File::create(&self.path).and_then(|mut f| {
            f.write_all(&vec![0u8; RESERVE_BYTES])?;
            f.sync_all()
        });
        match written {
            Ok(()) => tracing::info!(path = %self.path.display(), "disk space reserve in place"),
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                tracing::warn!(path = %self.path.display(), "no room for the disk space reserve yet: {e}");
            }
        }
    }

    /// Gives the reserve's space back to the file system; whether there was one.
    pub fn release(&self) -> bool {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let released = std::fs::remove_file(&self.path).is_ok();
        if released {
            tracing::warn!("disk full: released the disk space reserve so a delete can free space");
        }
        released
    }

    /// Runs a write that frees space (a delete); if the disk is too full even for it,
    /// releases the reserve and runs it once more.
    pub async fn freeing<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
        &self,
        mut op: impl FnMut() -> F,
    ) -> Result<T, E> {
        match op().await {
            Err(e) if is_full(&format!("{e:#}")) && self.release() => op().await,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_full_disks_in_each_layers_words() {
        let enospc = std::io::Error::from_raw_os_error(28);
        assert!(is_full(&format!("finishing file: Unable to copy data to file: {enospc}")));
        assert!(is_full(&std::io::Error::from_raw_os_error(122).to_string()));
        assert!(is_full("database or disk is full"));
        assert!(!is_full("database is locked"));
        assert!(!is_full(&std::io::Error::from_raw_os_error(13).to_string()));
    }

    #[tokio::test]
    async fn the_reserve_is_given_up_for_a_delete_on_a_full_disk_and_rearmed() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = Reserve::open(dir.path());
        let path = dir.path().join("space-reserve");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RESERVE_BYTES as u64);
        let mut tries = 0;
        let r: Result<(), String> = reserve
            .freeing(|| {
                tries += 1;
                let full = !path.exists();
                async move { if full { Ok(()) } else { Err("database or disk is full".to_owned()) } }
            })
            .await;
        assert_eq!((r, tries), (Ok(()), 2));
        assert!(!path.exists());
        // Other failures are not retried, and without a reserve a full disk stays an error.
        let r: Result<(), String> = reserve.freeing(|| async { Err("database or disk is full".to_owned()) }).await;
        assert!(r.is_err());
        reserve.rearm();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RESERVE_BYTES as u64);
    }
}
