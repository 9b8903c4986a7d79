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

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{
    ApproximateTokEnv, InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenId,
};
use llguidance::{Matcher, ParserFactory};

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
            let word = self
                .bytes
                .get(start..end)
                .ok_or_else(|| format!("vocabulary offsets out of range at {end}"))?;
            words.push(word.to_vec());
            start = end;
        }
        if words.len() > width {
            return Err(format!(
                "the tokenizer has {} tokens but the model's logits only {width}",
                words.len()
            ));
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
}

impl Engine {
    /// Builds the token trie of `vocab` (logits rows are `width` wide).
    pub fn new(vocab: &Vocabulary, width: usize, stop_tokens: &[u32]) -> Result<Self, String> {
        let eos = *stop_tokens
            .first()
            .ok_or("the model has no stop token to end a constrained answer with")?;
        let words = vocab.words(width)?;
        let info = TokRxInfo::new(words.len() as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        // No slicer regexes: they speed up masks inside long JSON strings at
        // the cost of a pass over the vocabulary per regex at start-up, which
        // a fresh instance per request would pay every time.
        let mut factory = ParserFactory::new(&env, InferenceCapabilities::default(), &[])
            .map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self {
            factory,
            stop_tokens: stop_tokens.to_vec(),
        })
    }

    /// Compiles `grammar`. The error names what is wrong with it (an
    /// unsupported schema keyword, say).
    pub fn constraint(&self, grammar: TopLevelGrammar) -> Result<Constraint, String> {
        let parser = self.factory.create_parser(grammar).map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(err) = matcher.get_error() {
            return Err(err);
        }
        Ok(Constraint {
            matcher,
            eos: self.factory.tok_env().tok_trie().eos_token(),
            stop_tokens: self.stop_tokens.clone(),
        })
    }
}

/// One grammar being followed by one sequence.
pub struct Constraint {
    matcher: Matcher,
    eos: TokenId,
    stop_tokens: Vec<u32>,
}

impl Constraint {
    /// Sets every logit the grammar does not allow now to -inf.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self.matcher.compute_mask_or_eos().map_err(|e| e.to_string())?;
        let may_end = allowed.is_allowed(self.eos);
        for (id, x) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let ok = allowed.is_allowed(id) || (may_end && self.stop_tokens.contains(&id));
            if !ok {
                *x = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances the grammar past a sampled (non-stop) token.
    pub fn accept(&mut self, token: u32) -> Result<(), String> {
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
        for w in ["{\"", "\": ", "true", "false", "null", "\"}", "ab"] {
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
            let (id, x) = logits
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best });
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
        let mut c = engine.constraint(TopLevelGrammar::from_json_schema(schema)).unwrap();
        // The "model" loves the letter z, which JSON never allows here.
        let text = greedy(&mut c, width, b"ztf", end);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(value["ok"].is_boolean(), "{text}");
    }

    #[test]
    fn padded_ids_and_special_tokens_are_never_allowed() {
        let (v, end) = vocab();
        let width = v.ends.len() + 3;
        let engine = Engine::new(&v, width, &[end]).unwrap();
        let mut c = engine
            .constraint(TopLevelGrammar::from_lark("start: \"ab\"".into()))
            .unwrap();
        let mut logits = vec![0.0f32; width];
        c.mask(&mut logits).unwrap();
        assert!(logits[width - 1].is_infinite() && logits[end as usize].is_infinite());
        assert!(logits[b'a' as usize].is_finite());
    }

    #[test]
    fn bad_grammars_are_errors_not_traps() {
        let (v, end) = vocab();
        let engine = Engine::new(&v, v.ends.len(), &[end]).unwrap();
        assert!(engine
            .constraint(TopLevelGrammar::from_lark("start: undefined_rule".into()))
            .is_err());
        let too_small = Engine::new(&v, 10, &[end]);
        assert!(too_small.is_err());
    }
}
