//! DOCX text: the body part `word/document.xml` of the zip, read as a stream of XML
//! events. Paragraphs become blank-line separated blocks (what the recursive chunker
//! splits on first), a table row becomes one line of ` | `-separated cells, tabs and
//! breaks become whitespace. Headers, footers, footnotes and comments live in other
//! parts and are left out.

use std::io::Read;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::ParseError;

/// Largest `word/document.xml` read, uncompressed: a zip bomb stops here instead of
/// filling memory (real documents are a few MiB of XML even with hundreds of pages).
const MAX_XML_BYTES: u64 = 256 << 20;

fn invalid(why: impl Into<String>) -> ParseError {
    ParseError::Invalid { kind: "DOCX", why: why.into() }
}

/// The text of a DOCX document; [`ParseError::TooLarge`] past `max` bytes.
pub fn text(bytes: &[u8], max: usize) -> Result<String, ParseError> {
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| invalid(format!("not a valid zip archive ({e})")))?;
    let mut part = match zip.by_name("word/document.xml") {
        Ok(part) => part,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(invalid("it has no word/document.xml, so it is not a Word document"));
        }
        Err(zip::result::ZipError::UnsupportedArchive(why)) if why.contains("assword") => {
            return Err(invalid("it is password-protected; upload an unprotected copy"));
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    let mut xml = Vec::with_capacity(part.size().min(MAX_XML_BYTES) as usize);
    (&mut part).take(MAX_XML_BYTES + 1).read_to_end(&mut xml).map_err(|e| invalid(format!("word/document.xml: {e}")))?;
    if xml.len() as u64 > MAX_XML_BYTES {
        return Err(invalid(format!("word/document.xml is larger than {} MiB uncompressed", MAX_XML_BYTES >> 20)));
    }
    let text = document_text(&xml, max)?;
    if text.len() > max {
        return Err(ParseError::TooLarge { limit: max });
    }
    Ok(text)
}

/// Text of WordprocessingML. Elements are matched by local name, so any namespace prefix
/// works; DrawingML text boxes (`a:p`, `a:t`) are read the same way. Stops once the
/// text before tidying passes twice `max` (tidying only drops white space).
fn document_text(xml: &[u8], max: usize) -> Result<String, ParseError> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut out = String::new();
    // Elements open, to tell a complete document from a cut-off one.
    let mut depth = 0usize;
    // Inside `w:t` (visible text; `w:delText` and field codes in `w:instrText` are not).
    let mut in_text = false;
    // Where each open table cell began in `out`: paragraphs inside a cell are joined
    // with spaces, and an empty cell leaves nothing.
    let mut cells: Vec<usize> = Vec::new();
    // Inside `mc:Fallback`, which repeats the content of the `mc:Choice` before it.
    let mut fallback = 0usize;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| invalid(format!("word/document.xml at byte {}: {e}", reader.error_position())))?;
        match event {
            Event::Start(e) => {
                depth += 1;
                match e.local_name().as_ref() {
                    b"Fallback" => fallback += 1,
                    _ if fallback > 0 => {}
                    b"t" => in_text = true,
                    b"tc" => cells.push(out.len()),
                    _ => {}
                }
            }
            Event::Empty(e) if fallback == 0 => match e.local_name().as_ref() {
                b"tab" | b"ptab" => out.push('\t'),
                b"br" | b"cr" => out.push('\n'),
                b"noBreakHyphen" => out.push('-'),
                _ => {}
            },
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                match e.local_name().as_ref() {
                    b"Fallback" => fallback = fallback.saturating_sub(1),
                    _ if fallback > 0 => {}
                    b"t" => in_text = false,
                    b"p" if !cells.is_empty() => out.push(' '),
                    b"p" => out.push_str("\n\n"),
                    b"tc" => {
                        if let Some(start) = cells.pop() {
                            out.truncate(start + out[start..].trim_end().len());
                            if out.len() > start {
                                out.push_str(" | ");
                            }
                        }
                    }
                    b"tr" => {
                        if out.ends_with(" | ") {
                            out.truncate(out.len() - 3);
                        }
                        out.push('\n');
                    }
                    b"tbl" => out.push('\n'),
                    _ => {}
                }
            }
            Event::Text(t) if in_text && fallback == 0 => {
                out.push_str(&t.xml10_content().map_err(|e| invalid(e.to_string()))?);
            }
            Event::GeneralRef(r) if in_text && fallback == 0 => {
                let name = r.decode().map_err(|e| invalid(e.to_string()))?;
                match r.resolve_char_ref().map_err(|e| invalid(e.to_string()))? {
                    Some(c) => out.push(c),
                    None => out.push_str(
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| invalid(format!("unknown entity &{name};")))?,
                    ),
                }
            }
            Event::CData(t) if in_text && fallback == 0 => out.push_str(&String::from_utf8_lossy(&t)),
            Event::Eof if depth > 0 => return Err(invalid("word/document.xml ends before its elements are closed")),
            Event::Eof => break,
            _ => {}
        }
        if out.len() / 2 > max {
            return Err(ParseError::TooLarge { limit: max });
        }
        buf.clear();
    }
    Ok(tidy(&out))
}

