//! Fuzz targets for what chat-core parses from clients: the body of
//! `/v1/chat/completions` and `/v1/completions` (messages, tools, tool_choice,
//! response_format, stop, logit_bias, ...), and the grammar compiler that turns user
//! JSON schemas (tool parameters, `response_format`) into constraints.
//!
//! Driven by the stable-Rust mutation fuzzer shared with the host
//! (host/tests/fuzz/mutate.rs): a fixed number of inputs per target under
//! `scripts/test-guests.sh`, `FUZZ_SECONDS` each under `make fuzz`. See
//! docs/testing.md.

#[path = "../../../../host/tests/fuzz/mutate.rs"]
mod mutate;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chat_core::calls;
use chat_core::grammar::{Engine, Vocabulary};
use chat_core::numbers::NumberScan;
use chat_core::request::{self, Endpoint, ModelFacts};
use chat_core::tools::{ResponseFormat, ServerTools};
use handler_common::ApiError;
use mutate::{Rng, Target, fnv, run};
use serde_json::{Value, json};

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz"))
}

/// The deployed tools the fuzzed requests may name.
struct Deployed;

impl ServerTools for Deployed {
    fn describe(&mut self, name: &str) -> Option<(String, Value)> {
        (name == "calc").then(|| {
            ("Evaluates arithmetic.".to_owned(), json!({"type": "object", "properties": {"expression": {"type": "string"}}}))
        })
    }
}

/// A bad request is an OpenAI-shaped client error, never a panic or a 5xx.
fn client_error(e: &ApiError) -> Result<(), String> {
    if !(400..500).contains(&e.status) || e.message.is_empty() || e.kind.is_empty() {
        return Err(format!("bad request answered {} {:?}: {}", e.status, e.kind, e.message));
    }
    Ok(())
}

const REQUEST_DICT: &[&[u8]] = &[
    b"\"messages\":",
    b"\"role\":",
    b"\"user\"",
    b"\"assistant\"",
    b"\"tool\"",
    b"\"system\"",
    b"\"developer\"",
    b"\"content\":",
    b"\"tools\":",
    b"\"tool_choice\":",
    b"\"required\"",
    b"\"none\"",
    b"\"auto\"",
    b"\"function\"",
    b"\"tensoras_function\"",
    b"\"parameters\":",
    b"\"response_format\":",
    b"\"json_schema\"",
    b"\"json_object\"",
    b"\"schema\":",
    b"\"strict\":",
    b"\"stop\":",
    b"\"logit_bias\":",
    b"\"n\":",
    b"\"max_tokens\":",
    b"\"max_completion_tokens\":",
    b"\"seed\":",
    b"\"temperature\":",
    b"\"top_p\":",
    b"\"logprobs\":",
    b"\"top_logprobs\":",
    b"\"stream\":",
    b"\"stream_options\":",
    b"\"include_usage\":",
    b"\"prompt\":",
    b"\"tool_calls\":",
    b"\"tool_call_id\":",
    b"\"name\":",
    b"\"arguments\":",
    b"\"type\":",
    b"\"text\"",
    b"\"image_url\"",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b"null",
    b"true",
    b"\"\\ud800\"",
    b"1e400",
    b"-1",
];

