//! The `/v1/embeddings` response body.

use serde::Serialize;

use crate::base64;
use crate::request::Encoding;

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: Usage,
}

/// The response for `embeddings` (in input order). `f32`s serialise with
/// their shortest `f32` representation.
pub fn body(model: &str, embeddings: &[Vec<f32>], encoding: Encoding, prompt_tokens: u32) -> String {
    let data = embeddings
        .iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: match encoding {
                Encoding::Float => Vector::Float(v),
                Encoding::Base64 => Vector::Base64(base64::encode_f32s(v)),
            },
        })
        .collect();
    let list = EmbeddingList { object: "list", data, model, usage: Usage { prompt_tokens, total_tokens: prompt_tokens } };
    // Cannot fail for these types; never trap regardless.
    serde_json::to_string(&list).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn float_and_base64_shapes() {
        let vectors = vec![vec![0.5f32, -0.25], vec![1.0, 0.0]];
        let v: Value = serde_json::from_str(&body("mini", &vectors, Encoding::Float, 7)).unwrap();
        assert_eq!(
            v,
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
              "model": "mini", "usage": {"prompt_tokens": 7, "total_tokens": 7}})
        );
        let v: Value = serde_json::from_str(&body("mini", &vectors[1..], Encoding::Base64, 3)).unwrap();
        assert_eq!(v["data"][0]["embedding"], "AACAPwAAAAA=");
    }

    #[test]
    fn floats_are_printed_as_f32() {
        let s = body("m", &[vec![0.1f32]], Encoding::Float, 1);
        assert!(s.contains("[0.1]"), "{s}");
    }
}
