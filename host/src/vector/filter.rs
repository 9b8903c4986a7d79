//! Metadata filters of `/retrieve`: `{"year": {"$gte": 2020}, "lang": "en",
//! "tag": {"$in": ["a", "b"]}}` — every field's conditions must hold. Operators: `$eq
//! $ne $gt $gte $lt $lte $in`; a bare value means `$eq`. Fields address the chunk's
//! metadata (the data source's metadata plus `filename`, `file_id`, ...), stored under
//! the payload key `metadata`.

use serde_json::{Map, Value, json};

/// One condition on a metadata field.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Equal to a string, integer, float or boolean.
    Eq(String, Value),
    /// Not equal (also true when the field is missing).
    Ne(String, Value),
    /// Numeric range; bounds that are `None` are open.
    Range {
        /// Field.
        field: String,
        /// Greater than.
        gt: Option<f64>,
        /// Greater than or equal.
        gte: Option<f64>,
        /// Less than.
        lt: Option<f64>,
        /// Less than or equal.
        lte: Option<f64>,
    },
    /// One of several strings or integers.
    In(String, Vec<Value>),
}

/// All conditions must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataFilter(pub Vec<Condition>);

/// One condition of a Qdrant filter on a payload key: the single translation of
/// [`MetadataFilter`] that every backend renders (qdrant-edge as JSON, the server as
/// gRPC messages), so both apply the same semantics.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldCondition {
    /// Equal to a string, integer or boolean.
    Match {
        /// Payload key (dotted path).
        key: String,
        /// The value.
        value: Value,
    },
    /// Equal to any of several strings or integers.
    MatchAny {
        /// Payload key (dotted path).
        key: String,
        /// The values, all strings or all integers.
        values: Vec<Value>,
    },
    /// Numeric range; bounds that are `None` are open.
    Range {
        /// Payload key (dotted path).
        key: String,
        /// Greater than.
        gt: Option<f64>,
        /// Greater than or equal.
        gte: Option<f64>,
        /// Less than.
        lt: Option<f64>,
        /// Less than or equal.
        lte: Option<f64>,
    },
}

/// A Qdrant filter: every `must` condition holds and no `must_not` one does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QdrantFilter {
    /// Conditions that must hold.
    pub must: Vec<FieldCondition>,
    /// Conditions that must not hold (a missing field does not hold).
    pub must_not: Vec<FieldCondition>,
}

impl QdrantFilter {
    /// Payload `key` equals the string `value` (how chunks of one data source are found).
    pub fn field_eq(key: &str, value: &str) -> Self {
        Self { must: vec![FieldCondition::Match { key: key.into(), value: Value::String(value.into()) }], must_not: Vec::new() }
    }

    /// In Qdrant's JSON filter language.
    pub fn to_json(&self) -> Value {
        let render = |c: &FieldCondition| match c {
            FieldCondition::Match { key, value } => json!({"key": key, "match": {"value": value}}),
            FieldCondition::MatchAny { key, values } => json!({"key": key, "match": {"any": values}}),
            FieldCondition::Range { key, gt, gte, lt, lte } => {
                let mut r = Map::new();
                for (name, b) in [("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)] {
                    if let Some(b) = b {
                        r.insert(name.into(), json!(b));
                    }
                }
                json!({"key": key, "range": r})
            }
        };
        json!({"must": self.must.iter().map(render).collect::<Vec<_>>(), "must_not": self.must_not.iter().map(render).collect::<Vec<_>>()})
    }
}

/// Payload key under which chunk metadata is stored.
pub const METADATA_KEY: &str = "metadata";

fn scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn field_ok(f: &str) -> bool {
    !f.is_empty() && f.len() <= 128 && f.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl MetadataFilter {
    /// Parses the API's filter object; the error names the field and what is wrong.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let obj = match v {
            Value::Null => return Ok(Self::default()),
            Value::Object(o) => o,
            _ => return Err("filters must be an object mapping metadata fields to conditions".into()),
        };
        let mut out = Vec::new();
        for (field, cond) in obj {
            if !field_ok(field) {
                return Err(format!("filter field {field:?} must be letters, digits, '_', '-' or '.'"));
            }
            match cond {
                Value::Object(ops) => {
                    if ops.is_empty() {
                        return Err(format!("filter on {field:?} has no operator"));
                    }
                    let mut range = (None, None, None, None);
                    for (op, arg) in ops {
                        let number = || arg.as_f64().ok_or_else(|| format!("{op} on {field:?} needs a number, got {arg}"));
                        match op.as_str() {
                            "$eq" | "$ne" if !scalar(arg) => {
                                return Err(format!("{op} on {field:?} needs a string, number or boolean"));
                            }
                            "$eq" => out.push(Condition::Eq(field.clone(), arg.clone())),
                            "$ne" => out.push(Condition::Ne(field.clone(), arg.clone())),
                            "$gt" => range.0 = Some(number()?),
                            "$gte" => range.1 = Some(number()?),
                            "$lt" => range.2 = Some(number()?),
                            "$lte" => range.3 = Some(number()?),
                            "$in" => {
                                let items = arg
                                    .as_array()
                                    .filter(|a| !a.is_empty() && a.len() <= 1000)
                                    .ok_or_else(|| format!("$in on {field:?} needs a non-empty array (at most 1000)"))?;
                                let strings = items.iter().all(Value::is_string);
                                let ints = items.iter().all(|i| i.is_i64() || i.is_u64());
                                if !strings && !ints {
                                    return Err(format!("$in on {field:?} needs all strings or all integers"));
                                }
                                out.push(Condition::In(field.clone(), items.clone()));
                            }
                            other => {
                                return Err(format!(
                                    "unknown filter operator {other:?} on {field:?} (use $eq $ne $gt $gte $lt $lte $in)"
                                ));
                            }
                        }
                    }
                    let (gt, gte, lt, lte) = range;
                    if gt.is_some() || gte.is_some() || lt.is_some() || lte.is_some() {
                        out.push(Condition::Range { field: field.clone(), gt, gte, lt, lte });
                    }
                }
                v if scalar(v) => out.push(Condition::Eq(field.clone(), v.clone())),
                other => return Err(format!("filter on {field:?} must be a value or an operator object, got {other}")),
            }
        }
        Ok(Self(out))
    }

