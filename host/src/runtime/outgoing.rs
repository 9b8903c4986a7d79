//! Functions' outgoing `wasi:http` requests. A request goes out only to a destination
//! its function's grants name, and only to addresses the server's [`AddressPolicy`]
//! permits: the host is resolved here, every address is checked, and the connection
//! goes to a checked address. wasmtime-wasi-http's default sender would resolve the
//! name again itself (a second lookup a rebinding DNS server could answer with
//! 127.0.0.1), so this is its sender with the connect step replaced; the rest (TLS with
//! the webpki roots, HTTP/1.1 over hyper, the request options' timeouts) is the same.

use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::limits::Grants;
use crate::net::AddressPolicy;

/// What the sender hands back: the response, and the connection's remaining work.
pub type Sent = (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>);

/// Default of every timeout the request options leave unset, as in wasmtime-wasi-http.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a request may connect: the checked addresses of its URI's host, or why none.
pub async fn destinations(uri: &http::Uri, grants: &Grants, policy: &AddressPolicy) -> Result<Vec<SocketAddr>, Error> {
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let https = uri.scheme() == Some(&Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    if !grants.allows(host, port) {
        return Err(Error::HttpRequestDenied);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::time::timeout(Duration::from_secs(30), tokio::net::lookup_host((bare, port))).await {
            Err(_) => return Err(Error::DnsTimeout),
            Ok(Err(_)) => return Err(Error::DestinationNotFound),
            Ok(Ok(found)) => found.collect(),
        },
    };
    if addrs.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    // All or nothing: a name with one internal address among public ones is refused,
    // so which address the connect happens to pick never matters.
    if let Some(bad) = addrs.iter().find(|a| !policy.permits(a.ip())) {
        tracing::info!(host = %bare, address = %bad.ip(), "refused a function's outgoing request to a non-public address");
        return Err(Error::DestinationIpProhibited);
    }
    Ok(addrs)
}

/// Sends `req` over a connection to one of `addrs` (already checked).
pub async fn send(
    mut req: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    addrs: Vec<SocketAddr>,
) -> Result<Sent, Error> {
    let uri = req.uri();
    let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options.and_then(|o| o.first_byte_timeout).unwrap_or(DEFAULT_TIMEOUT);
    // Tokio panics on a zero interval, so clamp it to 1 ns (effectively zero).
    let between_bytes_timeout =
        options.and_then(|o| o.between_bytes_timeout).unwrap_or(DEFAULT_TIMEOUT).max(Duration::from_nanos(1));

    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addrs[..])).await {
        Ok(stream) => stream.map_err(Error::Connect)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let (mut sender, conn) = if use_tls {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InternalError(Some(e.to_string())))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        // The certificate is checked against the name the guest asked for, not the address.
        let domain = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host)?,
        };
        let stream = connector.connect(domain, stream).await.map_err(Error::Tls)?;
        handshake(connect_timeout, Box::new(stream) as Box<dyn Io>).await?
    } else {
        handshake(connect_timeout, Box::new(stream) as Box<dyn Io>).await?
    };

    // The request line carries only the path: scheme and authority are for proxies.
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    *req.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;

    let send = async move {
        let res = tokio::time::timeout(first_byte_timeout, sender.send_request(req))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(Error::from)?;
        let mut timeout = tokio::time::interval(between_bytes_timeout);
        timeout.reset();
        Ok::<_, Error>(res.map(|incoming| IncomingBody { incoming, timeout }.boxed_unsync()))
    };
    let mut send = pin!(send);
    let mut conn = Some(conn);
    // Wait for the response while driving the connection's I/O.
    let res = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(res) => Poll::Ready(res),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else { return Poll::Pending };
            let res = ready!(Pin::new(fut).poll(cx));
            conn = None;
            match res {
                Ok(()) => send.as_mut().poll(cx),
                Err(err) => Poll::Ready(Err(Error::from(err))),
            }
        }
    })
    .await?;
    let rest = async move {
        let Some(conn) = conn.take() else { return Ok(()) };
        conn.await.map_err(|err| if err.is_timeout() { Error::HttpResponseTimeout } else { err.into() })
    };
    Ok((res, Box::new(rest)))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static> Io for T {}

type Connection = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Io>>, WasiBody>;

async fn handshake(
    timeout: Duration,
    stream: Box<dyn Io>,
) -> Result<(hyper::client::conn::http1::SendRequest<WasiBody>, Connection), Error> {
    tokio::time::timeout(timeout, hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::from)
}

/// A response body that fails when no bytes arrive for the between-bytes timeout.
struct IncomingBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl hyper::body::Body for IncomingBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => {
                Poll::Ready(Some(Err(if err.is_timeout() { Error::HttpResponseTimeout } else { Error::from(err) })))
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(network: &[&str]) -> Grants {
        Grants { network: network.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[tokio::test]
    async fn grants_and_the_address_policy_both_decide() {
        let uri = |u: &str| u.parse::<http::Uri>().unwrap();
        let public = AddressPolicy::default();
        let everything = grants(&["*"]);
        for internal in [
            "http://127.0.0.1:8080/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
        ] {
            let got = destinations(&uri(internal), &everything, &public).await;
            assert!(matches!(got, Err(Error::DestinationIpProhibited)), "{internal}: {got:?}");
        }
        // Not granted at all: denied before any lookup.
        let got = destinations(&uri("http://8.8.8.8/"), &grants(&["1.1.1.1:*"]), &public).await;
        assert!(matches!(got, Err(Error::HttpRequestDenied)), "{got:?}");
        // A public literal passes as the address it is.
        let got = destinations(&uri("https://8.8.8.8/x"), &everything, &public).await.unwrap();
        assert_eq!(got, vec!["8.8.8.8:443".parse::<SocketAddr>().unwrap()]);
        // The operator's allow-list lets a granted loopback destination through.
        let lo = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let got = destinations(&uri("http://127.0.0.1:8080/"), &grants(&["127.0.0.1:8080"]), &lo).await.unwrap();
        assert_eq!(got, vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn the_connection_goes_to_the_checked_address() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let checked = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client closed before its request head");
                head.extend_from_slice(&buf[..n]);
            }
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").await.unwrap();
            String::from_utf8(head).unwrap()
        });
        // The name does not resolve anywhere: only the checked address can be reached.
        let body = http_body_util::Empty::<Bytes>::new().map_err(Error::from).boxed_unsync();
        let req = http::Request::get("http://pinned.invalid:9/path?q=1").header("host", "pinned.invalid:9").body(body).unwrap();
        let (resp, io) = send(req, None, vec![checked]).await.unwrap();
        let io = tokio::spawn(Box::into_pin(io));
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"hi");
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("host: pinned.invalid:9\r\n"), "{head}");
        io.await.unwrap().unwrap();
    }
}
