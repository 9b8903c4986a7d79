//! Tool functions: the `tensoras:platform/tool` interface as a Rust trait.
//!
//! The host hands a tool its arguments as JSON text and feeds the returned text
//! back to the model. This module does the JSON plumbing so a tool works with
//! [`serde_json::Value`] on both sides.

use serde_json::Value;
use std::fmt;

use crate::wit::tool_function::exports::tensoras::platform::tool as raw;

/// What a tool tells the host (and through it the model) about itself.
///
/// A deploy manifest may override every field.
///
/// ```no_run
/// use tensoras_guest::ToolInfo;
/// use tensoras_guest::serde_json::json;
///
/// let info = ToolInfo::new(
///     "echo",
///     "Returns its input",
///     json!({"type": "object", "properties": {"text": {"type": "string"}}}),
/// );
/// assert_eq!(info.name, "echo");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    /// Tool name as the model sees it (`^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    /// What the tool does, shown to the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

impl ToolInfo {
    /// Builds a [`ToolInfo`] from its three parts.
    ///
    /// ```no_run
    /// # use tensoras_guest::{ToolInfo, serde_json::json};
    /// let info = ToolInfo::new("noop", "Does nothing", json!({"type": "object"}));
    /// ```
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        ToolInfo { name: name.into(), description: description.into(), parameters }
    }
}

