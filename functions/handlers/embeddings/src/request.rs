//! Parsing and validation of `/v1/embeddings` bodies.

use handler_common::ApiError;
use handler_common::fields::{Body, parse_object, type_error};
use serde_json::Value;

/// Most inputs in one request, as OpenAI allows.
pub const MAX_INPUTS: usize = 2048;

/// The texts or token arrays to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inputs {
    /// Strings, tokenised by the host with the model's special tokens.
    Texts(Vec<String>),
    /// Token id arrays, used as given.
    Tokens(Vec<Vec<u32>>),
}

impl Inputs {
    /// Number of inputs.
    pub fn len(&self) -> usize {
        match self {
            Self::Texts(t) => t.len(),
            Self::Tokens(t) => t.len(),
        }
    }

    /// Whether there are none (never true after [`parse`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `encoding_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON arrays of numbers.
    Float,
    /// Base64 of the little-endian f32 bytes.
    Base64,
}

/// A validated embeddings request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingRequest {
    /// Model id or alias as sent.
    pub model: String,
    /// What to embed.
    pub input: Inputs,
    /// How to return the vectors.
    pub encoding: Encoding,
    /// `dimensions`, when given.
    pub dimensions: Option<i64>,
}

/// What the model-dependent checks need to know.
#[derive(Debug, Clone, Copy)]
pub struct ModelFacts<'a> {
    /// Canonical id.
    pub id: &'a str,
    /// `chat` or `embedding`.
    pub kind: &'a str,
    /// Width of one embedding.
    pub embedding_dimensions: u32,
    /// Vocabulary size (0 = unknown: token ids are not checked).
    pub vocab_size: u32,
}

/// Parses and validates a body.
pub fn parse(body: &str) -> Result<EmbeddingRequest, ApiError> {
    let map = parse_object(body)?;
    let body = Body(&map);
    let model = body.required_str("model")?.to_owned();
    let input = parse_input(body.get("input"))?;
    let encoding = match body.get("encoding_format") {
        None => Encoding::Float,
        Some(Value::String(s)) if s == "float" => Encoding::Float,
        Some(Value::String(s)) if s == "base64" => Encoding::Base64,
        Some(Value::String(s)) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("Invalid value: '{s}'. Supported values are: 'float' and 'base64'."),
            ));
        }
        Some(other) => return Err(type_error("encoding_format", "a string", other)),
    };
    let dimensions = body.opt_integer("dimensions", 1, i64::MAX)?;
    Ok(EmbeddingRequest { model, input, encoding, dimensions })
}

impl EmbeddingRequest {
    /// Checks what depends on the model: that it is an embedding model,
    /// that `dimensions` (if any) is its own width, and that token ids are
    /// in its vocabulary.
    pub fn check_against(&self, model: ModelFacts<'_>) -> Result<(), ApiError> {
        if model.kind != "embedding" {
            return Err(ApiError::invalid(
                "model",
                format!("The model `{}` is not an embedding model and cannot be used with v1/embeddings.", model.id),
            ));
        }
        if let Some(d) = self.dimensions
            && d != i64::from(model.embedding_dimensions)
        {
            return Err(ApiError::invalid(
                "dimensions",
                format!(
                    "The model `{}` does not support changing the output dimensions: its embeddings have {} dimensions.",
                    model.id, model.embedding_dimensions
                ),
            ));
        }
        if let (Inputs::Tokens(arrays), vocab) = (&self.input, model.vocab_size)
            && vocab > 0
            && let Some(id) = arrays.iter().flatten().find(|&&id| id >= vocab)
        {
            return Err(ApiError::invalid(
                "input",
                format!("Invalid token id {id} in 'input': ids must be below the vocabulary size {vocab}."),
            ));
        }
        Ok(())
    }
}

