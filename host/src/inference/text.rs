//! Tokenizers (HF `tokenizer.json`) and chat templates (the model's Jinja template,
//! rendered with minijinja and Python-compatible string methods), on the host.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use minijinja::Environment;
use serde::Serialize;

/// Template used when a chat model ships none: ChatML, which SmolLM2 and many others use.
const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// One message as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text content.
    pub content: String,
    /// For tool results: the call answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For assistant turns that called tools: the calls (OpenAI JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
}

/// A model's tokenizer, template and stop tokens.
pub struct TextModel {
    tokenizer: tokenizers::Tokenizer,
    template: Option<Environment<'static>>,
    stop_tokens: Vec<u32>,
    bos_token: String,
    eos_token: String,
    /// Whether the template renders `tools` itself.
    template_tools: bool,
    /// Token bytes for grammar engines, computed on first use.
    vocabulary: OnceLock<Arc<Vocabulary>>,
}

/// Every token's bytes (see `tokenizer.vocabulary` in wit/tokenizer.wit).
#[derive(Debug, Default)]
pub struct Vocabulary {
    /// All tokens' bytes, concatenated in id order.
    pub bytes: Vec<u8>,
    /// End offset of each token in `bytes`.
    pub ends: Vec<u32>,
    /// Bytes of the longest token (at least 1), for [`TextModel::max_prompt_bytes`].
    pub longest: usize,
}

/// Marks special tokens in [`Vocabulary`]: no UTF-8 text contains 0xFF.
const SPECIAL_MARKER: u8 = 0xFF;

impl std::fmt::Debug for TextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextModel").field("stop_tokens", &self.stop_tokens).finish_non_exhaustive()
    }
}

impl TextModel {
    /// Loads `tokenizer.json` and, for chat models, `chat_template.jinja` (ChatML if absent).
    pub fn load(tokenizer: &Path, template: Option<&Path>, eos_ids: &[u32]) -> anyhow::Result<Self> {
        let tok = tokenizers::Tokenizer::from_file(tokenizer)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", tokenizer.display()))?;
        let template = match template {
            None => None,
            Some(path) => {
                let source = if path.is_file() {
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
                } else {
                    CHATML.to_owned()
                };
                let mut env = Environment::new();
                minijinja_contrib::add_to_environment(&mut env);
                env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
                env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
                    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
                });
                env.add_template_owned("chat", source).map_err(|e| anyhow::anyhow!("chat template {}: {e}", path.display()))?;
                Some(env)
            }
        };
        let mut stop_tokens: Vec<u32> = eos_ids.to_vec();
        for special in ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<|endoftext|>"] {
            if let Some(id) = tok.token_to_id(special) {
                stop_tokens.push(id);
            }
        }
        stop_tokens.sort_unstable();
        stop_tokens.dedup();
        let name_of = |id: Option<&u32>| id.and_then(|&i| tok.id_to_token(i)).unwrap_or_default();
        let eos_token = name_of(eos_ids.first());
        let bos_token = tok.id_to_token(1).filter(|t| t.starts_with('<')).unwrap_or_default();
        // A template that reads `tools` renders them; one that never mentions
        // them would silently drop them.
        let template_tools = template.as_ref().is_some_and(|env| {
            env.get_template("chat").is_ok_and(|t| t.undeclared_variables(true).contains("tools"))
        });
        Ok(Self { tokenizer: tok, template, stop_tokens, bos_token, eos_token, template_tools, vocabulary: OnceLock::new() })
    }

    /// Longest text (in bytes) that can still fit `context_length` tokens, for chat
    /// models; `None` for encoders, whose handler truncates instead of refusing.
    ///
    /// Every input byte of a byte-level BPE or SentencePiece tokenizer lands in exactly one
    /// token, so `n` tokens cover at most `n` × (longest token) bytes; the factor 4 leaves
    /// room for normalizers that shrink text (NFKC ligatures and the like).
    pub fn max_prompt_bytes(&self, context_length: u32) -> Option<usize> {
        self.template.as_ref()?;
        let longest = self.vocabulary().longest;
        Some((context_length as usize).saturating_mul(longest).saturating_mul(4))
    }

    /// Text to ids.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, String> {
        self.tokenizer.encode(text, add_special).map(|e| e.get_ids().to_vec()).map_err(|e| e.to_string())
    }

    /// Ids to text.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, String> {
        self.tokenizer.decode(ids, skip_special).map_err(|e| e.to_string())
    }

    /// Ids that end a turn.
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    /// Whether the chat template renders the `tools` it is given.
    pub fn template_tools(&self) -> bool {
        self.template_tools
    }

    /// Every token's bytes, computed once per model.
    pub fn vocabulary(&self) -> Arc<Vocabulary> {
        self.vocabulary.get_or_init(|| Arc::new(token_bytes(&self.tokenizer))).clone()
    }

    /// Renders the chat template with the generation prompt appended.
    pub fn apply_chat_template(&self, messages: &[TemplateMessage], tools: Option<serde_json::Value>) -> Result<String, String> {
        let env = self.template.as_ref().ok_or("this model has no chat template")?;
        let template = env.get_template("chat").map_err(|e| e.to_string())?;
        template
            .render(minijinja::context! {
                messages => messages,
                tools => tools,
                add_generation_prompt => true,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| format!("rendering the chat template: {e}"))
    }
}

