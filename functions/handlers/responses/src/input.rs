//! A Responses request (`POST /v1/responses`) as the chat completion chat-core
//! generates: `input` items become messages (`function_call` items an
//! assistant's tool calls, `function_call_output` items tool messages),
//! `instructions` a system message first, `text.format` the response format,
//! `max_output_tokens` the completion limit; function tools are flattened the
//! other way round. The host has already put a `previous_response_id`'s
//! conversation in front of `input`.

use chat_core::grounding::Retrieval;
use handler_common::ApiError;
use handler_common::fields::type_error;
use serde_json::{Map, Value, json};

/// Fields of the Responses request this handler reads (others are a 400, as
/// OpenAI answers an unknown parameter).
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "stream",
    "store",
    "metadata",
    "previous_response_id",
    "user",
    "seed",
    "truncation",
    "reasoning",
    "include",
    "stream_options",
];

/// The chat completion to run, and what the response repeats of the request.
pub struct Converted {
    /// The chat completions body.
    pub chat: Value,
    /// Request fields the Response object echoes.
    pub echo: Map<String, Value>,
    /// The knowledge-base search of a `file_search` tool, unless `tool_choice` is `none`.
    pub file_search: Option<Retrieval>,
    /// Whether `include` asks for `file_search_call.results`.
    pub include_results: bool,
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(param, message)
}

/// Converts the request `body`.
pub fn convert(body: &Map<String, Value>, stream: bool) -> Result<Converted, ApiError> {
    if let Some(unknown) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(unknown, format!("Unknown parameter: '{unknown}'.")).with_code("unknown_parameter"));
    }
    if let Some(r) = body.get("reasoning").filter(|r| !r.is_null() && r.as_object().is_none_or(|o| !o.is_empty())) {
        return Err(invalid("reasoning", format!("'reasoning' is not supported with this model (it does not reason): {r}"))
            .with_code("unsupported_parameter"));
    }
    let mut messages = Vec::new();
    if let Some(instructions) = body.get("instructions").filter(|v| !v.is_null()) {
        let text = instructions.as_str().ok_or_else(|| type_error("instructions", "a string", instructions))?;
        messages.push(json!({"role": "system", "content": text}));
    }
    match body.get("input") {
        None | Some(Value::Null) => return Err(invalid("input", "Missing required parameter: 'input'.")),
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => items_to_messages(items, &mut messages)?,
        Some(other) => return Err(type_error("input", "a string or an array of input items", other)),
    }
    if messages.iter().all(|m| m["role"] == "system") {
        return Err(invalid("input", "'input' must hold at least one message or item."));
    }

    let mut chat = Map::new();
    chat.insert("model".into(), body.get("model").cloned().unwrap_or(Value::Null));
    chat.insert("messages".into(), Value::Array(messages));
    for (from, to) in [("max_output_tokens", "max_completion_tokens"), ("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), v.clone());
        }
    }
    for key in ["parallel_tool_calls", "user", "seed"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v.clone());
        }
    }
    let tools = match body.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools.clone(),
        Some(other) => return Err(type_error("tools", "an array", other)),
    };
    let mut functions = Vec::new();
    let mut file_search = None;
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        if tool.get("type").and_then(Value::as_str) != Some("file_search") {
            functions.push(chat_tool(tool, &param)?);
        } else if file_search.is_some() {
            return Err(invalid(&format!("{param}.type"), "Only one 'file_search' tool may be given."));
        } else {
            file_search = Some(crate::file_search::parse(tool, &param)?);
        }
    }
    let choice = body.get("tool_choice").filter(|v| !v.is_null());
    let searching = match choice {
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("file_search") => {
            if file_search.is_none() {
                return Err(invalid("tool_choice", "'tool_choice' is file_search, but no 'file_search' tool is given."));
            }
            true
        }
        Some(Value::String(s)) if s == "none" => false,
        _ => true,
    };
    let chat_choice = choice.map(tool_choice).transpose()?.flatten();
    // With the file search as the only tool, auto, required and none are about the search.
    let about_search = functions.is_empty() && file_search.is_some() && chat_choice.as_ref().is_some_and(Value::is_string);
    if !functions.is_empty() {
        chat.insert("tools".into(), Value::Array(functions));
    }
    if let Some(choice) = chat_choice.filter(|_| !about_search) {
        chat.insert("tool_choice".into(), choice);
    }
    let format = match body.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::Object(text)) => text.get("format").filter(|f| !f.is_null()).cloned(),
        Some(other) => return Err(type_error("text", "an object", other)),
    };
    if let Some(format) = &format {
        chat.insert("response_format".into(), response_format(format)?);
    }
    if stream {
        chat.insert("stream".into(), Value::Bool(true));
        // The final event carries the usage.
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }

    let mut echo = Map::new();
    echo.insert("instructions".into(), body.get("instructions").cloned().unwrap_or(Value::Null));
    echo.insert("max_output_tokens".into(), body.get("max_output_tokens").cloned().unwrap_or(Value::Null));
    echo.insert("parallel_tool_calls".into(), body.get("parallel_tool_calls").cloned().unwrap_or(Value::Bool(true)));
    echo.insert("previous_response_id".into(), body.get("previous_response_id").cloned().unwrap_or(Value::Null));
    echo.insert("store".into(), body.get("store").cloned().filter(|v| !v.is_null()).unwrap_or(Value::Bool(true)));
    echo.insert("temperature".into(), body.get("temperature").cloned().filter(|v| !v.is_null()).unwrap_or(json!(1.0)));
    echo.insert("top_p".into(), body.get("top_p").cloned().filter(|v| !v.is_null()).unwrap_or(json!(1.0)));
    echo.insert("tool_choice".into(), body.get("tool_choice").cloned().filter(|v| !v.is_null()).unwrap_or(json!("auto")));
    echo.insert("tools".into(), Value::Array(tools));
    echo.insert("text".into(), json!({"format": format.unwrap_or_else(|| json!({"type": "text"}))}));
    echo.insert("truncation".into(), body.get("truncation").cloned().filter(|v| !v.is_null()).unwrap_or(json!("disabled")));
    echo.insert("metadata".into(), body.get("metadata").cloned().filter(|v| !v.is_null()).unwrap_or(json!({})));
    echo.insert("user".into(), body.get("user").cloned().unwrap_or(Value::Null));
    Ok(Converted {
        chat: Value::Object(chat),
        echo,
        file_search: file_search.filter(|_| searching),
        include_results: includes(body.get("include"))?.contains(&"file_search_call.results"),
    })
}

