//! HTTP functions: `wasi:http/incoming-handler@0.2.12` as a Rust trait.
//!
//! A request arrives as a [`Request`] whose body is a streaming
//! [`std::io::Read`] ([`BodyReader`]); the answer goes out through a
//! [`Responder`], either in one piece ([`Responder::send`]) or streamed through
//! the [`std::io::Write`] returned by [`Responder::start`] ([`BodyWriter`]).
//! Neither side buffers the whole body, so a function can stream data far
//! larger than its memory limit.

use std::fmt;
use std::io;

use crate::wit::http_function::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::wit::http_function::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// Largest read asked of the host in one call. Bigger reads only move the copy
/// into one larger allocation; 64 KiB matches the host's usual chunk size.
const READ_CHUNK: usize = 64 * 1024;

/// An HTTP function. Implement it on a unit struct and export it with
/// [`export_http!`](crate::export_http).
///
/// `handle` must answer through `responder` before it returns; if it does
/// not, the SDK answers `500` with an empty body so the client is never left
/// waiting.
///
/// ```no_run
/// use tensoras_guest::{HttpFunction, Request, Responder};
///
/// struct Hello;
///
/// impl HttpFunction for Hello {
///     fn handle(req: Request, responder: Responder) {
///         let text = format!("Hello from {}\n", req.path());
///         let _ = responder.send(200, [("content-type", "text/plain")], text);
///     }
/// }
///
/// tensoras_guest::export_http!(Hello);
/// ```
pub trait HttpFunction {
    /// Handles one request.
    fn handle(req: Request, responder: Responder);
}

/// Why building or streaming a response failed.
///
/// ```no_run
/// use tensoras_guest::HttpError;
///
/// let err = HttpError::InvalidStatus(1000);
/// assert_eq!(err.to_string(), "invalid HTTP status code 1000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The status code is outside what HTTP allows (the host rejected it).
    InvalidStatus(u16),
    /// A header name or value is malformed or one the host forbids setting.
    InvalidHeader(String),
    /// The response body could not be written or finished.
    Body(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidStatus(code) => write!(f, "invalid HTTP status code {code}"),
            HttpError::InvalidHeader(m) => write!(f, "invalid response header: {m}"),
            HttpError::Body(m) => write!(f, "response body error: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for io::Error {
    fn from(e: HttpError) -> Self {
        io::Error::other(e)
    }
}

/// One incoming HTTP request.
///
/// ```no_run
/// use std::io::Read;
/// # fn demo(mut req: tensoras_guest::Request) -> std::io::Result<()> {
/// println!("{} {}", req.method(), req.path_with_query());
/// if let Some(ct) = req.header_str("content-type") {
///     println!("content-type: {ct}");
/// }
/// let mut body = String::new();
/// req.body().read_to_string(&mut body)?;
/// # Ok(())
/// # }
/// ```
pub struct Request {
    method: String,
    path_with_query: String,
    authority: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: BodyReader,
    // Kept alive until after the body: the body was taken from it, and the
    // host may track it as the body's parent.
    _raw: IncomingRequest,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path_with_query", &self.path_with_query)
            .field("authority", &self.authority)
            .field("headers", &self.headers.len())
            .finish_non_exhaustive()
    }
}

impl Request {
    fn from_raw(raw: IncomingRequest) -> Self {
        let method = match raw.method() {
            Method::Get => "GET".to_string(),
            Method::Head => "HEAD".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Connect => "CONNECT".to_string(),
            Method::Options => "OPTIONS".to_string(),
            Method::Trace => "TRACE".to_string(),
            Method::Patch => "PATCH".to_string(),
            Method::Other(other) => other,
        };
        let path_with_query = raw.path_with_query().unwrap_or_else(|| "/".to_string());
        let authority = raw.authority();
        // `headers()` returns a child resource; read it and drop it at once.
        let headers = raw.headers().entries();
        // `consume` succeeds only once; a failure means there is no body to read.
        let body = BodyReader::new(raw.consume().ok());
        Request { method, path_with_query, authority, headers, body, _raw: raw }
    }

    /// The method in upper case (`GET`, `POST`, ... or an extension method as sent).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target: path plus `?query` if any (`/` when the host gave none).
    pub fn path_with_query(&self) -> &str {
        &self.path_with_query
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        match self.path_with_query.split_once('?') {
            Some((path, _)) => path,
            None => &self.path_with_query,
        }
    }

    /// The query string without the leading `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.path_with_query.split_once('?').map(|(_, q)| q)
    }

    /// The `Host` / `:authority` the client used, if the host passed one on.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// All headers in the order received; names are lower case, a repeated
    /// header appears once per value.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The first value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// Like [`header`](Self::header), but only if the value is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The body, as a streaming reader.
    pub fn body(&mut self) -> &mut BodyReader {
        &mut self.body
    }
}

