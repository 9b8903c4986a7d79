//! Property tests of the streaming path, over generated cases:
//!
//! - the tool-call scanner cuts the same calls and content however the text is split;
//! - stop-sequence hold-back never releases text past a stop sequence and releases
//!   everything before it, for any split of the text into tokens (multi-byte characters
//!   split across tokens included);
//! - stream == non-stream: at temperature 0.8 with a seed, the decode loop gives the same
//!   choice whoever consumes its deltas, the deltas add up to the final text, and the
//!   stream chunks built from them reassemble to the non-streamed response (content,
//!   tool calls, finish reason), with and without a tool-call grammar.
//!
//! Cases come from a seeded PRNG (host/tests/fuzz/mutate.rs `cases`): a fixed number in
//! `scripts/test-guests.sh`, `FUZZ_SECONDS` each under `make fuzz`; a failure prints
//! `FUZZ_SEED` and `FUZZ_CASE` to rerun exactly that case.

#[path = "../../../../host/tests/fuzz/mutate.rs"]
mod mutate;

use chat_core::calls::{self, CallFormat, Event, HERMES, JSON_LIST, LLAMA3_JSON, ScannedCall, Scanner};
use chat_core::decoded::Detokenizer;
use chat_core::generate::{ChoiceResult, ChoiceSpec, FinishReason, Flow, Outcome, Sequence, ToolCall, run_choice};
use chat_core::grammar::{Engine, Vocabulary};
use chat_core::logits::Logits;
use chat_core::request::Endpoint;
use chat_core::response::{ChunkEvent, ChunkWriter, Envelope, Usage, full_response};
use chat_core::sampling::{Rng as SamplerRng, Sampler, SamplingParams};
use chat_core::text::{Step, TextTracker};
use chat_core::tools::{ResponseFormat, ToolChoice, ToolDef, Tooling};
use handler_common::ApiError;
use mutate::{Rng, cases, fnv};
use serde_json::{Value, json};

const FORMATS: [CallFormat; 3] = [HERMES, JSON_LIST, LLAMA3_JSON];

/// Splits `text` at random character boundaries (empty pieces included).
fn split_chars(rng: &mut Rng, text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if rng.one_in(3) {
            pieces.push(std::mem::take(&mut current));
            if rng.one_in(8) {
                pieces.push(String::new());
            }
        }
        current.push(c);
    }
    pieces.push(current);
    pieces
}

/// Merges runs of content and of one call's arguments, so event lists from different
/// splits compare.
fn normalize(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        match (out.last_mut(), e) {
            (_, Event::Content(t)) if t.is_empty() => {}
            (Some(Event::Content(a)), Event::Content(b)) => a.push_str(&b),
            (Some(Event::Arguments { index: i, text: a }), Event::Arguments { index: j, text: b }) if *i == j => a.push_str(&b),
            (_, e) => out.push(e),
        }
    }
    out
}

struct Scan {
    events: Vec<Event>,
    calls: Vec<ScannedCall>,
    repeated: bool,
}

/// Feeds `pieces` as the handler does: stops feeding once the scanner saw a repeat.
fn scan(format: CallFormat, calls_allowed: bool, pieces: &[String]) -> Scan {
    let mut s = Scanner::new(format, calls_allowed);
    let mut events = Vec::new();
    for p in pieces {
        events.extend(s.feed(p));
        if s.repeated() {
            break;
        }
    }
    events.extend(s.finish());
    Scan { events: normalize(events), calls: s.calls().to_vec(), repeated: s.repeated() }
}

/// JSON arguments with the characters that trip a brace counter: braces and brackets
/// inside strings, escaped quotes, backslashes, nesting, non-ASCII.
fn json_args(rng: &mut Rng, depth: usize) -> Value {
    let strings = ["", "}", "{", "]\"[", "a\\\"b", "\\", "é€🦀", "<tool_call>", "\n</tool_call>", "x"];
    match rng.below(if depth > 2 { 3 } else { 6 }) {
        0 => json!(rng.pick(&strings)),
        1 => json!(rng.below(1000) as i64 - 500),
        2 => json!(rng.one_in(2)),
        3 => Value::Array((0..rng.below(3)).map(|_| json_args(rng, depth + 1)).collect()),
        _ => {
            Value::Object((0..rng.below(3)).map(|i| (format!("k{i}{}", rng.pick(&strings)), json_args(rng, depth + 1))).collect())
        }
    }
}

