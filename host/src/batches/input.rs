//! A batch's input file: JSONL, one request per line, as OpenAI's Batch API takes it:
//! `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`.
//!
//! The whole file is checked before any line runs, and every problem is reported with
//! its line number (OpenAI's `errors.data[]`), so a client fixes the file in one go.
//! The bodies themselves are checked when they run, by the endpoint's own rules: a bad
//! body is that line's error in the error file, not a refused batch.

use std::collections::HashSet;

use serde_json::Value;

use crate::store::BatchLineError;

/// Most request lines in one batch (OpenAI's limit).
pub const MAX_REQUESTS: usize = 50_000;
/// Longest `custom_id`.
pub const MAX_CUSTOM_ID: usize = 512;
/// Most problems reported for one file (the first ones, in line order).
const MAX_ERRORS: usize = 100;

/// The endpoints a batch may run.
pub const ENDPOINTS: &[&str] = &["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

/// One request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's id for it, unique in the file.
    pub custom_id: String,
    /// The request body, sent to the batch's endpoint.
    pub body: Value,
}

/// The requests of an input file for `endpoint`, or every problem found in it.
pub fn parse(bytes: &[u8], endpoint: &str) -> Result<Vec<Request>, Vec<BatchLineError>> {
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let error = |line: usize, code: &str, param: Option<&str>, message: String| BatchLineError {
        code: code.into(),
        message,
        param: param.map(Into::into),
        line: Some(line as u64),
    };
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match check_line(raw, endpoint) {
            Ok(r) if !seen.insert(r.custom_id.clone()) => errors.push(error(
                n,
                "duplicate_custom_id",
                Some("custom_id"),
                format!("The custom_id '{}' is used by an earlier line; each request needs its own.", r.custom_id),
            )),
            Ok(r) => requests.push(r),
            Err((code, param, message)) => errors.push(error(n, code, param, message)),
        }
    }
    if errors.is_empty() && requests.is_empty() {
        errors.push(BatchLineError {
            code: "empty_file".into(),
            message: "The input file has no request lines.".into(),
            param: None,
            line: None,
        });
    }
    if errors.is_empty() && requests.len() > MAX_REQUESTS {
        errors.push(BatchLineError {
            code: "too_many_requests".into(),
            message: format!("The input file has {} requests; a batch takes at most {MAX_REQUESTS}.", requests.len()),
            param: None,
            line: None,
        });
    }
    if errors.is_empty() { Ok(requests) } else { Err(errors) }
}

type LineProblem = (&'static str, Option<&'static str>, String);

fn check_line(raw: &[u8], endpoint: &str) -> Result<Request, LineProblem> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| ("invalid_json_line", None, format!("This line is not valid JSON: {e}.")))?;
    let Value::Object(mut line) = value else {
        return Err(("invalid_json_line", None, "Each line must be a JSON object.".into()));
    };
    let custom_id = match line.remove("custom_id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_CUSTOM_ID => s,
        Some(Value::String(s)) if !s.is_empty() => {
            return Err((
                "invalid_custom_id",
                Some("custom_id"),
                format!("custom_id is {} characters long; at most {MAX_CUSTOM_ID} are allowed.", s.len()),
            ));
        }
        Some(_) => return Err(("invalid_custom_id", Some("custom_id"), "custom_id must be a non-empty string.".into())),
        None => return Err(("missing_required_parameter", Some("custom_id"), "Missing required parameter: 'custom_id'.".into())),
    };
    match line.remove("method") {
        Some(Value::String(m)) if m == "POST" => {}
        Some(m) => return Err(("invalid_method", Some("method"), format!("method must be \"POST\", not {m}."))),
        None => return Err(("missing_required_parameter", Some("method"), "Missing required parameter: 'method'.".into())),
    }
    match line.remove("url") {
        Some(Value::String(u)) if u == endpoint => {}
        Some(Value::String(u)) if ENDPOINTS.contains(&u.as_str()) => {
            return Err((
                "mismatched_url",
                Some("url"),
                format!("The url '{u}' does not match the batch's endpoint '{endpoint}'; a batch runs one endpoint."),
            ));
        }
        Some(u) => {
            return Err(("invalid_url", Some("url"), format!("url must be one of {}, not {u}.", ENDPOINTS.join(", "))));
        }
        None => return Err(("missing_required_parameter", Some("url"), "Missing required parameter: 'url'.".into())),
    }
    let body = match line.remove("body") {
        Some(b @ Value::Object(_)) => b,
        Some(_) => return Err(("invalid_body", Some("body"), "body must be a JSON object (the request body).".into())),
        None => return Err(("missing_required_parameter", Some("body"), "Missing required parameter: 'body'.".into())),
    };
    Ok(Request { custom_id, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "/v1/chat/completions";

    fn line(id: &str) -> String {
        format!(r#"{{"custom_id":"{id}","method":"POST","url":"{CHAT}","body":{{"model":"m","messages":[]}}}}"#)
    }

    #[test]
    fn good_lines_parse_in_order_and_blank_lines_are_skipped() {
        let file = format!("{}\r\n\n{}\n", line("a"), line("b"));
        let reqs = parse(file.as_bytes(), CHAT).unwrap();
        assert_eq!(reqs.iter().map(|r| r.custom_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(reqs[0].body["model"], "m");
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let file = [
            line("a"),
            "not json".into(),
            line("a"),
            r#"{"custom_id":"c","method":"GET","url":"/v1/chat/completions","body":{}}"#.into(),
            r#"{"custom_id":"d","method":"POST","url":"/v1/embeddings","body":{}}"#.into(),
            r#"{"custom_id":"e","method":"POST","url":"/v1/nope","body":{}}"#.into(),
            r#"{"custom_id":"f","method":"POST","url":"/v1/chat/completions","body":[1]}"#.into(),
            r#"{"method":"POST","url":"/v1/chat/completions","body":{}}"#.into(),
            "[1]".into(),
        ]
        .join("\n");
        let errors = parse(file.as_bytes(), CHAT).unwrap_err();
        let got: Vec<(&str, Option<u64>)> = errors.iter().map(|e| (e.code.as_str(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("invalid_json_line", Some(2)),
                ("duplicate_custom_id", Some(3)),
                ("invalid_method", Some(4)),
                ("mismatched_url", Some(5)),
                ("invalid_url", Some(6)),
                ("invalid_body", Some(7)),
                ("missing_required_parameter", Some(8)),
                ("invalid_json_line", Some(9)),
            ]
        );
        assert_eq!(errors[6].param.as_deref(), Some("custom_id"));
    }

    #[test]
    fn an_empty_file_is_refused() {
        let errors = parse(b"\n  \n", CHAT).unwrap_err();
        assert_eq!(errors[0].code, "empty_file");
        assert_eq!(parse(b"\xff\xfe", CHAT).unwrap_err()[0].code, "invalid_json_line");
    }
}
