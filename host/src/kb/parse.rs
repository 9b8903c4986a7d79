//! Text extraction from uploaded documents, by the content type sniffed at upload.
//! Plain text and Markdown pass through; HTML loses its markup (scripts and styles
//! dropped, block elements become line breaks, entities decoded); CSV rows become
//! `column: value` lines so each chunk keeps its headers; JSON becomes `path: value` lines;
//! DOCX and PDF are read by their own modules.
//!
//! What one document may cost is bounded here, before any chunk exists: the text taken
//! from a file is at most [`text_limit`] bytes (64 per byte of the file, 64 MiB in all),
//! and the parsers stop as soon as they pass it. Labels repeated on every line (a JSON
//! path, a CSV header) are shortened to [`MAX_LABEL_CHARS`], so a long key over many
//! small values cannot multiply the text.

mod docx;
mod pdf;

use std::fmt::Write as _;

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
    /// More text than [`text_limit`] allows for the file.
    #[error(
        "the document gives more than {limit} bytes of text, the most this server takes from a file of its size \
         ({MAX_TEXT_PER_FILE_BYTE} bytes of text per byte of file, {} MiB in all); split it into smaller files",
        MAX_TEXT_BYTES >> 20
    )]
    TooLarge {
        /// The limit that was passed, in bytes.
        limit: usize,
    },
}

/// Most text taken from one document, in bytes (about 80,000 chunks of 800 characters).
pub const MAX_TEXT_BYTES: usize = 64 << 20;

/// Most text taken per byte of the file. Plain text, HTML and DOCX give at most about
/// one; compressed PDF streams and CSV/JSON (labels repeated on every line) a few to a
/// few dozen; a decompression bomb or a document built to repeat itself far more.
pub const MAX_TEXT_PER_FILE_BYTE: usize = 64;

/// Text always allowed, however small the file.
const MIN_TEXT_BYTES: usize = 64 << 10;

/// Longest label (JSON path, CSV column name) written in front of each value, in
/// characters; longer ones are shortened with `…`.
pub const MAX_LABEL_CHARS: usize = 64;

/// The most text [`extract`] takes from a file of `file_bytes` bytes.
pub fn text_limit(file_bytes: usize) -> usize {
    file_bytes.saturating_mul(MAX_TEXT_PER_FILE_BYTE).clamp(MIN_TEXT_BYTES, MAX_TEXT_BYTES)
}

/// Text being extracted, refusing to grow past its limit.
struct Text {
    out: String,
    max: usize,
}

impl Text {
    fn new(max: usize) -> Self {
        Self { out: String::new(), max }
    }

    fn push(&mut self, s: &str) -> Result<(), ParseError> {
        if self.out.len() + s.len() > self.max {
            return Err(ParseError::TooLarge { limit: self.max });
        }
        self.out.push_str(s);
        Ok(())
    }
}

/// `text` unless it is longer than `max` bytes.
fn at_most(text: String, max: usize) -> Result<String, ParseError> {
    if text.len() > max { Err(ParseError::TooLarge { limit: max }) } else { Ok(text) }
}

/// The text of a document, at most [`text_limit`] of its size. Runs the parsers
/// synchronously: call it on the blocking pool.
pub fn extract(content_type: &str, bytes: &[u8]) -> Result<String, ParseError> {
    extract_at_most(content_type, bytes, text_limit(bytes.len()))
}

