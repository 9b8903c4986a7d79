//! Typed reads of top-level request fields with OpenAI-worded errors.
//!
//! OpenAI treats an explicit `null` like an absent optional field, and so do
//! these helpers. Unknown fields are never looked at, so they are ignored.

use serde_json::{Map, Value};

use crate::ApiError;

/// The JSON object of a request body.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a>(pub &'a Map<String, Value>);

/// Parses a request body that must be a JSON object.
pub fn parse_object(body: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::invalid_body(format!(
            "Invalid request body: expected a JSON object, but got {} instead.",
            type_name(&other)
        ))),
        Err(e) => Err(ApiError::invalid_body(format!(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
             but what was sent was not valid JSON. Error: {e})"
        ))),
    }
}

/// How OpenAI names a JSON value's type in its messages ("got a string").
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// "Invalid type for 'x': expected …, but got … instead."
pub fn type_error(param: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(param, format!("Invalid type for '{param}': expected {expected}, but got {} instead.", type_name(got)))
}

/// Formats a bound the way it was most likely written (`2`, not `2.0`).
fn show(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

impl<'a> Body<'a> {
    /// The field's value; `None` when absent or `null`.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// Whether the field is present and not `null`.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A required string field.
    pub fn required_str(&self, name: &str) -> Result<&'a str, ApiError> {
        match self.get(name) {
            None => Err(ApiError::invalid(name, format!("Missing required parameter: '{name}'."))),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(type_error(name, "a string", other)),
        }
    }

    /// An optional boolean field.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(type_error(name, "a boolean", other)),
        }
    }

    /// An optional number in `[min, max]` (or `(min, max]` when
    /// `min_exclusive`).
    pub fn opt_number(&self, name: &str, min: f64, max: f64, min_exclusive: bool) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let Some(x) = value.as_f64() else {
            return Err(type_error(name, "a decimal", value));
        };
        check_number(name, x, min, max, min_exclusive).map(Some)
    }

    /// An optional integer in `[min, max]`.
    pub fn opt_integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let Some(x) = value.as_i64() else {
            // A u64 beyond i64::MAX is an integer too, just out of range.
            if value.is_u64() {
                return Err(above_max(name, "integer", &show(max as f64), value));
            }
            return Err(type_error(name, "an integer", value));
        };
        check_integer(name, x, min, max).map(Some)
    }
}

/// Range check for a decimal, with OpenAI's wording.
pub fn check_number(name: &str, x: f64, min: f64, max: f64, min_exclusive: bool) -> Result<f64, ApiError> {
    if x > max {
        return Err(above_max(name, "decimal", &show(max), &Value::from(x)));
    }
    if x < min || (min_exclusive && x == min) {
        let op = if min_exclusive { ">" } else { ">=" };
        return Err(ApiError::invalid(
            name,
            format!(
                "Invalid '{name}': decimal below minimum value. Expected a value {op} {}, but got {} instead.",
                show(min),
                show(x)
            ),
        ));
    }
    Ok(x)
}

/// Range check for an integer, with OpenAI's wording.
pub fn check_integer(name: &str, x: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    if x > max {
        return Err(above_max(name, "integer", &max.to_string(), &Value::from(x)));
    }
    if x < min {
        return Err(ApiError::invalid(
            name,
            format!("Invalid '{name}': integer below minimum value. Expected a value >= {min}, but got {x} instead."),
        ));
    }
    Ok(x)
}

fn above_max(name: &str, what: &str, max: &str, got: &Value) -> ApiError {
    let got = match got.as_f64() {
        Some(x) if got.is_f64() => show(x),
        _ => got.to_string(),
    };
    ApiError::invalid(
        name,
        format!("Invalid '{name}': {what} above maximum value. Expected a value <= {max}, but got {got} instead."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn null_is_absent() {
        let map = body(json!({"temperature": null}));
        assert_eq!(Body(&map).opt_number("temperature", 0.0, 2.0, false), Ok(None));
    }

    #[test]
    fn wrong_type_names_field() {
        let map = body(json!({"n": "2"}));
        let err = Body(&map).opt_integer("n", 1, 8).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("n"));
        assert_eq!(err.message, "Invalid type for 'n': expected an integer, but got a string instead.");
    }

    #[test]
    fn range_errors_read_like_openai() {
        let map = body(json!({"temperature": 3, "top_p": 0}));
        let err = Body(&map).opt_number("temperature", 0.0, 2.0, false).unwrap_err();
        assert_eq!(err.message, "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.");
        let err = Body(&map).opt_number("top_p", 0.0, 1.0, true).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("top_p"));
        assert!(err.message.contains("> 0"), "{}", err.message);
    }

    #[test]
    fn body_must_be_an_object() {
        assert_eq!(parse_object("[1]").unwrap_err().status, 400);
        assert!(parse_object("{").unwrap_err().message.contains("not valid JSON"));
    }
}
