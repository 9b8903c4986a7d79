//! Chat functions: user components exporting `tensoras:platform/handler` (world
//! `chat-function`), served as model `fn:NAME`. They get the request as the built-in
//! handlers do, stream through `output`, and reach the platform like any user function,
//! within their grants, on behalf of the key that called them.

use std::sync::Arc;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use wasmtime::component::Component;

use super::capture::Recorder;
use super::{Guest, HandlerError, HandlerRequest, HandlerResponse, InvokeError, Runtime, Sandbox, Services, Usage};
use crate::limits::Limits;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tensoras:platform/chat-function",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tensoras:platform/ai": crate::runtime::platform::bindings::tensoras::platform::ai,
            "tensoras:platform/kv": crate::runtime::platform::bindings::tensoras::platform::kv,
            "tensoras:platform/files": crate::runtime::platform::bindings::tensoras::platform::files,
            "tensoras:platform/retrieval": crate::runtime::handler::bindings::tensoras::platform::retrieval,
            "tensoras:platform/output": crate::runtime::handler::bindings::tensoras::platform::output,
            "tensoras:platform/types": crate::runtime::handler::bindings::tensoras::platform::types,
        },
    });
}

use bindings::exports::tensoras::platform::handler as export;

/// A chat component ready to instantiate, with its limits and grants.
#[derive(Clone)]
pub struct ChatFunction {
    pre: bindings::ChatFunctionPre<super::State>,
    /// Limits of each request.
    pub limits: Limits,
    /// Capabilities of each request.
    pub sandbox: Sandbox,
}

impl std::fmt::Debug for ChatFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatFunction").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Links a component as a chat function; the error says what is missing.
    pub fn prepare_chat(&self, component: &Component, limits: Limits, sandbox: Sandbox) -> Result<ChatFunction, String> {
        let pre = self.instantiate_pre(component)?;
        let pre = bindings::ChatFunctionPre::new(pre)
            .map_err(|e| format!("component does not export `tensoras:platform/handler@0.1.0` as a chat function must: {e}"))?;
        Ok(ChatFunction { pre, limits, sandbox })
    }

    /// Runs one chat request through a chat function. With `output`, its chunks go there.
    pub async fn call_chat(
        &self,
        f: &ChatFunction,
        req: HandlerRequest,
        output: Option<mpsc::Sender<String>>,
        services: Arc<dyn Services>,
    ) -> Result<Result<HandlerResponse, HandlerError>, InvokeError> {
        let pre = f.pre.clone();
        let req = export::Request { body: req.body, stream: req.stream, tenant: req.tenant, path: req.path };
        let recorder = Recorder::start("chat");
        let guest = Guest::Function(Some(services), output, Some(recorder.output.clone()));
        let result = self
            .run(&f.limits, &f.sandbox, guest, move |store| {
                async move {
                    let inst = pre.instantiate_async(&mut *store).await?;
                    inst.tensoras_platform_handler().call_handle(&mut *store, &req).await
                }
                .boxed()
            })
            .await;
        let error = match &result {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("{} {}: {}", e.status, e.kind, e.message)),
            Err(e) => Some(e.to_string()),
        };
        recorder.finish(&f.sandbox, error);
        Ok(result?.map(|r| HandlerResponse {
            body: r.body,
            usage: Usage { prompt_tokens: r.usage.prompt_tokens, completion_tokens: r.usage.completion_tokens },
        }))
    }
}