/// The request body: a [`std::io::Read`] that streams from the host.
///
/// Each `read` blocks until the host has at least one byte or the body ended
/// (then it returns `Ok(0)`). Wrap it in [`std::io::BufReader`] for line-wise
/// reading.
///
/// ```no_run
/// use std::io::Read;
/// # fn demo(mut req: tensoras_guest::Request) -> std::io::Result<()> {
/// let mut buf = [0u8; 8192];
/// let mut total = 0;
/// loop {
///     let n = req.body().read(&mut buf)?;
///     if n == 0 { break; }
///     total += n;
/// }
/// # Ok(())
/// # }
/// ```
pub struct BodyReader {
    // Field order matters: the stream is a child of the body and must be
    // dropped first, or the host traps on dropping the body.
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
}

impl fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyReader").field("finished", &self.stream.is_none()).finish()
    }
}

impl BodyReader {
    fn new(body: Option<IncomingBody>) -> Self {
        let stream = body.as_ref().and_then(|b| b.stream().ok());
        if stream.is_none() {
            return BodyReader { stream: None, body: None };
        }
        BodyReader { stream, body }
    }

    /// Releases the stream and the body once the end has been seen.
    fn close(&mut self) {
        self.stream = None;
        if let Some(body) = self.body.take() {
            // Trailers are not exposed; dropping the future discards them.
            drop(IncomingBody::finish(body));
        }
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(stream) = &self.stream else {
                return Ok(0);
            };
            let want = buf.len().min(READ_CHUNK) as u64;
            match stream.blocking_read(want) {
                // A host may legally return an empty chunk; ask again rather
                // than report a false end of stream.
                Ok(chunk) if chunk.is_empty() => continue,
                Ok(chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(StreamError::Closed) => {
                    self.close();
                    return Ok(0);
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    let msg = e.to_debug_string();
                    self.close();
                    return Err(io::Error::other(msg));
                }
            }
        }
    }
}

/// The capability to answer the request, used exactly once.
///
/// Dropping it unused answers `500` with an empty body.
///
/// ```no_run
/// use std::io::Write;
/// # fn demo(responder: tensoras_guest::Responder) -> std::io::Result<()> {
/// let mut body = responder.start(200, [("content-type", "text/plain")])?;
/// for i in 0..3 {
///     writeln!(body, "line {i}")?;
/// }
/// body.finish()?;
/// # Ok(())
/// # }
/// ```
pub struct Responder {
    out: Option<ResponseOutparam>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").field("used", &self.out.is_none()).finish()
    }
}

impl Responder {
    /// Sends the status line and headers and returns a writer for the body.
    ///
    /// Headers are `(name, value)` pairs; values can be `&str`, `String`,
    /// `&[u8]` or `Vec<u8>`. On error (bad status, bad or forbidden header)
    /// the SDK has already answered `500` with the error text as the body, so
    /// the caller can simply return.
    pub fn start<I, K, V>(mut self, status: u16, headers: I) -> Result<BodyWriter, HttpError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let Some(out) = self.out.take() else {
            // Unreachable through the public API (start/send consume self).
            return Err(HttpError::Body("response already sent".into()));
        };
        let entries: Vec<(String, Vec<u8>)> =
            headers.into_iter().map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_vec())).collect();
        match build_response(status, &entries) {
            Ok((response, body)) => {
                ResponseOutparam::set(out, Ok(response));
                BodyWriter::new(body)
            }
            Err(e) => {
                send_error(out, &e);
                Err(e)
            }
        }
    }

    /// Sends a whole response in one call.
    ///
    /// ```no_run
    /// # fn demo(responder: tensoras_guest::Responder) {
    /// let _ = responder.send(404, [("content-type", "text/plain")], "not found\n");
    /// # }
    /// ```
    pub fn send<I, K, V>(self, status: u16, headers: I, body: impl AsRef<[u8]>) -> Result<(), HttpError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut writer = self.start(status, headers)?;
        io::Write::write_all(&mut writer, body.as_ref()).map_err(|e| HttpError::Body(e.to_string()))?;
        writer.finish()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            // The function returned without answering: answer for it.
            send_error(out, &HttpError::Body("the function sent no response".into()));
        }
    }
}

/// Creates the response resource with its status and headers, and takes its body.
fn build_response(status: u16, headers: &[(String, Vec<u8>)]) -> Result<(OutgoingResponse, OutgoingBody), HttpError> {
    let fields = Fields::from_list(headers).map_err(|e| HttpError::InvalidHeader(format!("{e:?}")))?;
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).map_err(|()| HttpError::InvalidStatus(status))?;
    let body = response.body().map_err(|()| HttpError::Body("response body already taken".into()))?;
    Ok((response, body))
}

/// Answers 500 with `err` as plain text; used when the function's own answer
/// could not be built.
fn send_error(out: ResponseOutparam, err: &HttpError) {
    let headers = [("content-type".to_string(), b"text/plain; charset=utf-8".to_vec())];
    match build_response(500, &headers) {
        Ok((response, body)) => {
            ResponseOutparam::set(out, Ok(response));
            if let Ok(mut writer) = BodyWriter::new(body) {
                let _ = io::Write::write_all(&mut writer, format!("{err}\n").as_bytes());
                let _ = writer.finish();
            }
        }
        Err(_) => {
            // Cannot even build a bare 500: let the host report the failure.
            drop(out);
        }
    }
}

