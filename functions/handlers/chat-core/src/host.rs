//! The handler's side of the host interfaces: wasi:nn sequences, the
//! tokenizer, and their errors as [`ApiError`]s.
//!
//! Failures of the host become 500 `server_error`s carrying the host's own
//! message; they never trap. The one exception is a tokenizer rejecting the
//! client's input (a chat template raising "roles must alternate", say),
//! which is the client's mistake and answered with a 400 on the prompt field.

use handler_common::ApiError;

use crate::bindings::tensoras::platform::tokenizer::{self, ChatMessage, TokenizerError};
use crate::bindings::tensoras::platform::toolbox::{self, ToolInfo};
use crate::bindings::tensoras::platform::types::ToolError;
use crate::bindings::wasi::nn::graph::{self, Graph};
use crate::bindings::wasi::nn::inference::GraphExecutionContext;
use crate::bindings::wasi::nn::tensor::{Tensor, TensorType};
use crate::decoded::Detokenizer;
use crate::generate::Sequence;
use crate::logits::Logits;
use crate::request::Message;

handler_common::nn_error_fn!();

/// Loads the model's graph by its canonical id.
pub fn load_graph(model: &str) -> Result<Graph, ApiError> {
    graph::load_by_name(model).map_err(|e| nn_error(&format!("load of `{model}`"), e))
}

/// One decoder sequence: a wasi:nn execution context whose KV cache the
/// host keeps between `compute` calls.
pub struct NnSequence {
    ctx: GraphExecutionContext,
}

impl NnSequence {
    /// A fresh sequence (execution context) of `graph`.
    pub fn new(graph: &Graph) -> Result<Self, ApiError> {
        let ctx = graph.init_execution_context().map_err(|e| nn_error("init-execution-context", e))?;
        Ok(Self { ctx })
    }
}

impl Sequence for NnSequence {
    fn feed(&mut self, ids: &[u32]) -> Result<Logits, ApiError> {
        let data = i64_le_bytes(ids);
        let input = Tensor::new(&[1, ids.len() as u32], TensorType::I64, &data);
        let outputs = self.ctx.compute(vec![("input_ids".to_owned(), input)]).map_err(|e| nn_error("compute", e))?;
        let Some((_, logits)) = outputs.into_iter().find(|(name, _)| name == "logits") else {
            return Err(ApiError::server("the model returned no `logits` output"));
        };
        if !matches!(logits.ty(), TensorType::Fp32) {
            return Err(ApiError::server("the model's `logits` output is not FP32"));
        }
        last_row(&logits.dimensions(), logits.data())
    }
}

/// Token ids as the little-endian i64 data of an I64 tensor.
pub fn i64_le_bytes(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|&id| i64::from(id).to_le_bytes()).collect()
}

/// The last row of an FP32 tensor (`[1, vocab]` per the ABI; a backend that
/// returns every position, `[1, n, vocab]`, is tolerated).
pub fn last_row(dims: &[u32], data: Vec<u8>) -> Result<Logits, ApiError> {
    let width = dims.last().copied().unwrap_or(0) as usize;
    let elements: usize = dims.iter().map(|&d| d as usize).product();
    if width == 0 || data.len() != elements * 4 {
        return Err(ApiError::server(format!(
            "malformed `logits` tensor: dimensions {dims:?} with {} bytes of data",
            data.len()
        )));
    }
    let offset = data.len() - width * 4;
    Ok(Logits::from_le_bytes(data, offset))
}

/// A tokenizer error as an [`ApiError`]: invalid input is the client's
/// (400 on `param`), anything else is the server's.
fn tokenizer_error(what: &str, err: TokenizerError, param: Option<&str>) -> ApiError {
    match (err, param) {
        (TokenizerError::InvalidInput(msg), Some(param)) => ApiError::invalid(param, msg),
        (TokenizerError::InvalidInput(msg), None) => ApiError::server(format!("tokenizer {what} failed: invalid input: {msg}")),
        (TokenizerError::TooLong(msg), Some(param)) => ApiError::invalid(param, msg).with_code("context_length_exceeded"),
        (TokenizerError::TooLong(msg), None) => ApiError::server(format!("tokenizer {what} failed: too long: {msg}")),
        (TokenizerError::UnknownModel(msg), _) => ApiError::server(format!("tokenizer {what} failed: unknown model: {msg}")),
    }
}

