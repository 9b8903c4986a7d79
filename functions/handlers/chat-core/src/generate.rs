//! The decode loop for one choice, independent of the host.
//!
//! The model and tokenizer are reached through the [`Sequence`] and
//! [`Detokenizer`] (`decoded.rs`) traits, implemented over wasi:nn and the
//! tokenizer interface in `host.rs`, and by fakes in the tests, so the whole loop
//! (stop tokens, stop sequences, length limit, logprobs, deltas) is tested
//! natively.

use std::collections::HashMap;

use handler_common::ApiError;

use crate::decoded::{DecodedText, Detokenizer};
use crate::grammar::Constraint;
use crate::logits::Logits;
use crate::sampling::{Sampler, log_sum_exp, top_k};
use crate::text::{Step, TextTracker};

/// One sequence of a decoder model (one wasi:nn execution context).
pub trait Sequence {
    /// Appends `ids` to the sequence and returns the logits of its last
    /// position (one value per vocabulary entry).
    fn feed(&mut self, ids: &[u32]) -> Result<Logits, ApiError>;
}

/// Why a choice ended (OpenAI `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token or stop sequence.
    Stop,
    /// The token limit.
    Length,
    /// The model called tools.
    ToolCalls,
}

impl FinishReason {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
        }
    }
}

/// Log probability of one generated token and its best alternatives, from
/// the raw logits.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// The most likely tokens at that position, descending.
    pub top: Vec<(String, f32)>,
    /// Characters of completion text before this token (legacy
    /// `text_offset`).
    pub text_offset: usize,
}

/// What one choice produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceResult {
    /// The completion text (stop sequence excluded).
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens generated, including a final stop token.
    pub completion_tokens: u32,
    /// Per-token log probabilities, when requested (a final stop token has
    /// none: it is not part of the text).
    pub logprobs: Vec<TokenLogprob>,
    /// Tool calls for the client to run (the text is then the content
    /// before them, usually empty).
    pub tool_calls: Vec<ToolCall>,
    /// Deployed tools the server ran for this choice, in order.
    pub server_calls: Vec<ServerCall>,
}

/// A tool call returned to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// `call_…`.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments JSON text as generated.
    pub arguments: String,
}

/// A call of a deployed tool function that the server made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerCall {
    /// `call_…`.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments JSON text as generated.
    pub arguments: String,
    /// The tool's output, or its error message (also what the model saw).
    pub output: String,
    /// Whether the call failed.
    pub is_error: bool,
}

/// The end of a choice.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Generation finished.
    Finished(ChoiceResult),
    /// The delta callback returned false (the client left); generation
    /// stopped at once.
    Abandoned {
        /// Tokens generated until then, for metering.
        completion_tokens: u32,
    },
}

/// Settings of one choice.
pub struct ChoiceSpec<'a> {
    /// Prompt token ids (the prefill).
    pub prompt: &'a [u32],
    /// Completion token limit (>= 1).
    pub max_tokens: u32,
    /// Ids that end the turn.
    pub stop_tokens: &'a [u32],
    /// Stop sequences.
    pub stop: &'a [String],
    /// Alternatives per token when logprobs are wanted.
    pub logprobs: Option<u32>,
}

/// Caches token texts: the same alternatives come up again and again, and
/// each lookup is a host call.
pub struct CachedTokens<'d, D: Detokenizer> {
    inner: &'d mut D,
    texts: HashMap<u32, String>,
}

impl<'d, D: Detokenizer> CachedTokens<'d, D> {
    fn new(inner: &'d mut D) -> Self {
        Self { inner, texts: HashMap::new() }
    }

    fn text(&mut self, id: u32) -> Result<String, ApiError> {
        if let Some(t) = self.texts.get(&id) {
            return Ok(t.clone());
        }
        let t = self.inner.token_text(id)?;
        self.texts.insert(id, t.clone());
        Ok(t)
    }
}

/// What the consumer of released text wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep generating.
    Continue,
    /// The answer is complete (a model repeating a tool call): end it as a
    /// normal stop.
    Stop,
    /// The client left: stop at once.
    Abandon,
}

