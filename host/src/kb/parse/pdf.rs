//! PDF text through lopdf: each page's content stream is walked operator by operator,
//! strings decoded with their font's encoding (ToUnicode CMaps included). lopdf's own
//! `extract_text` only breaks lines at `ET` and `T*`, which glues together the lines of
//! the many producers that move with `Td`/`Tm` inside one text object, so this walker
//! also breaks lines where the text position moves down and puts a space where it moves
//! across. Scanned pages (images only) give no text, and the source fails saying so.
//!
//! A small file can describe a lot of text: one content stream listed thousands of times
//! in a page's `/Contents`, pages that all draw the same streams, a deflate bomb. So a page
//! reads each of its streams once, a page that draws exactly the streams of a page already
//! read is skipped (it would repeat that page's text), each font's encoding is worked out
//! once for the whole document, and the text stops at the limit the caller gives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Encoding, Object, ObjectId};

use super::ParseError;

/// Largest decompressed content stream (per page, per font CMap) read: a tiny deflate
/// bomb stops here.
const MAX_STREAM_BYTES: usize = 64 << 20;

/// A `TJ` adjustment (thousandths of the font size) at least this far to the right reads
/// as a word space; smaller ones are kerning inside a word.
const TJ_SPACE: f32 = 150.0;

fn invalid(why: impl Into<String>) -> ParseError {
    ParseError::Invalid { kind: "PDF", why: why.into() }
}

/// The text of a PDF, pages separated by blank lines; [`ParseError::TooLarge`] past
/// `max` bytes.
pub fn text(bytes: &[u8], max: usize) -> Result<String, ParseError> {
    // lopdf indexes and unwraps in places on malformed input; a bad upload must fail its
    // data source, not take down the worker thread.
    let text = catch_unwind(AssertUnwindSafe(|| document_text(bytes, max)))
        .map_err(|_| invalid("the PDF parser failed on this file; it is probably damaged"))??;
    if text.trim().is_empty() {
        return Err(ParseError::NoText(
            "the PDF has no extractable text: its pages are probably scanned images, and this server does not run OCR".into(),
        ));
    }
    Ok(text)
}

/// Font encodings of a document, worked out once per font dictionary (many pages share
/// a font, and a ToUnicode CMap can take a while to decompress and parse). Keyed by the
/// dictionary's address, which is stable: the document is not changed while it is read.
type Encodings<'a> = HashMap<*const Dictionary, Option<Rc<Encoding<'a>>>>;

fn document_text(bytes: &[u8], max: usize) -> Result<String, ParseError> {
    let doc = Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) | lopdf::Error::UnsupportedSecurityHandler(_) => {
            invalid("it is encrypted with a password; upload an unprotected copy")
        }
        e => invalid(e.to_string()),
    })?;
    let mut out = String::new();
    let mut encodings = Encodings::new();
    // The content streams of each page read so far, to skip a page that repeats one.
    let mut drawn: HashSet<Vec<ObjectId>> = HashSet::new();
    for (number, page) in doc.get_pages() {
        let mut streams = doc.get_page_contents(page);
        // A stream listed twice on one page would only repeat its text.
        let mut once = HashSet::new();
        streams.retain(|id| once.insert(*id));
        if !streams.is_empty() && !drawn.insert(streams.clone()) {
            continue;
        }
        // A page that cannot be read is skipped: the rest of the document still counts.
        match page_text(&doc, page, &streams, &mut encodings, max.saturating_sub(out.len())) {
            Ok(text) => {
                let text = tidy(&text);
                if !text.is_empty() {
                    out.push_str(&text);
                    out.push_str("\n\n");
                }
            }
            Err(e) => tracing::debug!(page = number, "PDF page without readable text: {e}"),
        }
        if out.trim_end().len() > max {
            return Err(ParseError::TooLarge { limit: max });
        }
    }
    // lopdf may load a file it could not decrypt; its strings then decode to nothing.
    if out.trim().is_empty() && doc.trailer.has(b"Encrypt") {
        return Err(invalid("it is encrypted with a password; upload an unprotected copy"));
    }
    Ok(out.trim_end().to_owned())
}

/// The decompressed content of `streams`, one after the other, at most
/// [`MAX_STREAM_BYTES`] in all (as lopdf's `get_page_content_with_limit`, for a list of
/// streams already cleared of repeats).
fn content_of(doc: &Document, streams: &[ObjectId]) -> lopdf::Result<Vec<u8>> {
    let too_large = || lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { limit: MAX_STREAM_BYTES });
    let mut content = Vec::new();
    for id in streams {
        let Ok(stream) = doc.get_object(*id).and_then(Object::as_stream) else { continue };
        let remaining = MAX_STREAM_BYTES.saturating_sub(content.len());
        match stream.decompressed_content_with_limit(remaining) {
            Ok(data) => content.extend_from_slice(&data),
            Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => return Err(too_large()),
            // Not compressed, or with a filter lopdf does not know: the raw bytes.
            Err(_) if stream.content.len() <= remaining => content.extend_from_slice(&stream.content),
            Err(_) => return Err(too_large()),
        }
        content.push(b'\n');
    }
    Ok(content)
}

