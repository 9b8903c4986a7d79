//! The conversation as the chat template gets it, tools included.
//!
//! A template that renders `tools` itself gets the tools and the messages
//! as they are. One that does not (SmolLM2's, plain ChatML) would drop
//! them silently, so for it the handler writes the generic tool prompt into
//! the system message, rewrites earlier tool calls as the text the model
//! writes for them, and shows each tool result as a user turn that names
//! the function and asks for an answer from it (a small model shown a bare
//! result tends to call the tool again instead). The call format is
//! [`CallFormat`]'s, the same one the grammar enforces.

use serde_json::Value;

use crate::calls::CallFormat;
use crate::request::Message;
use crate::tools::{ResponseFormat, Tooling};

/// What to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The messages for the template.
    pub messages: Vec<Message>,
    /// The `tools` the template renders itself (JSON text), if any.
    pub tools: Option<String>,
}

/// Builds the template input for one generation round.
pub fn build(messages: &[Message], tooling: &Tooling, template_tools: bool, format: &CallFormat) -> Prompt {
    let callable = tooling.calls_allowed();
    let mut instructions = Vec::new();
    if callable && !template_tools {
        instructions.push(format.generic_prompt(&tooling.tools));
    }
    // Small models follow a schema they can see far better than one they
    // can only bump into; the grammar enforces it either way.
    match &tooling.format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => instructions.push("Respond with a JSON object.".to_owned()),
        ResponseFormat::JsonSchema { schema, .. } => {
            instructions.push(format!("Respond with a JSON object that matches this JSON schema: {schema}"))
        }
    }

    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    // Tool names by call id, for showing results.
    let mut names: Vec<(String, String)> = Vec::new();
    for m in messages {
        if template_tools {
            out.push(m.clone());
            continue;
        }
        match m.role.as_str() {
            "assistant" if m.tool_calls.is_some() => {
                let json = m.tool_calls.as_deref().unwrap_or("[]");
                let parsed: Vec<Value> = serde_json::from_str(json).unwrap_or_default();
                for c in &parsed {
                    if let (Some(id), Some(name)) = (c["id"].as_str(), c["function"]["name"].as_str()) {
                        names.push((id.to_owned(), name.to_owned()));
                    }
                }
                let calls = written_calls(json, format);
                let content = if m.content.is_empty() { calls } else { format!("{}\n{calls}", m.content) };
                out.push(Message { content, tool_calls: None, ..m.clone() });
            }
            "tool" => {
                let name = names
                    .iter()
                    .find(|(id, _)| Some(id) == m.tool_call_id.as_ref())
                    .map_or("the function", |(_, name)| name.as_str());
                out.push(Message {
                    role: "user".to_owned(),
                    content: format!("The function {name} returned: {}\nUse this result to answer my question.", m.content),
                    tool_call_id: None,
                    tool_calls: None,
                });
            }
            _ => out.push(m.clone()),
        }
    }

    if !instructions.is_empty() {
        let text = instructions.join("\n\n");
        match out.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{text}", first.content);
            }
            _ => out.insert(0, Message { role: "system".to_owned(), content: text, tool_call_id: None, tool_calls: None }),
        }
    }

    let tools =
        (callable && template_tools).then(|| Value::Array(tooling.tools.iter().map(|t| t.as_openai()).collect()).to_string());
    Prompt { messages: out, tools }
}

/// An assistant message's `tool_calls` (OpenAI JSON) as the model writes
/// them.
fn written_calls(tool_calls: &str, format: &CallFormat) -> String {
    let calls: Vec<Value> = serde_json::from_str(tool_calls).unwrap_or_default();
    format.write_calls(calls.iter().map(|c| {
        let f = &c["function"];
        (f["name"].as_str().unwrap_or_default(), f["arguments"].as_str().unwrap_or("{}"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::HERMES;
    use crate::tools::{ToolChoice, ToolDef};
    use serde_json::json;

    fn msg(role: &str, content: &str) -> Message {
        Message { role: role.into(), content: content.into(), tool_call_id: None, tool_calls: None }
    }

    fn tooling(choice: ToolChoice) -> Tooling {
        Tooling {
            tools: vec![ToolDef {
                name: "calc".into(),
                description: Some("math".into()),
                parameters: json!({"type": "object"}),
                strict: false,
                server: false,
                position: 0,
            }],
            choice,
            parallel: true,
            format: ResponseFormat::Text,
        }
    }

    #[test]
    fn generic_prompt_and_history_for_plain_templates() {
        let history = vec![
            msg("user", "2+2?"),
            Message {
                tool_calls: Some(
                    json!([{"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "{\"e\": \"2+2\"}"}}])
                        .to_string(),
                ),
                ..msg("assistant", "")
            },
            Message { tool_call_id: Some("c1".into()), ..msg("tool", "4") },
        ];
        let p = build(&history, &tooling(ToolChoice::Auto), false, &HERMES);
        assert_eq!(p.tools, None);
        assert_eq!(p.messages[0].role, "system");
        assert!(p.messages[0].content.contains("\"name\":\"calc\""), "{}", p.messages[0].content);
        assert_eq!(p.messages[2].content, "<tool_call>\n{\"name\": \"calc\", \"arguments\": {\"e\": \"2+2\"}}\n</tool_call>");
        assert_eq!(p.messages[3].role, "user");
        assert_eq!(p.messages[3].content, "The function calc returned: 4\nUse this result to answer my question.");
    }

    #[test]
    fn templates_with_tools_get_them_untouched() {
        let history = vec![msg("system", "be brief"), msg("user", "hi")];
        let p = build(&history, &tooling(ToolChoice::Required), true, &HERMES);
        assert_eq!(p.messages, history);
        assert!(p.tools.unwrap().contains("calc"));
        let p = build(&history, &tooling(ToolChoice::None), true, &HERMES);
        assert_eq!(p.tools, None, "tool_choice none hides the tools");
    }

    #[test]
    fn schemas_are_shown_in_the_system_message() {
        let mut t = Tooling::none();
        t.format = ResponseFormat::JsonSchema {
            name: "p".into(),
            schema: json!({"type": "object", "properties": {"age": {"type": "integer"}}}),
            strict: true,
        };
        let p = build(&[msg("system", "hi"), msg("user", "x")], &t, false, &HERMES);
        assert!(p.messages[0].content.starts_with("hi\n\nRespond with a JSON object"));
        assert!(p.messages[0].content.contains("\"age\""));
    }
}