/// Runs one choice to its end. `on_delta(text, logprobs)` receives every
/// piece of released text with the logprobs of the tokens since the last
/// call (text may be empty when only logprobs are pending) and says whether
/// to go on. With a `constraint`, every token is drawn from what
/// its grammar allows, and the choice ends when the grammar is complete.
pub fn run_choice<S, D, F>(
    seq: &mut S,
    detok: &mut D,
    sampler: &mut Sampler,
    spec: &ChoiceSpec<'_>,
    mut constraint: Option<&mut Constraint>,
    mut on_delta: F,
) -> Result<Outcome, ApiError>
where
    S: Sequence,
    D: Detokenizer,
    F: FnMut(&str, &[TokenLogprob]) -> Flow,
{
    let mut tokens = CachedTokens::new(detok);
    let mut tracker = TextTracker::new(spec.stop);
    let mut decoded = DecodedText::new();
    let mut all_logprobs = Vec::new();
    // Logprobs of tokens whose text has not been released yet.
    let mut unsent = 0;
    let mut generated = 0u32;

    let mut logits = seq.feed(spec.prompt)?;
    // Each exit yields the finish reason and the text still to release.
    let (finish_reason, last) = loop {
        if let Some(c) = constraint.as_deref_mut() {
            c.mask(&mut logits).map_err(grammar_error)?;
        }
        let token = sampler.sample(&logits);
        generated += 1;
        if spec.stop_tokens.contains(&token) {
            // The stop token is not text; flush what the tracker held back
            // (it may still contain a stop sequence, then it is cut there).
            let (delta, _) = tracker.finish(decoded.text());
            break (FinishReason::Stop, delta);
        }
        if let Some(k) = spec.logprobs {
            let offset = decoded.text().chars().count();
            all_logprobs.push(token_logprob(&logits, token, k, offset, &mut tokens)?);
        }
        sampler.record(token);
        decoded.push(tokens.inner, token)?;
        // Nothing but the end can follow a complete grammar: stop without
        // computing another step.
        let complete = match constraint.as_deref_mut() {
            Some(c) => {
                c.accept(token).map_err(grammar_error)?;
                c.is_finished()
            }
            None => false,
        };

        match tracker.update(decoded.text()) {
            Step::Stop(delta) => break (FinishReason::Stop, delta),
            Step::Continue(delta) if !delta.is_empty() => {
                let flow = on_delta(&delta, &all_logprobs[unsent..]);
                unsent = all_logprobs.len();
                match flow {
                    Flow::Continue => {}
                    Flow::Stop => break (FinishReason::Stop, String::new()),
                    Flow::Abandon => {
                        return Ok(Outcome::Abandoned { completion_tokens: generated });
                    }
                }
            }
            Step::Continue(_) => {}
        }
        if complete {
            let (delta, _) = tracker.finish(decoded.text());
            break (FinishReason::Stop, delta);
        }
        if generated >= spec.max_tokens {
            let (delta, hit_stop) = tracker.finish(decoded.text());
            let reason = if hit_stop { FinishReason::Stop } else { FinishReason::Length };
            break (reason, delta);
        }
        logits = seq.feed(&[token])?;
    };

    if (!last.is_empty() || unsent < all_logprobs.len()) && on_delta(&last, &all_logprobs[unsent..]) == Flow::Abandon {
        return Ok(Outcome::Abandoned { completion_tokens: generated });
    }

    Ok(Outcome::Finished(ChoiceResult {
        text: tracker.text().to_owned(),
        finish_reason,
        completion_tokens: generated,
        logprobs: all_logprobs,
        tool_calls: Vec::new(),
        server_calls: Vec::new(),
    }))
}

/// A failure of the grammar engine mid-generation (the sampler chose a
/// token the grammar forbids, which `logit_bias` banning every allowed
/// token can cause).
fn grammar_error(message: String) -> ApiError {
    ApiError::server(format!("constrained decoding failed: {message}"))
}

