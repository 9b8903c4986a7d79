//! What the model said, as the Responses API says it: a Response object whose
//! `output` holds a `message` item (`output_text` content) and a
//! `function_call` item per tool call; and, for a stream, the event sequence
//! (`response.created`, `response.output_item.added`,
//! `response.output_text.delta`, ..., `response.completed`) built from
//! chat-core's chunks as they come. A `file_search` tool adds its
//! `file_search_call` item first, and `file_citation` annotations to the text.

use std::cell::RefCell;

use chat_core::grounding::Source;
use serde_json::{Map, Value, json};

use crate::file_search;

/// The Response object's frame: id, model, time and the echoed request fields.
#[derive(Clone)]
pub struct Frame {
    /// `resp_...`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model's id.
    pub model: String,
    /// Echoed request fields.
    pub echo: Map<String, Value>,
    /// Makes item ids from a prefix (`msg_`, `fc_`): random ones in the component.
    pub new_id: fn(&str) -> String,
    /// The file search made before generation, if the request had the tool.
    pub search: Option<Search>,
}

/// A file search done: the question searched for and the sources the prompt holds.
#[derive(Clone)]
pub struct Search {
    /// `fs_...`.
    pub id: String,
    /// The question.
    pub query: String,
    /// The chunks in the prompt, numbered from 1 in this order.
    pub sources: Vec<Source>,
    /// Whether the item lists them (`include: ["file_search_call.results"]`).
    pub include_results: bool,
}

impl Search {
    fn item(&self, status: &str) -> Value {
        let results = (self.include_results && status == "completed").then_some(self.sources.as_slice());
        file_search::call_item(&self.id, status, &self.query, results)
    }
}

/// Token counts, as the Responses API names them.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub input: u32,
    /// Generated tokens.
    pub output: u32,
}

impl Frame {
    /// The Response object with `status`, `output` and `usage` (none while in progress).
    pub fn response(&self, status: &str, output: Vec<Value>, usage: Option<Usage>, incomplete: Option<&str>) -> Value {
        let mut r = Map::new();
        r.insert("id".into(), json!(self.id));
        r.insert("object".into(), json!("response"));
        r.insert("created_at".into(), json!(self.created_at));
        r.insert("status".into(), json!(status));
        r.insert("error".into(), Value::Null);
        r.insert("incomplete_details".into(), incomplete.map_or(Value::Null, |why| json!({"reason": why})));
        r.insert("model".into(), json!(self.model));
        r.insert("output".into(), Value::Array(output));
        r.extend(self.echo.clone());
        r.insert(
            "usage".into(),
            usage.map_or(Value::Null, |u| {
                json!({
                    "input_tokens": u.input,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": u.output,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": u.input + u.output,
                })
            }),
        );
        Value::Object(r)
    }
}

/// A chat finish reason as a Response status and, when incomplete, why.
pub fn status_of(finish_reason: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish_reason {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

fn message_item(id: &str, text: &str, status: &str, annotations: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}],
    })
}

/// The annotations of `text`: its citations of the search's sources.
fn annotations_of(frame: &Frame, text: &str) -> Vec<Value> {
    frame.search.as_ref().map(|s| file_search::annotations(text, &s.sources)).unwrap_or_default()
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// The Response for a whole chat completion.
pub fn from_completion(frame: &Frame, completion: &Value, usage: Usage) -> Value {
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let mut output: Vec<Value> = frame.search.iter().map(|s| s.item("completed")).collect();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        output.push(message_item(&(frame.new_id)("msg_"), text, "completed", annotations_of(frame, text)));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        output.push(call_item(
            &(frame.new_id)("fc_"),
            call["id"].as_str().unwrap_or_default(),
            call["function"]["name"].as_str().unwrap_or_default(),
            call["function"]["arguments"].as_str().unwrap_or_default(),
            "completed",
        ));
    }
    let (status, incomplete) = status_of(choice["finish_reason"].as_str());
    frame.response(status, output, Some(usage), incomplete)
}

/// An output item being streamed.
enum Open {
    Message { id: String, text: String },
    Call { id: String, call_id: String, name: String, arguments: String },
}

/// The event stream of one response: fed chat chunks, it sends Responses events.
pub struct Events<'a> {
    frame: Frame,
    send: &'a dyn Fn(&str) -> bool,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    sequence: u64,
    /// Items done, in output order.
    done: Vec<Value>,
    /// The item being streamed, and the chat tool-call index it is (for calls).
    open: Option<(Open, Option<u64>)>,
    finish_reason: Option<String>,
    /// Whether the client is still there.
    gone: bool,
}

impl<'a> Events<'a> {
    /// Events of the response `frame`, sent through `send`.
    pub fn new(frame: Frame, send: &'a dyn Fn(&str) -> bool) -> Self {
        Self { frame, send, state: RefCell::new(State::default()) }
    }

