//! Constrained decoding: the allowed-token mask of a grammar, per step.
//!
//! The grammar engine is llguidance (Earley parser over a derivative-based
//! lexer), compiled into this component. It walks a trie of the model's
//! token bytes, which the host provides over WIT (`tokenizer.vocabulary`),
//! so the guest never reads tokenizer files. Grammars come from
//! [`crate::output`]: a JSON schema (`response_format`) or a Lark grammar
//! (tool calls).
//!
//! The model's stop tokens are the grammar's end: the mask allows them
//! exactly when the grammar accepts, and the decode loop ends on them as
//! usual.
//!
//! Beside the grammar, a [`NumberScan`] bounds the digits of JSON numbers,
//! which llguidance's schema compiler leaves unbounded ([`crate::numbers`]).

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenId};
use llguidance::{Matcher, ParserFactory};

use crate::numbers::NumberScan;

/// Every token's bytes in id order; special tokens start with 0xFF (the
/// marker the trie uses so grammar text can never match them).
pub struct Vocabulary {
    /// Concatenated token bytes.
    pub bytes: Vec<u8>,
    /// End offset of each token in `bytes`.
    pub ends: Vec<u32>,
}

impl Vocabulary {
    /// The tokens as separate byte strings, padded with empty (never
    /// allowed) entries up to `width`, the length of a logits row.
    fn words(&self, width: usize) -> Result<Vec<Vec<u8>>, String> {
        let mut words = Vec::with_capacity(width.max(self.ends.len()));
        let mut start = 0usize;
        for &end in &self.ends {
            let end = end as usize;
            let word = self.bytes.get(start..end).ok_or_else(|| format!("vocabulary offsets out of range at {end}"))?;
            words.push(word.to_vec());
            start = end;
        }
        if words.len() > width {
            return Err(format!("the tokenizer has {} tokens but the model's logits only {width}", words.len()));
        }
        words.resize(width, Vec::new());
        Ok(words)
    }
}

/// The model side of constrained decoding: its token trie and a parser
/// factory, built once per request and shared by its grammars.
pub struct Engine {
    factory: ParserFactory,
    /// Ids that end a turn; allowed whenever the grammar may end.
    stop_tokens: Vec<u32>,
    /// Per id: whether the token's text has a digit or a `.`, the only
    /// bytes a [`NumberScan`] can refuse.
    numeric: Arc<[bool]>,
}

impl Engine {
    /// Builds the token trie of `vocab` (logits rows are `width` wide).
    pub fn new(vocab: &Vocabulary, width: usize, stop_tokens: &[u32]) -> Result<Self, String> {
        let eos = *stop_tokens.first().ok_or("the model has no stop token to end a constrained answer with")?;
        let words = vocab.words(width)?;
        let numeric =
            words.iter().map(|w| w.first() != Some(&0xFF) && w.iter().any(|&b| b.is_ascii_digit() || b == b'.')).collect();
        let info = TokRxInfo::new(words.len() as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        // No slicer regexes: they speed up masks inside long JSON strings at
        // the cost of a pass over the vocabulary per regex at start-up, which
        // a fresh instance per request would pay every time.
        let mut factory = ParserFactory::new(&env, InferenceCapabilities::default(), &[]).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self { factory, stop_tokens: stop_tokens.to_vec(), numeric })
    }

    /// Compiles `grammar`, whose output's numbers `numbers` bounds. The
    /// error names what is wrong with the grammar (an unsupported schema
    /// keyword, say).
    pub fn constraint(&self, grammar: TopLevelGrammar, numbers: NumberScan) -> Result<Constraint, String> {
        let parser = self.factory.create_parser(grammar).map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(err) = matcher.get_error() {
            return Err(err);
        }
        Ok(Constraint {
            matcher,
            eos: self.factory.tok_env().tok_trie().eos_token(),
            stop_tokens: self.stop_tokens.clone(),
            env: self.factory.tok_env().clone(),
            numeric: self.numeric.clone(),
            numbers,
            refused: Vec::new(),
        })
    }
}

/// One grammar being followed by one sequence.
pub struct Constraint {
    matcher: Matcher,
    eos: TokenId,
    stop_tokens: Vec<u32>,
    /// The token bytes.
    env: TokEnv,
    /// See [`Engine::numeric`].
    numeric: Arc<[bool]>,
    /// The output so far, for the number bounds.
    numbers: NumberScan,
    /// Scratch: ids the grammar allows but the number bounds refuse.
    refused: Vec<usize>,
}

