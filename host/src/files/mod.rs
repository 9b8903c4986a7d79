//! Uploaded files: bytes in an [`object_store`] (the local filesystem under the data
//! directory by default, `memory://` for throw-away servers, or a cloud bucket URL where
//! the build has that backend), records in the metadata store.
//!
//! Objects are keyed `files/<tenant>/<file id>`; the tenant is part of the key so one
//! tenant's id can never address another's bytes, and the API checks the record first.
//!
//! Crash safety (docs/design/007-durability.md): the bytes are complete and, on a local
//! disk, fsynced before the record is written, and a record is deleted before its bytes.
//! So a `kill -9` can leave bytes without a record, never a record without bytes: on a
//! local disk, [`FileStorage::sweep`] removes them at start-up, with the staging files of
//! uploads that were cut off.

pub mod disk;
pub mod fetch;
pub mod sniff;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use tokio::io::AsyncWriteExt as _;

/// Purposes accepted on upload: OpenAI's, plus `knowledge_base`.
pub const PURPOSES: &[&str] = &["assistants", "batch", "fine-tune", "vision", "user_data", "evals", "knowledge_base"];

/// Where file bytes live.
#[derive(Clone)]
pub struct FileStorage {
    store: Arc<dyn ObjectStore>,
    describe: String,
    /// The directory of a local store, whose leftovers [`FileStorage::sweep`] removes.
    local: Option<LocalDir>,
}

/// A local store's directory.
#[derive(Debug, Clone)]
struct LocalDir {
    root: std::path::PathBuf,
    /// The default `<data dir>/objects`, which belongs to this data directory's database
    /// alone, so an object without a record there is an orphan. A `file://` directory
    /// named by URL might be shared, and only its staging files are swept.
    owned: bool,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileStorage({})", self.describe)
    }
}

impl FileStorage {
    /// Opens the store named by `url`, or a directory under the data dir when `None`.
    ///
    /// `memory://` keeps bytes in the process (lost on exit); `file:///abs/dir` is a
    /// directory; other schemes (`s3://`, `gs://`, `az://`) need a build with the
    /// `cloud-storage` feature and read their credentials from the usual environment
    /// variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub fn open(url: Option<&str>, default_dir: &std::path::Path) -> anyhow::Result<Self> {
        let Some(url) = url else {
            return Self::local(default_dir, true);
        };
        let parsed = url::Url::parse(url).with_context(|| format!("file storage URL {url:?} is not a URL"))?;
        if parsed.scheme() == "file" {
            let dir = parsed
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("file storage URL {url:?} must name an absolute directory"))?;
            return Self::local(&dir, false);
        }
        let env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
        let (store, prefix) = object_store::parse_url_opts(&parsed, env).with_context(|| {
            format!(
                "file storage URL {url:?}: unsupported or misconfigured (this build supports file:// and memory://{})",
                if cfg!(feature = "cloud-storage") { ", s3://, gs://, az://" } else { "" }
            )
        })?;
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            Arc::from(store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        };
        Ok(Self { store, describe: url.to_owned(), local: None })
    }

    /// A directory; writes are fsynced (file and directory) before they return, so a
    /// record written after them never outlives its bytes in a power loss.
    fn local(dir: &std::path::Path, owned: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating file storage {}", dir.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening file storage {}", dir.display()))?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        let local = LocalDir { root: dir.to_owned(), owned };
        Ok(Self { store: Arc::new(store), describe: dir.display().to_string(), local: Some(local) })
    }

    fn path(tenant: &str, id: &str) -> Path {
        Path::from_iter(["files", tenant, id])
    }

    /// A writer for a new file's bytes; nothing is visible until [`Upload::finish`].
    pub fn upload(&self, tenant: &str, id: &str) -> Upload {
        Upload { writer: object_store::buffered::BufWriter::new(self.store.clone(), Self::path(tenant, id)) }
    }

    /// The whole content.
    pub async fn read(&self, tenant: &str, id: &str) -> anyhow::Result<Bytes> {
        let got = self.store.get(&Self::path(tenant, id)).await.context("reading file")?;
        got.bytes().await.context("reading file")
    }

    /// Bytes `range` of the content; the range must lie within the file and not be empty.
    pub async fn read_range(&self, tenant: &str, id: &str, range: std::ops::Range<u64>) -> anyhow::Result<Bytes> {
        self.store.get_range(&Self::path(tenant, id), range).await.context("reading file")
    }

    /// The content as a stream of chunks, for downloads.
    pub async fn stream(&self, tenant: &str, id: &str) -> anyhow::Result<BoxStream<'static, object_store::Result<Bytes>>> {
        let got = self.store.get(&Self::path(tenant, id)).await.context("reading file")?;
        Ok(got.into_stream())
    }

    /// Removes the bytes; a missing object is not an error (delete is idempotent).
    pub async fn delete(&self, tenant: &str, id: &str) -> anyhow::Result<()> {
        match self.store.delete(&Self::path(tenant, id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).context("deleting file"),
        }
    }
}

