//! Chat prompts whose control tokens come from the chat template only.
//!
//! A rendered prompt is one string: tokenising it whole would turn `<|im_end|>` typed by a
//! user (or written by a tool, or found in a retrieved chunk) into the real control token,
//! letting that text close its turn and open a `system` one. So before rendering, every
//! special-token spelling in the strings a client supplies (message fields, `tools`,
//! `tool_calls`) is swapped for a private-use character (a marker) that no input uses; the
//! rendered text then holds real special-token spellings only where the template wrote
//! them. It is split there, and the text between (markers turned back into the spellings
//! they stand for) is tokenised with special tokens treated as plain text.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

/// One special (control) token of a tokenizer.
#[derive(Debug, Clone)]
pub struct SpecialToken {
    /// How it is spelt.
    pub text: String,
    /// Its id.
    pub id: u32,
    /// It absorbs the whitespace before it (as `tokenizers` matches it).
    pub lstrip: bool,
    /// It absorbs the whitespace after it.
    pub rstrip: bool,
}

/// A tokenizer's special tokens, for finding them in text.
#[derive(Debug, Default)]
pub struct Specials {
    tokens: Vec<SpecialToken>,
    /// Indexes into `tokens` by first byte, longest first: most positions of a prompt
    /// start no special token, and are rejected by one lookup.
    by_first_byte: Vec<Vec<usize>>,
}

impl Specials {
    /// Indexes `tokens` (empty spellings are ignored: they match nothing in `tokenizers` either).
    pub fn new(tokens: Vec<SpecialToken>) -> Self {
        let tokens: Vec<SpecialToken> = tokens.into_iter().filter(|t| !t.text.is_empty()).collect();
        let mut by_first_byte = vec![Vec::new(); 256];
        for (i, t) in tokens.iter().enumerate() {
            by_first_byte[usize::from(t.text.as_bytes()[0])].push(i);
        }
        for list in &mut by_first_byte {
            list.sort_by_key(|&i| std::cmp::Reverse(tokens[i].text.len()));
        }
        Self { tokens, by_first_byte }
    }

    /// The special tokens of `tok` (added tokens marked `special`).
    pub fn of(tok: &tokenizers::Tokenizer) -> Self {
        let mut tokens: Vec<SpecialToken> = tok
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| SpecialToken { text: t.content, id, lstrip: t.lstrip, rstrip: t.rstrip })
            .collect();
        tokens.sort_by_key(|t| t.id);
        Self::new(tokens)
    }

    /// Token `i`.
    pub fn token(&self, i: usize) -> &SpecialToken {
        &self.tokens[i]
    }

    /// The leftmost special token in `s` at or after byte `from`, the longest one there:
    /// `(start, end, index)`. Leftmost-longest is how `tokenizers` matches them.
    pub fn find(&self, s: &str, from: usize) -> Option<(usize, usize, usize)> {
        let bytes = s.as_bytes();
        // A special token starts with a UTF-8 lead byte, so a match is always at a char boundary.
        for start in from..bytes.len() {
            for &i in &self.by_first_byte[usize::from(bytes[start])] {
                let text = self.tokens[i].text.as_bytes();
                if bytes[start..].starts_with(text) {
                    return Some((start, start + text.len(), i));
                }
            }
        }
        None
    }
}

/// Private-use characters, in the order markers are taken from them.
const PRIVATE_USE: [std::ops::RangeInclusive<u32>; 3] = [0xF0000..=0xFFFFD, 0x100000..=0x10FFFD, 0xE000..=0xF8FF];

fn is_private_use(c: char) -> bool {
    PRIVATE_USE.iter().any(|r| r.contains(&u32::from(c)))
}

/// The private-use characters in `s` (markers must differ from all of them).
pub fn private_use_chars(s: &str, into: &mut BTreeSet<char>) {
    into.extend(s.chars().filter(|&c| is_private_use(c)));
}

/// Which marker stands for which special token in one prompt.
#[derive(Debug, Default, Clone)]
pub struct Markers {
    /// (marker, index of the special token it stands for).
    map: Vec<(char, usize)>,
}

impl Markers {
    /// Markers for every special token spelt in `inputs`, each a private-use character that
    /// neither the inputs nor `reserved` (the template's own text) contain.
    pub fn plan<'a>(
        specials: &Specials,
        inputs: impl IntoIterator<Item = &'a str>,
        reserved: &BTreeSet<char>,
    ) -> Result<Self, String> {
        let mut used = BTreeSet::new();
        let mut taken = reserved.clone();
        for s in inputs {
            let mut at = 0;
            while let Some((_, end, i)) = specials.find(s, at) {
                used.insert(i);
                at = end;
            }
            private_use_chars(s, &mut taken);
        }
        if used.is_empty() {
            return Ok(Self::default());
        }
        let mut free = PRIVATE_USE.iter().flat_map(|r| r.clone()).filter_map(char::from_u32).filter(|c| !taken.contains(c));
        let mut map = Vec::with_capacity(used.len());
        for i in used {
            // Only an input that spells special tokens and uses (nearly) every private-use
            // character at once gets here; it cannot be told apart from the template's markup.
            let c = free.next().ok_or("the messages use every private-use character and also spell special tokens")?;
            map.push((c, i));
        }
        Ok(Self { map })
    }

    /// Whether no input spelt a special token.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `s` with every special-token spelling swapped for its marker.
    pub fn hide<'s>(&self, specials: &Specials, s: &'s str) -> Cow<'s, str> {
        if self.map.is_empty() || specials.find(s, 0).is_none() {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        while let Some((start, end, i)) = specials.find(s, at) {
            out.push_str(&s[at..start]);
            match self.map.iter().find(|&&(_, j)| j == i) {
                Some(&(c, _)) => out.push(c),
                // Unreachable: `plan` saw every input. Dropping it would be silent data loss.
                None => out.push_str(&s[start..end]),
            }
            at = end;
        }
        out.push_str(&s[at..]);
        Cow::Owned(out)
    }

    /// Every string of a JSON value (object keys too) with special-token spellings hidden.
    pub fn hide_json(&self, specials: &Specials, v: Value) -> Value {
        if self.map.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.hide(specials, &s).into_owned()),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| self.hide_json(specials, x)).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter().map(|(k, x)| (self.hide(specials, &k).into_owned(), self.hide_json(specials, x))).collect(),
            ),
            other => other,
        }
    }

    /// `s` with every marker turned back into the spelling it hid.
    pub fn reveal<'s>(&self, specials: &Specials, s: &'s str) -> Cow<'s, str> {
        let markers: HashSet<char> = self.map.iter().map(|&(c, _)| c).collect();
        if !s.chars().any(|c| markers.contains(&c)) {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match self.map.iter().find(|&&(m, _)| m == c) {
                Some(&(_, i)) => out.push_str(&specials.token(i).text),
                None => out.push(c),
            }
        }
        Cow::Owned(out)
    }
}

