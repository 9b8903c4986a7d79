//! Tool calls as text: the format a model writes them in, the grammar that
//! forces it, the generic prompt for templates without tool support, and a
//! scanner that turns the generated text back into OpenAI tool calls.
//!
//! A call is always written as `open + {"name": "NAME", KEY: ARGS} + close`
//! (calls separated by `sep`), byte for byte, because the grammar forces
//! every byte outside `ARGS`. The scanner can therefore cut the text
//! deterministically, and streamed and non-streamed answers are cut the
//! same way.

use serde_json::Value;

use crate::numbers::NumberScan;
use crate::tools::{ResponseFormat, ToolChoice, ToolDef, Tooling};

/// How one model family writes tool calls: `begin`, then calls separated
/// by `sep`, each `open + {"name": "NAME", "ARGS_KEY": ARGS} + close`,
/// then `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFormat {
    /// Before the first call.
    pub begin: &'static str,
    /// Before each call.
    pub open: &'static str,
    /// The key of the arguments object.
    pub args_key: &'static str,
    /// After each call.
    pub close: &'static str,
    /// Between calls.
    pub sep: &'static str,
    /// After the last call.
    pub end: &'static str,
}

/// Hermes / Qwen 2.5 style: one tagged object per call.
pub const HERMES: CallFormat =
    CallFormat { begin: "", open: "<tool_call>\n", args_key: "arguments", close: "\n</tool_call>", sep: "\n", end: "" };

/// SmolLM2 style (its instruction data): one tagged JSON list of calls.
pub const JSON_LIST: CallFormat =
    CallFormat { begin: "<tool_call>[", open: "", args_key: "arguments", close: "", sep: ", ", end: "]</tool_call>" };

/// Llama 3.1+ JSON tool calling.
pub const LLAMA3_JSON: CallFormat = CallFormat { begin: "", open: "", args_key: "parameters", close: "", sep: "\n", end: "" };

impl CallFormat {
    /// The format named in the model's manifest (unknown names fall back to
    /// Hermes, the generic format).
    pub fn named(name: &str) -> Self {
        match name {
            "llama3-json" => LLAMA3_JSON,
            "json-list" => JSON_LIST,
            _ => HERMES,
        }
    }

    /// Text before the name: `open{"name": "`.
    fn head(&self) -> String {
        format!("{}{{\"name\": \"", self.open)
    }

    /// Text between the name and the arguments.
    fn mid(&self) -> String {
        format!("\", \"{}\": ", self.args_key)
    }

    /// Text after the arguments.
    fn tail(&self) -> String {
        format!("}}{}", self.close)
    }

    /// The character every answer made of calls starts with.
    fn first_char(&self) -> char {
        format!("{}{}", self.begin, self.head()).chars().next().unwrap_or('{')
    }

    /// Calls as the model would write them (for history in prompts).
    pub fn write_calls<'a>(&self, calls: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let written: Vec<String> =
            calls.into_iter().map(|(name, args)| format!("{}{name}{}{args}{}", self.head(), self.mid(), self.tail())).collect();
        format!("{}{}{}", self.begin, written.join(self.sep), self.end)
    }

    /// The generic system prompt describing `tools`, for chat templates that
    /// do not render tools themselves.
    pub fn generic_prompt(&self, tools: &[ToolDef]) -> String {
        let mut s = String::from(
            "You can call functions to answer the question. Based on the question, make one or more function calls with the right arguments. The functions you can call, in JSON:\n<tools>\n",
        );
        for t in tools {
            s.push_str(&t.as_openai().to_string());
            s.push('\n');
        }
        s.push_str("</tools>\nTo call functions, reply in this format and nothing else:\n");
        s.push_str(&self.write_calls([
            ("func_name1", "{\"argument1\": \"value1\"}"),
            ("func_name2", "{\"argument1\": \"value1\", \"argument2\": 2}"),
        ]));
        s.push_str("\nIf no function fits, answer normally.");
        s
    }
}

