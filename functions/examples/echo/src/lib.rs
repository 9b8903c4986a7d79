//! `echo`: an HTTP function that answers with the request body, streamed.
//!
//! - Response headers: `x-echo-method`, `x-echo-path` (path with query) and
//!   `content-type` copied from the request (`application/octet-stream` when
//!   absent).
//! - A path ending in `/status/<code>` (query ignored) answers that status with
//!   an empty body instead, which lets host tests exercise status handling.
//!
//! The body is copied one chunk at a time, so the function's memory use does
//! not grow with the request size.

use std::io::{Read, Write};

use tensoras_guest::{HttpFunction, Request, Responder};

/// Copy buffer size: small enough to keep memory flat, large enough to keep
/// the number of host calls per megabyte low.
const CHUNK: usize = 16 * 1024;

/// The exported function.
struct Echo;

impl HttpFunction for Echo {
    fn handle(mut req: Request, responder: Responder) {
        let method = req.method().as_bytes().to_vec();
        let path_with_query = req.path_with_query().as_bytes().to_vec();

        if let Some(code) = requested_status(req.path()) {
            let headers = [("x-echo-method", method), ("x-echo-path", path_with_query)];
            // `send` answers 500 itself if the code is not a valid status.
            let _ = responder.send(code, headers, b"");
            return;
        }

        let content_type = req.header("content-type").map(<[u8]>::to_vec).unwrap_or_else(|| b"application/octet-stream".to_vec());
        let headers = [("x-echo-method", method), ("x-echo-path", path_with_query), ("content-type", content_type)];
        let Ok(mut out) = responder.start(200, headers) else {
            // The SDK has already answered 500 with the reason.
            return;
        };

        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match req.body().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => {
                    // The status line is gone already; aborting the body is
                    // the only way left to tell the client the echo is incomplete.
                    out.abort();
                    return;
                }
            };
            // Flush per chunk: a client may wait for the echo of one chunk
            // before it sends the next.
            if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                // The client went away; nothing more to do.
                return;
            }
        }
        let _ = out.finish();
    }
}

/// Returns `<code>` if `path` ends with `/status/<code>` and `<code>` is a number.
fn requested_status(path: &str) -> Option<u16> {
    let (prefix, code) = path.rsplit_once('/')?;
    // Digits only: `u16::from_str` would also accept a leading `+`.
    if !prefix.ends_with("/status") || code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

tensoras_guest::export_http!(Echo);

#[cfg(test)]
mod tests {
    use super::requested_status;

    #[test]
    fn status_paths() {
        assert_eq!(requested_status("/status/418"), Some(418));
        assert_eq!(requested_status("/a/b/status/204"), Some(204));
        assert_eq!(requested_status("/status/"), None);
        assert_eq!(requested_status("/status/+5"), None);
        assert_eq!(requested_status("/mystatus/200"), None);
        assert_eq!(requested_status("/status/418/x"), None);
        assert_eq!(requested_status("/"), None);
    }
}
