//! Bounds on the length of JSON numbers, enforced beside the grammar.
//!
//! llguidance's JSON-schema compiler writes `number` as
//! `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` and `integer` as
//! `-?(0|[1-9][0-9]*)`: any number of digits, unless a schema's
//! `minimum`/`maximum` bound the integer part (fraction digits stay
//! unbounded even then), and it has no option to bound them. Sampling at
//! temperature 0.7, SmolLM2-135M starts a number and writes digit after
//! digit (`3377772833333333…`) until the token limit, so a strict
//! `json_schema` answer ends with `finish_reason: "length"` and does not
//! parse.
//!
//! [`NumberScan`] follows the output's JSON lexically (strings and their
//! escapes, numbers) and refuses a byte that makes a number longer than a
//! 64-bit value can carry:
//!
//! - at most [`MAX_INT_DIGITS`] integer digits (19: every `i64`);
//! - with a fraction, at most [`MAX_SIGNIFICANT_DIGITS`] digits in all
//!   (17, what an `f64` round-trips), a lone leading `0` not counted:
//!   `0.1234567890123456`, `1234567.123456789`, `0.00000000000000001`;
//! - at most [`MAX_EXPONENT_DIGITS`] exponent digits (3: `f64` stops at
//!   `1e308`).
//!
//! A schema's own `minimum`/`maximum`/`multipleOf` are the grammar's
//! business and still hold: the bounds only ever remove choices. Where they
//! would remove every choice the grammar leaves (a `const` or `enum` number
//! longer than the bounds), the grammar's choices stand
//! ([`crate::grammar::Constraint::mask`]), so a schema never becomes
//! unsatisfiable.

/// Most digits in a number's integer part (`i64::MAX` has 19).
pub const MAX_INT_DIGITS: u32 = 19;

/// Most digits of a number with a fraction, a lone leading `0` not counted
/// (an `f64` carries 17 significant decimal digits).
pub const MAX_SIGNIFICANT_DIGITS: u32 = 17;

/// Most digits in a number's exponent.
pub const MAX_EXPONENT_DIGITS: u32 = 3;

/// Where the scan is in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The output is not JSON (a free-text answer): nothing is checked.
    Off,
    /// Nothing read yet; JSON follows only if the first byte is this one.
    FirstByte(u8),
    /// Between JSON tokens.
    Between,
    /// Inside a string.
    Str,
    /// After a backslash inside a string.
    Escape,
    /// After a number's leading `-`.
    Minus,
    /// In the integer part; `zero` when it is a lone `0` so far.
    Int { digits: u32, zero: bool },
    /// In the fraction (just after the `.` when `digits` is the integer
    /// part's count); `digits` counts every digit but a lone leading `0`.
    Frac { digits: u32 },
    /// After `e`/`E`.
    ExpMark,
    /// After the exponent's sign.
    ExpSign,
    /// In the exponent.
    Exp { digits: u32 },
}

/// The lexical JSON state of an output, for bounding its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberScan {
    state: State,
}

impl NumberScan {
    /// An output that is JSON from its first byte (a `response_format`
    /// answer, tool calls: the text around a call's JSON has no quotes or
    /// digits).
    pub fn json() -> Self {
        Self { state: State::Between }
    }

    /// An output that is JSON (calls) when it starts with `first`, and free
    /// text otherwise (`tool_choice: auto` without a JSON `response_format`).
    pub fn json_if_first(first: u8) -> Self {
        Self { state: State::FirstByte(first) }
    }

    /// An output whose numbers are not bounded.
    pub fn off() -> Self {
        Self { state: State::Off }
    }

    /// Whether any byte could be refused from here on.
    pub fn is_on(&self) -> bool {
        self.state != State::Off
    }

    /// Reads `bytes`; false when they break a bound (the scan goes on
    /// either way, counting on).
    pub fn advance(&mut self, bytes: &[u8]) -> bool {
        let mut ok = true;
        for &b in bytes {
            ok &= self.byte(b);
        }
        ok
    }

    /// Whether `bytes` could follow without breaking a bound.
    pub fn allows(&self, bytes: &[u8]) -> bool {
        let mut next = *self;
        next.advance(bytes)
    }