/// JSON compile options every schema gets: one fixed spacing, so a small
/// model cannot wander into endless whitespace, and the same separators as
/// the call format.
fn with_options(schema: &Value, lenient: bool) -> Value {
    let mut schema = schema.clone();
    if let Value::Object(map) = &mut schema {
        map.insert(
            "x-guidance".into(),
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
                "lenient": lenient,
            }),
        );
    }
    schema
}

/// Longest string value `json_object` mode allows, in characters.
pub const JSON_OBJECT_MAX_STRING: u32 = 512;

/// Deepest nesting `json_object` mode allows (objects and arrays).
pub const JSON_OBJECT_MAX_DEPTH: usize = 4;

/// `json_object` mode: any JSON object, with bounded strings, keys,
/// collections and nesting. Unbounded, a small model can write one string
/// (or nest objects) until the token limit and return JSON that does not
/// parse; bounded, the grammar closes what is open and the model ends the
/// object soon after.
fn any_object() -> Value {
    let object = |value: Value| {
        serde_json::json!({
            "type": "object",
            "patternProperties": {"^[^\\x00-\\x1f]{1,64}$": value},
            "additionalProperties": false,
            "maxProperties": 16,
        })
    };
    let scalars = || {
        vec![
            serde_json::json!({"type": "string", "maxLength": JSON_OBJECT_MAX_STRING}),
            serde_json::json!({"type": "number"}),
            serde_json::json!({"type": "boolean"}),
            serde_json::json!({"type": "null"}),
        ]
    };
    // Innermost values are scalars; each level out may hold the level in.
    let mut value = serde_json::json!({"anyOf": scalars()});
    for _ in 1..JSON_OBJECT_MAX_DEPTH {
        let mut options = scalars();
        options.push(serde_json::json!({"type": "array", "items": value.clone(), "maxItems": 16}));
        options.push(object(value));
        value = serde_json::json!({"anyOf": options});
    }
    object(value)
}

/// The JSON schema grammar of `response_format` (none for text).
pub fn format_schema(format: &ResponseFormat) -> Option<Value> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(with_options(&any_object(), false)),
        ResponseFormat::JsonSchema { schema, strict, .. } => Some(with_options(schema, !strict)),
    }
}

/// The arguments schema of one tool, with compile options. An arguments
/// object that does not say whether it takes other properties takes none:
/// otherwise a small model pads its calls with invented keys (it copies the
/// schema's own `properties` into the arguments), which validate but which
/// no function expects.
pub fn args_schema(tool: &ToolDef) -> Value {
    let mut schema = tool.parameters.clone();
    if let Value::Object(map) = &mut schema
        && map.contains_key("properties")
        && !map.contains_key("additionalProperties")
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    with_options(&schema, !tool.strict)
}

/// A Lark grammar for the answer to a request whose model may call tools:
/// one or more calls (to the tools `choice` allows), or, under `auto`, a
/// plain answer (text, or JSON when `response_format` asks for it).
pub fn tools_grammar(tooling: &Tooling, format: &CallFormat) -> String {
    let callable: Vec<&ToolDef> = match &tooling.choice {
        ToolChoice::Named(name) => tooling.tools.iter().filter(|t| &t.name == name).collect(),
        _ => tooling.tools.iter().collect(),
    };
    let mut g = String::new();
    let mut calls = if tooling.parallel && !matches!(tooling.choice, ToolChoice::Named(_)) {
        format!("call ({} call)*", lark_str(format.sep))
    } else {
        "call".to_owned()
    };
    if !format.begin.is_empty() {
        calls = format!("{} {calls}", lark_str(format.begin));
    }
    if !format.end.is_empty() {
        calls = format!("{calls} {}", lark_str(format.end));
    }
    match (&tooling.choice, format_schema(&tooling.format)) {
        (ToolChoice::Auto, None) => {
            // A text answer may not begin the way a call does, so the first
            // character decides between the two.
            let first = format.first_char();
            g.push_str(&format!("start: calls | TEXT?\nTEXT: /[^{}](.|\\n)*/\n", regex_escape(first)));
        }
        (ToolChoice::Auto, Some(schema)) => {
            g.push_str(&format!("start: calls | answer\nanswer: %json {schema}\n"));
        }
        _ => g.push_str("start: calls\n"),
    }
    g.push_str(&format!("calls: {calls}\n"));
    let alternatives: Vec<String> = (0..callable.len()).map(|i| format!("call_{i}")).collect();
    g.push_str(&format!("call: {}\n", alternatives.join(" | ")));
    for (i, tool) in callable.iter().enumerate() {
        g.push_str(&format!(
            "call_{i}: {} args_{i} {}\nargs_{i}: %json {}\n",
            lark_str(&format!("{}{}{}", format.head(), tool.name, format.mid())),
            lark_str(&format.tail()),
            args_schema(tool)
        ));
    }
    g
}