fn calls_text(rng: &mut Rng, format: &CallFormat) -> (String, Vec<(String, String)>) {
    let n = rng.range(1, 4);
    let calls: Vec<(String, String)> = (0..n)
        .map(|_| {
            let name = rng.pick(&["a", "b", "get_weather", "x-y_z"]).to_string();
            let mut args = json!({});
            if let Value::Object(m) = &mut args {
                for k in 0..rng.below(3) {
                    m.insert(format!("p{k}"), json_args(rng, 0));
                }
            }
            (name, args.to_string())
        })
        .collect();
    let text = format.write_calls(calls.iter().map(|(n, a)| (n.as_str(), a.as_str())));
    (text, calls)
}

#[test]
fn scanner_cuts_the_same_calls_however_the_text_is_split() {
    cases("scanner_split", 3000, |rng| {
        let format = *rng.pick(&FORMATS);
        let calls_allowed = !rng.one_in(6);
        let (mut text, written) = calls_text(rng, &format);
        let well_formed = match rng.below(6) {
            // Text before the calls: an answer, not calls.
            0 => {
                text.insert_str(0, rng.pick(&["Sure: ", " ", "é"]));
                false
            }
            // Cut short (a stop sequence or the token limit).
            1 => {
                let at = rng.below(text.len());
                let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                text.truncate(at);
                false
            }
            // Junk after the calls.
            2 => {
                text.push_str(rng.pick(&["\n", "trailing", "<tool_call>\n{\"na", "]"]));
                false
            }
            _ => true,
        };
        let whole = scan(format, calls_allowed, &[text.clone()]);
        for _ in 0..4 {
            let pieces = split_chars(rng, &text);
            let split = scan(format, calls_allowed, &pieces);
            if split.calls != whole.calls || split.repeated != whole.repeated || split.events != whole.events {
                return Err(format!(
                    "text {text:?}\nsplit {pieces:?}\nwhole: {:?} {:?} repeated={}\nsplit: {:?} {:?} repeated={}",
                    whole.calls, whole.events, whole.repeated, split.calls, split.events, split.repeated
                ));
            }
        }
        // Well-formed calls come back as written, the first of any repeat only.
        if well_formed && calls_allowed {
            let mut expected: Vec<ScannedCall> = Vec::new();
            for (name, arguments) in &written {
                if expected.iter().any(|c| &c.name == name && &c.arguments == arguments) {
                    break;
                }
                expected.push(ScannedCall { name: name.clone(), arguments: arguments.clone() });
            }
            if whole.calls != expected {
                return Err(format!("text {text:?}: scanned {:?}, written {expected:?}", whole.calls));
            }
            if whole.events.iter().any(|e| matches!(e, Event::Content(_))) {
                return Err(format!("calls-only text {text:?} gave content {:?}", whole.events));
            }
        }
        if !calls_allowed {
            let content: String = whole.events.iter().map(|e| if let Event::Content(t) = e { t.as_str() } else { "" }).collect();
            if content != text || !whole.calls.is_empty() {
                return Err(format!("without tools the text must pass through: {text:?} -> {:?}", whole.events));
            }
        }
        Ok(())
    });
}

// --- stop-sequence hold-back --------------------------------------------------------------

/// Pieces of generated text: ASCII, multi-byte characters (cut mid-character by the
/// byte splits below), and the letters of the stop sequences.
const ALPHABET: &[&str] = &["a", "b", "E", "N", "D", " ", "\n", "#", "é", "€", "🦀", "##", "END"];

fn random_text(rng: &mut Rng, max: usize) -> String {
    (0..rng.below(max + 1)).map(|_| *rng.pick(ALPHABET)).collect()
}

