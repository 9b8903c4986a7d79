//! Documents fetched from a URL for a knowledge base (`{"url": ...}` data sources). The
//! bytes become an ordinary stored file, so ingestion, deletion and crash recovery are
//! those of uploads.
//!
//! `http://` and `https://` are fetched by the server itself, which makes it a proxy into
//! whatever network it sits in. So every address a host resolves to must pass the
//! server's outbound [`AddressPolicy`] (public addresses, plus the operator's allow-list);
//! every redirect hop is checked again, and the connection goes to the address that was
//! checked (no second DNS lookup to rebind, and no proxy from the environment, which
//! would make its own lookup). `--url-sources-allow-private` lifts the policy for URL
//! sources on trusted networks.
//!
//! `s3://`, `gs://` and `az://` objects would be read with the server's own cloud
//! credentials, which also reach the files bucket and whatever else the server's role
//! may read. So an object URL is fetched only under a prefix the operator mapped to the
//! calling tenant (`serve --tenant-object-source TENANT=s3://bucket/prefix/`), and
//! refused otherwise; a tenant can always hand over a presigned `https://` URL instead.

use std::net::SocketAddr;
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::ObjectStoreExt as _;
use url::Url;

use super::{FileStorage, StoreError, Stored};
use crate::net::AddressPolicy;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// Whole-download limit.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A fetched document, stored.
#[derive(Debug)]
pub struct Fetched {
    /// The stored bytes.
    pub stored: Stored,
    /// A file name for it: the last path segment of the final URL.
    pub filename: String,
}

/// Why a URL could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is malformed, of an unsupported scheme, or points where the server may not go.
    #[error("{0}")]
    NotAllowed(String),
    /// The remote end failed or answered with an error.
    #[error("{0}")]
    Failed(String),
    /// Larger than the file size limit.
    #[error("the document is larger than {0} bytes")]
    TooLarge(u64),
    /// Storing the bytes failed.
    #[error("{0:#}")]
    Storage(anyhow::Error),
}

/// Fetch policy.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Largest document, in bytes.
    pub max_bytes: u64,
    /// Which addresses HTTP(S) URLs may resolve to.
    pub addresses: AddressPolicy,
    /// Object-store URL prefixes (`s3://bucket/prefix/`) the operator mapped to this
    /// tenant; other object URLs are refused.
    pub object_prefixes: Vec<String>,
}

impl FileStorage {
    /// Downloads `url` into a new file of `tenant`.
    pub async fn fetch(&self, tenant: &str, url: &str, policy: FetchPolicy) -> Result<Fetched, FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::NotAllowed(format!("'{url}' is not a valid URL: {e}")))?;
        match url.scheme() {
            "http" | "https" => self.fetch_http(tenant, url, policy).await,
            "s3" | "gs" | "az" | "azure" | "abfs" | "abfss" => self.fetch_object(tenant, url, policy).await,
            other => Err(FetchError::NotAllowed(format!(
                "URL scheme '{other}' is not supported; use http(s), or s3/gs/az in a build with cloud storage"
            ))),
        }
    }

    async fn fetch_http(&self, tenant: &str, mut url: Url, policy: FetchPolicy) -> Result<Fetched, FetchError> {
        for _ in 0..=MAX_REDIRECTS {
            let host = url.host_str().ok_or_else(|| FetchError::NotAllowed("the URL has no host".into()))?.to_owned();
            let port = url.port_or_known_default().unwrap_or(80);
            let addrs = resolve(&host, port).await?;
            if let Some(bad) = addrs.iter().find(|a| !policy.addresses.permits(a.ip())) {
                return Err(FetchError::NotAllowed(format!(
                    "'{host}' resolves to {}, which is not a public address; this server does not fetch from \
                     private networks (its operator can allow ranges with --allow-private-network)",
                    bad.ip()
                )));
            }
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // A proxy from HTTP_PROXY/HTTPS_PROXY would resolve the host itself, past
                // the check above.
                .no_proxy()
                .timeout(TIMEOUT)
                // Connect to exactly the addresses that were checked.
                .resolve_to_addrs(host.trim_start_matches('[').trim_end_matches(']'), &addrs)
                .build()
                .map_err(|e| FetchError::Failed(format!("HTTP client: {e}")))?;
            let resp = client.get(url.clone()).send().await.map_err(|e| FetchError::Failed(describe(&e)))?;
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| FetchError::Failed(format!("the URL answered {status} without a Location")))?;
                url = url.join(location).map_err(|e| FetchError::Failed(format!("bad redirect '{location}': {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(FetchError::NotAllowed(format!("redirect to a non-HTTP URL '{url}'")));
                }
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Failed(format!("the URL answered HTTP {status}")));
            }
            if resp.content_length().is_some_and(|n| n > policy.max_bytes) {
                return Err(FetchError::TooLarge(policy.max_bytes));
            }
            let filename = filename(&url, resp.headers().get(reqwest::header::CONTENT_TYPE));
            let body = resp.bytes_stream().map_err(|e| describe(&e));
            return stored(self.store_stream(tenant, body, policy.max_bytes).await, filename);
        }
        Err(FetchError::Failed(format!("more than {MAX_REDIRECTS} redirects")))
    }

    async fn fetch_object(&self, tenant: &str, url: Url, policy: FetchPolicy) -> Result<Fetched, FetchError> {
        if !object_url_mapped(&url, &policy.object_prefixes) {
            return Err(FetchError::NotAllowed(format!(
                "'{url}' is not under an object-store prefix this server's operator assigned to your tenant; the \
                 server would read it with its own credentials. Use a presigned https:// URL or upload the file instead"
            )));
        }
        let env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
        let (store, path) = object_store::parse_url_opts(&url, env).map_err(|e| {
            FetchError::NotAllowed(if cfg!(feature = "cloud-storage") {
                format!("cannot open '{url}': {e}")
            } else {
                format!("this server was built without cloud storage (cargo feature `cloud-storage`), so '{url}' cannot be read")
            })
        })?;
        let got = store.get(&path).await.map_err(|e| FetchError::Failed(format!("reading '{url}': {e}")))?;
        if got.meta.size > policy.max_bytes {
            return Err(FetchError::TooLarge(policy.max_bytes));
        }
        let filename = filename(&url, None);
        let body = got.into_stream().map_err(|e| e.to_string());
        stored(self.store_stream(tenant, body, policy.max_bytes).await, filename)
    }
}

