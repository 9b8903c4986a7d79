//! `calc`: a tool that evaluates an arithmetic expression.
//!
//! Supports `+ - * / %`, parentheses, unary minus (and plus) and decimal
//! numbers, with the usual precedence, evaluated in `f64` by a small
//! recursive-descent parser. Returns `{"result": <number>}`; an integral
//! result is rendered as an integer (`14`, not `14.0`).
//!
//! Grammar:
//!
//! ```text
//! expr   := term (('+' | '-') term)*
//! term   := unary (('*' | '/' | '%') unary)*
//! unary  := ('-' | '+') unary | atom
//! atom   := number | '(' expr ')'
//! number := digits ['.' digits] | '.' digits   (optional exponent e[+-]digits)
//! ```

use tensoras_guest::serde_json::{Value, json};
use tensoras_guest::{Tool, ToolError, ToolInfo};

/// Deepest parenthesis / unary-minus nesting accepted. The parser recurses once
/// per level, so this keeps a hostile expression from overflowing the stack.
const MAX_DEPTH: usize = 256;

/// The exported tool.
struct Calc;

impl Tool for Calc {
    fn info() -> ToolInfo {
        ToolInfo::new(
            "calc",
            "Evaluates an arithmetic expression",
            json!({
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "Arithmetic expression using numbers, + - * / %, parentheses and unary minus, e.g. \"2 * (3 + 4)\""
                    }
                },
                "required": ["expression"],
                "additionalProperties": false
            }),
        )
    }

    fn call(args: Value) -> Result<Value, ToolError> {
        let expression = tensoras_guest::tool::required_str(&args, "expression")?;
        let value = evaluate(expression).map_err(ToolError::InvalidArguments)?;
        Ok(json!({ "result": number(value) }))
    }
}

/// Renders `v` as a JSON number, integral values as integers.
fn number(v: f64) -> Value {
    // 2^53: beyond it not every integer is representable, and i64 would lie.
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        // `-0.0` becomes `0`, which is what a reader expects.
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// Evaluates `input`; the error text says what is wrong and where.
fn evaluate(input: &str) -> Result<f64, String> {
    let mut parser = Parser { src: input.as_bytes(), pos: 0, depth: 0 };
    parser.skip_ws();
    if parser.at_end() {
        return Err("empty expression".into());
    }
    let value = parser.expr()?;
    parser.skip_ws();
    if !parser.at_end() {
        return Err(parser.unexpected());
    }
    if !value.is_finite() {
        return Err("result is not a finite number".into());
    }
    Ok(value)
}

/// Recursive-descent parser that evaluates as it parses.
struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// An error naming the character at the current position (1-based column).
    fn unexpected(&self) -> String {
        match self.peek() {
            None => "unexpected end of expression".into(),
            Some(_) => {
                // Positions are byte offsets; report the character, not the byte.
                let rest = String::from_utf8_lossy(&self.src[self.pos..]);
                let ch = rest.chars().next().unwrap_or('?');
                format!("unexpected character '{ch}' at position {}", self.pos + 1)
            }
        }
    }

    fn expr(&mut self) -> Result<f64, String> {
        let mut acc = self.term()?;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'+') => {
                    self.pos += 1;
                    acc += self.term()?;
                }
                Some(b'-') => {
                    self.pos += 1;
                    acc -= self.term()?;
                }
                _ => return Ok(acc),
            }
        }
    }

    fn term(&mut self) -> Result<f64, String> {
        let mut acc = self.unary()?;
        loop {
            self.skip_ws();
            let op = match self.peek() {
                Some(op @ (b'*' | b'/' | b'%')) => op,
                _ => return Ok(acc),
            };
            self.pos += 1;
            let rhs = self.unary()?;
            acc = match op {
                b'*' => acc * rhs,
                b'/' if rhs == 0.0 => return Err("division by zero".into()),
                b'/' => acc / rhs,
                b'%' if rhs == 0.0 => return Err("modulo by zero".into()),
                _ => acc % rhs,
            };
        }
    }

    fn unary(&mut self) -> Result<f64, String> {
        self.skip_ws();
        match self.peek() {
            Some(sign @ (b'-' | b'+')) => {
                self.pos += 1;
                let v = self.nested(Self::unary)?;
                Ok(if sign == b'-' { -v } else { v })
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<f64, String> {
        self.skip_ws();
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let v = self.nested(Self::expr)?;
                self.skip_ws();
                if self.peek() != Some(b')') {
                    return Err(match self.peek() {
                        None => "missing closing parenthesis".into(),
                        Some(_) => self.unexpected(),
                    });
                }
                self.pos += 1;
                Ok(v)
            }
            Some(b'0'..=b'9' | b'.') => self.number(),
            _ => Err(self.unexpected()),
        }
    }

    /// Runs `f` one nesting level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(&mut self, f: fn(&mut Self) -> Result<f64, String>) -> Result<f64, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("expression nested deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn number(&mut self) -> Result<f64, String> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos - s
        };
        let mut count = digits(self);
        if self.peek() == Some(b'.') {
            self.pos += 1;
            count += digits(self);
        }
        if count == 0 {
            return Err(format!("invalid number at position {}", start + 1));
        }
        // Optional exponent, only when digits follow (so `2e` is an error
        // rather than silently `2`).
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                self.pos = save;
            }
        }
        // The slice is ASCII digits, '.', 'e' and signs only.
        let text = std::str::from_utf8(&self.src[start..self.pos]).map_err(|e| e.to_string())?;
        text.parse::<f64>().map_err(|_| format!("invalid number '{text}' at position {}", start + 1))
    }
}

tensoras_guest::export_tool!(Calc);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates() {
        assert_eq!(evaluate("2 * (3 + 4)"), Ok(14.0));
        assert_eq!(evaluate("-3 + 10 % 4"), Ok(-1.0));
        assert_eq!(evaluate("1.5 * 2"), Ok(3.0));
        assert_eq!(evaluate("--2"), Ok(2.0));
        assert_eq!(evaluate(".5 + 1e2"), Ok(100.5));
        assert_eq!(number(14.0), json!(14));
        assert_eq!(number(2.5), json!(2.5));
    }

    #[test]
    fn rejects() {
        assert_eq!(evaluate("1 / 0"), Err("division by zero".into()));
        assert!(evaluate("2 +").is_err());
        assert!(evaluate("(1").is_err());
        assert!(evaluate("1 2").is_err());
        assert!(evaluate("").is_err());
        assert!(evaluate("2e").is_err());
    }
}