/// The successive decodes of `text` generated a few bytes at a time, as a byte-level
/// tokenizer gives them: a character still arriving decodes to U+FFFD.
fn decodes(rng: &mut Rng, text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        at = (at + rng.range(1, 4)).min(bytes.len());
        out.push(String::from_utf8_lossy(&bytes[..at]).into_owned());
    }
    out
}

struct Held {
    deltas: Vec<String>,
    text: String,
    stopped: bool,
    /// Index of the decode the stop was found at (`decodes.len()` for the final flush).
    stopped_at: Option<usize>,
}

fn hold_back(stops: &[String], decodes: &[String], full: &str) -> Held {
    let mut t = TextTracker::new(stops);
    let mut deltas = Vec::new();
    for (i, d) in decodes.iter().enumerate() {
        match t.update(d) {
            Step::Continue(delta) => deltas.push(delta),
            Step::Stop(delta) => {
                deltas.push(delta);
                return Held { deltas, text: t.text().to_owned(), stopped: true, stopped_at: Some(i) };
            }
        }
    }
    let (delta, stopped) = t.finish(full);
    deltas.push(delta);
    Held { deltas, text: t.text().to_owned(), stopped, stopped_at: stopped.then_some(decodes.len()) }
}

#[test]
fn stop_sequences_are_held_back_and_cut_for_any_split() {
    cases("stop_hold_back", 3000, |rng| {
        let text = random_text(rng, 24);
        let n_stops = rng.range(1, 3);
        let stops: Vec<String> = (0..n_stops)
            .map(|_| {
                // Half the time a piece of the text, so it is found.
                let chars: Vec<char> = text.chars().collect();
                if !chars.is_empty() && rng.one_in(2) {
                    let start = rng.below(chars.len());
                    let len = rng.range(1, 4).min(chars.len() - start);
                    chars[start..start + len].iter().collect()
                } else {
                    let s = random_text(rng, 3);
                    if s.is_empty() { "#".to_owned() } else { s }
                }
            })
            .collect();
        let ds = decodes(rng, &text);
        let r = hold_back(&stops, &ds, &text);
        let ctx = || format!("text {text:?} stops {stops:?} decodes {ds:?} deltas {:?}", r.deltas);
        if r.deltas.concat() != r.text {
            return Err(format!("the deltas do not add up to the text: {}", ctx()));
        }
        if r.deltas.iter().any(|d| d.contains('\u{FFFD}')) {
            return Err(format!("a character still arriving was released: {}", ctx()));
        }
        if !text.starts_with(&r.text) {
            return Err(format!("released {:?}, not a prefix of the text: {}", r.text, ctx()));
        }
        if let Some(s) = stops.iter().find(|s| r.text.contains(s.as_str())) {
            return Err(format!("released text contains the stop {s:?}: {}", ctx()));
        }
        // Everything before the stop was released, and the stop follows it.
        let rest = &text[r.text.len()..];
        match r.stopped {
            true if !stops.iter().any(|s| rest.starts_with(s.as_str())) => {
                return Err(format!("stopped, but no stop sequence follows {:?}: {}", r.text, ctx()));
            }
            false if r.text != text => return Err(format!("no stop, yet {:?} was kept back: {}", rest, ctx())),
            _ => {}
        }
        // Found as soon as it was whole: no earlier decode (its settled part) held one.
        let settled = |d: &str| d.trim_end_matches('\u{FFFD}').to_owned();
        let first_with_stop = ds.iter().position(|d| stops.iter().any(|s| settled(d).contains(s.as_str())));
        let expected = first_with_stop.or(r.stopped.then_some(ds.len()));
        if r.stopped_at != expected {
            return Err(format!("stop found at decode {:?}, whole at {expected:?}: {}", r.stopped_at, ctx()));
        }
        // One stop sequence: the cut is at its first occurrence, whatever the split.
        if stops.len() == 1 {
            let cut = text.find(stops[0].as_str()).unwrap_or(text.len());
            if r.text != text[..cut] {
                return Err(format!("one stop: released {:?}, expected {:?}: {}", r.text, &text[..cut], ctx()));
            }
        }
        Ok(())
    });
}