/// What [`FileStorage::sweep`] removed, and what it found missing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Staging files of uploads cut off by a crash.
    pub staging: usize,
    /// Objects without a record (stored, then the process died before the record).
    pub orphans: usize,
    /// Records whose object is not there (only checked in the owned directory).
    pub missing: usize,
}

impl FileStorage {
    /// Removes what a process that died left in a local store: staging files of
    /// uploads (object_store writes `<key>#<n>` and renames it when complete; a name it
    /// never gives an object) and, in the owned `<data dir>/objects`, objects without a
    /// record. Only entries last modified before `before` (this start) are touched.
    /// Other stores keep nothing local: an interrupted multipart upload of a cloud
    /// bucket is the bucket's lifecycle rule's to abort.
    pub async fn sweep(&self, store: &dyn crate::store::KnowledgeStore, before: SystemTime) -> anyhow::Result<Swept> {
        let Some(local) = self.local.clone() else { return Ok(Swept::default()) };
        let recorded: HashSet<(String, String)> = if local.owned {
            store.file_keys().map_err(|e| anyhow::anyhow!("listing file records: {e}"))?.into_iter().collect()
        } else {
            HashSet::new()
        };
        let swept = tokio::task::spawn_blocking(move || sweep_dir(&local, &recorded, before)).await??;
        if swept.staging + swept.orphans > 0 {
            tracing::warn!(
                staging = swept.staging,
                orphans = swept.orphans,
                "file storage: removed what an interrupted run left"
            );
        }
        if swept.missing > 0 {
            tracing::error!(records = swept.missing, "file storage: file records without their bytes in {}", self.describe);
        }
        Ok(swept)
    }
}

/// Whether a file name is an object_store staging file, `<name>#<digits>`.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn sweep_dir(local: &LocalDir, recorded: &HashSet<(String, String)>, before: SystemTime) -> anyhow::Result<Swept> {
    let mut swept = Swept::default();
    let mut stored = HashSet::new();
    let mut emptied = HashSet::new();
    let files = local.root.join("files");
    for entry in disk::tenant_entries(&files).with_context(|| format!("reading {}", files.display()))? {
        if !entry.meta.is_file() {
            continue;
        }
        let staging = is_staging(&entry.name);
        let orphan = !staging && local.owned && !recorded.contains(&(entry.tenant.clone(), entry.name.clone()));
        if !staging && !orphan {
            stored.insert((entry.tenant, entry.name));
            continue;
        }
        if !entry.modified_before(before) {
            continue; // written since this start: not a leftover
        }
        entry.remove().with_context(|| format!("removing {}", entry.path.display()))?;
        if staging {
            swept.staging += 1
        } else {
            swept.orphans += 1
        }
        emptied.insert(entry.tenant);
    }
    for tenant in emptied {
        // As after a delete, a tenant folder left empty goes (this fails if it is not empty).
        let _ = std::fs::remove_dir(files.join(tenant));
    }
    if local.owned {
        swept.missing = recorded.difference(&stored).count();
    }
    Ok(swept)
}

/// Bytes kept for content-type sniffing.
pub const SNIFF_BYTES: usize = 8192;

/// A file's bytes, stored under a fresh id.
#[derive(Debug)]
pub struct Stored {
    /// The new file id.
    pub id: String,
    /// Size.
    pub bytes: u64,
    /// The first [`SNIFF_BYTES`], for content-type sniffing.
    pub head: Vec<u8>,
}