/// Log probability (log-softmax of the raw logits) of `token` and of the
/// `k` most likely tokens. Logprobs of impossible tokens are clamped to
/// -9999, the value OpenAI reports for them, to stay valid JSON.
fn token_logprob<D: Detokenizer>(
    logits: &[f32],
    token: u32,
    k: u32,
    text_offset: usize,
    tokens: &mut CachedTokens<'_, D>,
) -> Result<TokenLogprob, ApiError> {
    let lse = log_sum_exp(logits);
    let logprob = |x: f32| {
        let lp = x - lse;
        if lp.is_nan() { -9999.0 } else { lp.max(-9999.0) }
    };
    let chosen = logits.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
    let top = top_k(logits, k as usize)
        .into_iter()
        .map(|(id, x)| Ok((tokens.text(id)?, logprob(x))))
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(TokenLogprob { token: tokens.text(token)?, logprob: logprob(chosen), top, text_offset })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{Rng, SamplingParams};

    /// A byte-level vocabulary: each token is some bytes; id 0 is `<eos>`.
    struct ByteTokenizer {
        vocab: Vec<Vec<u8>>,
    }

    impl ByteTokenizer {
        fn new(pieces: &[&[u8]]) -> Self {
            let mut vocab = vec![b"<eos>".to_vec()];
            vocab.extend(pieces.iter().map(|p| p.to_vec()));
            Self { vocab }
        }

        /// Ids spelling `text` one byte at a time (bytes are ids 1..=256).
        fn bytes() -> Self {
            let pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            Self::new(&refs)
        }
    }

    impl Detokenizer for ByteTokenizer {
        fn decode(&mut self, ids: &[u32]) -> Result<String, ApiError> {
            let bytes: Vec<u8> = ids.iter().filter(|&&id| id != 0).flat_map(|&id| self.vocab[id as usize].clone()).collect();
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }

        fn token_text(&mut self, id: u32) -> Result<String, ApiError> {
            Ok(String::from_utf8_lossy(&self.vocab[id as usize]).into_owned())
        }
    }

    /// A model that makes the next scripted token by far the most likely.
    struct ScriptedModel {
        script: Vec<u32>,
        vocab: usize,
        fed: Vec<Vec<u32>>,
    }

    impl Sequence for ScriptedModel {
        fn feed(&mut self, ids: &[u32]) -> Result<Logits, ApiError> {
            self.fed.push(ids.to_vec());
            let next = self.script.get(self.fed.len() - 1).copied().unwrap_or(0);
            let mut logits = vec![0.0; self.vocab];
            logits[next as usize] = 10.0;
            Ok(logits.into())
        }
    }

    fn greedy() -> Sampler {
        Sampler::new(
            SamplingParams {
                temperature: 0.0,
                top_p: 1.0,
                presence_penalty: 0.0,
                frequency_penalty: 0.0,
                logit_bias: Vec::new(),
            },
            Rng::for_choice(0, 0),
        )
    }

    struct Run {
        outcome: Outcome,
        deltas: Vec<String>,
        delta_logprobs: Vec<TokenLogprob>,
        model: ScriptedModel,
    }

    fn run(tok: &mut ByteTokenizer, script: Vec<u32>, max_tokens: u32, stop: &[&str], logprobs: Option<u32>) -> Run {
        let mut model = ScriptedModel { script, vocab: tok.vocab.len(), fed: Vec::new() };
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let spec = ChoiceSpec { prompt: &[7, 8], max_tokens, stop_tokens: &[0], stop: &stop, logprobs };
        let mut deltas = Vec::new();
        let mut delta_logprobs = Vec::new();
        let outcome = run_choice(&mut model, tok, &mut greedy(), &spec, None, |d, lp| {
            deltas.push(d.to_owned());
            delta_logprobs.extend_from_slice(lp);
            Flow::Continue
        })
        .unwrap();
        Run { outcome, deltas, delta_logprobs, model }
    }

    fn finished(outcome: &Outcome) -> &ChoiceResult {
        match outcome {
            Outcome::Finished(r) => r,
            other => panic!("not finished: {other:?}"),
        }
    }

    #[test]
    fn stop_sequence_across_tokens_is_cut_exactly_and_never_streamed() {
        let mut tok = ByteTokenizer::new(&[b"The", b" E", b"N", b"D", b" more"]);
        let r = run(&mut tok, vec![1, 2, 3, 4, 5, 0], 100, &["END"], None);
        let result = finished(&r.outcome);
        assert_eq!(result.text, "The ");
        assert_eq!(result.finish_reason, FinishReason::Stop);
        assert_eq!(result.completion_tokens, 4, "stopped at the token completing END");
        assert_eq!(r.deltas.concat(), "The ");
        assert!(r.deltas.iter().all(|d| !d.contains('E') && !d.contains('N')), "{:?}", r.deltas);
    }

    #[test]
    fn streamed_deltas_concatenate_to_the_full_text() {
        let text = "héllo wörld — ✓ 🦀!";
        let mut tok = ByteTokenizer::bytes();
        let mut script: Vec<u32> = text.bytes().map(|b| b as u32 + 1).collect();
        script.push(0);
        let r = run(&mut tok, script, 1000, &[], None);
        let result = finished(&r.outcome);
        assert_eq!(result.text, text);
        assert_eq!(r.deltas.concat(), text);
        assert!(r.deltas.iter().all(|d| !d.contains('\u{FFFD}')), "{:?}", r.deltas);
        assert_eq!(result.finish_reason, FinishReason::Stop);
        assert_eq!(result.completion_tokens, text.len() as u32 + 1);
    }

    #[test]
    fn stop_sequence_with_multibyte_text_matches_non_streamed() {
        let mut tok = ByteTokenizer::bytes();
        let text = "naïve→ stop→ here";
        let script: Vec<u32> = text.bytes().map(|b| b as u32 + 1).collect();
        let r = run(&mut tok, script, 1000, &["→ h"], None);
        let result = finished(&r.outcome);
        assert_eq!(result.text, "naïve→ stop");
        assert_eq!(r.deltas.concat(), result.text);
    }

    #[test]
    fn length_limit_stops_without_an_extra_compute() {
        let mut tok = ByteTokenizer::new(&[b"a", b"b"]);
        let r = run(&mut tok, vec![1, 2, 1, 2, 1], 3, &[], None);
        let result = finished(&r.outcome);
        assert_eq!(result.text, "aba");
        assert_eq!(result.finish_reason, FinishReason::Length);
        assert_eq!(result.completion_tokens, 3);
        assert_eq!(r.model.fed, vec![vec![7, 8], vec![1], vec![2]]);
    }

    #[test]
    fn stop_token_ends_without_text() {
        let mut tok = ByteTokenizer::new(&[b"Hi"]);
        let r = run(&mut tok, vec![1, 0], 10, &[], Some(0));
        let result = finished(&r.outcome);
        assert_eq!(result.text, "Hi");
        assert_eq!(result.finish_reason, FinishReason::Stop);
        assert_eq!(result.completion_tokens, 2);
        assert_eq!(result.logprobs.len(), 1, "no logprob entry for the stop token");
    }

    #[test]
    fn logprobs_are_log_softmax_of_raw_logits() {
        let mut tok = ByteTokenizer::new(&[b"x", b"y", b"z"]);
        let r = run(&mut tok, vec![1, 2, 0], 10, &[], Some(2));
        let result = finished(&r.outcome);
        assert_eq!(result.logprobs.len(), 2);
        // One logit of 10 among four: log(e^10 / (e^10 + 3)).
        let expected = 10.0 - (10f32.exp() + 3.0).ln();
        let first = &result.logprobs[0];
        assert_eq!(first.token, "x");
        assert!((first.logprob - expected).abs() < 1e-5);
        assert_eq!(first.top.len(), 2);
        assert_eq!(first.top[0].0, "x");
        assert!(first.top[0].1 > first.top[1].1);
        assert_eq!(first.top[1].0, "<eos>", "ties go to the lowest id");
        assert_eq!(result.logprobs[1].text_offset, 1);
        assert_eq!(r.delta_logprobs, result.logprobs, "streamed logprobs add up");
    }

    #[test]
    fn logprobs_of_held_back_tokens_are_sent_with_their_text() {
        let mut tok = ByteTokenizer::new(&[b"a", b"#", b"b"]);
        let r = run(&mut tok, vec![1, 2, 3, 0], 10, &["##"], Some(0));
        let result = finished(&r.outcome);
        assert_eq!(result.text, "a#b");
        assert_eq!(r.deltas, ["a", "#b"]);
        assert_eq!(r.delta_logprobs.len(), 3);
    }

    #[test]
    fn client_leaving_abandons_at_once() {
        let mut tok = ByteTokenizer::new(&[b"a"]);
        let mut model = ScriptedModel { script: vec![1; 50], vocab: 2, fed: Vec::new() };
        let spec = ChoiceSpec { prompt: &[1], max_tokens: 50, stop_tokens: &[0], stop: &[], logprobs: None };
        let outcome = run_choice(&mut model, &mut tok, &mut greedy(), &spec, None, |_, _| Flow::Abandon).unwrap();
        assert_eq!(outcome, Outcome::Abandoned { completion_tokens: 1 });
        assert_eq!(model.fed.len(), 1);
    }

    #[test]
    fn model_errors_propagate() {
        struct Broken;
        impl Sequence for Broken {
            fn feed(&mut self, _: &[u32]) -> Result<Logits, ApiError> {
                Err(ApiError::server("wasi-nn compute failed: runtime-error: boom"))
            }
        }
        let mut tok = ByteTokenizer::new(&[]);
        let spec = ChoiceSpec { prompt: &[1], max_tokens: 5, stop_tokens: &[0], stop: &[], logprobs: None };
        let err = run_choice(&mut Broken, &mut tok, &mut greedy(), &spec, None, |_, _| Flow::Continue).unwrap_err();
        assert_eq!(err.status, 500);
        assert!(err.message.contains("boom"));
    }
}