// --- stream == non-stream -----------------------------------------------------------------

/// Vocabulary: id 0 is the stop token (special, 0xFF-marked for the grammar), ids
/// 1..=256 single bytes, then longer pieces a tokenizer would have.
struct Vocab {
    words: Vec<Vec<u8>>,
}

const PIECES: &[&str] =
    &["<tool_call>", "\n", "{\"name\": \"", "\", \"arguments\": ", "}", "The", " cat", "é", "END", " ", "\"", "\": "];

impl Vocab {
    fn new() -> Self {
        let mut words = vec![b"\xFF<|end|>".to_vec()];
        words.extend((0..=255u8).map(|b| vec![b]));
        words.extend(PIECES.iter().map(|p| p.as_bytes().to_vec()));
        Self { words }
    }

    fn grammar_vocab(&self) -> Vocabulary {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for w in &self.words {
            bytes.extend_from_slice(w);
            ends.push(bytes.len() as u32);
        }
        Vocabulary { bytes, ends }
    }
}

impl Detokenizer for Vocab {
    fn decode(&mut self, ids: &[u32]) -> Result<String, ApiError> {
        let bytes: Vec<u8> = ids.iter().filter(|&&i| i != 0).flat_map(|&i| self.words[i as usize].clone()).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn token_text(&mut self, id: u32) -> Result<String, ApiError> {
        Ok(String::from_utf8_lossy(&self.words[id as usize]).into_owned())
    }
}

/// A model whose logits are a pseudo-random function of the sequence so far, biased
/// toward a few tokens (so text has stop sequences and JSON closes): deterministic, like
/// a real model, whatever reads its output.
struct RandomModel {
    history: Vec<u32>,
    width: usize,
    favoured: Vec<u32>,
}

impl Sequence for RandomModel {
    fn feed(&mut self, ids: &[u32]) -> Result<Logits, ApiError> {
        self.history.extend_from_slice(ids);
        let h = fnv(&self.history.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>());
        let mut rng = Rng::new(h);
        let mut logits: Vec<f32> = (0..self.width).map(|_| (rng.next_u64() % 1000) as f32 / 250.0).collect();
        for &f in &self.favoured {
            logits[f as usize] += 6.0;
        }
        Ok(logits.into())
    }
}

/// One choice as the handler runs it: decode loop, scanner, client calls; `stream`
/// also builds the chunks, as `turns.rs` does.
struct Ran {
    result: ChoiceResult,
    deltas: String,
    chunks: Vec<String>,
}

fn run_one(case: &Case, engine: Option<&Engine>, stream: bool, writer: &ChunkWriter) -> Result<Ran, String> {
    let mut vocab = Vocab::new();
    let mut model = RandomModel { history: Vec::new(), width: vocab.words.len(), favoured: case.favoured.clone() };
    let params = SamplingParams {
        temperature: 0.8,
        top_p: case.top_p,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        logit_bias: Vec::new(),
    };
    let mut sampler = Sampler::new(params, SamplerRng::for_choice(case.seed, 0));
    let spec =
        ChoiceSpec { prompt: &[1, 2, 3], max_tokens: case.max_tokens, stop_tokens: &[0], stop: &case.stops, logprobs: None };
    let mut constraint = match engine {
        Some(e) => Some(
            e.constraint(
                llguidance::api::TopLevelGrammar::from_lark(calls::tools_grammar(&case.tooling, &case.format)),
                calls::number_scan(&case.tooling, &case.format),
            )
            .map_err(|e| format!("the tools grammar does not compile: {e}"))?,
        ),
        None => None,
    };
    let mut scanner = Scanner::new(case.format, case.tooling.calls_allowed());
    let mut content = String::new();
    let mut client_calls: Vec<ToolCall> = Vec::new();
    let mut deltas = String::new();
    let mut chunks = Vec::new();
    if stream {
        chunks.extend(writer.chunk(0, ChunkEvent::Start));
    }
    let mut on_events = |events: Vec<Event>, chunks: &mut Vec<String>| {
        for event in events {
            let chunk = match event {
                Event::Content(text) => {
                    content.push_str(&text);
                    stream.then(|| writer.chunk(0, ChunkEvent::Text(&text, &[]))).flatten()
                }
                Event::CallStart { name, .. } => {
                    let at = client_calls.len();
                    client_calls.push(ToolCall { id: format!("call_{at}"), name, arguments: String::new() });
                    let call = &client_calls[at];
                    stream.then(|| writer.chunk(0, ChunkEvent::CallStart(at, &call.id, &call.name))).flatten()
                }
                Event::Arguments { index, text } => {
                    client_calls[index].arguments.push_str(&text);
                    stream.then(|| writer.chunk(0, ChunkEvent::CallArguments(index, &text))).flatten()
                }
            };
            chunks.extend(chunk);
        }
    };
    let outcome = run_choice(&mut model, &mut vocab, &mut sampler, &spec, constraint.as_mut(), |text, _| {
        deltas.push_str(text);
        on_events(scanner.feed(text), &mut chunks);
        if scanner.repeated() { Flow::Stop } else { Flow::Continue }
    })
    .map_err(|e| format!("run_choice failed: {}", e.message))?;
    let Outcome::Finished(mut result) = outcome else { return Err("abandoned without a client leaving".into()) };
    on_events(scanner.finish(), &mut chunks);
    if deltas != result.text {
        return Err(format!("deltas {deltas:?} != final text {:?}", result.text));
    }
    result.text = content;
    if !client_calls.is_empty() && result.finish_reason == FinishReason::Stop {
        result.finish_reason = FinishReason::ToolCalls;
    }
    result.tool_calls = client_calls;
    if stream {
        chunks.extend(writer.chunk(0, ChunkEvent::Finish(result.finish_reason)));
    }
    Ok(Ran { result, deltas, chunks })
}

struct Case {
    seed: u64,
    top_p: f32,
    max_tokens: u32,
    stops: Vec<String>,
    favoured: Vec<u32>,
    tooling: Tooling,
    format: CallFormat,
}

/// What a client reassembles from the chunks: content, (name, arguments) per call, the
/// finish reason.
type Answer = (String, Vec<(String, String, String)>, Option<String>);

fn reassemble(chunks: &[String]) -> Result<Answer, String> {
    let mut content = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    for c in chunks {
        let v: Value = serde_json::from_str(c).map_err(|e| format!("chunk {c:?} is not JSON: {e}"))?;
        let choice = &v["choices"][0];
        let delta = &choice["delta"];
        content.push_str(delta["content"].as_str().unwrap_or(""));
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().ok_or("a tool call delta without index")? as usize;
            let args = call["function"]["arguments"].as_str().unwrap_or("");
            match call["id"].as_str() {
                Some(id) => {
                    if index != calls.len() {
                        return Err(format!("call index {index} announced out of order"));
                    }
                    let name = call["function"]["name"].as_str().ok_or("a new call without a name")?;
                    calls.push((id.to_owned(), name.to_owned(), args.to_owned()));
                }
                None => calls.get_mut(index).ok_or("arguments for an unannounced call")?.2.push_str(args),
            }
        }
        if let Some(f) = choice["finish_reason"].as_str()
            && finish.replace(f.to_owned()).is_some()
        {
            return Err("two chunks carry a finish reason".into());
        }
    }
    Ok((content, calls, finish))
}

