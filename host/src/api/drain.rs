//! Reading the rest of a request body that was answered without it.
//!
//! A request refused before its body is read (a revoked key on a 20 MB upload, a member's
//! upload to an admin route, a 429) is answered at once; if the server then dropped the
//! body, hyper would close the connection while the client is still sending, and a client
//! that writes the whole body before it reads (the Node SDK does) sees a reset — an
//! `APIConnectionError` — instead of the 401 or 403 that says what is wrong. So the part a
//! handler left unread is read and discarded in the background after the answer has gone,
//! up to [`DRAIN_BYTES`] more than the largest body the server accepts and for at most
//! [`DRAIN_TIME`]; past either the connection is closed as before.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Slack over the largest accepted body (multipart framing).
pub const DRAIN_BYTES: u64 = 1 << 20;
/// Longest a refused upload is read for.
pub const DRAIN_TIME: Duration = Duration::from_secs(30);

/// Where a body dropped before its end puts what is left.
type Slot = Arc<Mutex<Option<Body>>>;

/// A request body that hands its unread rest to a [`Slot`] when dropped.
struct Tracked {
    inner: Body,
    slot: Slot,
    ended: bool,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.is_end_stream() {
            let rest = std::mem::replace(&mut self.inner, Body::empty());
            if let Ok(mut slot) = self.slot.lock() {
                *slot = Some(rest);
            }
        }
    }
}

/// The limit the unread rest is read up to: the largest body any route accepts.
#[derive(Clone, Copy)]
pub struct Limit(pub u64);

/// Runs the request; what its handler left of the body is read in the background.
pub async fn unread_rest(State(Limit(limit)): State<Limit>, req: Request, next: Next) -> Response {
    let slot: Slot = Arc::default();
    let req = req.map(|inner| Body::new(Tracked { inner, slot: slot.clone(), ended: false }));
    let response = next.run(req).await;
    let rest = slot.lock().ok().and_then(|mut s| s.take());
    if let Some(rest) = rest {
        tokio::spawn(discard(rest, limit.saturating_add(DRAIN_BYTES)));
    }
    response
}

/// Reads `body` to its end, or until `most` bytes or [`DRAIN_TIME`] have gone by.
async fn discard(mut body: Body, most: u64) {
    let mut left = most;
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, |d| d.len() as u64);
            match left.checked_sub(len) {
                Some(l) => left = l,
                None => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_dropped_unread_leaves_its_rest_and_a_read_one_does_not() {
        let slot: Slot = Arc::default();
        let body = Tracked { inner: Body::from("abc"), slot: slot.clone(), ended: false };
        drop(body);
        let rest = slot.lock().unwrap().take().expect("the unread body");
        assert_eq!(rest.collect().await.unwrap().to_bytes(), "abc");

        let mut body = Body::new(Tracked { inner: Body::from("abc"), slot: slot.clone(), ended: false });
        while body.frame().await.is_some() {}
        drop(body);
        assert!(slot.lock().unwrap().is_none());

        drop(Tracked { inner: Body::empty(), slot: slot.clone(), ended: false });
        assert!(slot.lock().unwrap().is_none(), "an empty body has nothing left");
    }
}