/// Why [`FileStorage::store_stream`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError<E> {
    /// More than the limit arrived.
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// The incoming stream failed.
    #[error("{0}")]
    Source(E),
    /// The object store failed.
    #[error("{0:#}")]
    Storage(anyhow::Error),
}

impl FileStorage {
    /// Streams `body` into a new file of `tenant`, counting bytes: past `limit` (or on any
    /// error) the partial object is discarded, so only complete files are ever stored.
    pub async fn store_stream<E>(
        &self,
        tenant: &str,
        mut body: impl futures::Stream<Item = Result<Bytes, E>> + Unpin,
        limit: u64,
    ) -> Result<Stored, StoreError<E>> {
        let id = new_file_id().map_err(StoreError::Storage)?;
        let mut upload = self.upload(tenant, &id);
        let mut stored = Stored { id, bytes: 0, head: Vec::new() };
        let outcome = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(StoreError::Source)?;
                stored.bytes += chunk.len() as u64;
                if stored.bytes > limit {
                    return Err(StoreError::TooLarge(limit));
                }
                if stored.head.len() < SNIFF_BYTES {
                    let take = (SNIFF_BYTES - stored.head.len()).min(chunk.len());
                    stored.head.extend_from_slice(&chunk[..take]);
                }
                upload.write(chunk).await.map_err(StoreError::Storage)?;
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                upload.finish().await.map_err(StoreError::Storage)?;
                Ok(stored)
            }
            Err(e) => {
                upload.abort().await;
                Err(e)
            }
        }
    }
}

/// An upload in progress.
pub struct Upload {
    writer: object_store::buffered::BufWriter,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upload")
    }
}

impl Upload {
    /// Appends bytes.
    pub async fn write(&mut self, chunk: Bytes) -> anyhow::Result<()> {
        self.writer.put(chunk).await.context("writing file")
    }

    /// Completes the object.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.writer.shutdown().await.context("finishing file")
    }

    /// Discards what was written.
    pub async fn abort(mut self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!("discarding a partial upload: {e}");
        }
    }
}

