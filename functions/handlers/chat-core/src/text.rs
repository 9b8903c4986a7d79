//! Turning "the whole completion decoded so far" into safe text deltas.
//!
//! After every token the handler brings the decoded text of all generated ids
//! up to date ([`crate::decoded::DecodedText`]: per-token decoding breaks
//! multi-token characters and SentencePiece spacing) and hands it to a
//! [`TextTracker`], which returns only what may be shown now. It holds back:
//!
//! - trailing U+FFFD: a byte-level tokenizer decodes an incomplete UTF-8
//!   character as the replacement character until its last byte arrives;
//! - any suffix that could be the start of a stop sequence, since the stop
//!   sequence must never reach the client, even split across tokens.
//!
//! Streamed and non-streamed answers both go through the tracker, so the
//! concatenated deltas are the final text by construction.

/// Result of feeding one more decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep generating; `delta` (possibly empty) may be shown.
    Continue(String),
    /// A stop sequence was found: `delta` is the last text, which ends just
    /// before the stop sequence.
    Stop(String),
}

/// Emits the stable, stop-sequence-free part of a growing text.
#[derive(Debug, Clone)]
pub struct TextTracker {
    stops: Vec<String>,
    /// Everything released so far: the final text when generation ends.
    emitted: String,
}

impl TextTracker {
    /// A tracker for the given (non-empty) stop sequences.
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), emitted: String::new() }
    }

    /// The text released so far.
    pub fn text(&self) -> &str {
        &self.emitted
    }

    /// Takes the whole decoded completion after a new token.
    pub fn update(&mut self, full: &str) -> Step {
        let start = self.resume_point(full);
        // U+FFFD at the end may be a character still arriving.
        let stable_end = full.trim_end_matches('\u{FFFD}').len().max(start);
        let pending = &full[start..stable_end];

        if let Some(cut) = self.find_stop(pending) {
            let delta = pending[..cut].to_owned();
            self.emitted.push_str(&delta);
            return Step::Stop(delta);
        }
        let release = pending.len() - self.stop_prefix_len(pending);
        let delta = pending[..release].to_owned();
        self.emitted.push_str(&delta);
        Step::Continue(delta)
    }

    /// Takes the final decoded completion (generation ended for another
    /// reason) and releases everything left, still cutting at a stop
    /// sequence. Returns the delta and whether a stop sequence was found.
    pub fn finish(&mut self, full: &str) -> (String, bool) {
        let start = self.resume_point(full);
        let pending = &full[start..];
        let (delta, stopped) = match self.find_stop(pending) {
            Some(cut) => (pending[..cut].to_owned(), true),
            None => (pending.to_owned(), false),
        };
        self.emitted.push_str(&delta);
        (delta, stopped)
    }

    /// Where the unreleased part of `full` begins. Normally `full` extends
    /// what was released; if a tokenizer rewrote earlier text (released text
    /// cannot be taken back), continue after the same number of bytes, moved
    /// forward to a character boundary.
    fn resume_point(&self, full: &str) -> usize {
        let mut at = self.emitted.len();
        if full.starts_with(&self.emitted) {
            return at;
        }
        if at >= full.len() {
            return full.len();
        }
        while !full.is_char_boundary(at) {
            at += 1;
        }
        at
    }

    /// Byte offset of the earliest stop sequence in `text`.
    fn find_stop(&self, text: &str) -> Option<usize> {
        self.stops.iter().filter_map(|s| text.find(s.as_str())).min()
    }

    /// Length of the longest suffix of `text` that is a proper prefix of a
    /// stop sequence (so it might become one with more tokens).
    fn stop_prefix_len(&self, text: &str) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut best = 0;
        for (start, _) in text.char_indices().rev() {
            let suffix = &text[start..];
            if suffix.len() >= longest {
                break;
            }
            if self.stops.iter().any(|s| s.starts_with(suffix)) {
                best = suffix.len();
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    /// Feeds successive decodes; returns the deltas and the final step.
    fn feed(tracker: &mut TextTracker, texts: &[&str]) -> (Vec<String>, bool) {
        let mut deltas = Vec::new();
        for t in texts {
            match tracker.update(t) {
                Step::Continue(d) => deltas.push(d),
                Step::Stop(d) => {
                    deltas.push(d);
                    return (deltas, true);
                }
            }
        }
        let (d, stopped) = tracker.finish(texts.last().copied().unwrap_or(""));
        deltas.push(d);
        (deltas, stopped)
    }

    #[test]
    fn plain_text_streams_token_by_token() {
        let mut t = TextTracker::new(&[]);
        let (deltas, stopped) = feed(&mut t, &["Hel", "Hello", "Hello world"]);
        assert_eq!(deltas, ["Hel", "lo", " world", ""]);
        assert!(!stopped);
        assert_eq!(t.text(), "Hello world");
    }

    #[test]
    fn incomplete_utf8_is_held_back() {
        let mut t = TextTracker::new(&[]);
        // "é" arriving as two byte tokens: the first decodes to U+FFFD.
        let (deltas, _) = feed(&mut t, &["caf", "caf\u{FFFD}", "café", "café!"]);
        assert_eq!(deltas, ["caf", "", "é", "!", ""]);
        assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')));
    }

    #[test]
    fn trailing_replacement_char_is_released_at_the_end() {
        let mut t = TextTracker::new(&[]);
        let (deltas, _) = feed(&mut t, &["a", "a\u{FFFD}"]);
        assert_eq!(deltas.concat(), "a\u{FFFD}");
    }

    #[test]
    fn stop_sequence_split_across_tokens_is_cut_and_never_streamed() {
        let mut t = TextTracker::new(&stops(&["END"]));
        // Tokens: "The", " E", "N", "D", " more"
        let (deltas, stopped) = feed(&mut t, &["The", "The E", "The EN", "The END", "The END more"]);
        assert!(stopped);
        assert_eq!(deltas.concat(), "The ");
        assert_eq!(t.text(), "The ");
        assert!(deltas.iter().all(|d| !d.contains('E')), "{deltas:?}");
    }

    #[test]
    fn false_start_of_stop_sequence_is_released() {
        let mut t = TextTracker::new(&stops(&["\n\nUser:"]));
        let (deltas, stopped) = feed(&mut t, &["a\n", "a\n\nU", "a\n\nUs", "a\n\nUsa", "a\n\nUsage"]);
        assert!(!stopped);
        assert_eq!(deltas, ["a", "", "", "\n\nUsa", "ge", ""]);
        assert_eq!(t.text(), "a\n\nUsage");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut t = TextTracker::new(&stops(&["xyz", "b"]));
        assert_eq!(t.update("a b xyz"), Step::Stop("a ".into()));
    }

    #[test]
    fn stop_inside_one_token_cuts_mid_token() {
        let mut t = TextTracker::new(&stops(&["."]));
        assert_eq!(t.update("Hi"), Step::Continue("Hi".into()));
        assert_eq!(t.update("Hi. Bye"), Step::Stop("".into()));
        assert_eq!(t.text(), "Hi");
    }

    #[test]
    fn held_back_stop_prefix_is_flushed_at_length_limit() {
        let mut t = TextTracker::new(&stops(&["###"]));
        let (deltas, stopped) = feed(&mut t, &["x#", "x##"]);
        assert!(!stopped);
        assert_eq!(deltas, ["x", "", "##"]);
    }

    #[test]
    fn stop_found_only_at_finish_still_cuts() {
        // A stop sequence ending in U+FFFD-held text is found when flushed.
        let mut t = TextTracker::new(&stops(&["!\u{FFFD}"]));
        assert_eq!(t.update("ok!\u{FFFD}"), Step::Continue("ok".into()));
        assert_eq!(t.finish("ok!\u{FFFD}"), ("".into(), true));
        assert_eq!(t.text(), "ok");
    }

    #[test]
    fn rewritten_prefix_does_not_panic() {
        let mut t = TextTracker::new(&[]);
        assert_eq!(t.update("ab"), Step::Continue("ab".into()));
        // A tokenizer that changed earlier text: continue after 2 bytes.
        assert_eq!(t.update("éx"), Step::Continue("x".into()));
        assert_eq!(t.text(), "abx");
    }
}