/// The response body: a [`std::io::Write`] that streams to the host.
///
/// `write` waits until the host accepts data and never hands it more than it
/// permits (`check-write`); `flush` waits until the host has taken what was
/// written. Call [`finish`](Self::finish) to end the body and learn whether
/// that worked; dropping the writer finishes it too, ignoring errors.
/// [`abort`](Self::abort) ends it as failed instead.
///
/// ```no_run
/// use std::io::Write;
/// # fn demo(responder: tensoras_guest::Responder) -> Result<(), Box<dyn std::error::Error>> {
/// let mut w = responder.start(200, [("content-type", "application/json")])?;
/// w.write_all(br#"{"ok":true}"#)?;
/// w.finish()?;
/// # Ok(())
/// # }
/// ```
pub struct BodyWriter {
    // Field order matters: the stream is a child of the body and must be
    // dropped before the body is finished.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
}

impl fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyWriter").field("finished", &self.body.is_none()).finish()
    }
}

impl BodyWriter {
    fn new(body: OutgoingBody) -> Result<Self, HttpError> {
        let stream = body.write().map_err(|()| HttpError::Body("response body stream already taken".into()))?;
        Ok(BodyWriter { stream: Some(stream), body: Some(body) })
    }

    /// Flushes what is pending and ends the body (no trailers).
    pub fn finish(mut self) -> Result<(), HttpError> {
        self.finish_inner()
    }

    /// Abandons the body: the host ends the response as failed (the client
    /// sees an aborted transfer, not a complete body). Use it when something
    /// goes wrong after the status line has been sent.
    ///
    /// ```no_run
    /// # fn demo(responder: tensoras_guest::Responder) -> Result<(), Box<dyn std::error::Error>> {
    /// let w = responder.start(200, [("content-type", "text/plain")])?;
    /// // ... the data source failed half-way ...
    /// w.abort();
    /// # Ok(())
    /// # }
    /// ```
    pub fn abort(mut self) {
        // Stream first: it is the body's child.
        self.stream = None;
        // An outgoing-body dropped without `finish` aborts the response.
        self.body = None;
    }

    fn finish_inner(&mut self) -> Result<(), HttpError> {
        let flushed = match self.stream.take() {
            Some(stream) => stream.blocking_flush().map_err(stream_error),
            None => Ok(()),
        };
        let finished = match self.body.take() {
            Some(body) => OutgoingBody::finish(body, None).map_err(|e| HttpError::Body(format!("{e:?}"))),
            None => Ok(()),
        };
        flushed.map_err(|e| HttpError::Body(e.to_string()))?;
        finished
    }
}

fn stream_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::new(io::ErrorKind::BrokenPipe, "response body stream closed"),
        StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
    }
}

impl io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(stream) = &self.stream else {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "response body finished"));
        };
        loop {
            // `check-write` says how much the host accepts now; writing more
            // than that is a trap, so wait on the stream's pollable when it is 0.
            let permit = stream.check_write().map_err(stream_error)?;
            if permit == 0 {
                stream.subscribe().block();
                continue;
            }
            let n = buf.len().min(usize::try_from(permit).unwrap_or(usize::MAX));
            stream.write(&buf[..n]).map_err(stream_error)?;
            return Ok(n);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.stream {
            Some(stream) => stream.blocking_flush().map_err(stream_error),
            None => Ok(()),
        }
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        // Dropping an unfinished outgoing-body makes the host abort the
        // response, so finish it; errors have nowhere to go here.
        let _ = self.finish_inner();
    }
}

/// Glue behind [`export_http!`](crate::export_http).
#[doc(hidden)]
pub fn __handle<F: HttpFunction>(request: IncomingRequest, response_out: ResponseOutparam) {
    F::handle(Request::from_raw(request), Responder { out: Some(response_out) });
}

/// Exports an [`HttpFunction`] implementation as the component's
/// `wasi:http/incoming-handler@0.2.12` (world `http-function`).
///
/// Invoke it once with the type that implements [`HttpFunction`]. The crate
/// must be a `cdylib` built for `wasm32-wasip2`.
///
/// ```no_run
/// # use tensoras_guest::{HttpFunction, Request, Responder};
/// struct Ok200;
/// impl HttpFunction for Ok200 {
///     fn handle(_req: Request, responder: Responder) {
///         let _ = responder.send(200, [("content-type", "text/plain")], "ok\n");
///     }
/// }
/// tensoras_guest::export_http!(Ok200);
/// ```
#[macro_export]
macro_rules! export_http {
    ($function:ty) => {
        const _: () = {
            // See `export_tool!` for why an adapter struct is used.
            struct __TensorasHttpExport;

            impl $crate::wit::http_function::exports::wasi::http::incoming_handler::Guest for __TensorasHttpExport {
                fn handle(
                    request: $crate::wit::http_function::wasi::http::types::IncomingRequest,
                    response_out: $crate::wit::http_function::wasi::http::types::ResponseOutparam,
                ) {
                    $crate::http::__handle::<$function>(request, response_out)
                }
            }

            $crate::wit::http_function::export_http_function!(
                __TensorasHttpExport with_types_in $crate::wit::http_function
            );
        };
    };
}