/// `input`: a string, an array of strings, an array of token ids (one
/// input) or an array of token-id arrays.
fn parse_input(value: Option<&Value>) -> Result<Inputs, ApiError> {
    let items = match value {
        None => {
            return Err(ApiError::invalid("input", "Missing required parameter: 'input'."));
        }
        Some(Value::String(s)) => {
            non_empty_text(s, "input")?;
            return Ok(Inputs::Texts(vec![s.clone()]));
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(type_error("input", "a string or array", other)),
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "input",
            "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        ));
    }
    if items.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!(
                "Invalid 'input': array too long. Expected an array with maximum length {MAX_INPUTS}, but got an array with length {} instead.",
                items.len()
            ),
        ));
    }
    match &items[0] {
        Value::String(_) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => non_empty_text(s, &format!("input.[{i}]")).map(|()| s.clone()),
                other => Err(mixed(i, "a string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Inputs::Texts),
        Value::Number(_) => {
            let ids = token_ids(items, "input")?;
            Ok(Inputs::Tokens(vec![ids]))
        }
        Value::Array(_) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = format!("input.[{i}]");
                match v {
                    Value::Array(ids) if ids.is_empty() => {
                        Err(ApiError::invalid("input", format!("Invalid '{at}': empty token array.")))
                    }
                    Value::Array(ids) => token_ids(ids, &at),
                    other => Err(mixed(i, "an array of token ids", other)),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Inputs::Tokens),
        other => Err(mixed(0, "a string, a token id or an array of token ids", other)),
    }
}

/// OpenAI rejects empty strings: they have nothing to embed.
fn non_empty_text(s: &str, at: &str) -> Result<(), ApiError> {
    if s.is_empty() {
        return Err(ApiError::invalid(
            "input",
            format!("Invalid '{at}': empty string. Expected a string with minimum length 1."),
        ));
    }
    Ok(())
}

/// An element of the wrong type (`param` stays `input`, the field at
/// fault; the message names the element).
fn mixed(i: usize, expected: &str, got: &Value) -> ApiError {
    let mut err = type_error(&format!("input.[{i}]"), expected, got);
    err.param = Some("input".into());
    err
}

/// An array of non-negative integer token ids.
fn token_ids(items: &[Value], at: &str) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .map(|v| {
            v.as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(|| {
                ApiError::invalid("input", format!("Invalid '{at}': token ids must be non-negative integers, but got {v}."))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(body: Value) -> Result<EmbeddingRequest, ApiError> {
        parse(&body.to_string())
    }

    fn param_of(body: Value) -> String {
        let err = req(body).expect_err("expected an error");
        assert_eq!(err.status, 400);
        err.param.unwrap()
    }

    #[test]
    fn input_forms() {
        let r = req(json!({"model": "m", "input": "hello", "user": "u", "extra": 1})).unwrap();
        assert_eq!(r.input, Inputs::Texts(vec!["hello".into()]));
        assert_eq!(r.encoding, Encoding::Float);
        let r = req(json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64"})).unwrap();
        assert_eq!(r.input, Inputs::Texts(vec!["a".into(), "b".into()]));
        assert_eq!(r.encoding, Encoding::Base64);
        let r = req(json!({"model": "m", "input": [1, 2, 3]})).unwrap();
        assert_eq!(r.input, Inputs::Tokens(vec![vec![1, 2, 3]]));
        let r = req(json!({"model": "m", "input": [[1], [2, 3]], "dimensions": 384})).unwrap();
        assert_eq!(r.input, Inputs::Tokens(vec![vec![1], vec![2, 3]]));
        assert_eq!(r.dimensions, Some(384));
    }

    #[test]
    fn validation_errors_name_the_param() {
        assert_eq!(param_of(json!({"input": "x"})), "model");
        assert_eq!(param_of(json!({"model": "m"})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": ""})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": []})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": ["a", ""]})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": ["a", 1]})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": [1, -2]})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": [[1], []]})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": [{"a": 1}]})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": vec!["a"; MAX_INPUTS + 1]})), "input");
        assert_eq!(param_of(json!({"model": "m", "input": "a", "encoding_format": "int8"})), "encoding_format");
        assert_eq!(param_of(json!({"model": "m", "input": "a", "dimensions": 0})), "dimensions");
        assert!(req(json!({"model": "m", "input": vec!["a"; MAX_INPUTS]})).is_ok());
    }

    #[test]
    fn model_checks() {
        let facts = ModelFacts { id: "e", kind: "embedding", embedding_dimensions: 384, vocab_size: 100 };
        let ok = req(json!({"model": "e", "input": "a", "dimensions": 384})).unwrap();
        assert!(ok.check_against(facts).is_ok());
        let bad = req(json!({"model": "e", "input": "a", "dimensions": 256})).unwrap();
        let err = bad.check_against(facts).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("dimensions"));
        assert!(err.message.contains("does not support changing the output dimensions"));
        let chat = ModelFacts { kind: "chat", ..facts };
        assert_eq!(ok.check_against(chat).unwrap_err().param.as_deref(), Some("model"));
        let ids = req(json!({"model": "e", "input": [5, 100]})).unwrap();
        assert_eq!(ids.check_against(facts).unwrap_err().param.as_deref(), Some("input"));
    }
}