/// The prompt ids of a chat: the chat template rendered with the generation
/// prompt, its markup's special tokens as control tokens and every string the
/// client (or a tool, or a retrieved chunk) supplied as plain text, so no
/// message can forge a turn of another role.
pub fn encode_chat(model: &str, messages: &[Message], tools: Option<&str>) -> Result<Vec<u32>, ApiError> {
    let messages: Vec<ChatMessage> = messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.clone(),
            content: m.content.clone(),
            tool_call_id: m.tool_call_id.clone(),
            tool_calls: m.tool_calls.clone(),
        })
        .collect();
    tokenizer::encode_chat(model, &messages, tools).map_err(|e| tokenizer_error("encode-chat", e, Some("messages")))
}

/// A raw prompt (legacy completions) to ids, without adding special tokens:
/// the client owns the whole prompt, control tokens included.
pub fn encode_prompt(model: &str, text: &str, param: &str) -> Result<Vec<u32>, ApiError> {
    tokenizer::encode(model, text, false).map_err(|e| tokenizer_error("encode", e, Some(param)))
}

/// Text bound for a chat message, measured as [`encode_chat`] tokenises it:
/// special-token spellings are plain text.
pub fn encode_text(model: &str, text: &str, param: &str) -> Result<Vec<u32>, ApiError> {
    tokenizer::encode_text(model, text).map_err(|e| tokenizer_error("encode-text", e, Some(param)))
}

/// The ids that end a turn.
pub fn stop_tokens(model: &str) -> Result<Vec<u32>, ApiError> {
    tokenizer::stop_tokens(model).map_err(|e| tokenizer_error("stop-tokens", e, None))
}

/// The model's token bytes, for the grammar engine.
pub fn vocabulary(model: &str) -> Result<crate::grammar::Vocabulary, ApiError> {
    let v = tokenizer::vocabulary(model).map_err(|e| tokenizer_error("vocabulary", e, None))?;
    Ok(crate::grammar::Vocabulary { bytes: v.bytes, ends: v.ends })
}

/// The tenant's deployed tool functions, listed on first use.
#[derive(Default)]
pub struct DeployedTools {
    listed: Option<Vec<ToolInfo>>,
}

impl crate::tools::ServerTools for DeployedTools {
    fn describe(&mut self, name: &str) -> Option<(String, serde_json::Value)> {
        let tools = self.listed.get_or_insert_with(toolbox::available);
        let t = tools.iter().find(|t| t.name == name)?;
        // A tool that describes no usable schema takes any object.
        let parameters = serde_json::from_str::<serde_json::Value>(&t.parameters)
            .ok()
            .filter(|p| p.get("type").is_some())
            .unwrap_or_else(|| serde_json::json!({"type": "object"}));
        Some((t.description.clone(), parameters))
    }
}

/// Runs a deployed tool in its own sandbox. A failure is returned as the
/// text the model sees, never as an error of this request.
pub fn invoke_tool(name: &str, arguments: &str) -> Result<String, String> {
    toolbox::invoke(name, arguments).map_err(|e| match e {
        ToolError::InvalidArguments(m) => format!("invalid arguments: {m}"),
        ToolError::Failed(m) => format!("the tool failed: {m}"),
    })
}

/// Decoding through the host tokenizer.
pub struct HostDetokenizer<'a> {
    /// Canonical model id.
    pub model: &'a str,
}

impl Detokenizer for HostDetokenizer<'_> {
    fn decode(&mut self, ids: &[u32]) -> Result<String, ApiError> {
        tokenizer::decode(self.model, ids, true).map_err(|e| tokenizer_error("decode", e, None))
    }

    fn token_text(&mut self, id: u32) -> Result<String, ApiError> {
        tokenizer::decode(self.model, &[id], false).map_err(|e| tokenizer_error("decode", e, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_little_endian_i64() {
        assert_eq!(i64_le_bytes(&[1, 258]), [1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn logits_rows_are_read() {
        let data: Vec<u8> = [1.0f32, -2.5, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(&last_row(&[1, 6], data.clone()).unwrap()[..], [1.0, -2.5, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&last_row(&[1, 2, 3], data.clone()).unwrap()[..], [4.0, 5.0, 6.0]);
        assert_eq!(last_row(&[1, 7], data.clone()).unwrap_err().status, 500);
        assert_eq!(last_row(&[], data).unwrap_err().status, 500);
    }
}