    fn byte(&mut self, b: u8) -> bool {
        use State::*;
        let (state, ok) = match self.state {
            Off => (Off, true),
            FirstByte(first) if b != first => (Off, true),
            FirstByte(_) => return self.reread(b),
            Str => match b {
                b'\\' => (Escape, true),
                b'"' => (Between, true),
                _ => (Str, true),
            },
            Escape => (Str, true),
            Between => match b {
                b'"' => (Str, true),
                b'-' => (Minus, true),
                b'0'..=b'9' => (Int { digits: 1, zero: b == b'0' }, true),
                _ => (Between, true),
            },
            Minus => match b {
                b'0'..=b'9' => (Int { digits: 1, zero: b == b'0' }, true),
                _ => return self.reread(b),
            },
            Int { digits, zero } => match b {
                b'0'..=b'9' => (Int { digits: digits + 1, zero: false }, digits < MAX_INT_DIGITS),
                // A fraction needs room for at least one digit.
                b'.' => {
                    let counted = if zero { 0 } else { digits };
                    (Frac { digits: counted }, counted < MAX_SIGNIFICANT_DIGITS)
                }
                b'e' | b'E' => (ExpMark, true),
                _ => return self.reread(b),
            },
            Frac { digits } => match b {
                b'0'..=b'9' => (Frac { digits: digits + 1 }, digits < MAX_SIGNIFICANT_DIGITS),
                b'e' | b'E' => (ExpMark, true),
                _ => return self.reread(b),
            },
            ExpMark => match b {
                b'+' | b'-' => (ExpSign, true),
                b'0'..=b'9' => (Exp { digits: 1 }, true),
                _ => return self.reread(b),
            },
            ExpSign => match b {
                b'0'..=b'9' => (Exp { digits: 1 }, true),
                _ => return self.reread(b),
            },
            Exp { digits } => match b {
                b'0'..=b'9' => (Exp { digits: digits + 1 }, digits < MAX_EXPONENT_DIGITS),
                _ => return self.reread(b),
            },
        };
        self.state = state;
        ok
    }

    /// Reads `b` between tokens: a number ends at the first byte that
    /// cannot continue it, and that byte starts whatever comes next (the
    /// first byte of JSON output likewise).
    fn reread(&mut self, b: u8) -> bool {
        self.state = State::Between;
        self.byte(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> bool {
        NumberScan::json().allows(text.as_bytes())
    }

    #[test]
    fn ordinary_numbers_pass() {
        for t in [
            r#"{"a": 0, "b": -12, "c": 3.25, "d": 1e5, "e": -2.5E-3, "f": [1, 2, 30]}"#,
            "9223372036854775807",
            "-9223372036854775808",
            "0.1234567890123456",
            "12345678901234567",
            "1.2345678901234567",
            "1234567.123456789",
            "0.00000000000000001",
            "1.7976931348623157e308",
            "5e-324",
        ] {
            assert!(ok(t), "{t}");
        }
    }

    #[test]
    fn long_numbers_are_refused() {
        for t in [
            "12345678901234567890", // 20 integer digits
            "-12345678901234567890",
            "0.123456789012345678", // 18 fraction digits
            "1.23456789012345678",  // 18 digits in all
            "123456789012345678.5", // no room for a fraction
            "0.000000000000000001", // 18 after the lone 0
            "1e1000",
            "1E+0001",
            "3377772833333333333333333333333333333333", // the reported runaway
        ] {
            assert!(!ok(t), "{t}");
        }
    }

    #[test]
    fn digits_in_strings_and_escapes_are_free() {
        let long = "1".repeat(100);
        assert!(ok(&format!(r#"{{"{long}": "{long}", "x": "a\"{long}\\", "y": 1}}"#)));
        // The string ends at an unescaped quote; the number after it is checked.
        assert!(!ok(&format!(r#"["a\\", {long}]"#)));
    }

    #[test]
    fn numbers_are_counted_across_pieces() {
        let mut s = NumberScan::json();
        assert!(s.advance(b"{\"n\": 123456789"));
        assert!(s.advance(b"0123456789"));
        assert!(s.allows(b", \"m\": 1}"));
        assert!(!s.allows(b"0"));
        assert!(!s.allows(b"."));
        assert!(s.allows(b"e1"));
        // A refused byte still counts, so the scan stays in step.
        assert!(!s.advance(b"00"));
        assert!(s.advance(b"}"));
        assert!(s.allows(b"1"));
    }

    #[test]
    fn free_text_is_not_checked() {
        let long = "7".repeat(40);
        let mut text = NumberScan::json_if_first(b'<');
        assert!(text.advance(format!("Pi is {long}").as_bytes()));
        let mut calls = NumberScan::json_if_first(b'<');
        assert!(!calls.advance(format!("<tool_call>\n{{\"x\": {long}}}").as_bytes()));
        assert!(NumberScan::off().allows(long.as_bytes()));
        assert!(!NumberScan::off().is_on());
    }
}