/// The `include` list (output data added on request); of OpenAI's values only
/// `file_search_call.results` has something to add here, the rest are accepted
/// and add nothing.
fn includes(include: Option<&Value>) -> Result<Vec<&str>, ApiError> {
    match include {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(values)) => values
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_str().ok_or_else(|| type_error(&format!("include[{i}]"), "a string", v)))
            .collect(),
        Some(other) => Err(type_error("include", "an array of strings", other)),
    }
}

/// The text of a message's `content`: a string, or `input_text` /
/// `output_text` parts joined.
fn content_text(content: &Value, param: &str) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
                match (kind, part.get("text").and_then(Value::as_str)) {
                    ("input_text" | "output_text" | "text", Some(t)) => text.push_str(t),
                    _ => {
                        return Err(invalid(
                            &format!("{param}[{j}]"),
                            format!("Content parts of type '{kind}' are not supported: only input_text and output_text."),
                        ));
                    }
                }
            }
            Ok(text)
        }
        other => Err(type_error(param, "a string or an array of content parts", other)),
    }
}

fn str_field<'a>(item: &'a Value, key: &str, param: &str) -> Result<&'a str, ApiError> {
    match item.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(type_error(&format!("{param}.{key}"), "a string", other)),
        None => Err(invalid(&format!("{param}.{key}"), format!("Missing required parameter: '{param}.{key}'."))),
    }
}