/// The text of a document, failing with [`ParseError::TooLarge`] past `max` bytes.
pub fn extract_at_most(content_type: &str, bytes: &[u8], max: usize) -> Result<String, ParseError> {
    let text = || {
        std::str::from_utf8(bytes)
            .map(|s| s.strip_prefix('\u{feff}').unwrap_or(s))
            .map_err(|e| ParseError::Invalid { kind: "text", why: format!("not UTF-8 ({e})") })
    };
    match content_type {
        "text/plain" | "text/markdown" | "application/xml" | "application/yaml" => {
            let text = text()?;
            if text.len() > max {
                return Err(ParseError::TooLarge { limit: max });
            }
            Ok(text.to_owned())
        }
        // The text of HTML is never longer than its markup.
        "text/html" => at_most(html_to_text(text()?), max),
        "text/csv" => csv_to_text(text()?, b',', max),
        "text/tab-separated-values" => csv_to_text(text()?, b'\t', max),
        "application/json" => {
            let v: Value = serde_json::from_str(text()?).map_err(|e| ParseError::Invalid { kind: "JSON", why: e.to_string() })?;
            let mut out = Text::new(max);
            flatten_json(&v, &mut String::new(), &mut out)?;
            Ok(out.out)
        }
        "application/jsonl" => {
            let mut out = Text::new(max);
            for (i, line) in text()?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| ParseError::Invalid { kind: "JSON Lines", why: format!("line {}: {e}", i + 1) })?;
                flatten_json(&v, &mut String::new(), &mut out)?;
                out.push("\n")?;
            }
            Ok(out.out)
        }
        "application/pdf" => pdf::text(bytes, max),
        DOCX => docx::text(bytes, max),
        // Word encrypts a password-protected DOCX into an OLE compound file.
        "application/x-ole-storage" => Err(ParseError::Invalid {
            kind: "Office",
            why: "it is a legacy .doc/.xls or a password-protected Office document; save it as an unprotected DOCX".into(),
        }),
        other => Err(ParseError::Unsupported(other.to_owned())),
    }
}

/// `a.b[0].c: value` lines; objects and arrays recurse, blank lines between records
/// of a top-level array so the chunker keeps records together. `path` is one buffer
/// grown and cut back on the way down and up (not a new string per node), and a line
/// shows at most the last [`MAX_LABEL_CHARS`] characters of it: written in full, a long
/// path would be repeated over every value below it, and a small file of deep paths over
/// short values would become a huge text.
fn flatten_json(v: &Value, path: &mut String, out: &mut Text) -> Result<(), ParseError> {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                flatten_json(child, path, out)?;
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            let top = path.is_empty();
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                flatten_json(child, path, out)?;
                path.truncate(len);
                if top {
                    out.push("\n")?;
                }
            }
        }
        Value::Null => {}
        Value::String(s) => push_line(out, path, s)?,
        other => push_line(out, path, &other.to_string())?,
    }
    Ok(())
}

fn push_line(out: &mut Text, path: &str, value: &str) -> Result<(), ParseError> {
    if !path.is_empty() {
        let label = path_label(path);
        if label.len() < path.len() {
            out.push("…")?;
        }
        out.push(label)?;
        out.push(": ")?;
    }
    out.push(value)?;
    out.push("\n")
}

/// The end of a JSON path that fits [`MAX_LABEL_CHARS`], starting at a segment
/// (`.key` or `[i]`) where one begins inside it: the most specific part says most.
fn path_label(path: &str) -> &str {
    if fits(path, MAX_LABEL_CHARS) {
        return path;
    }
    let start = path.char_indices().rev().nth(MAX_LABEL_CHARS - 1).map_or(0, |(i, _)| i);
    let tail = &path[start..];
    let tail = tail.find(['.', '[']).map_or(tail, |j| &tail[j..]);
    tail.strip_prefix('.').unwrap_or(tail)
}

/// Whether `s` has at most `n` characters, looking at no more than `n + 1` of them.
fn fits(s: &str, n: usize) -> bool {
    s.len() <= n || s.chars().nth(n).is_none()
}

/// A CSV column name as written before each value: at most [`MAX_LABEL_CHARS`].
fn column_label(header: &str) -> String {
    let h = header.trim();
    if fits(h, MAX_LABEL_CHARS) {
        return h.to_owned();
    }
    let end = h.char_indices().nth(MAX_LABEL_CHARS - 1).map_or(h.len(), |(i, _)| i);
    format!("{}…", &h[..end])
}

/// CSV with a header row (quotes and doubled quotes handled) to `header: value; ...`
/// lines, row by row (a large table is never held as rows of fields).
fn csv_to_text(text: &str, sep: u8, max: usize) -> Result<String, ParseError> {
    let mut out = Text::new(max);
    let mut header: Option<Vec<String>> = None;
    let mut line = String::new();
    parse_csv(text, sep as char, |row| {
        let Some(header) = &header else {
            header = Some(row.iter().map(|h| column_label(h)).collect());
            return Ok(());
        };
        line.clear();
        for (i, v) in row.iter().enumerate().filter(|(_, v)| !v.trim().is_empty()) {
            if !line.is_empty() {
                line.push_str("; ");
            }
            if let Some(h) = header.get(i).filter(|h| !h.is_empty()) {
                line.push_str(h);
                line.push_str(": ");
            }
            line.push_str(v.trim());
        }
        if !line.is_empty() {
            out.push(&line)?;
            out.push("\n")?;
        }
        Ok(())
    })?;
    Ok(out.out)
}

