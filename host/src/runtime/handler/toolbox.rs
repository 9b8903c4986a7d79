//! The host side of `tensoras:platform/toolbox`: the chat handler's server-side tool calls.
//!
//! The runtime knows nothing of deployed functions; a request's [`HandlerCtx`] carries a
//! [`Toolbox`] already scoped to the caller's tenant (the function registry implements
//! it), so a guest can only list and call its own tenant's tools. The trait speaks the
//! runtime's own tool types; this file maps them to the WIT records.
//!
//! [`HandlerCtx`]: super::HandlerCtx

use futures::future::BoxFuture;

use super::State;
use super::bindings::tensoras::platform::toolbox::{self, ToolError};
use crate::runtime::{ToolInfo, ToolOutcome};

/// The deployed tools of one tenant.
pub trait Toolbox: Send + Sync {
    /// The tenant's tool functions, by name.
    fn available(&self) -> Vec<ToolInfo>;
    /// Calls the tool `name` with JSON `arguments`: what the tool answered, or why it
    /// could not be called (no such tool, or the call itself failed).
    fn invoke(&self, name: String, arguments: String) -> BoxFuture<'static, Result<ToolOutcome, String>>;
}

impl toolbox::Host for State {
    fn available(&mut self) -> wasmtime::Result<Vec<toolbox::ToolInfo>> {
        let Some(toolbox) = &self.handler()?.tools else { return Ok(Vec::new()) };
        Ok(toolbox
            .available()
            .into_iter()
            .map(|t| toolbox::ToolInfo { name: t.name, description: t.description, parameters: t.parameters })
            .collect())
    }

    async fn invoke(&mut self, name: String, arguments: String) -> wasmtime::Result<Result<String, ToolError>> {
        let Some(toolbox) = self.handler()?.tools.clone() else {
            return Ok(Err(ToolError::Failed("no tools are available to this request".into())));
        };
        Ok(match toolbox.invoke(name, arguments).await {
            Ok(ToolOutcome::Ok(s)) => Ok(s),
            Ok(ToolOutcome::InvalidArguments(m)) => Err(ToolError::InvalidArguments(m)),
            Ok(ToolOutcome::Failed(m) | ToolOutcome::Refused(m)) | Err(m) => Err(ToolError::Failed(m)),
        })
    }
}