    fn emit(&self, st: &mut State, kind: &str, mut fields: Map<String, Value>) -> bool {
        if st.gone {
            return false;
        }
        fields.insert("type".into(), json!(kind));
        fields.insert("sequence_number".into(), json!(st.sequence));
        st.sequence += 1;
        if !(self.send)(&Value::Object(fields).to_string()) {
            st.gone = true;
        }
        !st.gone
    }

    fn fields(pairs: Value) -> Map<String, Value> {
        pairs.as_object().cloned().unwrap_or_default()
    }

    /// `response.created` and `response.in_progress`, then the file search's
    /// item and events (it was made before generation began).
    pub fn start(&self) -> bool {
        let st = &mut self.state.borrow_mut();
        let r = self.frame.response("in_progress", Vec::new(), None, None);
        let started = self.emit(st, "response.created", Self::fields(json!({"response": r.clone()})))
            && self.emit(st, "response.in_progress", Self::fields(json!({"response": r})));
        if let Some(search) = &self.frame.search {
            let index = st.done.len();
            let at = json!({"output_index": index, "item_id": search.id});
            self.emit(
                st,
                "response.output_item.added",
                Self::fields(json!({"output_index": index, "item": search.item("in_progress")})),
            );
            for kind in ["in_progress", "searching", "completed"] {
                self.emit(st, &format!("response.file_search_call.{kind}"), Self::fields(at.clone()));
            }
            let done = search.item("completed");
            self.emit(st, "response.output_item.done", Self::fields(json!({"output_index": index, "item": done.clone()})));
            st.done.push(done);
        }
        started && !st.gone
    }