/// Input items as chat messages: consecutive `function_call` items are one
/// assistant message's tool calls.
fn items_to_messages(items: &[Value], messages: &mut Vec<Value>) -> Result<(), ApiError> {
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let Some(obj) = item.as_object() else { return Err(type_error(&param, "an object", item)) };
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role = str_field(item, "role", &param)?;
                let role = match role {
                    "user" | "assistant" | "system" => role,
                    "developer" => "system",
                    _ => {
                        return Err(invalid(
                            &format!("{param}.role"),
                            format!("'{role}' is not a role: user, assistant, system or developer."),
                        ));
                    }
                };
                let content = obj.get("content").ok_or_else(|| invalid(&format!("{param}.content"), "Missing 'content'."))?;
                messages.push(json!({"role": role, "content": content_text(content, &format!("{param}.content"))?}));
            }
            "function_call" => {
                let call = json!({
                    "id": str_field(item, "call_id", &param)?,
                    "type": "function",
                    "function": {"name": str_field(item, "name", &param)?, "arguments": str_field(item, "arguments", &param)?},
                });
                let extends = messages.last().is_some_and(|m| m["role"] == "assistant" && m.get("tool_calls").is_some());
                match messages.last_mut() {
                    Some(last) if extends => {
                        if let Some(Value::Array(calls)) = last.get_mut("tool_calls") {
                            calls.push(call);
                        }
                    }
                    _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" => {
                let output = match obj.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ Value::Array(_)) => content_text(v, &format!("{param}.output"))?,
                    Some(other) => return Err(type_error(&format!("{param}.output"), "a string", other)),
                    None => return Err(invalid(&format!("{param}.output"), "Missing 'output'.")),
                };
                messages.push(json!({"role": "tool", "tool_call_id": str_field(item, "call_id", &param)?, "content": output}));
            }
            // What a reasoning model thought, and an earlier search (its
            // answer follows it): not part of the next prompt.
            "reasoning" | "file_search_call" => {}
            other => {
                return Err(invalid(
                    &format!("{param}.type"),
                    format!("Input items of type '{other}' are not supported: message, function_call, function_call_output."),
                ));
            }
        }
    }
    Ok(())
}

/// A Responses function tool (`{type, name, description, parameters, strict}`)
/// in the chat shape.
fn chat_tool(tool: &Value, param: &str) -> Result<Value, ApiError> {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != "function" {
        return Err(invalid(
            &format!("{param}.type"),
            format!("Tools of type '{kind}' are not supported here: 'function' and 'file_search' tools only."),
        ));
    }
    let mut function = Map::new();
    function.insert("name".into(), Value::String(str_field(tool, "name", param)?.to_owned()));
    for key in ["description", "parameters", "strict"] {
        if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
            function.insert(key.into(), v.clone());
        }
    }
    Ok(json!({"type": "function", "function": function}))
}

/// `tool_choice` for the function tools (none when it picks the file search).
fn tool_choice(choice: &Value) -> Result<Option<Value>, ApiError> {
    match choice {
        Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => Ok(Some(choice.clone())),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = str_field(choice, "name", "tool_choice")?;
            Ok(Some(json!({"type": "function", "function": {"name": name}})))
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("file_search") => Ok(None),
        other => Err(invalid(
            "tool_choice",
            format!(
                "'tool_choice' must be auto, none, required, {{type: function, name}} or {{type: file_search}}, not {other}."
            ),
        )),
    }
}

/// `text.format` as a chat `response_format`: `text`, `json_object`, or
/// `json_schema` with its fields flattened (`{type, name, schema, strict}`).
fn response_format(format: &Value) -> Result<Value, ApiError> {
    let kind = format.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" | "json_object" => Ok(json!({"type": kind})),
        "json_schema" => {
            let mut schema = Map::new();
            schema.insert("name".into(), Value::String(str_field(format, "name", "text.format")?.to_owned()));
            for key in ["schema", "strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => Err(invalid(
            "text.format.type",
            format!("'text.format.type' must be text, json_object or json_schema, not '{kind}'."),
        )),
    }
}

