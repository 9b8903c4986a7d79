//! `tools`, `tool_choice`, `parallel_tool_calls` and `response_format`:
//! parsing and validation into what the decode loop must enforce.
//!
//! Everything here is checked before any model work; every error is a 400
//! naming the parameter at fault. Whether a schema can be enforced at all
//! is only known once the grammar engine compiles it (`lib.rs`), which
//! reports on the same parameter paths ([`ToolDef::param`],
//! [`ResponseFormat::param`]).

use handler_common::ApiError;
use handler_common::fields::{Body, type_error};
use serde_json::{Map, Value, json};

/// Most tools one request may list, as OpenAI allows.
pub const MAX_TOOLS: usize = 128;

/// Tool type of a deployed tool function the server runs itself (a
/// Tensoras extension; see docs/design/005-tool-calling.md).
pub const SERVER_TOOL_TYPE: &str = "tensoras_function";

/// One tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// Function name (`^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    /// What it does, for the prompt.
    pub description: Option<String>,
    /// JSON schema of the arguments object.
    pub parameters: Value,
    /// `strict`: schema features the grammar cannot enforce are an error
    /// rather than ignored.
    pub strict: bool,
    /// Run by the server (a deployed tool function) rather than returned
    /// to the client.
    pub server: bool,
    /// Position in `tools`, for error params.
    pub position: usize,
}

impl ToolDef {
    /// The `param` of errors about this tool's schema.
    pub fn param(&self) -> String {
        if self.server {
            format!("tools.[{}].{SERVER_TOOL_TYPE}.name", self.position)
        } else {
            format!("tools.[{}].function.parameters", self.position)
        }
    }

    /// The tool as an OpenAI function tool (what chat templates expect).
    pub fn as_openai(&self) -> Value {
        let mut function = Map::new();
        function.insert("name".into(), json!(self.name));
        if let Some(d) = &self.description {
            function.insert("description".into(), json!(d));
        }
        function.insert("parameters".into(), self.parameters.clone());
        json!({"type": "function", "function": function})
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides between text and calls.
    Auto,
    /// No calls.
    None,
    /// At least one call.
    Required,
    /// A call to this function.
    Named(String),
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against `schema`.
    JsonSchema {
        /// `json_schema.name`.
        name: String,
        /// `json_schema.schema`.
        schema: Value,
        /// `json_schema.strict`.
        strict: bool,
    },
}

impl ResponseFormat {
    /// The `param` of errors about the schema.
    pub fn param() -> &'static str {
        "response_format.json_schema.schema"
    }
}

/// What a chat request allows the model to produce besides text.
#[derive(Debug, Clone, PartialEq)]
pub struct Tooling {
    /// The tools, client-side and server-side.
    pub tools: Vec<ToolDef>,
    /// `tool_choice` (`auto` when tools are given and it is not).
    pub choice: ToolChoice,
    /// `parallel_tool_calls` (default true).
    pub parallel: bool,
    /// `response_format`.
    pub format: ResponseFormat,
}

impl Tooling {
    /// No tools, free text.
    pub fn none() -> Self {
        Self { tools: Vec::new(), choice: ToolChoice::None, parallel: true, format: ResponseFormat::Text }
    }

    /// Whether the model may call tools in this request.
    pub fn calls_allowed(&self) -> bool {
        !self.tools.is_empty() && self.choice != ToolChoice::None
    }

    /// The tool named `name`.
    pub fn tool(&self, name: &str) -> Option<&ToolDef> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Server tool names and the schema each deployed tool describes; looked
/// up on the host only when a request names one.
pub trait ServerTools {
    /// `(description, parameters schema)` of a deployed tool.
    fn describe(&mut self, name: &str) -> Option<(String, Value)>;
}

/// Parses the tool and format fields of a chat body.
pub fn parse(body: Body<'_>, server: &mut dyn ServerTools) -> Result<Tooling, ApiError> {
    let tools = parse_tools(body, server)?;
    let choice = parse_choice(body, &tools)?;
    let parallel = match body.opt_bool("parallel_tool_calls")? {
        Some(_) if tools.is_empty() => {
            return Err(ApiError::invalid(
                "parallel_tool_calls",
                "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified.",
            ));
        }
        Some(p) => p,
        None => true,
    };
    let format = parse_response_format(body)?;
    Ok(Tooling { tools, choice, parallel, format })
}

/// Whether `name` is a valid function name.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_tools(body: Body<'_>, server: &mut dyn ServerTools) -> Result<Vec<ToolDef>, ApiError> {
    let items = match body.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(type_error("tools", "an array", other)),
    };
    if items.len() > MAX_TOOLS {
        return Err(ApiError::invalid(
            "tools",
            format!(
                "Invalid 'tools': array too long. Expected an array with maximum length {MAX_TOOLS}, but got an array with length {} instead.",
                items.len()
            ),
        ));
    }
    let mut tools: Vec<ToolDef> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let tool = parse_tool(i, item, server)?;
        if tools.iter().any(|t| t.name == tool.name) {
            return Err(ApiError::invalid(
                format!("tools.[{i}]"),
                format!("Invalid 'tools': duplicate function name '{}'. Tool names must be unique.", tool.name),
            ));
        }
        tools.push(tool);
    }
    Ok(tools)
}