    /// One chat.completion.chunk; false when the client left.
    pub fn chunk(&self, chunk: &str) -> bool {
        let Ok(chunk) = serde_json::from_str::<Value>(chunk) else { return true };
        let st = &mut self.state.borrow_mut();
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                if !matches!(st.open, Some((Open::Message { .. }, _))) {
                    self.close(st);
                    self.open(st, Open::Message { id: (self.frame.new_id)("msg_"), text: String::new() }, None);
                }
                let index = st.done.len();
                let fields = match &mut st.open {
                    Some((Open::Message { id, text: all }, _)) => {
                        all.push_str(text);
                        Some(json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}))
                    }
                    _ => None,
                };
                if let Some(fields) = fields {
                    self.emit(st, "response.output_text.delta", Self::fields(fields));
                }
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64();
                if !matches!(&st.open, Some((Open::Call { .. }, i)) if *i == index) {
                    self.close(st);
                    let open = Open::Call {
                        id: (self.frame.new_id)("fc_"),
                        call_id: call["id"].as_str().unwrap_or_default().to_owned(),
                        name: call["function"]["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: String::new(),
                    };
                    self.open(st, open, index);
                }
                let output_index = st.done.len();
                let fields = match (call["function"]["arguments"].as_str().filter(|a| !a.is_empty()), &mut st.open) {
                    (Some(fragment), Some((Open::Call { id, arguments, .. }, _))) => {
                        arguments.push_str(fragment);
                        Some(json!({"item_id": id, "output_index": output_index, "delta": fragment}))
                    }
                    _ => None,
                };
                if let Some(fields) = fields {
                    self.emit(st, "response.function_call_arguments.delta", Self::fields(fields));
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                st.finish_reason = Some(reason.to_owned());
            }
        }
        !st.gone
    }

    fn open(&self, st: &mut State, item: Open, call_index: Option<u64>) {
        let output_index = st.done.len();
        let (added, part) = match &item {
            // A message starts with no content part; its part is added next.
            Open::Message { id, .. } => (
                json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}),
                Some(id.clone()),
            ),
            Open::Call { id, call_id, name, .. } => (call_item(id, call_id, name, "", "in_progress"), None),
        };
        self.emit(st, "response.output_item.added", Self::fields(json!({"output_index": output_index, "item": added})));
        if let Some(id) = part {
            let fields = json!({"item_id": id, "output_index": output_index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}});
            self.emit(st, "response.content_part.added", Self::fields(fields));
        }
        st.open = Some((item, call_index));
    }

    /// Ends the item being streamed, if any.
    fn close(&self, st: &mut State) {
        let Some((item, _)) = st.open.take() else { return };
        let output_index = st.done.len();
        let done = match item {
            Open::Message { id, text } => {
                let annotations = annotations_of(&self.frame, &text);
                for (i, annotation) in annotations.iter().enumerate() {
                    let f = json!({"item_id": id, "output_index": output_index, "content_index": 0,
                        "annotation_index": i, "annotation": annotation});
                    self.emit(st, "response.output_text.annotation.added", Self::fields(f));
                }
                let f = json!({"item_id": id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []});
                self.emit(st, "response.output_text.done", Self::fields(f));
                let f = json!({"item_id": id, "output_index": output_index, "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": annotations}});
                self.emit(st, "response.content_part.done", Self::fields(f));
                message_item(&id, &text, "completed", annotations)
            }
            Open::Call { id, call_id, name, arguments } => {
                let f = json!({"item_id": id, "output_index": output_index, "name": name, "arguments": arguments});
                self.emit(st, "response.function_call_arguments.done", Self::fields(f));
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit(st, "response.output_item.done", Self::fields(json!({"output_index": output_index, "item": done})));
        st.done.push(done);
    }

    /// Closes what is open and sends `response.completed` (or `.incomplete`).
    pub fn finish(&self, usage: Usage) {
        let st = &mut self.state.borrow_mut();
        self.close(st);
        let (status, incomplete) = status_of(st.finish_reason.as_deref());
        let response = self.frame.response(status, std::mem::take(&mut st.done), Some(usage), incomplete);
        let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
        self.emit(st, kind, Self::fields(json!({"response": response})));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            id: "resp_1".into(),
            created_at: 1,
            model: "m".into(),
            echo: Map::new(),
            new_id: |prefix| format!("{prefix}1"),
            search: None,
        }
    }

    #[test]
    fn a_stream_of_text_and_a_call_becomes_items_in_order() {
        let sent = RefCell::new(Vec::<Value>::new());
        let send = |e: &str| {
            sent.borrow_mut().push(serde_json::from_str(e).unwrap());
            true
        };
        let events = Events::new(frame(), &send);
        assert!(events.start());
        for c in [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ] {
            assert!(events.chunk(&c.to_string()));
        }
        events.finish(Usage { input: 5, output: 7 });
        let sent = sent.into_inner();
        let kinds: Vec<&str> = sent.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert!(sent.iter().enumerate().all(|(i, e)| e["sequence_number"] == i as u64));
        let done = &sent.last().unwrap()["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["output"][1]["call_id"], "call_1");
        assert_eq!(done["usage"]["total_tokens"], 12);
    }

    #[test]
    fn a_file_search_comes_first_and_the_text_cites_its_files() {
        let source = Source {
            knowledge_base: "kb_1".into(),
            file_id: "file-v".into(),
            filename: "vault.txt".into(),
            chunk_index: 0,
            text: "The code is 7.".into(),
            score: 0.9,
        };
        let search = Search { id: "fs_1".into(), query: "Code?".into(), sources: vec![source], include_results: true };
        let frame = Frame { search: Some(search), ..frame() };

        let completion = json!({"choices": [{"message": {"content": "It is 7 [1]."}, "finish_reason": "stop"}]});
        let r = from_completion(&frame, &completion, Usage::default());
        assert_eq!(r["output"][0]["type"], "file_search_call");
        assert_eq!(r["output"][0]["queries"], json!(["Code?"]));
        assert_eq!(r["output"][0]["results"][0]["filename"], "vault.txt");
        let cited = &r["output"][1]["content"][0]["annotations"];
        assert_eq!(cited, &json!([{"type": "file_citation", "file_id": "file-v", "filename": "vault.txt", "index": 8}]));

        let sent = RefCell::new(Vec::<Value>::new());
        let send = |e: &str| {
            sent.borrow_mut().push(serde_json::from_str(e).unwrap());
            true
        };
        let events = Events::new(frame, &send);
        assert!(events.start());
        assert!(
            events.chunk(
                &json!({"choices": [{"index": 0, "delta": {"content": "It is 7."}, "finish_reason": "stop"}]}).to_string()
            )
        );
        events.finish(Usage::default());
        let sent = sent.into_inner();
        let kinds: Vec<&str> = sent.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds[2..9],
            [
                "response.output_item.added",
                "response.file_search_call.in_progress",
                "response.file_search_call.searching",
                "response.file_search_call.completed",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
            ]
        );
        let added = sent.iter().find(|e| e["type"] == "response.output_text.annotation.added").unwrap();
        assert_eq!((added["output_index"].as_u64(), added["annotation"]["index"].as_u64()), (Some(1), Some(8)));
        let done = &sent.last().unwrap()["response"];
        assert_eq!(done["output"][0]["status"], "completed");
        assert_eq!(done["output"][1]["content"][0]["annotations"][0]["filename"], "vault.txt");
    }

    #[test]
    fn a_completion_cut_at_the_limit_is_incomplete() {
        let completion = json!({"choices": [{"message": {"content": "abc"}, "finish_reason": "length"}]});
        let r = from_completion(&frame(), &completion, Usage { input: 1, output: 2 });
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["output"][0]["content"][0]["text"], "abc");
    }
}