/// The bytes each token stands for. Tokenizers store tokens as strings in
/// one of two encodings: byte-level BPE (GPT-2, Llama 3, SmolLM) maps every
/// byte to a printable character; SentencePiece-style vocabularies (Llama 2,
/// Mistral) write a space as `▁` and raw bytes as `<0xNN>`. The decoder
/// configuration says which.
fn token_bytes(tok: &tokenizers::Tokenizer) -> Vocabulary {
    let decoder = serde_json::to_string(&tok.get_decoder()).unwrap_or_default();
    let byte_level = decoder.contains("\"ByteLevel\"");
    let chars = byte_level_chars();
    let added = tok.get_added_tokens_decoder();
    let mut vocab = Vocabulary { longest: 1, ..Vocabulary::default() };
    for id in 0..tok.get_vocab_size(true) as u32 {
        if let Some(t) = added.get(&id) {
            if t.special {
                vocab.bytes.push(SPECIAL_MARKER);
            }
            vocab.bytes.extend_from_slice(t.content.as_bytes());
        } else if let Some(piece) = tok.id_to_token(id) {
            if byte_level {
                for c in piece.chars() {
                    match chars.get(&c) {
                        Some(&b) => vocab.bytes.push(b),
                        None => vocab.bytes.extend_from_slice(c.to_string().as_bytes()),
                    }
                }
            } else if let Some(b) = byte_fallback(&piece) {
                vocab.bytes.push(b);
            } else {
                vocab.bytes.extend_from_slice(piece.replace('\u{2581}', " ").as_bytes());
            }
        }
        let start = vocab.ends.last().map_or(0, |&e| e as usize);
        vocab.longest = vocab.longest.max(vocab.bytes.len() - start);
        vocab.ends.push(vocab.bytes.len() as u32);
    }
    vocab
}

/// GPT-2's byte-to-character table, inverted: printable Latin-1 bytes stand
/// for themselves, the rest are shifted to U+0100 and up in byte order.
fn byte_level_chars() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    let mut map = HashMap::with_capacity(256);
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\u{FFFD}');
            next += 1;
            c
        };
        map.insert(c, b);
    }
    map
}

/// `<0x0A>` → 0x0A (SentencePiece byte fallback pieces).
fn byte_fallback(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_tokenizer(dir: &Path) -> std::path::PathBuf {
        // A word-level tokenizer with two special tokens, enough to test the plumbing.
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null, "padding": null,
            "added_tokens": [
                {"id": 0, "content": "<|im_start|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                {"id": 1, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
            ],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"<|im_start|>": 0, "<|im_end|>": 1, "hello": 2, "world": 3, "[UNK]": 4}, "unk_token": "[UNK]"}
        });
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    #[test]
    fn vocabulary_marks_special_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let m = TextModel::load(&tiny_tokenizer(dir.path()), None, &[]).unwrap();
        let v = m.vocabulary();
        let words: Vec<&[u8]> =
            v.ends.iter().scan(0usize, |start, &end| { let w = &v.bytes[*start..end as usize]; *start = end as usize; Some(w) }).collect();
        assert_eq!(words, [&b"\xFF<|im_start|>"[..], b"\xFF<|im_end|>", b"hello", b"world", b"[UNK]"]);
        assert!(!m.template_tools());
    }

    #[test]
    fn byte_level_and_sentencepiece_pieces_become_bytes() {
        let chars = byte_level_chars();
        assert_eq!(chars.len(), 256);
        assert_eq!(chars[&'\u{0120}'], b' ', "Ġ is a space");
        assert_eq!(chars[&'\u{010A}'], b'\n', "Ċ is a newline");
        assert_eq!(chars[&'a'], b'a');
        assert_eq!(byte_fallback("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_fallback("<0x0A"), None);
        assert_eq!(byte_fallback("<s>"), None);
    }

    #[test]
    fn encode_decode_and_stop_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let m = TextModel::load(&tiny_tokenizer(dir.path()), None, &[]).unwrap();
        assert_eq!(m.encode("hello world", false).unwrap(), vec![2, 3]);
        assert_eq!(m.stop_tokens(), &[1]);
        assert!(m.apply_chat_template(&[], None).is_err(), "embedding models have no template");
    }

    #[test]
    fn chat_templates_render_roles_and_python_methods() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("chat_template.jinja");
        std::fs::write(
            &template,
            "{% for m in messages %}[{{ m.role }}]{{ m.content.strip() }}{% if m.tool_call_id %}#{{ m.tool_call_id }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
        )
        .unwrap();
        let m = TextModel::load(&tiny_tokenizer(dir.path()), Some(&template), &[1]).unwrap();
        let msgs = vec![
            TemplateMessage { role: "system".into(), content: " be brief ".into(), tool_call_id: None, tool_calls: None },
            TemplateMessage { role: "tool".into(), content: "42".into(), tool_call_id: Some("call_1".into()), tool_calls: None },
        ];
        assert_eq!(m.apply_chat_template(&msgs, None).unwrap(), "[system]be brief\n[tool]42#call_1\n[assistant]");
        // A missing template file falls back to ChatML.
        let m = TextModel::load(&tiny_tokenizer(dir.path()), Some(&dir.path().join("none.jinja")), &[1]).unwrap();
        assert_eq!(
            m.apply_chat_template(&msgs[..1], None).unwrap(),
            "<|im_start|>system\n be brief <|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
