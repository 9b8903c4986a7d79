//! The text of a growing completion, kept up to date a token at a time.
//!
//! Decoding each token alone is wrong (a multi-byte character split across
//! byte-level tokens, SentencePiece's leading-space rule), and decoding every
//! generated id after each token costs time in proportion to the length, a
//! host call that grows to milliseconds a token for long answers. So, as
//! text-generation-inference and vLLM do, only a short window is decoded:
//! the tokens since the last committed one, behind the committed token(s)
//! before them for context. What the window adds to its context's text is
//! the new text. For byte-level BPE (GPT-2, Llama 3, SmolLM2) this is exactly
//! the full decode; for a decoder that rewrites earlier text (space clean-up
//! around punctuation), the window's text does not extend its context's, and
//! that step falls back to decoding everything, so the result still equals
//! the full decode.
//!
//! The ids reach text through [`Detokenizer`], defined here beside its first
//! user: the host's tokenizer implements it (`host.rs`), and the decode loop
//! (`generate.rs`) takes one.

use handler_common::ApiError;

/// Token ids to text.
pub trait Detokenizer {
    /// Decodes ids (a completion, or a window of one), skipping special tokens.
    fn decode(&mut self, ids: &[u32]) -> Result<String, ApiError>;
    /// The text of one token as shown in logprobs (special tokens kept).
    fn token_text(&mut self, id: u32) -> Result<String, ApiError>;
}

/// The completion's ids and their decoded text.
#[derive(Debug, Default)]
pub struct DecodedText {
    ids: Vec<u32>,
    /// The whole text so far, `text[..committed]` final.
    text: String,
    committed: usize,
    /// Window start: the context tokens, already committed.
    prefix: usize,
    /// First id not yet committed.
    read: usize,
}

impl DecodedText {
    /// Nothing generated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ids so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The decoded text so far, as a full decode of [`Self::ids`] gives it; an
    /// incomplete trailing character shows as U+FFFD, as there.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends one token and brings the text up to date.
    pub fn push<D: Detokenizer>(&mut self, detok: &mut D, id: u32) -> Result<(), ApiError> {
        self.ids.push(id);
        let context = detok.decode(&self.ids[self.prefix..self.read])?;
        let window = detok.decode(&self.ids[self.prefix..])?;
        match window.strip_prefix(context.as_str()) {
            Some(added) => {
                self.text.truncate(self.committed);
                self.text.push_str(added);
                // Commit once the new text is whole characters; until then the
                // window keeps growing from the same context.
                if !added.is_empty() && !added.ends_with('\u{FFFD}') {
                    self.committed = self.text.len();
                    self.prefix = self.read;
                    self.read = self.ids.len();
                }
            }
            None => {
                self.text = detok.decode(&self.ids)?;
                self.committed = self.text.len();
                self.prefix = self.read;
                self.read = self.ids.len();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test decoders over a vocabulary of byte strings (id = index).
    struct Vocab {
        pieces: Vec<Vec<u8>>,
        /// SentencePiece-like: a leading space of the decoded text is dropped.
        strip_leading_space: bool,
        /// BERT-like clean-up: " ." becomes "." anywhere in the text.
        clean_up: bool,
        calls: Vec<usize>,
    }

    impl Vocab {
        fn new(pieces: &[&str]) -> Self {
            Self {
                pieces: pieces.iter().map(|p| p.as_bytes().to_vec()).collect(),
                strip_leading_space: false,
                clean_up: false,
                calls: Vec::new(),
            }
        }
    }

    impl Detokenizer for Vocab {
        fn decode(&mut self, ids: &[u32]) -> Result<String, ApiError> {
            self.calls.push(ids.len());
            let bytes: Vec<u8> = ids.iter().flat_map(|&i| self.pieces[i as usize].clone()).collect();
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            if self.strip_leading_space && text.starts_with(' ') {
                text.remove(0);
            }
            if self.clean_up {
                text = text.replace(" .", ".");
            }
            Ok(text)
        }

        fn token_text(&mut self, id: u32) -> Result<String, ApiError> {
            Ok(String::from_utf8_lossy(&self.pieces[id as usize]).into_owned())
        }
    }

    /// Pushes `ids` one by one and checks the text against a full decode
    /// after every token.
    fn check(vocab: &mut Vocab, ids: &[u32]) -> String {
        let mut d = DecodedText::new();
        for (n, &id) in ids.iter().enumerate() {
            d.push(vocab, id).unwrap();
            let full = vocab.decode(&ids[..=n]).unwrap();
            assert_eq!(d.text(), full, "after {} tokens", n + 1);
        }
        assert_eq!(d.ids(), ids);
        d.text().to_owned()
    }

    #[test]
    fn byte_level_pieces_match_the_full_decode() {
        let mut v = Vocab::new(&["Hello", ",", " wor", "ld", "!"]);
        assert_eq!(check(&mut v, &[0, 1, 2, 3, 4]), "Hello, world!");
    }

    #[test]
    fn a_character_split_across_tokens_is_held_as_the_replacement_then_completed() {
        // "é" is C3 A9, "€" is E2 82 AC: bytes arrive one token at a time.
        let mut v = Vocab::new(&["caf", "x"]);
        v.pieces.extend([vec![0xC3], vec![0xA9], vec![0xE2], vec![0x82], vec![0xAC]]);
        assert_eq!(check(&mut v, &[0, 2, 3, 1, 4, 5, 6]), "caféx€");
    }

    #[test]
    fn sentencepiece_spacing_survives_the_window() {
        let mut v = Vocab::new(&[" The", " cat", " sat", "."]);
        v.strip_leading_space = true;
        assert_eq!(check(&mut v, &[0, 1, 2, 3]), "The cat sat.");
    }

    #[test]
    fn a_decoder_that_rewrites_earlier_text_falls_back_to_the_full_decode() {
        let mut v = Vocab::new(&["Yes", " ", ".", " no"]);
        v.clean_up = true;
        assert_eq!(check(&mut v, &[0, 1, 2, 3, 1, 2]), "Yes. no.");
    }

    #[test]
    fn windows_stay_short_however_long_the_text() {
        let mut v = Vocab::new(&["a", " b"]);
        let ids: Vec<u32> = (0..500).map(|i| i % 2).collect();
        let mut d = DecodedText::new();
        for &id in &ids {
            d.push(&mut v, id).unwrap();
        }
        assert_eq!(d.text().len(), 750);
        assert!(v.calls.iter().all(|&n| n <= 2), "decoded windows: {:?}", &v.calls[..10]);
    }
}
