//! Fuzz target for the `/v1/embeddings` body (a unit-test module because this crate is a
//! `cdylib`, which integration tests cannot link): request parsing and the model checks
//! must answer every input with a client error or a valid request, never a panic; the
//! response of whatever the model returns (NaN and infinities included) is valid JSON
//! with one embedding per input. Driven by the stable-Rust mutation fuzzer shared with
//! the host (host/tests/fuzz/mutate.rs); see docs/testing.md.

#[path = "../../../../host/tests/fuzz/mutate.rs"]
mod mutate;

use std::path::Path;

use mutate::{Rng, Target, fnv, run};
use serde_json::{Value, json};

use crate::request::{self, Encoding, Inputs, ModelFacts};
use crate::response;

#[test]
fn embeddings_request() {
    let seeds = [
        json!({"model": "m", "input": "hello"}),
        json!({"model": "m", "input": ["a", "b", ""], "encoding_format": "base64", "dimensions": 384}),
        json!({"model": "m", "input": [1, 2, 3], "user": "u"}),
        json!({"model": "m", "input": [[1, 2], [4294967295u64], []], "encoding_format": "float"}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect();
    let dict: &[&[u8]] = &[
        b"\"input\":",
        b"\"model\":",
        b"\"encoding_format\":",
        b"\"base64\"",
        b"\"dimensions\":",
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b"null",
        b"-1",
        b"4294967296",
        b"1e400",
        b"\"\\ud800\"",
    ];
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz"));
    let target = Target { name: "embeddings_request", dir, seeds, dict, ci_iterations: 3000, max_len: 16 << 10, json: true };
    run(target, |input| {
        let client_error = |e: &handler_common::ApiError| {
            if (400..500).contains(&e.status) && !e.message.is_empty() {
                Ok(())
            } else {
                Err(format!("answered {} {:?}", e.status, e.message))
            }
        };
        let req = match request::parse(&String::from_utf8_lossy(input)) {
            Ok(r) => r,
            Err(e) => return client_error(&e),
        };
        for (kind, embedding_dimensions, vocab_size) in [("embedding", 384, 30_522), ("embedding", 0, 0), ("chat", 8, 8)] {
            if let Err(e) = req.check_against(ModelFacts { id: "m", kind, embedding_dimensions, vocab_size }) {
                client_error(&e)?;
            }
        }
        // What the handler does next, with made-up hidden states: truncate, batch, pad,
        // pool, answer.
        let mut seqs: Vec<Vec<u32>> = match &req.input {
            Inputs::Texts(texts) => texts.iter().map(|t| t.bytes().map(u32::from).collect()).collect(),
            Inputs::Tokens(arrays) => arrays.clone(),
        };
        let mut rng = Rng::new(fnv(input));
        let max_len = rng.range(1, 16);
        for s in &mut seqs {
            pooling::truncate(s, max_len);
            if s.len() > max_len {
                return Err(format!("truncate to {max_len} left {}", s.len()));
            }
        }
        if seqs.iter().any(Vec::is_empty) {
            // The handler answers 400 "An input produced no tokens" here.
            return Ok(());
        }
        let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let width = rng.range(1, 8);
        let mut embeddings: Vec<Vec<f32>> = vec![Vec::new(); seqs.len()];
        let mut seen = vec![false; seqs.len()];
        for members in pooling::plan_batches(&lengths, pooling::MAX_BATCH) {
            let batch: Vec<&[u32]> = members.iter().map(|&i| seqs[i].as_slice()).collect();
            let (ids, mask, padded) = pooling::pad_batch(&batch);
            if ids.len() != batch.len() * padded || mask.len() != ids.len() {
                return Err(format!("pad_batch gave {} ids, {} mask for {} x {padded}", ids.len(), mask.len(), batch.len()));
            }
            let hidden: Vec<f32> = (0..batch.len() * padded * width)
                .map(|_| match rng.below(20) {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::MAX,
                    _ => (rng.next_u64() % 2000) as f32 / 1000.0 - 1.0,
                })
                .collect();
            let pooled = pooling::mean_pool_normalized(&hidden, &mask, batch.len(), padded, width);
            for (&i, v) in members.iter().zip(pooled) {
                if std::mem::replace(&mut seen[i], true) {
                    return Err(format!("input {i} planned in two batches"));
                }
                embeddings[i] = v;
            }
        }
        if seen.iter().any(|s| !s) {
            return Err("an input was in no batch".into());
        }
        let body = response::body("m", &embeddings, req.encoding, 7);
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("response is not JSON ({e}): {body}"))?;
        let data = v["data"].as_array().ok_or("response without data")?;
        if data.len() != seqs.len() {
            return Err(format!("{} embeddings for {} inputs", data.len(), seqs.len()));
        }
        if req.encoding == Encoding::Base64 && data.iter().any(|d| !d["embedding"].is_string()) {
            return Err("base64 asked, floats given".into());
        }
        Ok(())
    });
}
