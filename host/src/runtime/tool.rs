//! Tool functions: components exporting `tensoras:platform/tool`.

use std::sync::Arc;

use futures::FutureExt as _;
use wasmtime::component::Component;

use super::capture::Recorder;
use super::{Guest, InvokeError, Runtime, Sandbox, Services};
use crate::limits::Limits;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tensoras:platform/tool-function",
        imports: { default: async | trappable },
        exports: { default: async },
        // The platform imports are linked by runtime/platform.rs; only the export is new here.
        with: {
            "tensoras:platform/ai": crate::runtime::platform::bindings::tensoras::platform::ai,
            "tensoras:platform/kv": crate::runtime::platform::bindings::tensoras::platform::kv,
            "tensoras:platform/files": crate::runtime::platform::bindings::tensoras::platform::files,
            "tensoras:platform/retrieval": crate::runtime::handler::bindings::tensoras::platform::retrieval,
        },
    });
}

use bindings::exports::tensoras::platform::tool::ToolError;

/// A tool component ready to instantiate, with the limits and grants it runs under.
#[derive(Clone)]
pub struct ToolFunction {
    pre: bindings::ToolFunctionPre<super::State>,
    /// Limits of each call.
    pub limits: Limits,
    /// Capabilities of each call.
    pub sandbox: Sandbox,
}

impl std::fmt::Debug for ToolFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolFunction").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// A tool's self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInfo {
    /// Name the component gives itself.
    pub name: String,
    /// Description for the model.
    pub description: String,
    /// JSON Schema text of its arguments.
    pub parameters: String,
}

/// The result of a tool call that ran to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutcome {
    /// The tool's output text.
    Ok(String),
    /// The tool rejected its arguments.
    InvalidArguments(String),
    /// The tool ran and reported a failure.
    Failed(String),
    /// The tool failed passing on a refusal of one of its manifest's grants.
    Refused(String),
}

impl Runtime {
    /// Links a component as a tool; the error says what is missing.
    pub fn prepare_tool(&self, component: &Component, limits: Limits, sandbox: Sandbox) -> Result<ToolFunction, String> {
        let pre = self.instantiate_pre(component)?;
        let pre = bindings::ToolFunctionPre::new(pre)
            .map_err(|e| format!("component does not export `tensoras:platform/tool@0.1.0` as a tool function must: {e}"))?;
        Ok(ToolFunction { pre, limits, sandbox })
    }

    /// Asks the tool to describe itself.
    pub async fn describe_tool(&self, f: &ToolFunction) -> Result<ToolInfo, InvokeError> {
        let pre = f.pre.clone();
        self.run(&f.limits, &f.sandbox, Guest::Function(None, None, None), move |store| {
            async move {
                let inst = pre.instantiate_async(&mut *store).await?;
                inst.tensoras_platform_tool().call_describe(&mut *store).await
            }
            .boxed()
        })
        .await
        .map(|i| ToolInfo { name: i.name, description: i.description, parameters: i.parameters })
    }

    /// Calls the tool with a JSON arguments text; its platform imports act for the
    /// caller that `services` stands for (`None`: models and knowledge bases answer that
    /// they are not available).
    pub async fn call_tool(
        &self,
        f: &ToolFunction,
        arguments: &str,
        services: Option<Arc<dyn Services>>,
    ) -> Result<ToolOutcome, InvokeError> {
        let pre = f.pre.clone();
        let arguments = arguments.to_owned();
        let recorder = Recorder::start("tool");
        let guest = Guest::Function(services, None, Some(recorder.output.clone()));
        let result = self
            .run(&f.limits, &f.sandbox, guest, move |store| {
                async move {
                    let inst = pre.instantiate_async(&mut *store).await?;
                    Ok(match inst.tensoras_platform_tool().call_call(&mut *store, &arguments).await? {
                        Ok(text) => ToolOutcome::Ok(text),
                        Err(ToolError::InvalidArguments(m)) => ToolOutcome::InvalidArguments(m),
                        Err(ToolError::Failed(m)) if store.data().refused(&m) => ToolOutcome::Refused(m),
                        Err(ToolError::Failed(m)) => ToolOutcome::Failed(m),
                    })
                }
                .boxed()
            })
            .await;
        let error = match &result {
            Ok(ToolOutcome::Ok(_)) => None,
            Ok(ToolOutcome::InvalidArguments(m)) => Some(format!("invalid arguments: {m}")),
            Ok(ToolOutcome::Failed(m) | ToolOutcome::Refused(m)) => Some(m.clone()),
            Err(e) => Some(e.to_string()),
        };
        recorder.finish(&f.sandbox, error);
        result
    }
}