/// A chat-core error named for the Responses field that carried it.
pub fn rename_param(mut e: ApiError) -> ApiError {
    let renamed = e.param.as_deref().and_then(|param| {
        if param == "max_completion_tokens" || param == "max_tokens" {
            return Some("max_output_tokens".to_owned());
        }
        if let Some(rest) = param.strip_prefix("response_format") {
            return Some(format!("text.format{}", rest.replacen(".json_schema", "", 1)));
        }
        if param == "messages" || param.starts_with("messages[") {
            return Some("input".to_owned());
        }
        param.strip_prefix("tools[").map(|rest| format!("tools[{}", rest.replacen(".function", "", 1)))
    });
    if renamed.is_some() {
        e.param = renamed;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn items_become_messages_and_fields_map_to_the_chat_shape() {
        let body = obj(json!({
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather "}, {"type": "input_text", "text": "in Paris?"}]},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": "{\"city\":\"Lyon\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "message", "role": "developer", "content": "Answer in French."}
            ],
            "max_output_tokens": 20,
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}}
        }));
        let c = convert(&body, true).unwrap();
        let m = &c.chat["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[1]["content"], "Weather in Paris?");
        assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}));
        assert_eq!(m[4]["role"], "system");
        assert_eq!(c.chat["max_completion_tokens"], 20);
        assert_eq!(c.chat["tools"][0]["function"]["name"], "weather");
        assert_eq!(c.chat["tool_choice"]["function"]["name"], "weather");
        assert_eq!(c.chat["response_format"]["json_schema"]["name"], "w");
        assert_eq!(c.chat["stream_options"]["include_usage"], true);
        assert_eq!(c.echo["store"], true);
    }

    #[test]
    fn what_cannot_be_served_is_a_400_naming_the_field() {
        let refused = |v: Value| convert(&obj(v), false).err().unwrap().param.unwrap();
        assert_eq!(refused(json!({"model": "m", "input": "hi", "bogus": 1})), "bogus");
        assert_eq!(refused(json!({"model": "m"})), "input");
        assert_eq!(refused(json!({"model": "m", "input": [{"type": "input_image"}]})), "input[0].type");
        assert_eq!(refused(json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})), "tools[0].type");
        assert_eq!(refused(json!({"model": "m", "input": "hi", "reasoning": {"effort": "high"}})), "reasoning");
        assert_eq!(refused(json!({"model": "m", "input": "hi", "text": {"format": {"type": "xml"}}})), "text.format.type");
    }

    #[test]
    fn a_file_search_tool_is_a_search_not_a_chat_tool() {
        let fs = json!({"type": "file_search", "vector_store_ids": ["kb_a"]});
        let weather = json!({"type": "function", "name": "weather", "parameters": {"type": "object"}});
        let with = |extra: Value| {
            let mut body = json!({"model": "m", "input": [
                {"role": "user", "content": "Earlier?"},
                {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["Earlier?"], "results": null},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Yes [1].",
                    "annotations": [{"type": "file_citation", "file_id": "file-a", "filename": "a.txt", "index": 4}]}]},
                {"role": "user", "content": "And now?"}]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            convert(&obj(body), false).unwrap()
        };
        let c = with(json!({"tools": [fs.clone(), weather], "tool_choice": "required", "include": ["file_search_call.results"]}));
        assert_eq!(c.file_search.as_ref().unwrap().knowledge_bases, ["kb_a"]);
        assert!(c.include_results);
        assert_eq!(c.chat["tools"].as_array().unwrap().len(), 1);
        assert_eq!(c.chat["tool_choice"], "required");
        assert_eq!(c.chat["messages"].as_array().unwrap().len(), 3, "the earlier search is not a message");
        assert_eq!(c.chat["messages"][1]["content"], "Yes [1].");

        let only = with(json!({"tools": [fs.clone()], "tool_choice": "required"}));
        assert!(only.file_search.is_some() && !only.include_results);
        assert!(only.chat.get("tools").is_none() && only.chat.get("tool_choice").is_none());
        assert!(with(json!({"tools": [fs.clone()], "tool_choice": {"type": "file_search"}})).file_search.is_some());
        assert!(with(json!({"tools": [fs.clone()], "tool_choice": "none"})).file_search.is_none());

        let refused = |v: Value| convert(&obj(v), false).err().unwrap().param.unwrap();
        assert_eq!(refused(json!({"model": "m", "input": "hi", "tools": [fs.clone(), fs]})), "tools[1].type");
        assert_eq!(refused(json!({"model": "m", "input": "hi", "tool_choice": {"type": "file_search"}})), "tool_choice");
        assert_eq!(refused(json!({"model": "m", "input": "hi", "include": "all"})), "include");
    }

    #[test]
    fn chat_params_are_renamed_for_the_responses_request() {
        let e = rename_param(ApiError::invalid("max_completion_tokens", "x"));
        assert_eq!(e.param.as_deref(), Some("max_output_tokens"));
        let e = rename_param(ApiError::invalid("response_format.json_schema.schema", "x"));
        assert_eq!(e.param.as_deref(), Some("text.format.schema"));
    }
}
