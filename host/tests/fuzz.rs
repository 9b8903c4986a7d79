//! Fuzz targets for what the host parses from clients: knowledge-base documents (PDF,
//! DOCX, HTML, CSV, TSV, JSON, JSON Lines, text) and every chunking strategy, the
//! metadata filter of vector searches, and upload content-type sniffing.
//!
//! Each target runs a fixed number of mutated inputs in `cargo test` (CI) and runs for
//! `FUZZ_SECONDS` each under `make fuzz`; see `fuzz/mutate.rs` for the engine and
//! docs/testing.md for how to reproduce a failure and keep it as a regression.
//!
//! Properties: nothing panics, and output stays proportional to input: extracted text is
//! at most a small multiple of the document (decompressing formats excepted), no chunk is
//! longer than the configured size, and the chunks together are at most a few times the
//! text (the overlap).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

#[path = "fuzz/mutate.rs"]
mod mutate;

use std::io::Write;
use std::path::Path;

use mutate::{Rng, Target, fnv, run};
use serde_json::{Map, Value, json};
use tensoras::files::sniff;
use tensoras::kb::chunk::{self, CHUNK_SIZE_RANGE, ChunkingKind, ChunkingStrategy};
use tensoras::kb::parse::{self, DOCX};
use tensoras::vector::MetadataFilter;

/// Directory of this file (regressions live under `fuzz/regressions/<target>/`).
fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz"))
}

/// CI iterations per target: the whole host campaign stays well under half a minute on
/// the 2-core CI machine (release build).
const CI: u64 = 4000;

/// Longest mutant: enough for deep nesting and many records, small enough that one
/// input is milliseconds.
const MAX_LEN: usize = 64 << 10;

/// Text out of a text format may grow only this much (CSV's `header: value`, JSON's
/// `path: value`, entity decoding).
const TEXT_GROWTH: usize = 16;

fn target<'a>(name: &'a str, seeds: Vec<Vec<u8>>, dict: &'a [&'a [u8]]) -> Target<'a> {
    Target { name, dir: dir(), seeds, dict, ci_iterations: CI, max_len: MAX_LEN, json: false }
}

fn bytes(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// `extract` must not panic; text formats must not blow up.
fn extract_property(content_type: &'static str) -> impl Fn(&[u8]) -> Result<(), String> {
    move |input| {
        let Ok(text) = parse::extract(content_type, input) else { return Ok(()) };
        let decompresses = content_type == "application/pdf" || content_type == DOCX;
        if !decompresses && text.len() > TEXT_GROWTH * input.len() + 4096 {
            return Err(format!("{} bytes of {content_type} gave {} bytes of text", input.len(), text.len()));
        }
        Ok(())
    }
}

// --- documents --------------------------------------------------------------------------

const HTML_DICT: &[&[u8]] = &[
    b"<p>",
    b"</p>",
    b"<div>",
    b"<br/>",
    b"<script>",
    b"</script>",
    b"<SCRIPT>",
    b"<style>",
    b"</style>",
    b"<!--",
    b"-->",
    b"<td>",
    b"<th>",
    b"<",
    b">",
    b"&amp;",
    b"&#x10FFFF;",
    b"&#1114112;",
    b"&#xD800;",
    b"&#",
    b"&nbsp;",
    b"&",
    b";",
    b"<li>",
    b"<table><tr>",
    b"</",
];

#[test]
fn kb_html() {
    let seeds = bytes(&[
        "<html><head><title>T</title><style>p{color:red}</style><script>var x = '<p>';</script></head>\
         <body><h1>Caf&eacute; &amp; Bar</h1><p>Open&nbsp;at <b>9</b>&#33;</p><!-- hidden --><ul><li>a</li><li>b</li></ul>\
         <table><tr><td>1</td><th>2</th></tr></table>&#x1F600; &#128512;</body></html>",
        "plain text, no tags & no entities",
        "<p>unclosed <b",
        "<!-- open comment",
        "<script>never closed",
    ]);
    run(target("kb_html", seeds, HTML_DICT), extract_property("text/html"));
}

const CSV_DICT: &[&[u8]] = &[b"\"", b"\"\"", b",", b"\t", b"\n", b"\r\n", b"name", b";", b" "];

#[test]
fn kb_csv() {
    let seeds = bytes(&[
        "name,city,note\n\"Smith, Ann\",Oslo,\"said \"\"hi\"\"\"\nBo,Rome,\n",
        "a,b\n1,2\n3\n4,5,6\n",
        "\"open",
        "only,a,header\n",
    ]);
    run(target("kb_csv", seeds, CSV_DICT), extract_property("text/csv"));
}

#[test]
fn kb_tsv() {
    let seeds = bytes(&["name\tcity\nAnn\tOslo\n\"q\t\"\"x\"\"\"\tRome\n", "x\ty\n\n\n1\t2"]);
    run(target("kb_tsv", seeds, CSV_DICT), extract_property("text/tab-separated-values"));
}

const JSON_DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"k\":",
    b"\"",
    b",",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"{\"a\":",
    b"[[",
    b"\n",
];