/// Calls `row` with each row of `text` in turn.
fn parse_csv(text: &str, sep: char, mut row_done: impl FnMut(&[String]) -> Result<(), ParseError>) -> Result<(), ParseError> {
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
                row_done(&row)?;
                row.clear();
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(ParseError::Invalid { kind: "CSV", why: "a quoted field is not closed".into() });
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        row_done(&row)?;
    }
    Ok(())
}

const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "title",
    "hr",
    "dd",
    "dt",
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
            // Skip to the closing tag, matched without regard to case, in place: no
            // lowercased copy of the rest of the page per script.
            let close = if name == "script" { "</script" } else { "</style" };
            rest = find_ascii_case_insensitive(rest, close).map_or("", |i| &rest[i..]);
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

/// Byte offset of the first `needle` (ASCII) in `haystack`, ignoring ASCII case; one
/// pass over the haystack.
fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    haystack.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
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
        // Only the next few bytes can end an entity: looking further for `;` would scan
        // the rest of the text once per `&`.
        let end = rest.as_bytes().iter().take(11).position(|b| *b == b';');
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

    /// 3.2 MB of HTML, most of it 20,000 scripts and styles: each one used to lowercase a
    /// copy of the rest of the page to find its end (25 s for a page like this one).
    #[test]
    fn many_scripts_and_styles_are_skipped_in_one_pass() {
        let mut html = String::from("<html><body>");
        for i in 0..10_000 {
            html.push_str(&format!("<p>Paragraph {i} &amp; more.</p><SCRIPT type=\"x\">var s{i} = '<p>hidden</p>';</ScRiPt>"));
            html.push_str(&format!("<style>.c{i} {{ color: red }}</STYLE>{}", " ".repeat(200)));
        }
        html.push_str("<p>The end.</p></body></html>");
        assert!(html.len() > 3_000_000, "{}", html.len());
        let started = std::time::Instant::now();
        let text = html_to_text(&html);
        eprintln!("{} bytes of HTML in {:?}", html.len(), started.elapsed());
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 10_001);
        assert_eq!(lines[0], "Paragraph 0 & more.");
        assert_eq!(lines[9_999], "Paragraph 9999 & more.");
        assert_eq!(lines[10_000], "The end.");
        assert!(!text.contains("hidden") && !text.contains("color"));
        // A script that never closes hides the rest of the page.
        assert_eq!(html_to_text("<p>a</p><script>b <p>c</p>"), "a");
    }

    #[test]
    fn ampersands_without_entities_are_kept_in_one_pass() {
        let text = "& ".repeat(500_000) + "&lt;";
        assert_eq!(decode_entities(&text), "& ".repeat(500_000) + "<");
        assert_eq!(decode_entities("a &amp;&#x41;&#66; &bogus; &verylongname;"), "a &AB &bogus; &verylongname;");
    }

    #[test]
    fn long_json_paths_and_csv_headers_are_shortened() {
        let long = "x".repeat(100);
        let doc = format!(r#"{{"short": {{"k": 1}}, "{long}": {{"inner": {{"list": ["a", "b"]}}}}}}"#);
        let text = extract("application/json", doc.as_bytes()).unwrap();
        assert_eq!(text, "short.k: 1\n…inner.list[0]: a\n…inner.list[1]: b\n");
        // A single key longer than the label keeps its end.
        let doc = format!(r#"{{"{long}y": 1}}"#);
        let text = extract("application/json", doc.as_bytes()).unwrap();
        assert_eq!(text, format!("…{}y: 1\n", "x".repeat(MAX_LABEL_CHARS - 1)));
        let csv = format!("{long},b\n1,2\n");
        let text = extract("text/csv", csv.as_bytes()).unwrap();
        assert_eq!(text, format!("{}…: 1; b: 2\n", "x".repeat(MAX_LABEL_CHARS - 1)));
    }

    #[test]
    fn csv_rows_keep_their_headers() {
        let csv = "name,city,note\n\"Smith, Ann\",Oslo,\"said \"\"hi\"\"\"\nBo,Rome,\n";
        assert_eq!(
            extract("text/csv", csv.as_bytes()).unwrap(),
            "name: Smith, Ann; city: Oslo; note: said \"hi\"\nname: Bo; city: Rome\n"
        );
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