/// `s` as a Lark string literal.
fn lark_str(s: &str) -> String {
    // JSON string escaping is valid Lark string syntax.
    Value::String(s.to_owned()).to_string()
}

/// `c` escaped for a regex character class (Rust's regex syntax rejects
/// escapes of characters that are not special).
fn regex_escape(c: char) -> String {
    if matches!(c, '\\' | ']' | '[' | '^' | '-' | '&' | '~') { format!("\\{c}") } else { c.to_string() }
}

/// What the scanner found in a piece of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Plain answer text.
    Content(String),
    /// A call began; its name is known.
    CallStart {
        /// Position among this answer's calls.
        index: usize,
        /// Function name.
        name: String,
    },
    /// More of a call's arguments text.
    Arguments {
        /// Position among this answer's calls.
        index: usize,
        /// The fragment.
        text: String,
    },
}

/// Where the scanner is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing seen yet: text or calls?
    Start,
    /// A plain answer.
    Content,
    /// Expecting the text before the first call.
    Begin,
    /// Expecting the head of a call.
    Head,
    /// Reading a name.
    Name,
    /// Between the name and the arguments.
    Mid,
    /// Inside the arguments JSON.
    Args,
    /// After the arguments.
    Tail,
    /// After a call: a separator or the end.
    After,
    /// The model repeated a call: nothing more is read.
    Done,
    /// The calls' end marker was read: nothing more is read.
    Ended,
}

/// A call read back from the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedCall {
    /// Function name.
    pub name: String,
    /// Arguments JSON text, exactly as generated.
    pub arguments: String,
}

/// Splits generated text into content and tool calls, incrementally.
#[derive(Debug, Clone)]
pub struct Scanner {
    format: CallFormat,
    state: State,
    /// Text received but not yet classified.
    pending: String,
    /// Calls so far.
    calls: Vec<ScannedCall>,
    /// JSON depth and string state inside the arguments.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Events of the current call, held back while it may still turn out
    /// to repeat an earlier call word for word.
    held: Option<Vec<Event>>,
}

impl Scanner {
    /// A scanner for one answer.
    pub fn new(format: CallFormat, calls_allowed: bool) -> Self {
        Self {
            format,
            state: if calls_allowed { State::Start } else { State::Content },
            pending: String::new(),
            calls: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            held: None,
        }
    }

    /// Whether the model repeated an earlier call word for word; the
    /// repeat is dropped and the answer should end (small models otherwise
    /// loop, calling the same tool until the token limit).
    pub fn repeated(&self) -> bool {
        self.state == State::Done
    }

    /// The calls read so far.
    pub fn calls(&self) -> &[ScannedCall] {
        &self.calls
    }

