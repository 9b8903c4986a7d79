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

use std::collections::VecDeque;

// The settings are part of a knowledge base's stored record, so their types live with it;
// how each strategy cuts is here.
pub use crate::store::knowledge::{ChunkingKind, ChunkingStrategy};

/// Smallest and largest accepted `chunk_size`.
pub const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<usize> = 50..=20_000;

impl ChunkingStrategy {
    /// Checks the numbers; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !CHUNK_SIZE_RANGE.contains(&self.chunk_size) {
            return Err(format!("chunk_size must be from {} to {} characters", CHUNK_SIZE_RANGE.start(), CHUNK_SIZE_RANGE.end()));
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
        self.split_at_most(text, usize::MAX).unwrap_or_default()
    }

    /// [`Self::split`], stopping as soon as there would be more than `max` chunks
    /// (`None` then): a runaway document costs at most `max` chunks of work and memory.
    pub fn split_at_most(&self, text: &str, max: usize) -> Option<Vec<String>> {
        let mut sink = Sink::new(max);
        let complete = match self.kind {
            ChunkingKind::FixedSize => fixed_size(text, self.chunk_size, self.chunk_overlap, &mut sink),
            ChunkingKind::Recursive | ChunkingKind::Semantic => recursive(text, self.chunk_size, self.chunk_overlap, &mut sink),
        };
        complete.then_some(sink.out)
    }

    /// The sentences of `text`, for [`semantic`]: cut after `.`, `?` or `!` followed by
    /// white space and at line breaks, each keeping the white space after it so that
    /// joining them gives back the text. A sentence longer than `chunk_size` is cut at
    /// clauses, then words, like the recursive strategy.
    pub fn sentences(&self, text: &str) -> Vec<String> {
        self.sentences_at_most(text, usize::MAX).unwrap_or_default()
    }

    /// [`Self::sentences`], stopping (`None`) past `max` sentences.
    pub fn sentences_at_most(&self, text: &str, max: usize) -> Option<Vec<String>> {
        let clauses = SEPARATORS.iter().position(|s| *s == "; ").unwrap_or(0);
        let mut out = Vec::new();
        let mut keep = |s: &str| {
            for piece in pieces(s, self.chunk_size, clauses) {
                if piece.trim().is_empty() {
                    continue;
                }
                if out.len() == max {
                    return false;
                }
                out.push(piece.to_owned());
            }
            true
        };
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
                if !keep(&text[start..end]) {
                    return None;
                }
                start = end;
            }
        }
        keep(&text[start..]).then_some(out)
    }
}

/// Collects trimmed, non-blank chunks, refusing more than `max`.
struct Sink {
    out: Vec<String>,
    max: usize,
}

impl Sink {
    fn new(max: usize) -> Self {
        Self { out: Vec::new(), max }
    }

    /// Keeps `chunk` (trimmed, unless blank); false once that would pass the maximum.
    fn push(&mut self, chunk: &str) -> bool {
        let chunk = chunk.trim();
        if chunk.is_empty() {
            return true;
        }
        if self.out.len() == self.max {
            return false;
        }
        self.out.push(chunk.to_owned());
        true
    }
}

/// Adjacent sentences whose cosine distance is above this percentile of all the
/// document's adjacent distances start a new chunk (95 is the usual default of the
/// percentile breakpoint method).
pub const BREAKPOINT_PERCENTILE: f32 = 95.0;

/// Sentences whose distances share one percentile: the embeddings of at most this many
/// sentences are held at a time, so a semantic cut needs memory for one window, not for
/// the document (a million sentences of a 384-dimension model would be 1.5 GB of vectors).
pub const SEMANTIC_WINDOW: usize = 1024;

/// Groups consecutive `sentences` (from [`ChunkingStrategy::sentences`]) into chunks of at
/// most `size` characters, starting a new chunk where the topic changes: where the
/// cosine distance between a sentence's embedding and the previous one's is above the
/// [`BREAKPOINT_PERCENTILE`]th percentile of those distances. `vectors[i]` embeds
/// `sentences[i]`. Documents longer than [`SEMANTIC_WINDOW`] sentences are cut window by
/// window, see [`Semantic`].
pub fn semantic(sentences: &[String], vectors: &[Vec<f32>], size: usize) -> Vec<String> {
    let mut grouper = Semantic::new(size, SEMANTIC_WINDOW);
    for (sentence, vector) in sentences.iter().zip(vectors) {
        grouper.push(sentence.clone(), vector.clone());
    }
    grouper.finish()
}

/// The semantic cut as a stream: sentences and their embeddings go in one by one, chunks
/// come out window by window. The breakpoint percentile is taken over the distances of
/// one window of `window` sentences (the distance from the previous window's last
/// sentence to a window's first one counts in that window), so only one window of
/// vectors is ever held; a document of at most `window` sentences is cut exactly as with
/// one percentile over all of it. A chunk open at the end of a window goes on into the
/// next one.
#[derive(Debug)]
pub struct Semantic {
    size: usize,
    window: usize,
    /// The current window's sentences and vectors.
    pending: Vec<(String, Vec<f32>)>,
    /// The last vector of the previous window.
    previous: Option<Vec<f32>>,
    /// The chunk being built, and its length in characters.
    current: String,
    len: usize,
    /// Finished chunks (trimmed, non-blank).
    done: Vec<String>,
}