/// Why a tool call failed. It reaches the caller as data, never as a trap.
///
/// ```no_run
/// use tensoras_guest::ToolError;
///
/// let err = ToolError::InvalidArguments("`x` must be a number".into());
/// assert_eq!(err.to_string(), "invalid arguments: `x` must be a number");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The arguments did not parse or did not match the schema.
    InvalidArguments(String),
    /// The tool ran and failed.
    Failed(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::InvalidArguments(m) => write!(f, "invalid arguments: {m}"),
            ToolError::Failed(m) => write!(f, "tool failed: {m}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// A tool function. Implement it on a unit struct and export it with
/// [`export_tool!`](crate::export_tool).
///
/// Both methods are associated functions: a component instance serves one
/// request, so there is no state to carry in `self`.
///
/// ```no_run
/// use tensoras_guest::serde_json::{json, Value};
/// use tensoras_guest::{Tool, ToolError, ToolInfo};
///
/// struct Upper;
///
/// impl Tool for Upper {
///     fn info() -> ToolInfo {
///         ToolInfo::new("upper", "Upper-cases text", json!({
///             "type": "object",
///             "properties": {"text": {"type": "string"}},
///             "required": ["text"],
///         }))
///     }
///
///     fn call(args: Value) -> Result<Value, ToolError> {
///         let text = tensoras_guest::tool::required_str(&args, "text")?;
///         Ok(json!({"text": text.to_uppercase()}))
///     }
/// }
///
/// tensoras_guest::export_tool!(Upper);
/// ```
pub trait Tool {
    /// Describes the tool (name, description, JSON Schema of the arguments).
    fn info() -> ToolInfo;

    /// Runs the tool on the parsed arguments.
    ///
    /// The result is sent to the caller as JSON text, except that a
    /// [`Value::String`] is sent as the bare string (no quotes), which is what
    /// a model expects of a plain-text tool.
    fn call(args: Value) -> Result<Value, ToolError>;
}

/// Returns `args[key]` as a string, or [`ToolError::InvalidArguments`] saying
/// what is wrong (not an object, missing key, not a string).
///
/// ```no_run
/// # use tensoras_guest::serde_json::json;
/// let args = json!({"city": "Paris"});
/// assert_eq!(tensoras_guest::tool::required_str(&args, "city"), Ok("Paris"));
/// assert!(tensoras_guest::tool::required_str(&args, "country").is_err());
/// ```
pub fn required_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    let object = args.as_object().ok_or_else(|| ToolError::InvalidArguments("arguments must be a JSON object".into()))?;
    match object.get(key) {
        None | Some(Value::Null) => Err(ToolError::InvalidArguments(format!("missing required argument `{key}`"))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ToolError::InvalidArguments(format!("argument `{key}` must be a string"))),
    }
}

/// Glue behind [`export_tool!`](crate::export_tool): `describe`.
#[doc(hidden)]
pub fn __describe<T: Tool>() -> raw::ToolInfo {
    let info = T::info();
    raw::ToolInfo { name: info.name, description: info.description, parameters: info.parameters.to_string() }
}

/// Glue behind [`export_tool!`](crate::export_tool): `call`.
#[doc(hidden)]
pub fn __call<T: Tool>(arguments: String) -> Result<String, raw::ToolError> {
    let args: Value = serde_json::from_str(&arguments)
        .map_err(|e| raw::ToolError::InvalidArguments(format!("arguments are not valid JSON: {e}")))?;
    match T::call(args) {
        Ok(Value::String(text)) => Ok(text),
        Ok(value) => Ok(value.to_string()),
        Err(ToolError::InvalidArguments(m)) => Err(raw::ToolError::InvalidArguments(m)),
        Err(ToolError::Failed(m)) => Err(raw::ToolError::Failed(m)),
    }
}

/// Exports a [`Tool`] implementation as the component's
/// `tensoras:platform/tool@0.1.0` interface (world `tool-function`).
///
/// Invoke it once, at the crate root or in any module, with the type that
/// implements [`Tool`]. The crate must be a `cdylib` built for `wasm32-wasip2`.
///
/// ```no_run
/// # use tensoras_guest::{Tool, ToolError, ToolInfo, serde_json::{json, Value}};
/// struct Ping;
/// impl Tool for Ping {
///     fn info() -> ToolInfo { ToolInfo::new("ping", "Answers pong", json!({"type": "object"})) }
///     fn call(_: Value) -> Result<Value, ToolError> { Ok(json!("pong")) }
/// }
/// tensoras_guest::export_tool!(Ping);
/// ```
#[macro_export]
macro_rules! export_tool {
    ($tool:ty) => {
        const _: () = {
            // The generated export macro wants an identifier that implements
            // the raw `Guest` trait; this private adapter lets `$tool` be any
            // type path and keeps the raw bindings out of user code.
            struct __TensorasToolExport;

            impl $crate::wit::tool_function::exports::tensoras::platform::tool::Guest for __TensorasToolExport {
                fn describe() -> $crate::wit::tool_function::exports::tensoras::platform::tool::ToolInfo {
                    $crate::tool::__describe::<$tool>()
                }

                fn call(
                    arguments: ::std::string::String,
                ) -> ::std::result::Result<
                    ::std::string::String,
                    $crate::wit::tool_function::exports::tensoras::platform::tool::ToolError,
                > {
                    $crate::tool::__call::<$tool>(arguments)
                }
            }

            $crate::wit::tool_function::export_tool_function!(
                __TensorasToolExport with_types_in $crate::wit::tool_function
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Echo;

    impl Tool for Echo {
        fn info() -> ToolInfo {
            ToolInfo::new("echo", "Echoes", json!({"type": "object"}))
        }

        fn call(args: Value) -> Result<Value, ToolError> {
            match args.get("fail") {
                Some(_) => Err(ToolError::Failed("asked to".into())),
                None => Ok(args.get("value").cloned().unwrap_or(Value::Null)),
            }
        }
    }

    #[test]
    fn describe_serialises_the_schema() {
        let info = __describe::<Echo>();
        assert_eq!(info.name, "echo");
        assert_eq!(info.parameters, r#"{"type":"object"}"#);
    }

    #[test]
    fn call_converts_arguments_and_results() {
        assert!(matches!(__call::<Echo>("{not json".into()), Err(raw::ToolError::InvalidArguments(_))));
        assert_eq!(__call::<Echo>(r#"{"value":"plain"}"#.into()).ok(), Some("plain".into()));
        assert_eq!(__call::<Echo>(r#"{"value":{"a":1}}"#.into()).ok(), Some(r#"{"a":1}"#.into()));
        assert!(matches!(
            __call::<Echo>(r#"{"fail":1}"#.into()),
            Err(raw::ToolError::Failed(m)) if m == "asked to"
        ));
    }

    #[test]
    fn required_str_explains_what_is_wrong() {
        let args = json!({"n": 1});
        assert_eq!(required_str(&args, "n"), Err(ToolError::InvalidArguments("argument `n` must be a string".into())));
        assert_eq!(required_str(&args, "m"), Err(ToolError::InvalidArguments("missing required argument `m`".into())));
        assert!(required_str(&json!([1]), "n").is_err());
    }
}
