//! Uploaded files: bytes in an [`object_store`] (the local filesystem under the data
//! directory by default, `memory://` for throw-away servers, or a cloud bucket URL where
//! the build has that backend), records in the metadata store.
//!
//! Objects are keyed `files/<tenant>/<file id>`; the tenant is part of the key so one
//! tenant's id can never address another's bytes, and the API checks the record first.

pub mod fetch;
pub mod sniff;

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use tokio::io::AsyncWriteExt as _;

/// Purposes accepted on upload: OpenAI's, plus `knowledge_base`.
pub const PURPOSES: &[&str] =
    &["assistants", "batch", "fine-tune", "vision", "user_data", "evals", "knowledge_base"];

/// Where file bytes live.
#[derive(Clone)]
pub struct FileStorage {
    store: Arc<dyn ObjectStore>,
    describe: String,
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
            return Self::local(default_dir);
        };
        let parsed = url::Url::parse(url).with_context(|| format!("file storage URL {url:?} is not a URL"))?;
        if parsed.scheme() == "file" {
            let dir = parsed
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("file storage URL {url:?} must name an absolute directory"))?;
            return Self::local(&dir);
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
        Ok(Self { store, describe: url.to_owned() })
    }

    fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating file storage {}", dir.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening file storage {}", dir.display()))?
            .with_automatic_cleanup(true);
        Ok(Self { store: Arc::new(store), describe: dir.display().to_string() })
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

/// A new file id: `file-` and 24 hex digits.
pub fn new_file_id() -> anyhow::Result<String> {
    let mut buf = [0u8; 12];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("OS random source failed: {e}"))?;
    Ok(format!("file-{}", crate::auth::hex(&buf)))
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