/// The text of one page drawn by `streams`; it stops growing a little past `max` bytes.
fn page_text<'a>(
    doc: &'a Document,
    page: ObjectId,
    streams: &[ObjectId],
    cache: &mut Encodings<'a>,
    max: usize,
) -> lopdf::Result<String> {
    // Fonts whose encoding cannot be worked out are left out, like lopdf's own extraction.
    let mut encodings: BTreeMap<Vec<u8>, Rc<Encoding<'a>>> = BTreeMap::new();
    for (name, font) in doc.get_page_fonts(page)? {
        let encoding = cache
            .entry(std::ptr::from_ref(font))
            .or_insert_with(|| font.get_font_encoding_with_limit(doc, MAX_STREAM_BYTES).ok().map(Rc::new));
        if let Some(encoding) = encoding {
            encodings.insert(name, encoding.clone());
        }
    }
    let content = Content::decode(&content_of(doc, streams)?)?;
    let mut out = String::new();
    let mut encoding = None;
    // The text line's vertical position as last set by `Tm`, to tell a new line from a
    // jump along the same one.
    let mut line_y: Option<f32> = None;
    for op in &content.operations {
        if out.len() > max {
            break;
        }
        let num = |i: usize| op.operands.get(i).and_then(|o| o.as_float().ok()).unwrap_or(0.0);
        match op.operator.as_str() {
            "Tf" => {
                encoding = op.operands.first().and_then(|o| o.as_name().ok()).and_then(|n| encodings.get(n)).map(|e| &**e);
            }
            "Tj" => show(&mut out, encoding, op.operands.first()),
            "TJ" => {
                for item in op.operands.first().and_then(|o| o.as_array().ok()).into_iter().flatten() {
                    match item {
                        Object::String(..) => show(&mut out, encoding, Some(item)),
                        n => {
                            if n.as_float().is_ok_and(|n| -n >= TJ_SPACE) {
                                space(&mut out);
                            }
                        }
                    }
                }
            }
            "'" => {
                newline(&mut out);
                show(&mut out, encoding, op.operands.first());
            }
            "\"" => {
                newline(&mut out);
                show(&mut out, encoding, op.operands.get(2));
            }
            "Td" | "TD" if num(1) != 0.0 => newline(&mut out),
            "Td" | "TD" if num(0) != 0.0 => space(&mut out),
            "Tm" => {
                let y = num(5);
                if line_y.is_some_and(|prev| (prev - y).abs() > 0.5) {
                    newline(&mut out);
                } else {
                    space(&mut out);
                }
                line_y = Some(y);
            }
            "T*" | "ET" => newline(&mut out),
            _ => {}
        }
    }
    Ok(out)
}

fn show(out: &mut String, encoding: Option<&Encoding>, operand: Option<&Object>) {
    if let (Some(encoding), Some(Object::String(bytes, _))) = (encoding, operand) {
        // An undecodable string loses only itself.
        let _ = encoding.write_to_string(bytes, out);
    }
}