fn parse_tool(i: usize, item: &Value, server: &mut dyn ServerTools) -> Result<ToolDef, ApiError> {
    let at = format!("tools.[{i}]");
    let Value::Object(obj) = item else {
        return Err(type_error(&at, "an object", item));
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(format!("{at}.type"), format!("Missing required parameter: '{at}.type'.")));
        }
        Some(other) => return Err(type_error(&format!("{at}.type"), "a string", other)),
    };
    if kind != "function" && kind != SERVER_TOOL_TYPE {
        return Err(ApiError::invalid(
            format!("{at}.type"),
            format!("Invalid value: '{kind}'. Supported values are: 'function' and '{SERVER_TOOL_TYPE}'."),
        ));
    }
    let fat = format!("{at}.{kind}");
    let function = match obj.get(kind) {
        Some(Value::Object(f)) => f,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(fat.clone(), format!("Missing required parameter: '{fat}'.")));
        }
        Some(other) => return Err(type_error(&fat, "an object", other)),
    };
    let name = match function.get("name") {
        Some(Value::String(n)) => n.clone(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(format!("{fat}.name"), format!("Missing required parameter: '{fat}.name'.")));
        }
        Some(other) => return Err(type_error(&format!("{fat}.name"), "a string", other)),
    };
    if !valid_name(&name) {
        return Err(ApiError::invalid(
            format!("{fat}.name"),
            format!(
                "Invalid '{fat}.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
            ),
        ));
    }
    if kind == SERVER_TOOL_TYPE {
        let Some((description, parameters)) = server.describe(&name) else {
            return Err(ApiError::invalid(
                format!("{fat}.name"),
                format!("Invalid '{fat}.name': no tool function named '{name}' is deployed for this key."),
            ));
        };
        return Ok(ToolDef {
            name,
            description: Some(description).filter(|d| !d.is_empty()),
            parameters,
            strict: false,
            server: true,
            position: i,
        });
    }
    let description = match function.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(other) => {
            return Err(type_error(&format!("{fat}.description"), "a string", other));
        }
    };
    let parameters = match function.get("parameters") {
        // OpenAI: omitting `parameters` defines a function with an empty
        // parameter list.
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(other) => {
            return Err(type_error(&format!("{fat}.parameters"), "an object", other));
        }
    };
    let strict = match function.get("strict") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(type_error(&format!("{fat}.strict"), "a boolean", other)),
    };
    check_schema_numbers(&parameters, &format!("{fat}.parameters"), &format!("function '{name}'"))?;
    Ok(ToolDef { name, description, parameters, strict, server: false, position: i })
}

/// The smallest number a schema's bounds and constants may hold: -2^63 + 1024, the
/// first `f64` above -2^63. The grammar compiler (llguidance 1.9) reads integer bounds
/// and constants as `f64`, saturates them to `i64`, and negates them to build the regex
/// of a negative range; at `i64::MIN` the negation overflows into itself and it recurses
/// until the stack overflows (`{"const": -9223372036854775808}`, found by fuzzing): the
/// guest traps and the client gets a 500. Refused here as a 400 instead.
const MIN_SCHEMA_NUMBER: f64 = -9_223_372_036_854_774_784.0;