fn chat_seeds() -> Vec<Vec<u8>> {
    [
        json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
               "temperature": 0.8, "top_p": 0.9, "n": 2, "max_tokens": 16, "seed": 42, "stop": ["\n", "END"],
               "logit_bias": {"7": -100, "9": 5}, "logprobs": true, "top_logprobs": 3,
               "stream": true, "stream_options": {"include_usage": true}}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?"}]}],
               "tools": [{"type": "function", "function": {"name": "weather", "description": "d",
                          "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                          "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city"]},
                          "strict": true}},
                         {"type": "tensoras_function", "tensoras_function": {"name": "calc"}}],
               "tool_choice": {"type": "function", "function": {"name": "weather"}}, "parallel_tool_calls": false}),
        json!({"model": "m", "messages": [
                  {"role": "user", "content": "x"},
                  {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                      "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "{\"t\": 3}"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "out", "strict": true,
                   "schema": {"type": "object", "properties": {"a": {"type": "array", "items": {"enum": [1, "x"]}}},
                              "required": ["a"], "additionalProperties": false}}}}),
        json!({"model": "m", "messages": [{"role": "user", "content": "j"}], "response_format": {"type": "json_object"},
               "max_completion_tokens": 5}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect()
}

/// Inputs that got past a stage, for the summary line (a target whose mutants all fail
/// at the JSON parser would test little).
static PASSED: AtomicU64 = AtomicU64::new(0);
static COMPILED: AtomicU64 = AtomicU64::new(0);

/// Compiles every schema of a valid request, as the handler does before generating
/// (lib.rs `grammar_engine`): an unsupported schema is an error message, never a panic
/// or a stack overflow.
fn compile_schemas(engine: &Engine, req: &request::GenerationRequest) -> Result<(), String> {
    let tooling = &req.tooling;
    let mut schemas: Vec<Value> = Vec::new();
    if tooling.calls_allowed() {
        schemas.extend(tooling.tools.iter().map(calls::args_schema));
    }
    schemas.extend(calls::format_schema(&tooling.format));
    for schema in schemas {
        if engine.constraint(llguidance::api::TopLevelGrammar::from_json_schema(schema), NumberScan::json()).is_ok() {
            COMPILED.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn parse_property(endpoint: Endpoint, engine: &Engine) -> impl Fn(&[u8]) -> Result<(), String> + '_ {
    move |input| {
        let body = String::from_utf8_lossy(input);
        let stream = input.first().is_some_and(|b| b & 1 == 1);
        let req = match request::parse(endpoint, &body, stream, &mut Deployed) {
            Ok(req) => req,
            Err(e) => return client_error(&e),
        };
        PASSED.fetch_add(1, Ordering::Relaxed);
        compile_schemas(engine, &req)?;
        for (kind, vocab_size) in [("chat", 50_000), ("chat", 0), ("embedding", 10)] {
            if let Err(e) = req.check_against(ModelFacts { id: "m", kind, vocab_size }) {
                client_error(&e)?;
            }
        }
        // The budget with contexts from tiny to huge, prompts up to past the context.
        let mut rng = Rng::new(fnv(input));
        for _ in 0..4 {
            let context = *rng.pick(&[1u32, 16, 2048, u32::MAX]);
            let prompt = *rng.pick(&[0u32, 1, 2047, 2048, u32::MAX]);
            let default = *rng.pick(&[0u32, 1, 256, u32::MAX]);
            match request::completion_budget(endpoint, prompt, req.max_tokens, context, default) {
                Ok(0) => return Err(format!("a budget of 0 tokens (prompt {prompt}, context {context})")),
                Ok(_) => {}
                Err(e) => client_error(&e)?,
            }
        }
        Ok(())
    }
}

#[test]
fn chat_request() {
    let t = Target {
        name: "chat_request",
        dir: dir(),
        seeds: chat_seeds(),
        dict: REQUEST_DICT,
        ci_iterations: 3000,
        max_len: 16 << 10,
        json: true,
    };
    let (engine, _) = byte_engine();
    let n = run(t, parse_property(Endpoint::Chat, &engine));
    eprintln!(
        "chat_request: {} of {n} inputs were valid requests (both request targets counted)",
        PASSED.load(Ordering::Relaxed)
    );
}

#[test]
fn completions_request() {
    let seeds = [
        json!({"model": "m", "prompt": "Once", "max_tokens": 8, "logprobs": 2, "echo": false, "stop": "\n", "n": 1}),
        json!({"model": "m", "prompt": ["a", "b"], "suffix": null, "best_of": 1}),
        json!({"model": "m", "prompt": [1, 2, 3]}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect();
    let t = Target {
        name: "completions_request",
        dir: dir(),
        seeds,
        dict: REQUEST_DICT,
        ci_iterations: 1500,
        max_len: 16 << 10,
        json: true,
    };
    let (engine, _) = byte_engine();
    run(t, parse_property(Endpoint::Completions, &engine));
}

// --- the grammar compiler ---------------------------------------------------------------

/// A grammar engine over single bytes plus one special end token (id 256), the way the
/// crate's own tests build one: every byte string is reachable, so a schema's grammar is
/// exercised whatever the model's real vocabulary.
fn byte_engine() -> (Engine, u32) {
    let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    words.push(b"\xFF<|end|>".to_vec());
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for w in &words {
        bytes.extend_from_slice(w);
        ends.push(bytes.len() as u32);
    }
    let end = words.len() as u32 - 1;
    let engine = Engine::new(&Vocabulary { bytes, ends }, words.len(), &[end]).unwrap();
    (engine, end)
}

const SCHEMA_DICT: &[&[u8]] = &[
    b"\"type\":",
    b"\"object\"",
    b"\"array\"",
    b"\"string\"",
    b"\"integer\"",
    b"\"number\"",
    b"\"boolean\"",
    b"\"null\"",
    b"\"properties\":",
    b"\"required\":",
    b"\"items\":",
    b"\"prefixItems\":",
    b"\"enum\":",
    b"\"const\":",
    b"\"anyOf\":",
    b"\"oneOf\":",
    b"\"allOf\":",
    b"\"$ref\":",
    b"\"#/$defs/a\"",
    b"\"#\"",
    b"\"$defs\":",
    b"\"minimum\":",
    b"\"maximum\":",
    b"\"exclusiveMinimum\":",
    b"\"exclusiveMaximum\":",
    b"\"multipleOf\":",
    b"\"minLength\":",
    b"\"maxLength\":",
    b"\"pattern\":",
    b"\"(a|b)*c{2,5}\"",
    b"\"format\":",
    b"\"date-time\"",
    b"\"minItems\":",
    b"\"maxItems\":",
    b"\"additionalProperties\":",
    b"\"uniqueItems\":",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"1e308",
    b"-1e308",
    b"4294967295",
    b"18446744073709551615",
    b"0.1",
    b"true",
    b"false",
];

fn schema_seeds() -> Vec<Vec<u8>> {
    [
        json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
               "days": {"type": "integer", "minimum": 1, "maximum": 7}, "t": {"type": "number", "minimum": -5.5}},
               "required": ["city"], "additionalProperties": false}),
        json!({"type": "array", "items": {"enum": ["a", 1, null, true]}, "minItems": 1, "maxItems": 3}),
        json!({"anyOf": [{"type": "string", "pattern": "^[a-z]{2,4}$"}, {"type": "integer", "multipleOf": 3}]}),
        json!({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}),
        json!({"type": "object", "properties": {"x": {"const": 123456789}, "y": {"type": "number", "exclusiveMaximum": 1e300}}}),
        json!({"type": "string", "format": "date-time"}),
        json!({}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect()
}

/// JSON by the standard: serde_json's parse, except that numbers past `f64`'s range
/// (`1e999`, which JSON allows and the number bounds' three exponent digits let through)
/// count as JSON.
fn is_json(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(_) => true,
        Err(e) => e.to_string().starts_with("number out of range"),
    }
}

#[test]
fn grammar_schema() {
    let (engine, end) = byte_engine();
    let t = Target {
        name: "grammar_schema",
        dir: dir(),
        seeds: schema_seeds(),
        dict: SCHEMA_DICT,
        ci_iterations: 1500,
        max_len: 4 << 10,
        json: true,
    };
    let n = run(t, |input| {
        let Ok(schema) = serde_json::from_slice::<Value>(input) else { return Ok(()) };
        let strict = input.len() % 2 == 0;
        // The schema reaches the compiler the way a client's does: as a request's
        // response_format, validated first.
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                          "response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": schema, "strict": strict}}});
        let req = match request::parse(Endpoint::Chat, &body.to_string(), false, &mut Deployed) {
            Ok(req) => req,
            Err(e) => return client_error(&e),
        };
        if !matches!(req.tooling.format, ResponseFormat::JsonSchema { .. }) {
            return Err(format!("response_format became {:?}", req.tooling.format));
        }
        let Some(schema) = calls::format_schema(&req.tooling.format) else {
            return Err("a json_schema format gave no schema".into());
        };
        // An unsupported or contradictory schema is an error message, not a panic.
        let Ok(mut c) = engine.constraint(llguidance::api::TopLevelGrammar::from_json_schema(schema), NumberScan::json()) else {
            return Ok(());
        };
        COMPILED.fetch_add(1, Ordering::Relaxed);
        // Walk the grammar with random allowed bytes: masks, number bounds and
        // acceptance run on every step; a finished output must be JSON.
        let mut rng = Rng::new(fnv(input));
        let mut out = Vec::new();
        for _ in 0..48 {
            let mut logits = vec![0.0f32; end as usize + 1];
            c.mask(&mut logits).map_err(|e| format!("mask failed after {:?}: {e}", String::from_utf8_lossy(&out)))?;
            let allowed: Vec<usize> = (0..logits.len()).filter(|&i| logits[i].is_finite()).collect();
            if allowed.is_empty() {
                return Err(format!("the grammar allows nothing after {:?}", String::from_utf8_lossy(&out)));
            }
            let token = allowed[rng.below(allowed.len())] as u32;
            if token == end {
                // The grammar allowed the end: what it produced is complete JSON.
                if !is_json(&out) {
                    return Err(format!("the grammar ended on non-JSON {:?}", String::from_utf8_lossy(&out)));
                }
                return Ok(());
            }
            c.accept(token).map_err(|e| format!("an allowed token was refused: {e}"))?;
            out.push(token as u8);
            if c.is_finished() {
                break;
            }
        }
        if c.is_finished() && !is_json(&out) {
            return Err(format!("the grammar finished on non-JSON {:?}", String::from_utf8_lossy(&out)));
        }
        Ok(())
    });
    eprintln!(
        "grammar_schema: {} schemas compiled (all targets of this file), of {n} inputs here",
        COMPILED.load(Ordering::Relaxed)
    );
}
