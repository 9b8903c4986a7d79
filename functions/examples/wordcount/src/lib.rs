//! `wordcount`: a tool that counts the words, characters and lines of a text.
//!
//! - `words`: runs of non-whitespace characters (Unicode whitespace, as
//!   `str::split_whitespace` defines it).
//! - `characters`: Unicode scalar values, not bytes, so "héllo" counts 5.
//! - `lines`: lines as `str::lines` sees them: a final line without a newline
//!   counts, a trailing newline does not start another; "" has 0 lines.

use tensoras_guest::serde_json::{Value, json};
use tensoras_guest::{Tool, ToolError, ToolInfo};

/// The exported tool.
struct WordCount;

impl Tool for WordCount {
    fn info() -> ToolInfo {
        ToolInfo::new(
            "wordcount",
            "Counts the words, characters and lines of a text",
            json!({
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "The text to count"}
                },
                "required": ["text"],
                "additionalProperties": false
            }),
        )
    }

    fn call(args: Value) -> Result<Value, ToolError> {
        let text = tensoras_guest::tool::required_str(&args, "text")?;
        Ok(json!({
            "words": text.split_whitespace().count(),
            "characters": text.chars().count(),
            "lines": text.lines().count(),
        }))
    }
}

tensoras_guest::export_tool!(WordCount);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let out = WordCount::call(json!({"text": "one two  three\nfour héllo\n"})).ok();
        assert_eq!(out, Some(json!({"words": 5, "characters": 26, "lines": 2})));
        let out = WordCount::call(json!({"text": ""})).ok();
        assert_eq!(out, Some(json!({"words": 0, "characters": 0, "lines": 0})));
        assert!(WordCount::call(json!({})).is_err());
    }
}