fn full_answer(body: &str) -> Result<Answer, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let choice = &v["choices"][0];
    let message = &choice["message"];
    let calls = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (s(&c["id"]), s(&c["function"]["name"]), s(&c["function"]["arguments"]))
        })
        .collect();
    Ok((message["content"].as_str().unwrap_or("").to_owned(), calls, choice["finish_reason"].as_str().map(str::to_owned)))
}

fn stream_equals_non_stream(rng: &mut Rng, engine: Option<&(Engine, Vocab)>) -> Result<(), String> {
    let vocab_len = Vocab::new().words.len() as u32;
    let with_tools = engine.is_some();
    let tool = |name: &str| ToolDef {
        name: name.into(),
        description: None,
        parameters: json!({"type": "object", "properties": {"x": {"type": "integer"}, "s": {"type": "string", "maxLength": 4}},
                           "required": ["x"], "additionalProperties": false}),
        strict: false,
        server: false,
        position: 0,
    };
    let tooling = if with_tools {
        Tooling {
            tools: vec![tool("a"), tool("b")],
            choice: rng.pick(&[ToolChoice::Auto, ToolChoice::Required, ToolChoice::Named("b".into())]).clone(),
            parallel: rng.one_in(2),
            format: ResponseFormat::Text,
        }
    } else {
        Tooling::none()
    };
    // Favoured: the stop token now and then, structural JSON bytes under a grammar, stop
    // sequence letters and multi-byte pieces in free text.
    let mut favoured: Vec<u32> = b"\"}],:1 aE".iter().map(|&b| u32::from(b) + 1).collect();
    favoured.push(vocab_len - 1 - rng.below(PIECES.len()) as u32);
    if rng.one_in(3) {
        favoured.push(0);
    }
    let case = Case {
        seed: rng.next_u64(),
        top_p: *rng.pick(&[1.0f32, 0.9, 0.5]),
        max_tokens: rng.range(1, if with_tools { 120 } else { 40 }) as u32,
        stops: (0..rng.below(3)).map(|_| rng.pick(&["E", "aa", "END", "\"}", "é", "1 "]).to_string()).collect(),
        favoured,
        tooling,
        format: *rng.pick(&FORMATS),
    };
    let env = Envelope { endpoint: Endpoint::Chat, id: "chatcmpl-x".into(), created: 1, model: "m".into() };
    let writer = ChunkWriter::new(env.clone(), false, false);
    let engine = engine.map(|(e, _)| e);
    let streamed = run_one(&case, engine, true, &writer)?;
    let whole = run_one(&case, engine, false, &writer)?;
    let ctx =
        || format!("seed {} stops {:?} tooling {:?} text {:?}", case.seed, case.stops, case.tooling.choice, streamed.deltas);
    if streamed.result != whole.result {
        return Err(format!("streamed choice {:?} != non-streamed {:?}: {}", streamed.result, whole.result, ctx()));
    }
    let body = full_response(&env, std::slice::from_ref(&whole.result), false, Usage::new(3, whole.result.completion_tokens));
    let from_chunks = reassemble(&streamed.chunks)?;
    let from_body = full_answer(&body)?;
    if from_chunks != from_body {
        return Err(format!("chunks reassemble to {from_chunks:?}, the response says {from_body:?}: {}", ctx()));
    }
    if let Some(s) = case.stops.iter().find(|s| whole.result.text.contains(s.as_str())) {
        return Err(format!("the answer contains the stop sequence {s:?}: {}", ctx()));
    }
    // Under a grammar that finished, every call is complete JSON for a known tool.
    if with_tools {
        for c in &whole.result.tool_calls {
            if !case.tooling.tools.iter().any(|t| t.name == c.name) {
                return Err(format!("a call of unknown tool {:?}: {}", c.name, ctx()));
            }
            let complete = whole.result.finish_reason == FinishReason::ToolCalls && case.stops.is_empty();
            if complete && serde_json::from_str::<Value>(&c.arguments).is_err() {
                return Err(format!("arguments {:?} are not JSON: {}", c.arguments, ctx()));
            }
        }
    }
    Ok(())
}

#[test]
fn stream_equals_non_stream_at_temperature_with_a_seed() {
    cases("stream_equals_non_stream", 600, |rng| stream_equals_non_stream(rng, None));
}

#[test]
fn stream_equals_non_stream_with_tool_calls() {
    let vocab = Vocab::new();
    let engine = Engine::new(&vocab.grammar_vocab(), vocab.words.len(), &[0]).unwrap();
    let pair = (engine, vocab);
    cases("stream_equals_non_stream_tools", 150, |rng| stream_equals_non_stream(rng, Some(&pair)));
}
