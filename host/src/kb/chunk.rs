//! Cutting a document's text into chunks. Sizes are in characters (Unicode scalar
//! values): the default 800 stays well inside the 256-token window of small sentence
//! encoders such as all-MiniLM-L6-v2 for ordinary prose.
//!
//! Both strategies are deterministic: the same text and settings always give the same
//! chunks in the same order, which is what lets a resumed ingestion skip the chunks it
//! already stored and lets point ids be derived from the chunk index.

use serde::{Deserialize, Serialize};

/// How a knowledge base cuts documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkingStrategy {
    /// The algorithm.
    #[serde(rename = "type")]
    pub kind: ChunkingKind,
    /// Largest chunk, in characters.
    pub chunk_size: usize,
    /// Characters repeated from the end of one chunk at the start of the next.
    pub chunk_overlap: usize,
}

impl Default for ChunkingStrategy {
    fn default() -> Self {
        Self { kind: ChunkingKind::Recursive, chunk_size: 800, chunk_overlap: 100 }
    }
}

/// Chunking algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkingKind {
    /// Split on paragraphs, then lines, sentences, words; merge pieces up to the size.
    Recursive,
    /// Fixed windows of `chunk_size` characters, `chunk_overlap` apart from the next.
    FixedSize,
    /// Break where the topic changes (by embedding similarity of sentences).
    Semantic,
}

/// Smallest and largest accepted `chunk_size`.
pub const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<usize> = 50..=20_000;

impl ChunkingStrategy {
    /// Checks the numbers; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !CHUNK_SIZE_RANGE.contains(&self.chunk_size) {
            return Err(format!(
                "chunk_size must be from {} to {} characters",
                CHUNK_SIZE_RANGE.start(),
                CHUNK_SIZE_RANGE.end()
            ));
        }
        if self.chunk_overlap * 2 > self.chunk_size {
            return Err("chunk_overlap must be at most half of chunk_size".into());
        }
        Ok(())
    }

    /// Cuts `text` into chunks (none for blank text). `Semantic` falls back to
    /// `Recursive` here; the semantic pass refines these boundaries with embeddings.
    pub fn split(&self, text: &str) -> Vec<String> {
        let chunks = match self.kind {
            ChunkingKind::FixedSize => fixed_size(text, self.chunk_size, self.chunk_overlap),
            ChunkingKind::Recursive | ChunkingKind::Semantic => {
                recursive(text, self.chunk_size, self.chunk_overlap)
            }
        };
        chunks.into_iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Byte offset of the `n`th character (or the end).
fn byte_at(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

fn fixed_size(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let total = bounds.len() - 1;
    let step = size.saturating_sub(overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < total {
        let end = (start + size).min(total);
        out.push(text[bounds[start]..bounds[end]].to_owned());
        if end == total {
            break;
        }
        start += step;
    }
    out
}

const SEPARATORS: &[&str] = &["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " "];

/// Pieces no longer than `size`, each ending with its separator so nothing is lost.
fn pieces(text: &str, size: usize, level: usize) -> Vec<&str> {
    if chars(text) <= size {
        return vec![text];
    }
    let Some((sep, next)) = SEPARATORS[level..].iter().enumerate().find(|(_, s)| text.contains(**s)) else {
        // No separator left: hard cuts at the size.
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let at = byte_at(rest, size);
            out.push(&rest[..at]);
            rest = &rest[at..];
        }
        return out;
    };
    let level = level + sep + 1;
    text.split_inclusive(*next).flat_map(|p| pieces(p, size, level)).collect()
}

fn recursive(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let parts = pieces(text, size, 0);
    let mut out: Vec<String> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut len = 0;
    for part in parts {
        let n = chars(part);
        if len + n > size && !current.is_empty() {
            out.push(current.concat());
            // Keep whole trailing pieces that fit in the overlap (and leave room for `part`).
            while !current.is_empty() && (len > overlap || len + n > size) {
                len -= chars(current[0]);
                current.remove(0);
            }
        }
        current.push(part);
        len += n;
    }
    if !current.is_empty() {
        out.push(current.concat());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(kind: ChunkingKind, chunk_size: usize, chunk_overlap: usize) -> ChunkingStrategy {
        ChunkingStrategy { kind, chunk_size, chunk_overlap }
    }

    #[test]
    fn fixed_size_windows_overlap() {
        let s = strategy(ChunkingKind::FixedSize, 4, 1);
        assert_eq!(s.split("abcdefghij"), ["abcd", "defg", "ghij"]);
        assert_eq!(s.split("ééééé"), ["éééé", "éé"]);
        assert!(s.split("   ").is_empty());
    }

    #[test]
    fn recursive_prefers_paragraphs_then_sentences() {
        let text = "First paragraph is here.\n\nSecond one. It has two sentences.\n\nThird.";
        let s = strategy(ChunkingKind::Recursive, 30, 0);
        let chunks = s.split(text);
        assert_eq!(chunks, ["First paragraph is here.", "Second one.", "It has two sentences.\n\nThird."]);
        for c in &chunks {
            assert!(c.chars().count() <= 30);
        }
    }

    #[test]
    fn recursive_overlap_repeats_trailing_pieces_and_loses_nothing() {
        let words: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let text = words.join(" ");
        let s = strategy(ChunkingKind::Recursive, 60, 15);
        let chunks = s.split(&text);
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(c.chars().count() <= 60, "{c}");
        }
        for w in &words {
            assert!(chunks.iter().any(|c| c.split(' ').any(|x| x == w)), "{w} lost");
        }
        let first_last = chunks[0].split(' ').next_back().unwrap();
        assert!(chunks[1].starts_with(first_last) || chunks[1].contains(first_last), "no overlap");
        assert_eq!(s.split(&text), chunks, "deterministic");
    }

    #[test]
    fn long_words_are_cut_hard() {
        let s = strategy(ChunkingKind::Recursive, 50, 0);
        let chunks = s.split(&"x".repeat(120));
        assert_eq!(chunks.iter().map(|c| c.len()).collect::<Vec<_>>(), [50, 50, 20]);
    }

    #[test]
    fn validation() {
        assert!(strategy(ChunkingKind::Recursive, 10, 0).validate().is_err());
        assert!(strategy(ChunkingKind::Recursive, 100, 60).validate().is_err());
        assert!(ChunkingStrategy::default().validate().is_ok());
    }
}