#[test]
fn kb_json() {
    let seeds = bytes(&[
        r#"[{"name": "Ada", "tags": ["x", "y"], "age": 36}, {"name": "Bob", "n": null, "f": 1.5e3, "t": true}]"#,
        r#"{"a": {"b": {"c": [1, [2, [3]]]}}, "s": "\u00e9\n"}"#,
        "\"just a string\"",
        "12345678901234567890123",
    ]);
    let mut t = target("kb_json", seeds, JSON_DICT);
    t.json = true;
    run(t, extract_property("application/json"));
}

#[test]
fn kb_jsonl() {
    let seeds = bytes(&["{\"a\": 1}\n{\"b\": [true, null]}\n\n\"x\"\n", "[1,2]\n{bad\n"]);
    run(target("kb_jsonl", seeds, JSON_DICT), extract_property("application/jsonl"));
}

#[test]
fn kb_text() {
    let seeds = bytes(&["\u{feff}# Title\n\nSome *markdown* text.\n", "plain"]);
    run(target("kb_text", seeds, &[b"\xEF\xBB\xBF", b"\n"]), |input| {
        for ty in ["text/plain", "text/markdown", "application/xml", "application/yaml"] {
            if let Ok(text) = parse::extract(ty, input)
                && text.len() > input.len()
            {
                return Err(format!("{ty}: text grew from {} to {} bytes", input.len(), text.len()));
            }
        }
        // Types the parser does not read are refused, whatever the bytes.
        match parse::extract("image/png", input) {
            Err(parse::ParseError::Unsupported(_)) => Ok(()),
            other => Err(format!("image/png was not refused: {other:?}")),
        }
    });
}

/// A PDF with correct cross-references: one object per entry, offsets computed.
fn pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        writeln!(out, "{} 0 obj", i + 1).unwrap();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    writeln!(out, "xref\n0 {}\n0000000000 65535 f ", objects.len() + 1).unwrap();
    for o in offsets {
        writeln!(out, "{o:010} 00000 n ").unwrap();
    }
    write!(out, "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).unwrap();
    out
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\nendstream");
    out
}

/// `BT /F1 12 Tf 72 712 Td (Deflated page text) Tj T* [(Kern) -200 (ed)] TJ ET`, zlib.
const DEFLATED_CONTENT: &[u8] = b"\x78\x9c\x73\x0a\x51\xd0\x77\x33\x54\x30\x34\x52\x08\x49\x53\x30\x37\x52\x30\x07\xb1\x52\x14\x34\x5c\x52\xd3\x72\x12\x4b\x52\x53\x14\x0a\x12\xd3\x53\x15\x4a\x52\x2b\x4a\x34\x15\x42\xb2\x14\x42\xb4\x14\xa2\x35\xbc\x53\x8b\xf2\x34\x15\x74\x8d\x0c\x0c\x14\x34\x52\x53\x34\x63\x15\x42\xbc\x14\x5c\x43\x00\xd8\x20\x13\xc6";

fn pdf_seeds() -> Vec<Vec<u8>> {
    let font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec();
    let plain = pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_vec(),
        font.clone(),
        stream(
            "",
            b"BT /F1 12 Tf 72 712 Td (Hello fuzz) Tj 0 -14 Td (second line) Tj 1 0 0 1 72 600 Tm (moved) Tj \
              [(A) -300 (B)] TJ (q) ' 1 2 (dq) \" T* ET",
        ),
    ]);
    let deflated = pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R 6 0 R] /Count 2 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
        font,
        stream("/Filter /FlateDecode", DEFLATED_CONTENT),
        // A second page whose content is an array of streams, one missing.
        b"<< /Type /Page /Parent 2 0 R /Resources << >> /Contents [5 0 R 9 0 R] >>".to_vec(),
    ]);
    // A ToUnicode CMap font.
    let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap 1 begincodespacerange <00> <FF> endcodespacerange \
                 2 beginbfchar <41> <0041> <42> <00E9> endbfchar 1 beginbfrange <43> <45> <0063> endbfrange endcmap end end";
    let tounicode = pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /X /ToUnicode 6 0 R >>".to_vec(),
        stream("", b"BT /F1 10 Tf (ABCDE) Tj <414243> Tj ET"),
        stream("", cmap),
    ]);
    vec![plain, deflated, tounicode, b"%PDF-1.7\n".to_vec()]
}

