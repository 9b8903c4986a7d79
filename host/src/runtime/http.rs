//! HTTP functions: components exporting `wasi:http/incoming-handler`. Bodies stream
//! both ways: the request body is read by the guest as it arrives, and the response
//! body is forwarded while the guest is still writing it.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime::component::Component;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use std::sync::Arc;

use super::capture::Recorder;
use super::{Guest, InvokeError, Runtime, Sandbox, Services, classify};
use crate::limits::Limits;

/// Request body type handed to guests.
pub type HttpRequestBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// An HTTP component ready to instantiate, with its limits and grants.
#[derive(Clone)]
pub struct HttpFunction {
    pre: ProxyPre<super::State>,
    /// Limits of each request.
    pub limits: Limits,
    /// Capabilities of each request.
    pub sandbox: Sandbox,
}

impl std::fmt::Debug for HttpFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFunction").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Links a component as an HTTP function; the error says what is missing.
    pub fn prepare_http(&self, component: &Component, limits: Limits, sandbox: Sandbox) -> Result<HttpFunction, String> {
        let pre = self.instantiate_pre(component)?;
        let pre = ProxyPre::new(pre)
            .map_err(|e| format!("component does not export `wasi:http/incoming-handler@0.2.x` as an HTTP function must: {e}"))?;
        Ok(HttpFunction { pre, limits, sandbox })
    }

    /// Serves one request. Returns once the guest has sent the response head; the body
    /// keeps streaming from a task that holds the instance until the guest finishes or
    /// its deadline passes.
    pub async fn handle_http(
        &self,
        f: &HttpFunction,
        req: hyper::Request<HttpRequestBody>,
        services: Option<Arc<dyn Services>>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, InvokeError> {
        let ticket = self.admission.admit().await?;
        let limits = f.limits;
        let recorder = Recorder::start("http");
        let mut store = self.new_store(&limits, &f.sandbox, Guest::Function(services, None, Some(recorder.output.clone())))?;
        let sandbox = f.sandbox.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, req);
            let out = http.new_response_outparam(tx);
            match (req, out) {
                (Ok(req), Ok(out)) => (req, out),
                (Err(e), _) | (_, Err(e)) => return Err(InvokeError::Internal(e.into())),
            }
        };
        let pre = f.pre.clone();
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
            };
            // Model calls the guest makes run in its ticket's scope: nested, one level deeper.
            let result = match ticket.scope(tokio::time::timeout(limits.timeout, run)).await {
                Err(_) => Err(InvokeError::Timeout(limits.timeout)),
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    let err = classify(e, store.data(), &limits);
                    tracing::warn!(error = %err, "http function failed");
                    Err(err)
                }
            };
            // The whole invocation, body streaming included.
            recorder.finish(&sandbox, result.as_ref().err().map(ToString::to_string));
            result
        });
        match rx.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(InvokeError::Guest(format!("the function answered with error {code:?}"))),
            // The guest dropped the outparam without responding: report why.
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(InvokeError::Guest("the function returned without sending a response".into())),
                Err(e) => Err(InvokeError::Internal(e.into())),
            },
        }
    }
}