/// Refuses bounds and constants below [`MIN_SCHEMA_NUMBER`] anywhere in `schema`, and
/// inside constant arrays and objects (whose numbers are compiled as constants too).
/// Nesting is bounded by serde_json's recursion limit on the request body.
fn check_schema_numbers(schema: &Value, param: &str, what: &str) -> Result<(), ApiError> {
    fn any_too_small(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.as_f64().is_some_and(|x| x < MIN_SCHEMA_NUMBER),
            Value::Array(items) => items.iter().any(any_too_small),
            Value::Object(map) => map.values().any(any_too_small),
            _ => false,
        }
    }
    const BOUNDS: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                let constant = key == "const" || key == "enum";
                let bound = BOUNDS.contains(&key.as_str());
                if (constant || bound) && any_too_small(value) {
                    return Err(ApiError::invalid(
                        param,
                        format!(
                            "Invalid schema for {what}: '{key}' holds a number below -9223372036854774784, the smallest this server supports."
                        ),
                    ));
                }
                check_schema_numbers(value, param, what)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| check_schema_numbers(v, param, what)),
        _ => Ok(()),
    }
}

fn parse_choice(body: Body<'_>, tools: &[ToolDef]) -> Result<ToolChoice, ApiError> {
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => {
            return Ok(if tools.is_empty() { ToolChoice::None } else { ToolChoice::Auto });
        }
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."),
                ));
            }
        },
        Some(Value::Object(obj)) => {
            match obj.get("type") {
                Some(Value::String(t)) if t == "function" => {}
                _ => {
                    return Err(ApiError::invalid(
                        "tool_choice.type",
                        "Invalid value for 'tool_choice.type': expected 'function'.",
                    ));
                }
            }
            let name = obj.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid("tool_choice.function.name", "Missing required parameter: 'tool_choice.function.name'.")
            })?;
            ToolChoice::Named(name.to_owned())
        }
        Some(other) => return Err(type_error("tool_choice", "a string or object", other)),
    };
    if tools.is_empty() {
        return Err(ApiError::invalid(
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ));
    }
    if let ToolChoice::Named(name) = &choice
        && !tools.iter().any(|t| &t.name == name)
    {
        return Err(ApiError::invalid(
            "tool_choice",
            format!("Invalid value for 'tool_choice': no function named '{name}' was specified in the 'tools' parameter."),
        ));
    }
    Ok(choice)
}