/// Tenants' files as user functions read them (`tensoras:platform/files`): the record
/// first, so a file of another tenant or one still being uploaded is not there, then
/// the bytes.
#[derive(Clone)]
pub struct Library {
    records: Arc<dyn crate::store::MetadataStore>,
    bytes: FileStorage,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl Library {
    /// Records from `records`, bytes from `bytes`.
    pub fn new(records: Arc<dyn crate::store::MetadataStore>, bytes: FileStorage) -> Self {
        Self { records, bytes }
    }

    /// `tenant`'s file `id`, if it has one.
    pub fn record(&self, tenant: &str, id: &str) -> anyhow::Result<Option<crate::store::FileRecord>> {
        Ok(self.records.get_file(tenant, id)?)
    }

    /// Up to `length` bytes of `tenant`'s file `id` from `offset` (fewer at its end, none
    /// past it); `None` when the tenant has no such file.
    pub async fn read(&self, tenant: &str, id: &str, offset: u64, length: u32) -> anyhow::Result<Option<Bytes>> {
        let Some(record) = self.record(tenant, id)? else { return Ok(None) };
        let end = offset.saturating_add(u64::from(length)).min(record.bytes);
        if offset >= end {
            return Ok(Some(Bytes::new()));
        }
        self.bytes.read_range(tenant, id, offset..end).await.map(Some)
    }
}

/// A new file id: `file-` and 24 hex digits.
pub fn new_file_id() -> anyhow::Result<String> {
    crate::ids::random_id::<12>("file-")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(storage: &FileStorage) {
        let mut up = storage.upload("t1", "file-1");
        up.write(Bytes::from_static(b"hello ")).await.unwrap();
        up.write(Bytes::from_static(b"world")).await.unwrap();
        up.finish().await.unwrap();
        assert_eq!(&storage.read("t1", "file-1").await.unwrap()[..], b"hello world");
        assert!(storage.read("t2", "file-1").await.is_err(), "another tenant's key");
        storage.delete("t1", "file-1").await.unwrap();
        storage.delete("t1", "file-1").await.unwrap();
        assert!(storage.read("t1", "file-1").await.is_err());
        let up = storage.upload("t1", "file-2");
        up.abort().await;
        assert!(storage.read("t1", "file-2").await.is_err());
    }

    fn record(tenant: &str, id: &str) -> crate::store::FileRecord {
        crate::store::FileRecord {
            id: id.into(),
            tenant: tenant.into(),
            filename: "f.txt".into(),
            purpose: "assistants".into(),
            bytes: 4,
            content_type: "text/plain".into(),
            created_at: 1,
        }
    }

    async fn put(storage: &FileStorage, tenant: &str, id: &str) {
        let mut up = storage.upload(tenant, id);
        up.write(Bytes::from_static(b"data")).await.unwrap();
        up.finish().await.unwrap();
    }

    /// What a process killed at each point of an upload or a delete leaves, and what
    /// the next start removes: staging files, bytes without a record; never anything
    /// written since the start, never a recorded file's bytes.
    #[tokio::test]
    async fn sweep_removes_what_a_killed_process_left() {
        use crate::store::KnowledgeStore as _;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let objects = dir.path().join("objects");
        let storage = FileStorage::open(None, &objects).unwrap();
        put(&storage, "t1", "file-kept").await;
        store.insert_file(&record("t1", "file-kept")).unwrap();
        put(&storage, "t1", "file-orphan").await; // killed before its record
        store.insert_file(&record("t1", "file-lost")).unwrap(); // bytes lost: reported only
        std::fs::create_dir_all(objects.join("files/t2")).unwrap();
        std::fs::write(objects.join("files/t2/file-cut#1"), b"da").unwrap(); // killed mid-upload
        let url = url::Url::from_directory_path(dir.path().join("shared")).unwrap();
        let shared = FileStorage::open(Some(url.as_str()), dir.path()).unwrap();
        put(&shared, "t1", "file-other").await; // another server's, maybe
        std::fs::write(dir.path().join("shared/files/t1/file-cut#2"), b"da").unwrap();

        std::thread::sleep(std::time::Duration::from_millis(50)); // coarse file times
        let started = SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(objects.join("files/t1/file-live#1"), b"d").unwrap(); // an upload of this run

        let swept = storage.sweep(&store, started).await.unwrap();
        assert_eq!(swept, Swept { staging: 1, orphans: 1, missing: 1 });
        let mut left: Vec<String> = disk::tenant_entries(&objects.join("files"))
            .unwrap()
            .into_iter()
            .map(|e| format!("{}/{}", e.tenant, e.name))
            .collect();
        left.sort();
        assert_eq!(left, ["t1/file-kept", "t1/file-live#1"]);
        assert!(!objects.join("files/t2").exists(), "an emptied tenant folder goes");
        assert_eq!(&storage.read("t1", "file-kept").await.unwrap()[..], b"data");

        assert_eq!(shared.sweep(&store, started).await.unwrap(), Swept { staging: 1, orphans: 0, missing: 0 });
        assert_eq!(&shared.read("t1", "file-other").await.unwrap()[..], b"data", "not this database's to judge");
        let memory = FileStorage::open(Some("memory://"), dir.path()).unwrap();
        assert_eq!(memory.sweep(&store, started).await.unwrap(), Swept::default());
    }

    #[test]
    fn staging_names() {
        assert!(is_staging("file-abc#1"));
        assert!(is_staging("file-abc#12"));
        assert!(!is_staging("file-abc"));
        assert!(!is_staging("file-abc#"));
        assert!(!is_staging("file-abc#x1"));
    }

    #[tokio::test]
    async fn local_and_memory_backends() {
        let dir = tempfile::tempdir().unwrap();
        round_trip(&FileStorage::open(None, dir.path()).unwrap()).await;
        round_trip(&FileStorage::open(Some("memory://"), dir.path()).unwrap()).await;
        let url = url::Url::from_directory_path(dir.path().join("other")).unwrap();
        round_trip(&FileStorage::open(Some(url.as_str()), dir.path()).unwrap()).await;
        assert!(FileStorage::open(Some("nope://x"), dir.path()).is_err());
    }
}