fn stored(result: Result<Stored, StoreError<String>>, filename: String) -> Result<Fetched, FetchError> {
    match result {
        Ok(stored) => Ok(Fetched { stored, filename }),
        Err(StoreError::TooLarge(n)) => Err(FetchError::TooLarge(n)),
        Err(StoreError::Source(e)) => Err(FetchError::Failed(e)),
        Err(StoreError::Storage(e)) => Err(FetchError::Storage(e)),
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| FetchError::Failed(format!("cannot resolve '{host}': {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(FetchError::Failed(format!("'{host}' has no addresses")));
    }
    Ok(addrs)
}

/// An error with its causes ("error sending request: connection refused").
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The URL path's last segment, or a name from the content type for `/` and the like.
fn filename(url: &Url, content_type: Option<&reqwest::header::HeaderValue>) -> String {
    let last = url.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default();
    let last = percent_decode(last);
    if !last.is_empty() {
        return last;
    }
    let html = content_type.and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("html"));
    if html { "index.html" } else { "download" }.to_owned()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `url` lies under one of `prefixes`, at a path-segment boundary, with no
/// `.`/`..` segment or encoded slash that could step out of it.
fn object_url_mapped(url: &Url, prefixes: &[String]) -> bool {
    let text = url.as_str();
    let path = url.path();
    let escapes = path.split('/').any(|seg| {
        let seg = percent_decode(seg);
        seg == "." || seg == ".." || seg.contains('/') || seg.contains('\\')
    });
    !escapes
        && url.query().is_none()
        && url.fragment().is_none()
        && prefixes.iter().any(|p| {
            let p = p.trim_end_matches('/');
            !p.is_empty() && text.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_urls_need_a_prefix_of_the_tenant() {
        let prefixes = vec!["s3://shared/tenant-a/".to_owned(), "gs://a-only".to_owned()];
        let mapped = |u: &str| object_url_mapped(&Url::parse(u).unwrap(), &prefixes);
        assert!(mapped("s3://shared/tenant-a/docs/x.pdf"));
        assert!(mapped("gs://a-only/x.txt"));
        for refused in [
            "s3://shared/tenant-ab/x.pdf",
            "s3://shared/tenant-a/../tenant-b/x.pdf",
            "s3://shared/tenant-a/%2e%2e/tenant-b/x.pdf",
            "s3://shared/tenant-a/x%2F..%2Fy",
            "s3://shared/files/default/file-1",
            "gs://a-only-not/x.txt",
            "s3://shared/tenant-a",
        ] {
            assert!(!mapped(refused), "{refused}");
        }
        assert!(!object_url_mapped(&Url::parse("s3://shared/tenant-a/x").unwrap(), &[]));
    }

    #[test]
    fn file_names_come_from_the_path() {
        let name = |u: &str, ct: Option<&str>| {
            let hv = ct.map(|c| reqwest::header::HeaderValue::from_str(c).unwrap());
            filename(&Url::parse(u).unwrap(), hv.as_ref())
        };
        assert_eq!(name("https://example.com/docs/Guide%20v2.pdf?x=1", None), "Guide v2.pdf");
        assert_eq!(name("https://example.com/", Some("text/html; charset=utf-8")), "index.html");
        assert_eq!(name("s3://bucket/a/b.txt", None), "b.txt");
    }

    #[tokio::test]
    async fn private_hosts_and_odd_schemes_are_refused_before_any_request() {
        let storage = FileStorage::open(Some("memory://"), std::path::Path::new("/nonexistent")).unwrap();
        let policy = FetchPolicy { max_bytes: 1 << 20, addresses: AddressPolicy::default(), object_prefixes: Vec::new() };
        for url in [
            "http://127.0.0.1:9/x.txt",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://localhost/",
            "http://[64:ff9b::7f00:1]:9/",
            "http://[2002:7f00:1::]:9/",
            "http://[::127.0.0.1]:9/",
            "http://[fec0::1]/",
            "http://2130706433:9/",
            // Not mapped to the tenant: never read with the server's credentials.
            "s3://bucket/files/t/file-1",
            "gs://bucket/x",
            "az://container/x",
        ] {
            assert!(matches!(storage.fetch("t", url, policy.clone()).await, Err(FetchError::NotAllowed(_))), "{url}");
        }
        assert!(matches!(storage.fetch("t", "ftp://example.com/a", policy.clone()).await, Err(FetchError::NotAllowed(_))));
        assert!(matches!(storage.fetch("t", "not a url", policy).await, Err(FetchError::NotAllowed(_))));
    }
}