const PDF_DICT: &[&[u8]] = &[
    b"obj",
    b"endobj",
    b"stream\n",
    b"endstream",
    b"<<",
    b">>",
    b"/Length 99999999",
    b"/Filter /FlateDecode",
    b" 0 R",
    b"xref",
    b"trailer",
    b"startxref",
    b"/Kids [",
    b"/Contents",
    b"(",
    b")",
    b"[",
    b"]",
    b"Tj",
    b"TJ",
    b"Tf",
    b"Td",
    b"Tm",
    b"BT",
    b"ET",
    b"/Encrypt",
    b"-1",
    b"4294967295",
    b"/Count 999999999",
];

#[test]
fn kb_pdf() {
    let mut t = target("kb_pdf", pdf_seeds(), PDF_DICT);
    // lopdf is the slowest parser here: fewer inputs keep the CI share even.
    t.ci_iterations = CI / 3;
    run(t, extract_property("application/pdf"));
}

fn docx(xml: &str, deflate: bool) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let opts = SimpleFileOptions::default().compression_method(method);
    w.start_file("[Content_Types].xml", opts).unwrap();
    w.write_all(b"<?xml version=\"1.0\"?><Types/>").unwrap();
    w.start_file("word/document.xml", opts).unwrap();
    w.write_all(xml.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

const DOCX_XML: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:mc="m"><w:body>
<w:p><w:r><w:t>Hello &amp; welcome</w:t><w:tab/><w:t xml:space="preserve"> fuzz &#233;</w:t><w:br/></w:r></w:p>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>cell 1</w:t></w:r></w:p></w:tc><w:tc><w:p/></w:tc></w:tr></w:tbl>
<mc:AlternateContent><mc:Choice><w:p><w:r><w:t>choice</w:t></w:r></w:p></mc:Choice><mc:Fallback><w:p><w:r><w:t>fallback</w:t></w:r></w:p></mc:Fallback></mc:AlternateContent>
<w:p><w:r><w:delText>deleted</w:delText><w:t><![CDATA[cdata <text>]]></w:t><w:noBreakHyphen/></w:r></w:p>
</w:body></w:document>"#;

const DOCX_DICT: &[&[u8]] = &[
    b"<w:p>",
    b"</w:p>",
    b"<w:t>",
    b"</w:t>",
    b"<w:tc>",
    b"</w:tc>",
    b"<w:tr>",
    b"</w:tr>",
    b"<mc:Fallback>",
    b"</mc:Fallback>",
    b"&amp;",
    b"&#xD800;",
    b"&bogus;",
    b"<![CDATA[",
    b"]]>",
    b"<w:br/>",
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"\xff\xff\xff\xff",
];

#[test]
fn kb_docx() {
    let seeds = vec![
        docx(DOCX_XML, false),
        docx(DOCX_XML, true),
        docx("<w:document><w:body><w:p><w:r><w:t>cut", false),
        b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
    ];
    let mut t = target("kb_docx", seeds, DOCX_DICT);
    t.ci_iterations = CI / 2;
    run(t, extract_property(DOCX));
}

/// DOCX's XML reader with the zip layer out of the way: mutants of the XML itself, zipped
/// (stored) before each call, so the mutations reach the WordprocessingML walker.
#[test]
fn kb_docx_xml() {
    let seeds = bytes(&[DOCX_XML, "<w:t>a</w:t>", "<a:p><a:t>drawing</a:t></a:p>"]);
    let property = extract_property(DOCX);
    run(target("kb_docx_xml", seeds, DOCX_DICT), |xml| {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("word/document.xml", opts).map_err(|e| e.to_string())?;
        w.write_all(xml).map_err(|e| e.to_string())?;
        let zipped = w.finish().map_err(|e| e.to_string())?.into_inner();
        property(&zipped)
    });
}

// --- chunking ---------------------------------------------------------------------------

/// The strategy is drawn from the input's first bytes, the text is the rest: mutations
/// move both.
fn strategy_and_text(input: &[u8]) -> (ChunkingStrategy, String) {
    let b = |i: usize| input.get(i).copied().unwrap_or(0) as usize;
    let kind = [ChunkingKind::Recursive, ChunkingKind::FixedSize, ChunkingKind::Semantic][b(0) % 3];
    // Mostly small sizes (many chunks, many cuts), sometimes any accepted size.
    let span = CHUNK_SIZE_RANGE.end() - CHUNK_SIZE_RANGE.start() + 1;
    let raw = b(1) << 8 | b(2);
    let chunk_size = if b(3) % 4 == 0 { CHUNK_SIZE_RANGE.start() + raw % span } else { CHUNK_SIZE_RANGE.start() + raw % 200 };
    let chunk_overlap = b(4) * chunk_size / 2 / 255;
    let text = String::from_utf8_lossy(input.get(5..).unwrap_or(&[])).into_owned();
    (ChunkingStrategy { kind, chunk_size, chunk_overlap }, text)
}

/// `max_chunks`: windows of `chunk_size - chunk_overlap` need `text / step` chunks; a
/// piece too big to join its neighbours may cost one more each, so twice that.
fn check_chunks(what: &str, chunks: &[String], text: &str, s: &ChunkingStrategy, max_chunks: usize) -> Result<(), String> {
    let text_chars = text.chars().count();
    let mut total = 0;
    for c in chunks {
        let n = c.chars().count();
        if n > s.chunk_size {
            return Err(format!("{what}: a chunk of {n} chars, chunk_size {} ({s:?})", s.chunk_size));
        }
        if c.trim().is_empty() || c.trim() != c {
            return Err(format!("{what}: an untrimmed or blank chunk {c:?}"));
        }
        total += n;
    }
    // The overlap repeats at most half a chunk per chunk; everything else appears once.
    // The recursive splitter can also emit a chunk that is only the previous chunk's
    // overlap (before a piece too big to join it), so 3x rather than 2x.
    if total > 3 * text_chars + s.chunk_size {
        return Err(format!("{what}: {total} chars of chunks from {text_chars} chars of text ({s:?})"));
    }
    if chunks.len() > max_chunks {
        return Err(format!("{what}: {} chunks from {text_chars} chars, at most {max_chunks} expected ({s:?})", chunks.len()));
    }
    // Nothing is lost: every non-blank character of the text is in some chunk, in order
    // of first appearance (a subsequence check over the concatenation).
    let all: String = chunks.concat();
    let mut hay = all.chars().filter(|c| !c.is_whitespace());
    for needle in text.chars().filter(|c| !c.is_whitespace()) {
        if !hay.any(|h| h == needle) {
            return Err(format!("{what}: character {needle:?} of the text is in no chunk ({s:?})"));
        }
    }
    Ok(())
}

const CHUNK_DICT: &[&[u8]] = &[b"\n\n", b"\n", b". ", b"? ", b"! ", b"; ", b", ", b" ", b"word ", b"\xC3\xA9", b"\t"];

#[test]
fn kb_chunk() {
    let prose = "First paragraph is here. It has sentences! Does it? Yes; clauses, too.\n\n\
                 Second paragraph, with a v1.2 version number and an e.g. abbreviation.\nA line.\n\n\
                 Ünïcödé text — with dashes… and emoji 🦀🦀🦀 and a verylongwordwithoutanyspacesatallthatmustbecuthard";
    let mut seeds = Vec::new();
    for (kind, size, overlap) in [(0u8, 60u8, 0u8), (1, 40, 200), (2, 80, 100), (0, 0, 255), (1, 255, 0)] {
        let mut s = vec![kind, 0, size, 1, overlap];
        s.extend_from_slice(prose.as_bytes());
        seeds.push(s);
    }
    run(target("kb_chunk", seeds, CHUNK_DICT), |input| {
        let (s, text) = strategy_and_text(input);
        s.validate().map_err(|e| format!("the harness drew an invalid strategy {s:?}: {e}"))?;
        let chunks = s.split(&text);
        let step = (s.chunk_size - s.chunk_overlap).max(1);
        check_chunks("split", &chunks, &text, &s, 2 * text.chars().count() / step + 2)?;
        if chunks != s.split(&text) {
            return Err("split is not deterministic".into());
        }
        if s.kind == ChunkingKind::Semantic {
            let sentences = s.sentences(&text);
            for x in &sentences {
                if x.chars().count() > s.chunk_size {
                    return Err(format!("a sentence of {} chars, chunk_size {}", x.chars().count(), s.chunk_size));
                }
            }
            let squeeze = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            if squeeze(&sentences.concat()) != squeeze(&text) {
                return Err("sentences lost or added text".into());
            }
            // Embeddings of any shape: from the input hash, with NaN, infinities, zero
            // vectors and ragged lengths among them.
            let mut rng = Rng::new(fnv(input));
            let dims = rng.range(0, 4);
            let vectors: Vec<Vec<f32>> = sentences
                .iter()
                .map(|_| {
                    let d = if rng.one_in(10) { rng.below(6) } else { dims };
                    (0..d)
                        .map(|_| match rng.below(12) {
                            0 => f32::NAN,
                            1 => f32::INFINITY,
                            2 => 0.0,
                            _ => rng.next_u64() as u32 as f32 / u32::MAX as f32 - 0.5,
                        })
                        .collect()
                })
                .collect();
            let grouped = chunk::semantic(&sentences, &vectors, s.chunk_size);
            // Topic breaks may cut anywhere between sentences: at most one chunk each.
            check_chunks("semantic", &grouped, &text, &s, sentences.len())?;
            // Vectors missing for some sentences (a short embedding batch) must not panic.
            let _ = chunk::semantic(&sentences, &vectors[..vectors.len() / 2], s.chunk_size);
        }
        Ok(())
    });
}

// --- vector filters ---------------------------------------------------------------------

const FILTER_DICT: &[&[u8]] = &[
    b"\"$eq\"",
    b"\"$ne\"",
    b"\"$gt\"",
    b"\"$gte\"",
    b"\"$lt\"",
    b"\"$lte\"",
    b"\"$in\"",
    b"\"$nin\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"1e308",
    b"-9223372036854775808",
    b"18446744073709551615",
    b"\"a.b\"",
];

#[test]
fn vector_filter() {
    let seeds = bytes(&[
        r#"{"topic": "cats", "year": {"$gte": 2020, "$lt": 2025}, "lang": {"$in": ["en", "fr"]}, "draft": {"$ne": true}}"#,
        r#"{"n": {"$in": [1, 2, 18446744073709551615]}, "x": 1.5, "y": {"$eq": false}}"#,
        r#"{"bad field!": 1}"#,
        "null",
        "[]",
    ]);
    let metadata: Map<String, Value> = json!({
        "topic": "cats", "year": 2021, "lang": "en", "draft": false, "n": 2, "x": 1.5, "y": "str",
        "a.b": [1, 2], "big": 1e308, "neg": -9223372036854775807i64
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let mut t = target("vector_filter", seeds, FILTER_DICT);
    t.json = true;
    run(t, |input| {
        let Ok(v) = serde_json::from_slice::<Value>(input) else { return Ok(()) };
        let Ok(filter) = MetadataFilter::parse(&v) else { return Ok(()) };
        let q = filter.to_qdrant_json();
        if !q.is_object() {
            return Err(format!("the Qdrant filter is not an object: {q}"));
        }
        let _ = filter.matches(&metadata);
        if let Value::Object(own) = &v {
            // The filter's own scalar values as metadata.
            let _ = filter.matches(own);
        }
        Ok(())
    });
}

// --- uploads ----------------------------------------------------------------------------

#[test]
fn files_sniff() {
    let mut seeds = Vec::new();
    for (name, head) in [
        ("report.pdf", &b"%PDF-1.7\n"[..]),
        ("doc.docx", b"PK\x03\x04\x14\0\0\0"),
        ("notes.md", b"# Title\n"),
        ("data.csv", b"a,b\n1,2\n"),
        ("x.json", b"{\"a\":1}"),
        ("noext", b"\x89PNG\r\n\x1a\n"),
        (".hidden", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),
        ("a\\b/c.HTML", b"<!doctype html>"),
    ] {
        let mut s = vec![name.len() as u8];
        s.extend_from_slice(name.as_bytes());
        s.extend_from_slice(head);
        seeds.push(s);
    }
    let dict: &[&[u8]] = &[b".", b"/", b"\\", b"%PDF-", b"PK\x03\x04", b"\xEF\xBB\xBF", b"<html", b"{", b"\0"];
    run(target("files_sniff", seeds, dict), |input| {
        let n = input.first().copied().unwrap_or(0) as usize;
        let rest = input.get(1..).unwrap_or(&[]);
        let (name, head) = rest.split_at(n.min(rest.len()));
        let name = String::from_utf8_lossy(name);
        let ty = sniff::content_type(head, &name);
        if ty.is_empty() || !ty.contains('/') {
            return Err(format!("content type {ty:?}"));
        }
        if let Some(ext) = sniff::extension(&name)
            && (ext.is_empty() || ext.contains(['/', '\\']))
        {
            return Err(format!("extension {ext:?} of {name:?}"));
        }
        Ok(())
    });
}
