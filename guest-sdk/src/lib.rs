//! # tensoras-guest
//!
//! The guest SDK for Tensoras: write a tool function or an HTTP function as
//! plain Rust, build it for `wasm32-wasip2`, and the result is a WebAssembly
//! component the Tensoras host runs once per request.
//!
//! Two kinds of function are supported, each with a trait and an export macro:
//!
//! | kind | trait | macro | WIT world |
//! |---|---|---|---|
//! | tool (callable by the model) | [`Tool`] | [`export_tool!`] | `tensoras:platform/tool-function` |
//! | HTTP function | [`HttpFunction`] | [`export_http!`] | `tensoras:platform/http-function` (`wasi:http/proxy`) |
//! | chat function (served as model `fn:NAME`) | [`chat::ChatFunction`] | [`export_chat!`] | `tensoras:platform/chat-function` |
//!
//! A crate exports exactly one of them; build it as a `cdylib`.
//!
//! Both may use the platform, as far as their manifest grants: [`ai`] (chat completions,
//! streamed or not, and embeddings), [`kb`] (retrieval over the tenant's knowledge bases),
//! [`files`] (the tenant's uploaded files) and [`kv`] (a private key-value store). Every
//! refusal or failure is an [`Error`].
//!
//! ```no_run
//! use tensoras_guest::serde_json::{json, Value};
//! use tensoras_guest::{Tool, ToolError, ToolInfo};
//!
//! struct Greet;
//!
//! impl Tool for Greet {
//!     fn info() -> ToolInfo {
//!         ToolInfo::new(
//!             "greet",
//!             "Greets someone by name",
//!             json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
//!         )
//!     }
//!
//!     fn call(args: Value) -> Result<Value, ToolError> {
//!         let name = tensoras_guest::tool::required_str(&args, "name")?;
//!         Ok(Value::String(format!("Hello, {name}!")))
//!     }
//! }
//!
//! tensoras_guest::export_tool!(Greet);
//! ```
#![deny(missing_docs)]

pub mod ai;
pub mod chat;
mod error;
pub mod files;
pub mod http;
pub mod kb;
pub mod kv;
pub mod tool;

pub use error::Error;
pub use http::{BodyReader, BodyWriter, HttpError, HttpFunction, Request, Responder};
/// Re-exported so tools need no direct `serde_json` dependency and always use
/// the same version as the SDK's [`Tool`] trait.
pub use serde_json;
pub use tool::{Tool, ToolError, ToolInfo};

/// Raw `wit-bindgen` bindings. Not a stable API: the export macros expand to
/// code that names these paths, which is the only reason they are public.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod wit {
    /// Bindings for the `platform` world: the imports every function may use (`ai`,
    /// `retrieval`, `files`, `kv`), generated once and shared by the function worlds.
    pub mod platform {
        wit_bindgen::generate!({
            path: "../wit",
            world: "tensoras:platform/platform",
            features: ["clocks-timezone"],
        });
    }

    /// Bindings for the `tool-function` world (exports `tensoras:platform/tool`).
    pub mod tool_function {
        // `pub_export_macro` makes wit-bindgen split the component metadata:
        // the SDK itself carries only the (empty) imports of the world, and the
        // exports are described by a second custom section emitted where the
        // export macro is invoked. Without this every guest linking the SDK
        // would claim to export both worlds and componentisation would fail.
        wit_bindgen::generate!({
            path: "../wit",
            world: "tensoras:platform/tool-function",
            // wit-parser 0.239 cannot resolve wasi:cli's world imports when the
            // @unstable `wasi:clocks/timezone` interface is gated off; enabling
            // the feature only makes it parse (neither world uses it).
            features: ["clocks-timezone"],
            pub_export_macro: true,
            export_macro_name: "export_tool_function",
            default_bindings_module: "$crate::wit::tool_function",
            with: {
                "tensoras:platform/ai@0.1.0": crate::wit::platform::tensoras::platform::ai,
                "tensoras:platform/kv@0.1.0": crate::wit::platform::tensoras::platform::kv,
                "tensoras:platform/files@0.1.0": crate::wit::platform::tensoras::platform::files,
                "tensoras:platform/retrieval@0.1.0": crate::wit::platform::tensoras::platform::retrieval,
            },
        });
    }

    /// Bindings for the `chat-function` world (exports `tensoras:platform/handler`).
    pub mod chat_function {
        wit_bindgen::generate!({
            path: "../wit",
            world: "tensoras:platform/chat-function",
            features: ["clocks-timezone"],
            pub_export_macro: true,
            export_macro_name: "export_chat_function",
            default_bindings_module: "$crate::wit::chat_function",
            with: {
                "tensoras:platform/ai@0.1.0": crate::wit::platform::tensoras::platform::ai,
                "tensoras:platform/kv@0.1.0": crate::wit::platform::tensoras::platform::kv,
                "tensoras:platform/files@0.1.0": crate::wit::platform::tensoras::platform::files,
                "tensoras:platform/retrieval@0.1.0": crate::wit::platform::tensoras::platform::retrieval,
            },
        });
    }

    /// Bindings for the `http-function` world (`wasi:http/proxy@0.2.12`).
    pub mod http_function {
        wit_bindgen::generate!({
            path: "../wit",
            world: "tensoras:platform/http-function",
            features: ["clocks-timezone"],
            pub_export_macro: true,
            export_macro_name: "export_http_function",
            default_bindings_module: "$crate::wit::http_function",
            with: {
                "tensoras:platform/ai@0.1.0": crate::wit::platform::tensoras::platform::ai,
                "tensoras:platform/kv@0.1.0": crate::wit::platform::tensoras::platform::kv,
                "tensoras:platform/files@0.1.0": crate::wit::platform::tensoras::platform::files,
                "tensoras:platform/retrieval@0.1.0": crate::wit::platform::tensoras::platform::retrieval,
            },
            generate_all,
        });
    }
}

/// Compiles the README's examples as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
