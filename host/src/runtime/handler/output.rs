//! The host side of `tensoras:platform/output`: a streamed request's chunks, sent to the
//! HTTP response as the guest produces them.

use super::State;
use super::bindings::tensoras::platform::output;

impl output::Host for State {
    async fn send(&mut self, chunk: String) -> wasmtime::Result<bool> {
        let Some(tx) = self.output.clone() else { return Ok(true) };
        // A full channel makes the guest wait: generation keeps pace with the client.
        Ok(tx.send(chunk).await.is_ok())
    }
}