    /// Takes the next piece of released text.
    pub fn feed(&mut self, text: &str) -> Vec<Event> {
        let mut events = Vec::new();
        self.pending.push_str(text);
        loop {
            let progressed = match self.state {
                State::Start => self.start(),
                State::Content => {
                    if !self.pending.is_empty() {
                        events.push(Event::Content(std::mem::take(&mut self.pending)));
                    }
                    false
                }
                State::Begin => self.expect(self.format.begin, State::Head),
                State::Head => self.expect(&self.format.head(), State::Name),
                State::Name => self.name(&mut events),
                State::Mid => self.expect(&self.format.mid(), State::Args),
                State::Args => self.args(&mut events),
                State::Tail => self.expect(&self.format.tail(), State::After),
                State::After => self.after(),
                State::Done | State::Ended => {
                    self.pending.clear();
                    false
                }
            };
            if !progressed {
                return events;
            }
        }
    }

    /// Decides on the first character between text and calls.
    fn start(&mut self) -> bool {
        let Some(first) = self.pending.chars().next() else {
            return false;
        };
        self.state = if self.format.first_char() == first { State::Begin } else { State::Content };
        true
    }

    /// Consumes the fixed text `want`, moving to `next`; waits while
    /// `pending` is a prefix of it.
    fn expect(&mut self, want: &str, next: State) -> bool {
        if self.pending.starts_with(want) {
            self.pending.drain(..want.len());
            self.state = next;
            return true;
        }
        if !want.starts_with(self.pending.as_str()) {
            // Not the forced text: the grammar was not followed (only
            // possible when a stop sequence cut it). Keep it as content.
            self.state = State::Content;
            return true;
        }
        false
    }

    /// After a call: another call follows the separator, or the calls end.
    fn after(&mut self) -> bool {
        let (sep, end) = (self.format.sep, self.format.end);
        if !end.is_empty() && self.pending.starts_with(end) {
            self.pending.drain(..end.len());
            self.state = State::Ended;
            return true;
        }
        if self.pending.starts_with(sep) {
            self.pending.drain(..sep.len());
            self.state = State::Head;
            return true;
        }
        if !sep.starts_with(self.pending.as_str()) && !end.starts_with(self.pending.as_str()) {
            self.state = State::Content;
            return true;
        }
        false
    }

    fn name(&mut self, events: &mut Vec<Event>) -> bool {
        let Some(end) = self.pending.find('"') else {
            return false;
        };
        let name: String = self.pending.drain(..end).collect();
        let start = Event::CallStart { index: self.calls.len(), name: name.clone() };
        if self.calls.iter().any(|c| c.name == name) {
            self.held = Some(vec![start]);
        } else {
            events.push(start);
        }
        self.calls.push(ScannedCall { name, arguments: String::new() });
        self.state = State::Mid;
        true
    }