    /// No conditions.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same filter in Qdrant's terms, on `metadata.<field>`.
    pub fn to_qdrant(&self) -> QdrantFilter {
        let mut out = QdrantFilter::default();
        let key = |f: &str| format!("{METADATA_KEY}.{f}");
        let matcher = |field: &str, v: &Value| match v {
            // Qdrant matches floats only through ranges.
            Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
                let x = n.as_f64();
                FieldCondition::Range { key: key(field), gt: None, gte: x, lt: None, lte: x }
            }
            _ => FieldCondition::Match { key: key(field), value: v.clone() },
        };
        for c in &self.0 {
            match c {
                Condition::Eq(f, v) => out.must.push(matcher(f, v)),
                Condition::Ne(f, v) => out.must_not.push(matcher(f, v)),
                Condition::In(f, items) => out.must.push(FieldCondition::MatchAny { key: key(f), values: items.clone() }),
                Condition::Range { field, gt, gte, lt, lte } => {
                    out.must.push(FieldCondition::Range { key: key(field), gt: *gt, gte: *gte, lt: *lt, lte: *lte });
                }
            }
        }
        out
    }

    /// The same filter in Qdrant's JSON filter language.
    pub fn to_qdrant_json(&self) -> Value {
        self.to_qdrant().to_json()
    }

    /// Whether a chunk's metadata object satisfies the filter (same semantics as the
    /// stores apply; used to test them and by backends without server-side filtering).
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        let eq = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        };
        self.0.iter().all(|c| match c {
            Condition::Eq(f, v) => metadata.get(f).is_some_and(|x| eq(x, v)),
            Condition::Ne(f, v) => !metadata.get(f).is_some_and(|x| eq(x, v)),
            Condition::In(f, items) => metadata.get(f).is_some_and(|x| items.iter().any(|i| eq(x, i))),
            Condition::Range { field, gt, gte, lt, lte } => metadata.get(field).and_then(Value::as_f64).is_some_and(|x| {
                gt.is_none_or(|b| x > b) && gte.is_none_or(|b| x >= b) && lt.is_none_or(|b| x < b) && lte.is_none_or(|b| x <= b)
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operators_and_bare_values() {
        let f = MetadataFilter::parse(
            &json!({"lang": "en", "year": {"$gte": 2000, "$lt": 2010}, "tag": {"$in": ["a", "b"]}, "draft": {"$ne": true}}),
        )
        .unwrap();
        assert_eq!(f.0.len(), 4);
        let meta = |v: Value| v.as_object().unwrap().clone();
        assert!(f.matches(&meta(json!({"lang": "en", "year": 2005, "tag": "a"}))));
        assert!(!f.matches(&meta(json!({"lang": "en", "year": 2010, "tag": "a"}))));
        assert!(!f.matches(&meta(json!({"lang": "en", "year": 2005, "tag": "a", "draft": true}))));
        assert!(!f.matches(&meta(json!({"lang": "de", "year": 2005, "tag": "b"}))));
        let q = f.to_qdrant_json();
        assert_eq!(q["must_not"][0], json!({"key": "metadata.draft", "match": {"value": true}}));
    }

    #[test]
    fn rejects_bad_filters_with_reasons() {
        for (bad, says) in [
            (json!([1]), "must be an object"),
            (json!({"a": {"$regex": "x"}}), "unknown filter operator"),
            (json!({"a": {"$gt": "x"}}), "needs a number"),
            (json!({"a": {"$in": []}}), "non-empty array"),
            (json!({"a": {"$in": ["x", 1]}}), "all strings or all integers"),
            (json!({"a": [1, 2]}), "must be a value"),
            (json!({"a b": 1}), "letters, digits"),
            (json!({"a": {}}), "no operator"),
        ] {
            let e = MetadataFilter::parse(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
