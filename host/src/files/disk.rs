//! Local-disk pieces of crash safety, shared by the file storage and the functions
//! folder: a write that is whole once it returns, and the start-up walk over
//! `<root>/<tenant>/<entry>` that finds what a killed process left.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Writes `bytes` to `path` so that, once this returns, they survive a crash or a power
/// loss whole, and no reader ever sees part of them: a temporary file beside `path` is
/// fsynced, renamed into place, and the folder (and its parent, for a folder created
/// just now) fsynced. A failed write leaves nothing at `path` that was not there.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if let Err(e) = write_synced(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)?;
    dir.parent().map_or(Ok(()), sync_dir)
}

/// Writes a new file and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a folder's entries (a rename into it, a new file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// One entry of `<root>/<tenant>/`.
#[derive(Debug)]
pub struct TenantEntry {
    /// The tenant folder's name.
    pub tenant: String,
    /// The entry's name.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Its metadata (not following links).
    pub meta: std::fs::Metadata,
}

impl TenantEntry {
    /// Whether it was last modified before `t`; an unreadable time counts as recent, so
    /// the entry is kept.
    pub fn modified_before(&self, t: SystemTime) -> bool {
        self.meta.modified().is_ok_and(|m| m < t)
    }

    /// Removes it (a file, or a folder with its content).
    pub fn remove(&self) -> std::io::Result<()> {
        if self.meta.is_dir() { std::fs::remove_dir_all(&self.path) } else { std::fs::remove_file(&self.path) }
    }
}

/// Every entry of every tenant folder under `root`; none when `root` does not exist.
/// Anything directly in `root` that is not a folder is not a tenant's and is skipped.
pub fn tenant_entries(root: &Path) -> std::io::Result<Vec<TenantEntry>> {
    let tenants = match std::fs::read_dir(root) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for tenant in tenants {
        let tenant = tenant?;
        if !tenant.file_type()?.is_dir() {
            continue;
        }
        let tenant_name = tenant.file_name().to_string_lossy().into_owned();
        for entry in std::fs::read_dir(tenant.path())? {
            let entry = entry?;
            out.push(TenantEntry {
                tenant: tenant_name.clone(),
                name: entry.file_name().to_string_lossy().into_owned(),
                path: entry.path(),
                meta: std::fs::symlink_metadata(entry.path())?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_writes_replace_whole_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t1").join("a.bin");
        write_durably(&path, b"one").unwrap();
        write_durably(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = tenant_entries(dir.path()).unwrap().into_iter().map(|e| (e.tenant, e.name)).collect();
        assert_eq!(names, [("t1".to_owned(), "a.bin".to_owned())]);
        assert!(tenant_entries(&dir.path().join("none")).unwrap().is_empty());
    }
}
