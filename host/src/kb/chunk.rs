//! Cutting a document's text into chunks. Sizes are in characters (Unicode scalar
//! values): the default 800 stays well inside the 256-token window of small sentence
//! encoders such as all-MiniLM-L6-v2 for ordinary prose.
//!
//! Every strategy is deterministic: the same text and settings always give the same
//! chunks in the same order, which is what lets a resumed ingestion skip the chunks it
//! already stored and lets point ids be derived from the chunk index. `semantic` depends
//! on sentence embeddings too, and the embedding model gives the same vectors for the same
//! inputs in the same batches.
//!
//! `semantic` cuts in two steps because the middle one is async: [`ChunkingStrategy::sentences`]
//! here, the sentences' embeddings by the ingestion worker, then [`semantic`] here again.

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

    /// Cuts `text` into chunks (none for blank text) for `Recursive` and `FixedSize`;
    /// `Semantic` needs embeddings, so the text is cut with [`Self::sentences`] and
    /// [`semantic`] instead.
    pub fn split(&self, text: &str) -> Vec<String> {
        let chunks = match self.kind {
            ChunkingKind::FixedSize => fixed_size(text, self.chunk_size, self.chunk_overlap),
            ChunkingKind::Recursive | ChunkingKind::Semantic => recursive(text, self.chunk_size, self.chunk_overlap),
        };
        chunks.into_iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()
    }

    /// The sentences of `text`, for [`semantic`]: cut after `.`, `?` or `!` followed by
    /// white space and at line breaks, each keeping the white space after it so that
    /// joining them gives back the text. A sentence longer than `chunk_size` is cut at
    /// clauses, then words, like the recursive strategy.
    pub fn sentences(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let ends = match c {
                '\n' => true,
                '.' | '?' | '!' => chars.peek().is_some_and(|(_, next)| next.is_whitespace()),
                _ => false,
            };
            if ends {
                let mut end = i + c.len_utf8();
                while let Some(&(j, next)) = chars.peek().filter(|(_, next)| next.is_whitespace()) {
                    end = j + next.len_utf8();
                    chars.next();
                }
                out.push(&text[start..end]);
                start = end;
            }
        }
        out.push(&text[start..]);
        let clauses = SEPARATORS.iter().position(|s| *s == "; ").unwrap_or(0);
        out.into_iter()
            .flat_map(|s| pieces(s, self.chunk_size, clauses))
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Adjacent sentences whose cosine distance is above this percentile of all the
/// document's adjacent distances start a new chunk (95 is the usual default of the
/// percentile breakpoint method).
pub const BREAKPOINT_PERCENTILE: f32 = 95.0;

/// Groups consecutive `sentences` (from [`ChunkingStrategy::sentences`]) into chunks of at
/// most `size` characters, starting a new chunk where the topic changes: where the
/// cosine distance between a sentence's embedding and the previous one's is above the
/// [`BREAKPOINT_PERCENTILE`]th percentile of those distances. `vectors[i]` embeds
/// `sentences[i]`.
pub fn semantic(sentences: &[String], vectors: &[Vec<f32>], size: usize) -> Vec<String> {
    let distances: Vec<f32> = vectors.windows(2).map(|w| 1.0 - cosine(&w[0], &w[1])).collect();
    let threshold = percentile(&distances, BREAKPOINT_PERCENTILE);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    for (i, sentence) in sentences.iter().enumerate() {
        let n = chars(sentence);
        let topic_changes = i > 0 && distances.get(i - 1).is_some_and(|d| *d > threshold);
        if !current.is_empty() && (topic_changes || len + n > size) {
            out.push(std::mem::take(&mut current));
            len = 0;
        }
        current.push_str(sentence);
        len += n;
    }
    out.push(current);
    out.into_iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator > 0.0 { dot / denominator } else { 0.0 }
}

/// The `p`th percentile of `values`, interpolating linearly between ranks (as numpy
/// does); infinite for no values, so nothing is above it.
fn percentile(values: &[f32], p: f32) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let Some(last) = sorted.len().checked_sub(1) else { return f32::INFINITY };
    let rank = p / 100.0 * last as f32;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f32)
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
    fn sentences_keep_their_separators_and_fit_the_size() {
        let s = strategy(ChunkingKind::Semantic, 50, 0);
        let text = "One here. Two? Three!\nA line without stop\n\nv1.2 stays whole. Then a very long sentence, with clauses, that goes on and on past fifty characters.";
        let sentences = s.sentences(text);
        assert_eq!(&sentences[..5], ["One here. ", "Two? ", "Three!\n", "A line without stop\n\n", "v1.2 stays whole. "]);
        assert_eq!(sentences.concat(), text, "nothing lost");
        assert!(sentences.iter().all(|x| x.chars().count() <= 50), "{sentences:?}");
        assert!(s.sentences("  \n ").is_empty());
    }

    #[test]
    fn semantic_breaks_at_the_largest_topic_shift_and_at_the_size() {
        let sentences: Vec<String> = ["Cats purr. ", "Cats nap. ", "Cats hunt.\n\n", "Tax is due. ", "Tax forms. ", "Tax rates."]
            .map(str::to_owned)
            .into();
        // Two clusters of nearby directions, the shift between sentences 2 and 3.
        let vectors = [[1.0, 0.1, 0.0], [1.0, 0.0, 0.1], [0.9, 0.2, 0.0], [0.0, 1.0, 0.9], [0.1, 1.0, 1.0], [0.0, 0.9, 1.0]]
            .map(|v| v.to_vec());
        assert_eq!(semantic(&sentences, &vectors, 1000), ["Cats purr. Cats nap. Cats hunt.", "Tax is due. Tax forms. Tax rates."]);
        // A size limit cuts inside a topic too, and never merges across the shift.
        let small = semantic(&sentences, &vectors, 25);
        assert_eq!(small, ["Cats purr. Cats nap.", "Cats hunt.", "Tax is due. Tax forms.", "Tax rates."]);
        // Identical vectors: no distance is above the percentile, only the size cuts.
        let same = vec![vec![1.0, 0.0]; 6];
        assert_eq!(semantic(&sentences, &same, 1000).len(), 1);
        assert_eq!(semantic(&sentences[..1], &vectors[..1], 1000), ["Cats purr."]);
        assert!(semantic(&[], &[], 1000).is_empty());
    }

    #[test]
    fn percentile_interpolates() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0, 5.0], 50.0), 3.0);
        assert!((percentile(&[0.0, 10.0], 95.0) - 9.5).abs() < 1e-6);
        assert_eq!(percentile(&[], 95.0), f32::INFINITY);
    }

    #[test]
    fn validation() {
        assert!(strategy(ChunkingKind::Recursive, 10, 0).validate().is_err());
        assert!(strategy(ChunkingKind::Recursive, 100, 60).validate().is_err());
        assert!(ChunkingStrategy::default().validate().is_ok());
    }
}