impl Semantic {
    /// A cut into chunks of at most `size` characters, percentiles over `window` sentences.
    pub fn new(size: usize, window: usize) -> Self {
        Self {
            size,
            window: window.max(2),
            pending: Vec::new(),
            previous: None,
            current: String::new(),
            len: 0,
            done: Vec::new(),
        }
    }

    /// Adds the next sentence and its embedding.
    pub fn push(&mut self, sentence: String, vector: Vec<f32>) {
        self.pending.push((sentence, vector));
        if self.pending.len() >= self.window {
            self.close_window();
        }
    }

    /// Chunks finished so far.
    pub fn chunks(&self) -> usize {
        self.done.len()
    }

    /// The chunks, once every sentence was pushed.
    pub fn finish(mut self) -> Vec<String> {
        self.close_window();
        let last = std::mem::take(&mut self.current);
        self.emit(&last);
        self.done
    }

    fn close_window(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        // distances[i]: from the sentence before pending[i], if there is one.
        let distances: Vec<Option<f32>> = pending
            .iter()
            .enumerate()
            .map(|(i, (_, v))| {
                let before = if i == 0 { self.previous.as_deref() } else { Some(pending[i - 1].1.as_slice()) };
                before.map(|b| 1.0 - cosine(b, v))
            })
            .collect();
        let known: Vec<f32> = distances.iter().flatten().copied().collect();
        let threshold = percentile(&known, BREAKPOINT_PERCENTILE);
        let mut last = None;
        for ((sentence, vector), distance) in pending.into_iter().zip(distances) {
            let n = chars(&sentence);
            let topic_changes = distance.is_some_and(|d| d > threshold);
            if !self.current.is_empty() && (topic_changes || self.len + n > self.size) {
                let chunk = std::mem::take(&mut self.current);
                self.emit(&chunk);
                self.len = 0;
            }
            self.current.push_str(&sentence);
            self.len += n;
            last = Some(vector);
        }
        self.previous = last;
    }

    fn emit(&mut self, chunk: &str) {
        let chunk = chunk.trim();
        if !chunk.is_empty() {
            self.done.push(chunk.to_owned());
        }
    }
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

/// Whether `s` has at most `n` characters, looking at no more than `n + 1` of them.
fn fits(s: &str, n: usize) -> bool {
    s.len() <= n || s.chars().nth(n).is_none()
}

/// Byte offset of the `n`th character (or the end).
fn byte_at(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// Windows of `size` characters, `size - overlap` apart; false if the sink refused one.
/// Each window costs its own length to find, so the whole cut is linear in the text.
fn fixed_size(text: &str, size: usize, overlap: usize, sink: &mut Sink) -> bool {
    let step = size.saturating_sub(overlap).max(1);
    let mut start = 0;
    while start < text.len() {
        let rest = &text[start..];
        let end = start + byte_at(rest, size);
        if !sink.push(&text[start..end]) {
            return false;
        }
        if end == text.len() {
            break;
        }
        start += byte_at(rest, step);
    }
    true
}

const SEPARATORS: &[&str] = &["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " "];

/// Pieces no longer than `size`, each ending with its separator so nothing is lost,
/// in order and produced lazily (a document of single words is not held as millions of
/// slices at once).
fn pieces(text: &str, size: usize, level: usize) -> Box<dyn Iterator<Item = &str> + '_> {
    if fits(text, size) {
        return Box::new(std::iter::once(text));
    }
    let Some((sep, next)) = SEPARATORS[level..].iter().enumerate().find(|(_, s)| text.contains(**s)) else {
        // No separator left: hard cuts at the size.
        let mut rest = text;
        return Box::new(std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let at = byte_at(rest, size);
            let (piece, after) = rest.split_at(at);
            rest = after;
            Some(piece)
        }));
    };
    let level = level + sep + 1;
    Box::new(text.split_inclusive(*next).flat_map(move |p| pieces(p, size, level)))
}

