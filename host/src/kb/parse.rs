//! Text extraction from uploaded documents, by the content type sniffed at upload.
//! Plain text and Markdown pass through; HTML loses its markup (scripts and styles
//! dropped, block elements become line breaks, entities decoded); CSV rows become
//! `column: value` lines so each chunk keeps its headers; JSON becomes `path: value` lines;
//! DOCX and PDF are read by their own modules.

mod docx;
mod pdf;

use serde_json::Value;

/// The content type `files::sniff` gives a Word document.
pub const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// Why a document gave no text.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A type this server cannot read.
    #[error("unsupported file type {0}: knowledge bases read PDF, DOCX, TXT, MD, HTML, CSV and JSON files")]
    Unsupported(String),
    /// The bytes are not what the type says.
    #[error("could not read the {kind} file: {why}")]
    Invalid {
        /// The format.
        kind: &'static str,
        /// What went wrong.
        why: String,
    },
    /// A well-formed document without text to extract (a scanned PDF).
    #[error("{0}")]
    NoText(String),
}

/// The text of a document. Runs the parsers synchronously: call it on the blocking pool.
pub fn extract(content_type: &str, bytes: &[u8]) -> Result<String, ParseError> {
    let text = || {
        std::str::from_utf8(bytes)
            .map(|s| s.strip_prefix('\u{feff}').unwrap_or(s))
            .map_err(|e| ParseError::Invalid { kind: "text", why: format!("not UTF-8 ({e})") })
    };
    match content_type {
        "text/plain" | "text/markdown" | "application/xml" | "application/yaml" => Ok(text()?.to_owned()),
        "text/html" => Ok(html_to_text(text()?)),
        "text/csv" => csv_to_text(text()?, b','),
        "text/tab-separated-values" => csv_to_text(text()?, b'\t'),
        "application/json" => {
            let v: Value = serde_json::from_str(text()?)
                .map_err(|e| ParseError::Invalid { kind: "JSON", why: e.to_string() })?;
            let mut out = String::new();
            flatten_json(&v, "", &mut out);
            Ok(out)
        }
        "application/jsonl" => {
            let mut out = String::new();
            for (i, line) in text()?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| ParseError::Invalid { kind: "JSON Lines", why: format!("line {}: {e}", i + 1) })?;
                flatten_json(&v, "", &mut out);
                out.push('\n');
            }
            Ok(out)
        }
        "application/pdf" => pdf::text(bytes),
        DOCX => docx::text(bytes),
        // Word encrypts a password-protected DOCX into an OLE compound file.
        "application/x-ole-storage" => Err(ParseError::Invalid {
            kind: "Office",
            why: "it is a legacy .doc/.xls or a password-protected Office document; save it as an unprotected DOCX".into(),
        }),
        other => Err(ParseError::Unsupported(other.to_owned())),
    }
}

/// `a.b[0].c: value` lines; objects and arrays recurse, blank lines between records
/// of a top-level array so the chunker keeps records together.
fn flatten_json(v: &Value, path: &str, out: &mut String) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                flatten_json(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                flatten_json(child, &format!("{path}[{i}]"), out);
                if path.is_empty() {
                    out.push('\n');
                }
            }
        }
        Value::Null => {}
        Value::String(s) => push_line(out, path, s),
        other => push_line(out, path, &other.to_string()),
    }
}

fn push_line(out: &mut String, path: &str, value: &str) {
    if !path.is_empty() {
        out.push_str(path);
        out.push_str(": ");
    }
    out.push_str(value);
    out.push('\n');
}

/// CSV with a header row (quotes and doubled quotes handled) to `header: value; ...` lines.
fn csv_to_text(text: &str, sep: u8) -> Result<String, ParseError> {
    let rows = parse_csv(text, sep as char)?;
    let mut rows = rows.into_iter();
    let Some(header) = rows.next() else { return Ok(String::new()) };
    let mut out = String::new();
    for row in rows {
        let fields: Vec<String> = row
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(i, v)| match header.get(i).map(|h| h.trim()).filter(|h| !h.is_empty()) {
                Some(h) => format!("{h}: {}", v.trim()),
                None => v.trim().to_owned(),
            })
            .collect();
        if !fields.is_empty() {
            out.push_str(&fields.join("; "));
            out.push('\n');
        }
    }
    Ok(out)
}

fn parse_csv(text: &str, sep: char) -> Result<Vec<Vec<String>>, ParseError> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            c if c == sep => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(ParseError::Invalid { kind: "CSV", why: "a quoted field is not closed".into() });
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

const BLOCKS: &[&str] = &[
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
    "header", "footer", "blockquote", "pre", "title", "hr", "dd", "dt",
];

/// Markup to readable text.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..lt]));
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if (name == "script" || name == "style") && !tag.starts_with('/') {
            let close = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = lower.find(&close).map_or("", |i| &rest[i..]);
            continue;
        }
        if BLOCKS.contains(&name.as_str()) {
            out.push('\n');
        } else if name == "td" || name == "th" {
            out.push(' ');
        }
    }
    out.push_str(&decode_entities(rest));
    // Collapse runs of blank space, keeping paragraph breaks.
    let mut text = String::with_capacity(out.len());
    for line in out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")) {
        if line.is_empty() {
            if !text.ends_with("\n\n") && !text.is_empty() {
                text.push('\n');
            }
        } else {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text.trim().to_owned()
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32),
                n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_loses_markup_scripts_and_entities() {
        let html = "<html><head><title>T</title><style>p{color:red}</style><script>var x = '<p>';</script></head>\
                    <body><h1>Caf&eacute; &amp; Bar</h1><p>Open&nbsp;at <b>9</b>&#33;</p><!-- hidden --><ul><li>a</li><li>b</li></ul></body></html>";
        let text = html_to_text(html);
        assert!(text.contains("Open at 9!"), "{text}");
        assert!(text.contains("& Bar"), "{text}");
        assert!(!text.contains("color") && !text.contains("var x") && !text.contains("hidden"), "{text}");
        assert!(text.contains("a\n\nb"), "list items on their own lines: {text}");
    }

    #[test]
    fn csv_rows_keep_their_headers() {
        let csv = "name,city,note\n\"Smith, Ann\",Oslo,\"said \"\"hi\"\"\"\nBo,Rome,\n";
        assert_eq!(extract("text/csv", csv.as_bytes()).unwrap(), "name: Smith, Ann; city: Oslo; note: said \"hi\"\nname: Bo; city: Rome\n");
        assert!(extract("text/csv", b"a\n\"open").is_err());
    }

    #[test]
    fn json_flattens_to_paths() {
        let text = extract("application/json", br#"[{"name": "Ada", "tags": ["x", "y"], "age": 36}, {"name": "Bob"}]"#).unwrap();
        for line in ["[0].name: Ada\n", "[0].tags[0]: x\n[0].tags[1]: y\n", "[0].age: 36\n", "\n[1].name: Bob\n"] {
            assert!(text.contains(line), "{line:?} in {text:?}");
        }
        assert!(extract("application/json", b"{").is_err());
    }

    #[test]
    fn text_passes_and_unknown_types_are_refused() {
        assert_eq!(extract("text/markdown", "\u{feff}# Hi".as_bytes()).unwrap(), "# Hi");
        assert!(matches!(extract("image/png", b"\x89PNG"), Err(ParseError::Unsupported(_))));
        assert!(extract("text/plain", &[0xff, 0xfe]).is_err());
    }
}