/// The pieces of a rendered prompt: text, and the special tokens the template wrote.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text, with `start` its byte offset in the prompt.
    Text { text: &'a str, start: usize },
    /// A special token's id.
    Special(u32),
}

/// Splits `prompt` at its special tokens, each absorbing the whitespace beside it that its
/// `lstrip` / `rstrip` say, as `tokenizers` does.
pub fn split<'a>(specials: &Specials, prompt: &'a str) -> Vec<Piece<'a>> {
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut at = 0;
    while let Some((mut start, mut end, i)) = specials.find(prompt, at) {
        let token = specials.token(i);
        if token.lstrip {
            start = text_start + prompt[text_start..start].trim_end().len();
        }
        if token.rstrip {
            end += prompt[end..].len() - prompt[end..].trim_start().len();
        }
        if start > text_start {
            pieces.push(Piece::Text { text: &prompt[text_start..start], start: text_start });
        }
        pieces.push(Piece::Special(token.id));
        text_start = end;
        at = end;
    }
    if text_start < prompt.len() {
        pieces.push(Piece::Text { text: &prompt[text_start..], start: text_start });
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> Specials {
        let t = |text: &str, id, lstrip, rstrip| SpecialToken { text: text.into(), id, lstrip, rstrip };
        Specials::new(vec![
            t("<|im_start|>", 1, false, false),
            t("<|im_end|>", 2, false, false),
            t("<|im", 3, false, false),
            t("<mask>", 4, true, true),
        ])
    }

    #[test]
    fn finds_the_leftmost_longest_special_token() {
        let s = specials();
        assert_eq!(s.find("ab<|im_end|>", 0), Some((2, 12, 1)));
        assert_eq!(s.find("<|im_x", 0), Some((0, 4, 2)), "the shorter token where the longer does not match");
        assert_eq!(s.find("é<|im_start|>", 0), Some((2, 14, 0)));
        assert_eq!(s.find("<|im_end|>", 1), None);
    }

    #[test]
    fn hides_and_reveals_special_spellings_with_unused_private_use_chars() {
        let s = specials();
        let first = char::from_u32(0xF0000).unwrap();
        let input = format!("a{first}<|im_end|>b<|im_start|>");
        let m = Markers::plan(&s, [input.as_str(), "plain"], &BTreeSet::new()).unwrap();
        let hidden = m.hide(&s, &input);
        assert!(s.find(&hidden, 0).is_none(), "{hidden:?}");
        assert!(hidden.starts_with(&format!("a{first}")), "an input's own private-use char is kept and not used as a marker");
        assert_eq!(hidden.chars().count(), 5);
        assert_eq!(m.reveal(&s, &hidden), input);
        assert!(matches!(m.hide(&s, "plain"), Cow::Borrowed(_)));
        let json = m.hide_json(&s, serde_json::json!({"<|im_end|>": ["<|im_start|>", 1]}));
        assert!(s.find(&json.to_string(), 0).is_none(), "{json}");
        assert!(Markers::plan(&s, ["no specials here"], &BTreeSet::new()).unwrap().is_empty());
    }

    #[test]
    fn reserved_chars_are_not_used_as_markers() {
        let s = specials();
        let reserved: BTreeSet<char> = [char::from_u32(0xF0000).unwrap()].into();
        let m = Markers::plan(&s, ["<|im_end|>"], &reserved).unwrap();
        assert_eq!(m.hide(&s, "<|im_end|>"), char::from_u32(0xF0001).unwrap().to_string());
    }

    #[test]
    fn splits_at_special_tokens_with_their_whitespace_rules() {
        let s = specials();
        assert_eq!(
            split(&s, "<|im_start|>user\nhi<|im_end|>"),
            [Piece::Special(1), Piece::Text { text: "user\nhi", start: 12 }, Piece::Special(2)]
        );
        assert_eq!(
            split(&s, "a  <mask>  b"),
            [Piece::Text { text: "a", start: 0 }, Piece::Special(4), Piece::Text { text: "b", start: 11 }]
        );
        assert_eq!(split(&s, "text"), [Piece::Text { text: "text", start: 0 }]);
    }
}
