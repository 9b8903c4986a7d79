//! Documents fetched from a URL for a knowledge base (`{"url": ...}` data sources). The
//! bytes become an ordinary stored file, so ingestion, deletion and crash recovery are
//! those of uploads.
//!
//! `http://` and `https://` are fetched by the server itself, which makes it a proxy into
//! whatever network it sits in. So by default a URL whose host resolves to a loopback,
//! private, link-local (cloud metadata), shared or otherwise non-public address is
//! refused; every redirect hop is checked again, and the connection goes to the address
//! that was checked (no second DNS lookup to rebind). `--url-sources-allow-private`
//! lifts this for trusted networks. `s3://`, `gs://` and `az://` objects are read with
//! the server's own cloud credentials in builds with the `cloud-storage` feature.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::ObjectStoreExt as _;
use url::Url;

use super::{FileStorage, StoreError, Stored};

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
#[derive(Debug, Clone, Copy)]
pub struct FetchPolicy {
    /// Largest document, in bytes.
    pub max_bytes: u64,
    /// Whether hosts resolving to non-public addresses may be fetched.
    pub allow_private: bool,
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
            if !policy.allow_private
                && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
            {
                return Err(FetchError::NotAllowed(format!(
                    "'{host}' resolves to {}, which is not a public address; this server does not fetch from \
                     private networks (start it with --url-sources-allow-private to allow that)",
                    bad.ip()
                )));
            }
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
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

/// Whether an address is on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                        "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "224.0.0.1"] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "151.101.0.223", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
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
        let policy = FetchPolicy { max_bytes: 1 << 20, allow_private: false };
        for url in ["http://127.0.0.1:9/x.txt", "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://localhost/"] {
            assert!(matches!(storage.fetch("t", url, policy).await, Err(FetchError::NotAllowed(_))), "{url}");
        }
        assert!(matches!(storage.fetch("t", "ftp://example.com/a", policy).await, Err(FetchError::NotAllowed(_))));
        assert!(matches!(storage.fetch("t", "not a url", policy).await, Err(FetchError::NotAllowed(_))));
    }
}