fn parse_response_format(body: Body<'_>) -> Result<ResponseFormat, ApiError> {
    let obj = match body.get("response_format") {
        None | Some(Value::Null) => return Ok(ResponseFormat::Text),
        Some(Value::Object(obj)) => obj,
        Some(other) => return Err(type_error("response_format", "an object", other)),
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("response_format.type", "Missing required parameter: 'response_format.type'."));
        }
        Some(other) => return Err(type_error("response_format.type", "a string", other)),
    };
    match kind {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let spec = match obj.get("json_schema") {
                Some(Value::Object(spec)) => spec,
                None | Some(Value::Null) => {
                    return Err(ApiError::invalid(
                        "response_format.json_schema",
                        "Missing required parameter: 'response_format.json_schema'.",
                    ));
                }
                Some(other) => {
                    return Err(type_error("response_format.json_schema", "an object", other));
                }
            };
            let name = match spec.get("name") {
                Some(Value::String(n)) if valid_name(n) => n.clone(),
                Some(Value::String(_)) => {
                    return Err(ApiError::invalid(
                        "response_format.json_schema.name",
                        "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
                    ));
                }
                None | Some(Value::Null) => {
                    return Err(ApiError::invalid(
                        "response_format.json_schema.name",
                        "Missing required parameter: 'response_format.json_schema.name'.",
                    ));
                }
                Some(other) => {
                    return Err(type_error("response_format.json_schema.name", "a string", other));
                }
            };
            let schema = match spec.get("schema") {
                // No schema: any JSON object, as with json_object.
                None | Some(Value::Null) => json!({"type": "object"}),
                Some(s @ Value::Object(_)) => s.clone(),
                Some(other) => return Err(type_error(ResponseFormat::param(), "an object", other)),
            };
            let strict = match spec.get("strict") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(type_error("response_format.json_schema.strict", "a boolean", other));
                }
            };
            check_schema_numbers(&schema, ResponseFormat::param(), &format!("response_format '{name}'"))?;
            Ok(ResponseFormat::JsonSchema { name, schema, strict })
        }
        other => Err(ApiError::invalid(
            "response_format.type",
            format!("Invalid value: '{other}'. Supported values are: 'text', 'json_object', and 'json_schema'."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handler_common::fields::parse_object;

    struct Deployed;
    impl ServerTools for Deployed {
        fn describe(&mut self, name: &str) -> Option<(String, Value)> {
            (name == "calc")
                .then(|| ("Evaluates".to_owned(), json!({"type": "object", "properties": {"expression": {"type": "string"}}})))
        }
    }

    fn tooling(body: Value) -> Result<Tooling, ApiError> {
        let map = parse_object(&body.to_string()).unwrap();
        parse(Body(&map), &mut Deployed)
    }

    fn param_of(body: Value) -> String {
        let err = tooling(body).expect_err("expected an error");
        assert_eq!(err.status, 400);
        err.param.expect("param set")
    }

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    }

    #[test]
    fn defaults() {
        let t = tooling(json!({})).unwrap();
        assert!(t.tools.is_empty() && !t.calls_allowed());
        assert_eq!(t.format, ResponseFormat::Text);
        let t = tooling(json!({"tools": [weather()]})).unwrap();
        assert_eq!(t.choice, ToolChoice::Auto);
        assert!(t.parallel && t.calls_allowed());
    }

    #[test]
    fn choices_and_server_tools() {
        let t = tooling(json!({
            "tools": [weather(), {"type": "tensoras_function", "tensoras_function": {"name": "calc"}}],
            "tool_choice": {"type": "function", "function": {"name": "calc"}},
            "parallel_tool_calls": false
        }))
        .unwrap();
        assert_eq!(t.choice, ToolChoice::Named("calc".into()));
        assert!(!t.parallel);
        let calc = t.tool("calc").unwrap();
        assert!(calc.server);
        assert_eq!(calc.as_openai()["function"]["description"], "Evaluates");
        let t =
            tooling(json!({"tools": [{"type": "function", "function": {"name": "now"}}], "tool_choice": "required"})).unwrap();
        assert_eq!(t.tools[0].parameters["type"], "object");
        assert_eq!(t.choice, ToolChoice::Required);
    }

    #[test]
    fn errors_name_the_param() {
        assert_eq!(param_of(json!({"tools": {}})), "tools");
        assert_eq!(param_of(json!({"tools": [{"type": "function"}]})), "tools.[0].function");
        assert_eq!(param_of(json!({"tools": [{"type": "retrieval"}]})), "tools.[0].type");
        assert_eq!(
            param_of(json!({"tools": [{"type": "function", "function": {"name": "bad name"}}]})),
            "tools.[0].function.name"
        );
        assert_eq!(
            param_of(json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]})),
            "tools.[0].function.parameters"
        );
        assert_eq!(param_of(json!({"tools": [weather(), weather()]})), "tools.[1]");
        assert_eq!(
            param_of(json!({"tools": [{"type": "tensoras_function", "tensoras_function": {"name": "nope"}}]})),
            "tools.[0].tensoras_function.name"
        );
        let many: Vec<Value> = (0..129).map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}})).collect();
        assert_eq!(param_of(json!({"tools": many})), "tools");
        assert_eq!(param_of(json!({"tool_choice": "auto"})), "tool_choice");
        assert_eq!(param_of(json!({"parallel_tool_calls": true})), "parallel_tool_calls");
        assert_eq!(param_of(json!({"tools": [weather()], "tool_choice": "sometimes"})), "tool_choice");
        assert_eq!(
            param_of(json!({"tools": [weather()], "tool_choice": {"type": "function", "function": {"name": "other"}}})),
            "tool_choice"
        );
        assert_eq!(param_of(json!({"response_format": "json"})), "response_format");
        assert_eq!(param_of(json!({"response_format": {"type": "xml"}})), "response_format.type");
        assert_eq!(param_of(json!({"response_format": {"type": "json_schema"}})), "response_format.json_schema");
        assert_eq!(
            param_of(json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}})),
            "response_format.json_schema.name"
        );
        assert_eq!(
            param_of(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}})),
            "response_format.json_schema.schema"
        );
    }

    #[test]
    fn response_formats() {
        let t = tooling(json!({"response_format": {"type": "json_object"}})).unwrap();
        assert_eq!(t.format, ResponseFormat::JsonObject);
        let t = tooling(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}, "strict": true}}})).unwrap();
        assert!(matches!(t.format, ResponseFormat::JsonSchema { strict: true, .. }));
    }
}
