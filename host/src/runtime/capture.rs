//! What a user function writes to stdout and stderr during one invocation, for its logs:
//! both streams into one buffer, in the order written, up to a cap. Past the cap the bytes
//! are counted and dropped, never refused: a guest that prints too much must not fail
//! (a full `MemoryOutputPipe` traps the writer).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::Sandbox;

/// Most bytes of output kept per invocation.
pub const OUTPUT_CAP: usize = 16 << 10;

/// One invocation of a user function, as its logs keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// When it started, in Unix milliseconds.
    pub started_at_ms: i64,
    /// How long it ran.
    pub duration: Duration,
    /// Why it failed, if it did (a trap, a limit, or the error the guest returned).
    pub error: Option<String>,
    /// What it wrote to stdout and stderr (lossy UTF-8), with a note of what was dropped.
    pub output: String,
}

/// Where a function's invocations are recorded (the function registry implements it).
pub trait InvocationLog: Send + Sync + std::fmt::Debug {
    /// Records one finished invocation.
    fn record(&self, invocation: Invocation);
}

/// The output buffer of one invocation; clones share it.
#[derive(Debug, Clone)]
pub(super) struct Captured(Arc<Mutex<Buffer>>);

#[derive(Debug)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Captured {
    pub(super) fn new() -> Self {
        Self(Arc::new(Mutex::new(Buffer { bytes: Vec::new(), dropped: 0 })))
    }

    fn text(&self) -> String {
        let Ok(b) = self.0.lock() else { return String::new() };
        let mut text = String::from_utf8_lossy(&b.bytes).into_owned();
        if b.dropped > 0 {
            text.push_str(&format!("\n[{} more bytes dropped: output is kept up to {OUTPUT_CAP} bytes]", b.dropped));
        }
        text
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(Writer(self.clone()))
    }
}

struct Writer(Captured);

impl AsyncWrite for Writer {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if let Ok(mut b) = self.0.0.lock() {
            let room = OUTPUT_CAP.saturating_sub(b.bytes.len()).min(buf.len());
            b.bytes.extend_from_slice(&buf[..room]);
            b.dropped += buf.len() - room;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The clock and output of one invocation, recorded into the function's log when it ends.
pub(super) struct Recorder {
    /// `tool`, `http` or `chat`, for the metrics.
    kind: &'static str,
    started: Instant,
    started_at_ms: i64,
    pub(super) output: Captured,
}

impl Recorder {
    pub(super) fn start(kind: &'static str) -> Self {
        let started_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self { kind, started: Instant::now(), started_at_ms, output: Captured::new() }
    }

    /// Records the invocation into `sandbox`'s log, if it has one, and the metrics.
    pub(super) fn finish(self, sandbox: &Sandbox, error: Option<String>) {
        let duration = self.started.elapsed();
        let m = crate::metrics::metrics();
        m.function_invocations.inc(&[self.kind, if error.is_none() { "ok" } else { "error" }]);
        m.function_duration.observe(&[self.kind], duration);
        if let Some(log) = &sandbox.log {
            log.record(Invocation { started_at_ms: self.started_at_ms, duration, error, output: self.output.text() });
        }
    }
}
