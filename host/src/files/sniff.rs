//! Content-type sniffing: magic bytes first, the file name's extension to tell apart
//! formats that share a container (a DOCX is a zip) or have no signature (Markdown, CSV).

/// MIME type of a file from its first bytes (a few KiB are enough) and its name.
pub fn content_type(head: &[u8], filename: &str) -> &'static str {
    let ext = extension(filename);
    if let Some(t) = by_magic(head, ext.as_deref()) {
        return t;
    }
    let text = looks_like_text(head);
    match ext.as_deref() {
        Some("md" | "markdown") if text => "text/markdown",
        Some("csv") if text => "text/csv",
        Some("tsv") if text => "text/tab-separated-values",
        Some("json") if text => "application/json",
        Some("jsonl" | "ndjson") if text => "application/jsonl",
        Some("html" | "htm") if text => "text/html",
        Some("xml") if text => "application/xml",
        Some("yaml" | "yml") if text => "application/yaml",
        _ if text => sniff_text(head),
        _ => "application/octet-stream",
    }
}

/// Lower-case extension without the dot.
pub fn extension(filename: &str) -> Option<String> {
    let name = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

fn by_magic(head: &[u8], ext: Option<&str>) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"\x1f\x8b", "application/gzip"),
        (b"\0asm", "application/wasm"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    ];
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some(match ext {
            Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Some("pptx") => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            _ => "application/zip",
        });
    }
    SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)).map(|(_, t)| *t)
}

/// UTF-8 (a multi-byte character cut at the end of `head` is allowed) without NUL bytes.
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

fn sniff_text(head: &[u8]) -> &'static str {
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &head[i..]);
    let lower: Vec<u8> = start.iter().take(64).map(u8::to_ascii_lowercase).collect();
    if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
        "text/html"
    } else if (start.starts_with(b"{") || start.starts_with(b"["))
        && std::str::from_utf8(head).is_ok_and(|s| serde_json::from_str::<serde_json::Value>(s).is_ok())
    {
        "application/json"
    } else {
        "text/plain"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_win_over_the_extension() {
        assert_eq!(content_type(b"%PDF-1.7\n...", "report.txt"), "application/pdf");
        assert_eq!(content_type(b"\x89PNG\r\n\x1a\n\0\0", "x"), "image/png");
        assert_eq!(content_type(b"PK\x03\x04rest", "a.DOCX").rsplit('.').next(), Some("document"));
        assert_eq!(content_type(b"PK\x03\x04rest", "a.bin"), "application/zip");
    }

    #[test]
    fn text_formats_by_extension_then_content() {
        assert_eq!(content_type(b"# Title\n", "notes.md"), "text/markdown");
        assert_eq!(content_type(b"a,b\n1,2\n", "t.csv"), "text/csv");
        assert_eq!(content_type(b"  {\"a\": 1}", "blob"), "application/json");
        assert_eq!(content_type(b"<!DOCTYPE html><p>x", "page"), "text/html");
        assert_eq!(content_type("caf\u{e9}".as_bytes(), "a.txt"), "text/plain");
        assert_eq!(content_type(&"\u{e9}".as_bytes()[..1], "a.txt"), "text/plain", "cut multi-byte char");
        assert_eq!(content_type(b"\x00\x01\x02", "a.txt"), "application/octet-stream");
        assert_eq!(extension(".bashrc"), None);
        assert_eq!(extension("dir.d/a.Md"), Some("md".into()));
    }
}