/// Merges pieces up to `size` characters, repeating whole trailing pieces up to
/// `overlap`; false if the sink refused a chunk. The pieces of the chunk being built are
/// a queue (taken from the front as the overlap moves on), so the merge is linear.
fn recursive(text: &str, size: usize, overlap: usize, sink: &mut Sink) -> bool {
    let mut current: VecDeque<(&str, usize)> = VecDeque::new();
    let mut len = 0;
    let concat = |current: &VecDeque<(&str, usize)>| current.iter().map(|(p, _)| *p).collect::<String>();
    for part in pieces(text, size, 0) {
        let n = chars(part);
        if len + n > size && !current.is_empty() {
            if !sink.push(&concat(&current)) {
                return false;
            }
            // Keep whole trailing pieces that fit in the overlap (and leave room for `part`).
            while len > overlap || len + n > size {
                let Some((_, m)) = current.pop_front() else { break };
                len -= m;
            }
        }
        current.push_back((part, n));
        len += n;
    }
    current.is_empty() || sink.push(&concat(&current))
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
        assert_eq!(
            semantic(&sentences, &vectors, 1000),
            ["Cats purr. Cats nap. Cats hunt.", "Tax is due. Tax forms. Tax rates."]
        );
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
    fn semantic_windows_hold_few_vectors_and_match_the_whole_cut_when_it_fits() {
        let sentences: Vec<String> = ["Cats purr. ", "Cats nap. ", "Cats hunt.\n\n", "Tax is due. ", "Tax forms. ", "Tax rates."]
            .map(str::to_owned)
            .into();
        let vectors = [[1.0, 0.1, 0.0], [1.0, 0.0, 0.1], [0.9, 0.2, 0.0], [0.0, 1.0, 0.9], [0.1, 1.0, 1.0], [0.0, 0.9, 1.0]]
            .map(|v| v.to_vec());
        let cut = |window: usize, size: usize| {
            let mut g = Semantic::new(size, window);
            for (s, v) in sentences.iter().zip(&vectors) {
                g.push(s.clone(), v.clone());
                assert!(g.pending.len() < window, "at most one window of vectors is held");
            }
            g.finish()
        };
        for size in [1000, 25] {
            assert_eq!(cut(6, size), semantic(&sentences, &vectors, size));
            assert_eq!(cut(100, size), semantic(&sentences, &vectors, size));
        }
        // Windows of three: each window has its own percentile, so the first (all about
        // cats) breaks at its larger distance, and the shift to tax, measured across the
        // boundary, is the largest of the second window and breaks there.
        assert_eq!(cut(3, 1000), ["Cats purr. Cats nap.", "Cats hunt.", "Tax is due. Tax forms. Tax rates."]);
        // A long document in many windows: the topic changes every 40 sentences, and every
        // change is found, however the windows fall; nothing is lost.
        let mut g = Semantic::new(10_000, 64);
        let mut all = String::new();
        for i in 0..1_000 {
            let topic = (i / 40) % 2;
            let s = format!("Sentence {i} on topic {topic}. ");
            all.push_str(&s);
            g.push(s, if topic == 0 { vec![1.0, 0.0] } else { vec![0.0, 1.0] });
            assert!(g.pending.len() < 64);
        }
        let chunks = g.finish();
        assert_eq!(chunks.len(), 25, "{chunks:?}");
        assert!(chunks.iter().all(|c| c.matches("topic 0").count() == 40 || c.matches("topic 1").count() == 40));
        assert_eq!(chunks.join(" "), all.trim_end());
    }

    #[test]
    fn cuts_stop_past_their_limit() {
        let text: String = (0..1_000).map(|i| format!("word{i} ")).collect();
        let s = strategy(ChunkingKind::Recursive, 50, 0);
        let all = s.split(&text);
        assert_eq!(s.split_at_most(&text, all.len()), Some(all.clone()));
        assert_eq!(s.split_at_most(&text, all.len() - 1), None);
        let f = strategy(ChunkingKind::FixedSize, 50, 10);
        assert_eq!(f.split_at_most(&text, 3), None);
        assert_eq!(f.split_at_most("short", 1).unwrap(), ["short"]);
        let sentences = strategy(ChunkingKind::Semantic, 50, 0);
        assert_eq!(sentences.sentences_at_most("One. Two. Three.", 3).unwrap().len(), 3);
        assert_eq!(sentences.sentences_at_most("One. Two. Three.", 2), None);
        assert!(s.split_at_most("   ", 0).unwrap().is_empty());
    }

    /// 4 MB without a paragraph break: the merge used to take pieces off the front of a
    /// vector one by one, and the fixed cut to index every character first.
    #[test]
    fn long_texts_are_cut_in_one_pass() {
        let text: String = (0..400_000).map(|i| format!("w{i:06}; ")).collect();
        assert!(text.len() > 3_500_000);
        for (kind, overlap) in [(ChunkingKind::Recursive, 400), (ChunkingKind::FixedSize, 100)] {
            let started = std::time::Instant::now();
            let chunks = strategy(kind, 1000, overlap).split(&text);
            eprintln!("{kind:?}: {} chunks in {:?}", chunks.len(), started.elapsed());
            assert!(chunks.iter().all(|c| c.chars().count() <= 1000));
            assert!(chunks[0].starts_with("w000000;") && chunks.last().unwrap().ends_with("w399999;"));
            // Consecutive chunks overlap, so every word is somewhere.
            for pair in chunks.windows(2) {
                let first_of_next = pair[1].split(' ').next().unwrap();
                assert!(pair[0].contains(first_of_next), "gap before {first_of_next}");
            }
        }
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