    /// Releases arguments text up to the end of the JSON value.
    fn args(&mut self, events: &mut Vec<Event>) -> bool {
        let mut end = None;
        for (i, c) in self.pending.char_indices() {
            if self.in_string {
                match (self.escaped, c) {
                    (true, _) => self.escaped = false,
                    (false, '\\') => self.escaped = true,
                    (false, '"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => self.in_string = true,
                '{' | '[' => self.depth += 1,
                '}' | ']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let cut = end.unwrap_or(self.pending.len());
        let text: String = self.pending.drain(..cut).collect();
        let index = self.calls.len() - 1;
        if !text.is_empty() {
            if let Some(call) = self.calls.last_mut() {
                call.arguments.push_str(&text);
            }
            let event = Event::Arguments { index, text };
            match &mut self.held {
                Some(held) => held.push(event),
                None => events.push(event),
            }
        }
        if self.held.is_some() {
            let (current, earlier) = self.calls.split_last().unwrap_or_else(|| unreachable!());
            let same = |c: &&ScannedCall| c.name == current.name;
            if end.is_some() && earlier.iter().filter(same).any(|c| c.arguments == current.arguments) {
                self.held = None;
                self.calls.pop();
                self.state = State::Done;
                return false;
            }
            if !earlier.iter().filter(same).any(|c| c.arguments.starts_with(&current.arguments)) {
                events.extend(self.held.take().unwrap_or_default());
            }
        }
        if end.is_some() {
            self.state = State::Tail;
            return true;
        }
        false
    }

    /// Flushes text held back at the end (an unfinished head is content).
    pub fn finish(&mut self) -> Vec<Event> {
        // A call cut short while it looked like a repeat is still a call.
        let mut events = self.held.take().unwrap_or_default();
        if matches!(self.state, State::Start | State::Content | State::Begin | State::Head)
            && self.calls.is_empty()
            && !self.pending.is_empty()
        {
            events.push(Event::Content(std::mem::take(&mut self.pending)));
        }
        self.pending.clear();
        events
    }
}

/// The Lark grammar and the JSON schema grammar, as one choice for
/// [`crate::grammar::Engine::constraint`].
pub enum GrammarSource {
    /// `response_format` alone.
    Schema(Value),
    /// Tool calls (and maybe an answer).
    Lark(String),
}

/// The grammar a request needs, if any.
pub fn grammar_for(tooling: &Tooling, format: &CallFormat) -> Option<GrammarSource> {
    if tooling.calls_allowed() {
        Some(GrammarSource::Lark(tools_grammar(tooling, format)))
    } else {
        format_schema(&tooling.format).map(GrammarSource::Schema)
    }
}

/// Where the output of [`grammar_for`]'s grammar is JSON, for bounding its
/// numbers: everywhere, except that under `auto` without a JSON
/// `response_format` a text answer (one not starting the way calls do) is
/// free text.
pub fn number_scan(tooling: &Tooling, format: &CallFormat) -> NumberScan {
    let text_answer = tooling.calls_allowed() && tooling.choice == ToolChoice::Auto && format_schema(&tooling.format).is_none();
    if text_answer {
        let mut first = [0u8; 4];
        NumberScan::json_if_first(format.first_char().encode_utf8(&mut first).as_bytes()[0])
    } else {
        NumberScan::json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str) -> ToolDef {
        ToolDef {
            name: name.into(),
            description: None,
            parameters: json!({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}),
            strict: false,
            server: false,
            position: 0,
        }
    }

    fn scan_all(s: &mut Scanner, pieces: &[&str]) -> Vec<Event> {
        let mut events = Vec::new();
        for p in pieces {
            events.extend(s.feed(p));
        }
        events.extend(s.finish());
        events
    }

    #[test]
    fn calls_are_cut_the_same_whatever_the_chunking() {
        let text = format!(
            "{}\n{}",
            HERMES.write_calls([("a", "{\"x\": 1, \"s\": \"}\\\"{\"}")]),
            HERMES.write_calls([("b", "{\"x\": [2]}")])
        );
        let whole = {
            let mut s = Scanner::new(HERMES, true);
            scan_all(&mut s, &[&text]);
            s.calls().to_vec()
        };
        assert_eq!(
            whole,
            [
                ScannedCall { name: "a".into(), arguments: "{\"x\": 1, \"s\": \"}\\\"{\"}".into() },
                ScannedCall { name: "b".into(), arguments: "{\"x\": [2]}".into() },
            ]
        );
        // One character at a time: the same calls, arguments in fragments.
        let mut s = Scanner::new(HERMES, true);
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let events = scan_all(&mut s, &refs);
        assert_eq!(s.calls(), whole.as_slice());
        let starts: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::CallStart { .. })).collect();
        assert_eq!(starts.len(), 2);
        assert!(events.iter().all(|e| !matches!(e, Event::Content(_))), "{events:?}");
        let args0: String = events
            .iter()
            .filter_map(|e| match e {
                Event::Arguments { index: 0, text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(args0, whole[0].arguments);
    }

    #[test]
    fn list_formats_are_scanned() {
        let text = JSON_LIST.write_calls([("a", "{\"x\": 1}"), ("b", "{\"y\": [1, 2]}")]);
        assert_eq!(
            text,
            "<tool_call>[{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": {\"y\": [1, 2]}}]</tool_call>"
        );
        let mut s = Scanner::new(JSON_LIST, true);
        for c in text.chars() {
            s.feed(&c.to_string());
        }
        s.finish();
        let names: Vec<&str> = s.calls().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.calls()[1].arguments, "{\"y\": [1, 2]}");
        assert!(!s.repeated());
    }

    #[test]
    fn a_repeated_call_is_dropped_and_ends_the_answer() {
        let first = HERMES.write_calls([("a", "{\"x\": 1}")]);
        let other = HERMES.write_calls([("a", "{\"x\": 12}")]);
        let text = format!("{first}\n{other}\n{first}\n<tool_call>");
        let mut s = Scanner::new(HERMES, true);
        let mut events = Vec::new();
        for c in text.chars() {
            events.extend(s.feed(&c.to_string()));
            if s.repeated() {
                break;
            }
        }
        assert!(s.repeated());
        let args: Vec<&str> = s.calls().iter().map(|c| c.arguments.as_str()).collect();
        assert_eq!(args, ["{\"x\": 1}", "{\"x\": 12}"]);
        let starts = events.iter().filter(|e| matches!(e, Event::CallStart { .. })).count();
        assert_eq!(starts, 2, "the repeat was never announced: {events:?}");
        let streamed: String = events
            .iter()
            .filter_map(|e| match e {
                Event::Arguments { index: 1, text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(streamed, "{\"x\": 12}");
    }

    #[test]
    fn text_answers_pass_through() {
        let mut s = Scanner::new(HERMES, true);
        let events = scan_all(&mut s, &["Hel", "lo <tool_call>"]);
        assert_eq!(events, [Event::Content("Hel".into()), Event::Content("lo <tool_call>".into())]);
        assert!(s.calls().is_empty());
        // A list format's opening cut short (a stop sequence, the token limit) is text.
        let mut s = Scanner::new(JSON_LIST, true);
        assert_eq!(scan_all(&mut s, &["<tool"]), [Event::Content("<tool".into())]);
        let mut s = Scanner::new(HERMES, false);
        assert_eq!(scan_all(&mut s, &["<x>"]), [Event::Content("<x>".into())]);
    }

    /// A grammar engine over single bytes plus one special end token.
    fn byte_engine() -> (crate::grammar::Engine, u32) {
        let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        words.push(b"\xFF<|end|>".to_vec());
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for w in &words {
            bytes.extend_from_slice(w);
            ends.push(bytes.len() as u32);
        }
        let end = words.len() as u32 - 1;
        let engine = crate::grammar::Engine::new(&crate::grammar::Vocabulary { bytes, ends }, words.len(), &[end]).unwrap();
        (engine, end)
    }

    /// Every grammar this module writes compiles, in every mode.
    #[test]
    fn grammars_compile() {
        let (engine, _) = byte_engine();
        for rf in [
            ResponseFormat::JsonObject,
            ResponseFormat::JsonSchema { name: "x".into(), schema: json!({"type": "object"}), strict: true },
        ] {
            let GrammarSource::Schema(schema) = grammar_for(&Tooling { format: rf, ..Tooling::none() }, &HERMES).unwrap() else {
                panic!("a format alone is a schema")
            };
            if let Err(e) =
                engine.constraint(llguidance::api::TopLevelGrammar::from_json_schema(schema.clone()), NumberScan::json())
            {
                panic!("{e}\n{schema}");
            }
        }
        for format in [HERMES, JSON_LIST, LLAMA3_JSON] {
            for choice in [ToolChoice::Auto, ToolChoice::Required, ToolChoice::Named("b".into())] {
                for rf in [ResponseFormat::Text, ResponseFormat::JsonObject] {
                    let tooling =
                        Tooling { tools: vec![tool("a"), tool("b")], choice: choice.clone(), parallel: true, format: rf };
                    let GrammarSource::Lark(g) = grammar_for(&tooling, &format).unwrap() else {
                        panic!("tools need a Lark grammar")
                    };
                    if let Err(e) = engine.constraint(llguidance::api::TopLevelGrammar::from_lark(g.clone()), NumberScan::json())
                    {
                        panic!("{e}\n{g}");
                    }
                }
            }
        }
    }

    #[test]
    fn strict_schemas_name_unsupported_keywords_and_lenient_ones_ignore_them() {
        let (engine, _) = byte_engine();
        let schema = json!({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": true}}});
        let strict = ResponseFormat::JsonSchema { name: "x".into(), schema: schema.clone(), strict: true };
        let Some(s) = format_schema(&strict) else { panic!() };
        let err = engine
            .constraint(llguidance::api::TopLevelGrammar::from_json_schema(s), NumberScan::json())
            .err()
            .expect("strict rejects");
        assert!(err.contains("uniqueItems"), "{err}");
        let lenient = ResponseFormat::JsonSchema { name: "x".into(), schema, strict: false };
        let Some(s) = format_schema(&lenient) else { panic!() };
        assert!(engine.constraint(llguidance::api::TopLevelGrammar::from_json_schema(s), NumberScan::json()).is_ok());
    }

    /// Whether `c` lets `text` through byte by byte.
    fn lets_through(c: &mut crate::grammar::Constraint, width: usize, text: &str) -> bool {
        text.bytes().all(|b| {
            let mut logits = vec![0.0f32; width];
            c.mask(&mut logits).unwrap();
            logits[b as usize].is_finite() && c.accept(b as u32).is_ok()
        })
    }

    #[test]
    fn numbers_are_bounded_in_json_but_not_in_text_answers() {
        let (engine, end) = byte_engine();
        let width = end as usize + 1;
        let auto = Tooling { tools: vec![tool("a")], choice: ToolChoice::Auto, parallel: false, format: ResponseFormat::Text };
        assert_eq!(number_scan(&auto, &HERMES), NumberScan::json_if_first(b'<'));
        assert_eq!(number_scan(&auto, &LLAMA3_JSON), NumberScan::json_if_first(b'{'));
        let json_answer = Tooling { format: ResponseFormat::JsonObject, ..auto.clone() };
        let required = Tooling { choice: ToolChoice::Required, ..auto.clone() };
        let format_only = Tooling { format: ResponseFormat::JsonObject, ..Tooling::none() };
        for t in [&json_answer, &required, &format_only] {
            assert_eq!(number_scan(t, &HERMES), NumberScan::json());
        }

        let long = "7".repeat(30);
        let constraint = || {
            let Some(GrammarSource::Lark(g)) = grammar_for(&auto, &HERMES) else { panic!() };
            engine.constraint(llguidance::api::TopLevelGrammar::from_lark(g), number_scan(&auto, &HERMES)).unwrap()
        };
        assert!(lets_through(&mut constraint(), width, &format!("Pi is 3.{long}")));
        let call = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": ";
        assert!(lets_through(&mut constraint(), width, &format!("{call}{}}}}}", &long[..19])));
        assert!(!lets_through(&mut constraint(), width, &format!("{call}{long}")));
    }

    #[test]
    fn grammars_name_every_allowed_tool() {
        let tooling = Tooling {
            tools: vec![tool("a"), tool("b")],
            choice: ToolChoice::Named("b".into()),
            parallel: true,
            format: ResponseFormat::Text,
        };
        let g = tools_grammar(&tooling, &HERMES);
        assert!(g.contains("\\\"b\\\"") || g.contains("\"name\\\": \\\"b"), "{g}");
        assert!(!g.contains("name\\\": \\\"a"), "{g}");
        assert!(g.starts_with("start: calls\n"));
        let auto = Tooling { choice: ToolChoice::Auto, ..tooling };
        let g = tools_grammar(&auto, &HERMES);
        assert!(g.starts_with("start: calls | TEXT?"), "{g}");
        assert!(g.contains("call (\"\\n\" call)*"), "{g}");
    }
}