impl Constraint {
    /// Sets every logit the grammar does not allow now, or that would make
    /// a JSON number too long, to -inf. When the number bounds would leave
    /// nothing (the grammar demands a longer number: a `const`, say), the
    /// grammar alone decides.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self.matcher.compute_mask_or_eos().map_err(|e| e.to_string())?;
        let may_end = allowed.is_allowed(self.eos);
        let check = self.numbers.is_on();
        let trie = self.env.tok_trie();
        let mut kept = 0usize;
        self.refused.clear();
        for (id, x) in logits.iter_mut().enumerate() {
            let token = id as u32;
            if allowed.is_allowed(token) {
                if check && self.numeric.get(id).copied().unwrap_or(false) && !self.numbers.allows(trie.token(token)) {
                    self.refused.push(id);
                } else {
                    kept += 1;
                }
            } else if may_end && self.stop_tokens.contains(&token) {
                kept += 1;
            } else {
                *x = f32::NEG_INFINITY;
            }
        }
        if kept > 0 {
            for &id in &self.refused {
                logits[id] = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances the grammar past a sampled (non-stop) token.
    pub fn accept(&mut self, token: u32) -> Result<(), String> {
        self.numbers.advance(self.env.tok_trie().token(token));
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }

    /// Whether the grammar admits nothing but the end now (the matcher
    /// stops itself when its grammar cannot be extended).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary (ids 0..=255 are the bytes) plus a few
    /// multi-byte tokens and a special end token.
    fn vocab() -> (Vocabulary, u32) {
        let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for w in ["{\"", "\": ", "true", "false", "null", "\"}", "ab", "12"] {
            words.push(w.as_bytes().to_vec());
        }
        words.push(b"\xFF<|end|>".to_vec());
        let end = words.len() as u32 - 1;
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for w in &words {
            bytes.extend_from_slice(w);
            ends.push(bytes.len() as u32);
        }
        (Vocabulary { bytes, ends }, end)
    }

    fn greedy(c: &mut Constraint, width: usize, prefer: &[u8], end: u32) -> String {
        // Picks the first allowed byte of `prefer` (cycling), else the end.
        let mut out = Vec::new();
        for step in 0..200 {
            let mut logits = vec![0.0f32; width];
            for (i, b) in prefer.iter().enumerate() {
                logits[*b as usize] = 10.0 - i as f32 * 0.01;
            }
            logits[end as usize] = 5.0;
            c.mask(&mut logits).unwrap();
            let (id, x) =
                logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best });
            assert!(x.is_finite(), "nothing allowed at step {step}");
            if id as u32 == end {
                break;
            }
            c.accept(id as u32).unwrap();
            out.push(id as u8);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_schema_output_is_forced() {
        let (v, end) = vocab();
        let width = v.ends.len() + 3;
        let engine = Engine::new(&v, width, &[end]).unwrap();
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": false,
            "x-guidance": {"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}
        });
        let mut c = engine.constraint(TopLevelGrammar::from_json_schema(schema), NumberScan::json()).unwrap();
        // The "model" loves the letter z, which JSON never allows here.
        let text = greedy(&mut c, width, b"ztf", end);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(value["ok"].is_boolean(), "{text}");
    }

    /// Whether `c` lets `text` through byte by byte (the byte tokens) and
    /// may end after it.
    fn fits(c: &mut Constraint, width: usize, text: &str, end: u32) -> bool {
        for &b in text.as_bytes() {
            let mut logits = vec![0.0f32; width];
            c.mask(&mut logits).unwrap();
            if !logits[b as usize].is_finite() {
                return false;
            }
            c.accept(b as u32).unwrap();
        }
        let mut logits = vec![0.0f32; width];
        c.mask(&mut logits).unwrap();
        logits[end as usize].is_finite()
    }

    fn schema_constraint(engine: &Engine, schema: serde_json::Value) -> Constraint {
        let mut schema = schema;
        schema["x-guidance"] = serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
        engine.constraint(TopLevelGrammar::from_json_schema(schema), NumberScan::json()).unwrap()
    }

    #[test]
    fn json_numbers_are_bounded() {
        let (v, end) = vocab();
        let width = v.ends.len();
        let engine = Engine::new(&v, width, &[end]).unwrap();
        let number = serde_json::json!({"type": "number"});
        let integer = serde_json::json!({"type": "integer"});
        let forty = "3".repeat(40);
        let thirty = "7".repeat(30);
        for (schema, text, ok) in [
            (&number, "3.25", true),
            (&number, "-0.5e-3", true),
            (&number, "1.7976931348623157e308", true),
            (&number, "0.1234567890123456", true),
            (&number, "42", true),
            (&number, forty.as_str(), false),
            (&number, &format!("0.{forty}"), false),
            (&number, "1.23456789012345678", false),
            (&number, "1e1000", false),
            (&integer, "0", true),
            (&integer, "-9223372036854775808", true),
            (&integer, "9223372036854775807", true),
            (&integer, thirty.as_str(), false),
            (&integer, "12345678901234567890", false),
        ] {
            let mut c = schema_constraint(&engine, schema.clone());
            assert_eq!(fits(&mut c, width, text, end), ok, "{schema} {text}");
        }
    }

    #[test]
    fn a_runaway_number_is_cut_and_the_json_still_parses() {
        let (v, end) = vocab();
        let width = v.ends.len();
        let engine = Engine::new(&v, width, &[end]).unwrap();
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"n": {"type": "number"}, "k": {"type": "integer"}},
            "required": ["n", "k"],
            "additionalProperties": false,
        });
        let mut c = schema_constraint(&engine, schema);
        // The "model" would write 3s forever (then a fraction, then 7s).
        let text = greedy(&mut c, width, b"3.7,}", end);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, r#"{"n": 3333333333333333333, "k": 3333333333333333333}"#);
        assert!(value["k"].is_u64());
    }

    #[test]
    fn schema_bounds_still_hold_and_long_constants_still_pass() {
        let (v, end) = vocab();
        let width = v.ends.len();
        let engine = Engine::new(&v, width, &[end]).unwrap();
        let long = "123456789012345678901234567890";
        for (schema, text, ok) in [
            (serde_json::json!({"type": "integer", "minimum": 10, "maximum": 20}), "15", true),
            (serde_json::json!({"type": "integer", "minimum": 10, "maximum": 20}), "25", false),
            (serde_json::json!({"type": "number", "maximum": 1.5}), "1.25", true),
            (serde_json::json!({"type": "number", "maximum": 1.5}), "2", false),
            (serde_json::json!({"type": "integer", "minimum": 0}), "-1", false),
            // The grammar demands more digits than the bounds allow: it wins.
            // (llguidance writes numeric constants through an f64.)
            (serde_json::json!({"const": u64::MAX}), "18446744073709552000", true),
            (serde_json::json!({"enum": [1, u64::MAX]}), "18446744073709552000", true),
            // Digits inside strings are text.
            (serde_json::json!({"type": "string"}), &format!("\"{long}{long}\""), true),
        ] {
            let mut c = schema_constraint(&engine, schema.clone());
            assert_eq!(fits(&mut c, width, text, end), ok, "{schema} {text}");
        }
    }

    #[test]
    fn multi_digit_tokens_are_refused_when_only_one_digit_fits() {
        let (v, end) = vocab();
        let width = v.ends.len();
        let engine = Engine::new(&v, width, &[end]).unwrap();
        let mut c = schema_constraint(&engine, serde_json::json!({"type": "integer"}));
        assert!(fits(&mut c, width, &"1".repeat(18), end));
        let mut logits = vec![0.0f32; width];
        c.mask(&mut logits).unwrap();
        let pair = v.ends.len() - 2; // "12"
        assert!(logits[b'1' as usize].is_finite() && logits[pair].is_infinite());
    }

    #[test]
    fn padded_ids_and_special_tokens_are_never_allowed() {
        let (v, end) = vocab();
        let width = v.ends.len() + 3;
        let engine = Engine::new(&v, width, &[end]).unwrap();
        let mut c = engine.constraint(TopLevelGrammar::from_lark("start: \"ab\"".into()), NumberScan::json()).unwrap();
        let mut logits = vec![0.0f32; width];
        c.mask(&mut logits).unwrap();
        assert!(logits[width - 1].is_infinite() && logits[end as usize].is_infinite());
        assert!(logits[b'a' as usize].is_finite());
    }

    #[test]
    fn bad_grammars_are_errors_not_traps() {
        let (v, end) = vocab();
        let engine = Engine::new(&v, v.ends.len(), &[end]).unwrap();
        assert!(engine.constraint(TopLevelGrammar::from_lark("start: undefined_rule".into()), NumberScan::json()).is_err());
        let too_small = Engine::new(&v, 10, &[end]);
        assert!(too_small.is_err());
    }
}