/// Trailing spaces off each line and at most one blank line in a row.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006""#;

    /// A DOCX as Word writes it: content types, package relationships and the body.
    fn docx(body: &str) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let deflate = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let parts = [
            ("[Content_Types].xml", r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#.to_owned()),
            ("_rels/.rels", r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#.to_owned()),
            ("word/document.xml", format!(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {W}><w:body>{body}</w:body></w:document>"#)),
        ];
        for (name, content) in parts {
            zip.start_file(name, deflate).unwrap();
            zip.write_all(content.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn paragraphs_runs_tables_and_whitespace() {
        let body = r#"<w:p><w:r><w:t>The tanker </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>Marisol</w:t></w:r><w:r><w:t xml:space="preserve"> docks at pier 7 &amp; unloads.</w:t></w:r></w:p>
            <w:p><w:r><w:t>Name</w:t><w:tab/><w:t>Value</w:t><w:br/><w:t>next line</w:t></w:r><w:r><w:delText>deleted words</w:delText><w:instrText>PAGE</w:instrText></w:r></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>cell a</w:t></w:r></w:p><w:p><w:r><w:t>more a</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>cell b</w:t></w:r></w:p></w:tc></w:tr>
            <w:tr><w:tc><w:p><w:r><w:t>x&#233;</w:t></w:r></w:p></w:tc><w:tc><w:p/></w:tc></w:tr></w:tbl>
            <w:p><mc:AlternateContent><mc:Choice Requires="wps"><w:t>box text</w:t></mc:Choice><mc:Fallback><w:t>box text</w:t></mc:Fallback></mc:AlternateContent></w:p>"#;
        let text = extract_docx(&docx(body)).unwrap();
        assert_eq!(
            text,
            "The tanker Marisol docks at pier 7 & unloads.\n\nName\tValue\nnext line\n\ncell a more a | cell b\nx\u{e9}\n\nbox text"
        );
    }

    fn extract_docx(bytes: &[u8]) -> Result<String, ParseError> {
        super::super::extract(super::super::DOCX, bytes)
    }

    #[test]
    fn corrupt_and_foreign_zips_fail_with_a_reason() {
        let good = docx("<w:p><w:r><w:t>hello</w:t></w:r></w:p>");
        let message = |bytes: &[u8]| extract_docx(bytes).unwrap_err().to_string();
        assert!(message(b"PK\x03\x04 not really").contains("not a valid zip"), "{}", message(b"PK\x03\x04"));
        assert!(message(&good[..good.len() / 2]).contains("DOCX"));
        // Flip bytes inside the compressed body: a CRC or inflate error, not a panic.
        let mut flipped = good.clone();
        let at = flipped.windows(17).position(|w| w == b"word/document.xml").unwrap() + 40;
        for b in &mut flipped[at..at + 20] {
            *b ^= 0x5a;
        }
        assert!(extract_docx(&flipped).is_err());
        let mut other = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        other.start_file("xl/workbook.xml", zip::write::SimpleFileOptions::default()).unwrap();
        other.write_all(b"<workbook/>").unwrap();
        assert!(message(&other.finish().unwrap().into_inner()).contains("no word/document.xml"));
        assert!(message(&docx("<w:p><w:r><w:t>open")).contains("word/document.xml"));
    }
}