fn newline(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

fn space(out: &mut String) {
    if !out.is_empty() && !out.ends_with(char::is_whitespace) {
        out.push(' ');
    }
}

/// Runs of spaces collapsed, blank lines dropped.
fn tidy(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> Result<String, ParseError> {
        super::text(bytes, usize::MAX)
    }

    /// A PDF written by hand: catalog, page tree, a Helvetica font and one page per
    /// content stream, with a correct cross-reference table.
    fn pdf_of_streams(streams: &[String]) -> Vec<u8> {
        let n = streams.len();
        // Objects: 1 catalog, 2 page tree, 3 font, then (page, content) pairs.
        let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
        ];
        for (i, stream) in streams.iter().enumerate() {
            objects.push(page(&format!("{} 0 R", 5 + 2 * i)));
            objects.push(stream_object(stream));
        }
        pdf_of_objects(&objects)
    }

    /// A page object of the page tree `2 0 R` with font `/F1` (`3 0 R`) drawing `contents`.
    fn page(contents: &str) -> String {
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {contents} >>"
        )
    }

    fn stream_object(stream: &str) -> String {
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len())
    }

    /// Objects numbered from 1 in order, with a cross-reference table; object 1 is the root.
    fn pdf_of_objects(objects: &[String]) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, obj) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{obj}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
        );
        out
    }

    /// Pages of lines in 12 pt Helvetica, one `Tj` per line moved down with `Td`;
    /// `None` is a page that only paints a rectangle, like a scan without text.
    fn pdf(pages: &[Option<&str>]) -> Vec<u8> {
        let streams: Vec<String> = pages
            .iter()
            .map(|page| match page {
                Some(text) => {
                    let mut s = String::from("BT\n/F1 12 Tf\n72 720 Td\n");
                    for line in text.lines() {
                        let escaped = line.replace('\\', "\\\\").replace('(', "\\(").replace(')', "\\)");
                        s.push_str(&format!("({escaped}) Tj\n0 -14 Td\n"));
                    }
                    s + "ET"
                }
                None => "0.5 g\n72 72 468 648 re f".to_owned(),
            })
            .collect();
        pdf_of_streams(&streams)
    }

    #[test]
    fn lines_and_pages_of_a_helvetica_pdf() {
        let bytes = pdf(&[Some("The glacier Vatnaj (north) moved\n41 metres in 2019."), None, Some("Second page.")]);
        assert_eq!(text(&bytes).unwrap(), "The glacier Vatnaj (north) moved\n41 metres in 2019.\n\nSecond page.");
        assert_eq!(super::super::extract("application/pdf", &bytes).unwrap(), text(&bytes).unwrap());
    }

    #[test]
    fn tj_arrays_and_text_matrices_space_words() {
        let content = "BT /F1 12 Tf 1 0 0 1 72 700 Tm [(Kern)-20(ed)-300(word)] TJ 1 0 0 1 200 700 Tm (same line) Tj \
                       1 0 0 1 72 680 Tm (next line) Tj ET";
        assert_eq!(text(&pdf_of_streams(&[content.to_owned()])).unwrap(), "Kerned word same line\nnext line");
    }

    /// A 15 KB PDF of 40 pages that all draw one array of 1,500 references to the same
    /// content stream: read as written, each page repeated the stream's text 1,500 times,
    /// 9.6 MB of text in all (about 370,000 chunks of 50 characters, overlap 25).
    #[test]
    fn a_stream_drawn_over_and_over_is_read_once() {
        let lines: String = (0..4).map(|i| format!("(Line {i} of the only text in this file.) Tj 0 -14 Td\n")).collect();
        let stream = format!("BT /F1 12 Tf 72 720 Td\n{lines}ET");
        let pages = 40;
        let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 6 + i)).collect();
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            format!("<< /Type /Pages /Kids [{}] /Count {pages} >>", kids.join(" ")),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
            stream_object(&stream),
            format!("[{}]", vec!["4 0 R"; 1_500].join(" ")),
        ];
        objects.extend((0..pages).map(|_| page("5 0 R")));
        let bytes = pdf_of_objects(&objects);
        assert!((14_000..17_000).contains(&bytes.len()), "{}", bytes.len());
        let text = text(&bytes).unwrap();
        assert_eq!(text, (0..4).map(|i| format!("Line {i} of the only text in this file.")).collect::<Vec<_>>().join("\n"));
        // A page of its own still counts, even after pages that repeat another.
        objects.push(stream_object("BT /F1 12 Tf 72 720 Td (A different page.) Tj ET"));
        let last = objects.len();
        objects.push(page(&format!("[4 0 R {last} 0 R]")));
        objects[1] = format!("<< /Type /Pages /Kids [{} {} 0 R] /Count {} >>", kids.join(" "), last + 1, pages + 1);
        let text = super::super::extract("application/pdf", &pdf_of_objects(&objects)).unwrap();
        assert!(text.ends_with("this file.\nA different page.") && text.matches("Line 0").count() == 2, "{text}");
    }

    #[test]
    fn text_past_the_limit_fails() {
        let bytes = pdf(&[Some("Forty characters of text on a page here."), Some("And more.")]);
        assert!(matches!(super::text(&bytes, 45), Err(ParseError::TooLarge { limit: 45 })));
        assert!(super::text(&bytes, 60).is_ok());
    }

    #[test]
    fn scanned_corrupt_and_encrypted_pdfs_fail_with_a_reason() {
        let err = text(&pdf(&[None, None])).unwrap_err().to_string();
        assert!(err.contains("no extractable text") && err.contains("scanned"), "{err}");
        let good = pdf(&[Some("hello")]);
        for bad in [&b"%PDF-1.7\n garbage"[..], &good[..good.len() / 3], b"%PDF-"] {
            let err = text(bad).unwrap_err();
            assert!(matches!(err, ParseError::Invalid { kind: "PDF", .. } | ParseError::NoText(_)), "{err}");
        }
        let encrypted = String::from_utf8_lossy(&good).replace(
            "/Root 1 0 R",
            "/Root 1 0 R /Encrypt << /Filter /Standard /V 2 /R 3 /Length 128 /P -4 \
             /O <00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff> \
             /U <00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff> >> /ID [<0123456789abcdef0123456789abcdef> <0123456789abcdef0123456789abcdef>]",
        );
        let err = text(encrypted.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("encrypted"), "{err}");
    }
}
