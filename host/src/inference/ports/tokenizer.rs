//! The host side of `tensoras:platform/tokenizer`: the model's own tokenizer and chat
//! template, with long texts tokenised off the async workers and prompts that cannot fit
//! the context refused before tokenising.

use std::sync::Arc;

use self::bindings::tensoras::platform::tokenizer;
use super::ModelsView;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "import tensoras:platform/tokenizer@0.1.0;",
        imports: {
            "tensoras:platform/tokenizer.encode": async | trappable,
            "tensoras:platform/tokenizer.encode-text": async | trappable,
            "tensoras:platform/tokenizer.encode-chat": async | trappable,
            default: trappable,
        },
    });
}

impl ModelsView<'_> {
    fn text(&self, model: &str) -> wasmtime::Result<Result<Arc<crate::inference::TextModel>, tokenizer::TokenizerError>> {
        Ok(match self.inference()?.get(model) {
            Some(l) => Ok(l.text.clone()),
            None => Err(tokenizer::TokenizerError::UnknownModel(model.to_owned())),
        })
    }
}

/// A chat template's model and input: the text side, the messages, the tools.
type ChatInput = (Arc<crate::inference::TextModel>, Vec<crate::inference::text::TemplateMessage>, Option<serde_json::Value>);

/// Texts up to this size are tokenised in place; longer ones on the blocking pool, so a
/// long prompt does not hold an async worker (and every request queued behind it).
const INLINE_ENCODE_BYTES: usize = 16 << 10;

/// What the tokenizer calls tokenise: plain text with or without special tokens recognised, or a
/// rendered chat.
enum Encodable {
    Text { text: String, add_special: bool },
    PlainText(String),
    Chat(crate::inference::text::ChatPrompt),
}

impl Encodable {
    fn len(&self) -> usize {
        match self {
            Self::Text { text, .. } | Self::PlainText(text) => text.len(),
            Self::Chat(prompt) => prompt.len(),
        }
    }

    fn encode(&self, t: &crate::inference::TextModel) -> Result<Vec<u32>, String> {
        match self {
            Self::Text { text, add_special } => t.encode(text, *add_special),
            Self::PlainText(text) => t.encode_text(text),
            Self::Chat(prompt) => t.encode_chat(prompt),
        }
    }
}

impl ModelsView<'_> {
    /// Tokenises `input` with `model`'s tokenizer, refusing what cannot fit its context.
    async fn tokenise(
        &mut self,
        model: String,
        input: Encodable,
    ) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        let Some(loaded) = self.inference()?.get(&model) else {
            return Ok(Err(tokenizer::TokenizerError::UnknownModel(model)));
        };
        let t = loaded.text.clone();
        // A prompt that cannot fit the context is refused before tokenising it: the
        // guest's context check would refuse it anyway, after seconds of work and
        // gigabytes of memory for a multi-megabyte text.
        let context = loaded.model.context_length();
        let len = input.len();
        if t.max_prompt_bytes(context).is_some_and(|limit| len > limit) {
            return Ok(Err(tokenizer::TokenizerError::TooLong(format!(
                "This model's maximum context length is {context} tokens; the text ({len} bytes) cannot fit in it."
            ))));
        }
        if len <= INLINE_ENCODE_BYTES {
            return Ok(input.encode(&t).map_err(tokenizer::TokenizerError::InvalidInput));
        }
        Ok(tokio::task::spawn_blocking(move || input.encode(&t))
            .await
            .unwrap_or_else(|e| Err(format!("tokenizer task failed: {e}")))
            .map_err(tokenizer::TokenizerError::InvalidInput))
    }

    /// What both chat-template calls start from: the model's text side and the template's
    /// input from the WIT records (`tools` and `tool_calls` parsed).
    fn chat_input(
        &self,
        model: &str,
        messages: Vec<tokenizer::ChatMessage>,
        tools: Option<String>,
    ) -> wasmtime::Result<Result<ChatInput, tokenizer::TokenizerError>> {
        let text = match self.text(model)? {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let parse = |s: &str, what: &str| {
            serde_json::from_str::<serde_json::Value>(s)
                .map_err(|e| tokenizer::TokenizerError::InvalidInput(format!("{what} is not valid JSON: {e}")))
        };
        let input = || -> Result<_, tokenizer::TokenizerError> {
            let tools = tools.as_deref().map(|t| parse(t, "tools")).transpose()?;
            let mut msgs = Vec::with_capacity(messages.len());
            for m in messages {
                let tool_calls = m.tool_calls.as_deref().map(|t| parse(t, "tool_calls")).transpose()?;
                msgs.push(crate::inference::text::TemplateMessage {
                    role: m.role,
                    content: m.content,
                    tool_call_id: m.tool_call_id,
                    tool_calls,
                });
            }
            Ok((msgs, tools))
        };
        Ok(input().map(|(msgs, tools)| (text, msgs, tools)))
    }
}

impl tokenizer::Host for ModelsView<'_> {
    async fn encode(
        &mut self,
        model: String,
        text: String,
        add_special: bool,
    ) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        self.tokenise(model, Encodable::Text { text, add_special }).await
    }

    async fn encode_text(
        &mut self,
        model: String,
        text: String,
    ) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        self.tokenise(model, Encodable::PlainText(text)).await
    }

    async fn encode_chat(
        &mut self,
        model: String,
        messages: Vec<tokenizer::ChatMessage>,
        tools: Option<String>,
    ) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        let (text, msgs, tools) = match self.chat_input(&model, messages, tools)? {
            Ok(input) => input,
            Err(e) => return Ok(Err(e)),
        };
        // Rendering is cheap next to tokenising; the rendered length decides where that runs.
        let prompt = match text.render_chat(&msgs, tools) {
            Ok(p) => p,
            Err(e) => return Ok(Err(tokenizer::TokenizerError::InvalidInput(e))),
        };
        self.tokenise(model, Encodable::Chat(prompt)).await
    }

    fn decode(
        &mut self,
        model: String,
        tokens: Vec<u32>,
        skip_special: bool,
    ) -> wasmtime::Result<Result<String, tokenizer::TokenizerError>> {
        Ok(self.text(&model)?.and_then(|t| t.decode(&tokens, skip_special).map_err(tokenizer::TokenizerError::InvalidInput)))
    }

    fn apply_chat_template(
        &mut self,
        model: String,
        messages: Vec<tokenizer::ChatMessage>,
        tools: Option<String>,
    ) -> wasmtime::Result<Result<String, tokenizer::TokenizerError>> {
        let (text, msgs, tools) = match self.chat_input(&model, messages, tools)? {
            Ok(input) => input,
            Err(e) => return Ok(Err(e)),
        };
        Ok(text.apply_chat_template(&msgs, tools).map_err(tokenizer::TokenizerError::InvalidInput))
    }

    fn stop_tokens(&mut self, model: String) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        Ok(self.text(&model)?.map(|t| t.stop_tokens().to_vec()))
    }

    fn vocabulary(&mut self, model: String) -> wasmtime::Result<Result<tokenizer::TokenBytes, tokenizer::TokenizerError>> {
        Ok(self.text(&model)?.map(|t| {
            let v = t.vocabulary();
            tokenizer::TokenBytes { bytes: v.bytes.clone(), ends: v.ends.clone() }
        }))
    }
}
