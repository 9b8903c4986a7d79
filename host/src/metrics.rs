//! Prometheus metrics (docs/operations.md#metrics): counters and histograms that the
//! request path updates, written out in Prometheus' text format by `GET /metrics` together
//! with the gauges read at scrape time (instance slots, the decoders' scheduler counters,
//! ingestion).
//!
//! One registry per process ([`metrics`]), as Prometheus clients keep: the parts that count
//! (API, meter, limiter, runtime) sit at every layer, and passing a handle through all of
//! them would buy nothing, since a process serves one `/metrics`. Labels are bounded sets —
//! route templates, model ids, function kinds, reasons — never tenants, keys or raw paths.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A counter with labels.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self { name, help, labels, values: Mutex::new(BTreeMap::new()) }
    }

    /// Adds `n` to the series of `values` (one per label, in order).
    pub fn add(&self, values: &[&str], n: u64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let mut map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let v = map.entry(key(values)).or_default();
        *v = v.saturating_add(n);
    }

    /// Adds one.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    /// The value of one series (0 when it has none).
    #[cfg(test)]
    fn get(&self, values: &[&str]) -> u64 {
        let map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&key(values)).copied().unwrap_or(0)
    }

    fn write(&self, out: &mut String) {
        let map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        header(out, self.name, self.help, "counter");
        for (values, n) in map.iter() {
            let _ = writeln!(out, "{}{} {n}", self.name, labels(self.labels, values, None));
        }
    }
}

#[derive(Debug, Clone)]
struct Series {
    /// Observations per bucket (not cumulative), the last for above every bound.
    counts: Vec<u64>,
    sum: f64,
}

/// A histogram with labels and fixed bucket bounds, in seconds.
#[derive(Debug)]
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    values: Mutex<BTreeMap<Vec<String>, Series>>,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str], bounds: &'static [f64]) -> Self {
        Self { name, help, labels, bounds, values: Mutex::new(BTreeMap::new()) }
    }

    /// Counts one duration in the series of `values`.
    pub fn observe(&self, values: &[&str], d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        let mut map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let series = map.entry(key(values)).or_insert_with(|| Series { counts: vec![0; self.bounds.len() + 1], sum: 0.0 });
        series.counts[bucket] += 1;
        series.sum += secs;
    }

    /// Observations in one series.
    #[cfg(test)]
    fn count(&self, values: &[&str]) -> u64 {
        let map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&key(values)).map_or(0, |s| s.counts.iter().sum())
    }

    fn write(&self, out: &mut String) {
        let map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        header(out, self.name, self.help, "histogram");
        for (values, series) in map.iter() {
            let mut cumulative = 0;
            for (i, n) in series.counts.iter().enumerate() {
                cumulative += n;
                let le = self.bounds.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
                let _ = writeln!(out, "{}_bucket{} {cumulative}", self.name, labels(self.labels, values, Some(&le)));
            }
            let plain = labels(self.labels, values, None);
            let _ = writeln!(out, "{}_sum{plain} {}", self.name, series.sum);
            let _ = writeln!(out, "{}_count{plain} {cumulative}", self.name);
        }
    }
}

fn key(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// `# HELP` and `# TYPE` of a family.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `{a="x",b="y"}` (with `le` last for a bucket), or nothing without labels.
pub fn labels(names: &[&str], values: &[impl AsRef<str>], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = names.iter().zip(values).map(|(n, v)| format!("{n}=\"{}\"", escape(v.as_ref()))).collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() { String::new() } else { format!("{{{}}}", pairs.join(",")) }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

const LATENCY: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const FIRST_TOKEN: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const INTER_TOKEN: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28];

/// What the process counts.
#[derive(Debug)]
pub struct Metrics {
    /// HTTP answers by route template, method and status.
    pub http_requests: Counter,
    /// Time to an answer's head (a stream's events come after: see the token histograms).
    pub http_duration: Histogram,
    /// Streamed requests: from arrival to their first event, per model.
    pub first_token: Histogram,
    /// Streamed requests: between consecutive events (one token each), per model.
    pub inter_token: Histogram,
    /// Tokens metered, per model and kind (`prompt`, `completion`).
    pub tokens: Counter,
    /// Model executions metered, per model.
    pub model_requests: Counter,
    /// Requests refused by rate limits or budgets, per reason.
    pub rate_limited: Counter,
    /// Requests refused for want of a server or model slot (503 `server_overloaded`), per reason.
    pub overloaded: Counter,
    /// Function invocations per kind (`tool`, `http`, `chat`) and outcome (`ok`, `error`).
    pub function_invocations: Counter,
    /// How long function invocations ran, per kind.
    pub function_duration: Histogram,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    http_requests: Counter::new(
        "tensoras_http_requests_total",
        "HTTP requests answered, by route template, method and status.",
        &["route", "method", "status"],
    ),
    http_duration: Histogram::new(
        "tensoras_http_request_duration_seconds",
        "Time from a request's arrival to its answer's head, by route template.",
        &["route"],
        LATENCY,
    ),
    first_token: Histogram::new(
        "tensoras_time_to_first_token_seconds",
        "Streamed inference: time from arrival to the first event, by model.",
        &["model"],
        FIRST_TOKEN,
    ),
    inter_token: Histogram::new(
        "tensoras_inter_token_latency_seconds",
        "Streamed inference: time between consecutive events (tokens), by model.",
        &["model"],
        INTER_TOKEN,
    ),
    tokens: Counter::new("tensoras_tokens_total", "Tokens metered, by model and kind (prompt, completion).", &["model", "kind"]),
    model_requests: Counter::new("tensoras_model_requests_total", "Model executions metered, by model.", &["model"]),
    rate_limited: Counter::new(
        "tensoras_rate_limited_total",
        "Requests refused by rate limits or budgets, by reason (requests, tokens, concurrency, budget).",
        &["reason"],
    ),
    overloaded: Counter::new(
        "tensoras_overloaded_total",
        "Requests refused for want of a slot (503 server_overloaded), by reason (queue_full, queue_timeout, model_queue_full, model_queue_timeout, nested).",
        &["reason"],
    ),
    function_invocations: Counter::new(
        "tensoras_function_invocations_total",
        "Function invocations, by kind (tool, http, chat) and outcome (ok, error).",
        &["kind", "outcome"],
    ),
    function_duration: Histogram::new(
        "tensoras_function_duration_seconds",
        "How long function invocations ran, by kind.",
        &["kind"],
        LATENCY,
    ),
});

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// The counted families in the text format.
    pub fn write(&self, out: &mut String) {
        self.http_requests.write(out);
        self.http_duration.write(out);
        self.first_token.write(out);
        self.inter_token.write(out);
        self.tokens.write(out);
        self.model_requests.write(out);
        self.rate_limited.write(out);
        self.overloaded.write(out);
        self.function_invocations.write(out);
        self.function_duration.write(out);
    }
}

/// Times a stream's tokens for the metrics: the first from the request's arrival, each
/// next from the one before. Events that carry no output (the opening `role` chunk, sent
/// before the prompt runs; usage) are not tokens.
#[derive(Debug)]
pub struct TokenClock {
    model: String,
    arrived: Instant,
    last: Option<Instant>,
}

impl TokenClock {
    /// A clock for a stream of `model` that arrived at `arrived`.
    pub fn new(model: String, arrived: Instant) -> Self {
        Self { model, arrived, last: None }
    }

    /// Counts one event (a chunk's JSON), if it carries output.
    pub fn event(&mut self, chunk: &str) {
        if !carries_output(chunk) {
            return;
        }
        let now = Instant::now();
        let m = metrics();
        match self.last {
            None => m.first_token.observe(&[&self.model], now - self.arrived),
            Some(last) => m.inter_token.observe(&[&self.model], now - last),
        }
        self.last = Some(now);
    }
}

/// The parts of a stream chunk that say whether it carries output; the rest is skipped
/// unparsed (once per token, so no `Value` tree is built).
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChunkChoice<'a>>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<serde::de::IgnoredAny>,
}

/// Whether a stream chunk has generated output: chat `delta.content` or `delta.tool_calls`,
/// or a completion's `text`.
pub fn carries_output(chunk: &str) -> bool {
    let Ok(chunk) = serde_json::from_str::<Chunk<'_>>(chunk) else { return false };
    let nonempty = |s: &Option<Cow<'_, str>>| s.as_ref().is_some_and(|s| !s.is_empty());
    chunk
        .choices
        .iter()
        .any(|c| c.delta.as_ref().is_some_and(|d| nonempty(&d.content) || d.tool_calls.is_some()) || nonempty(&c.text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunks_with_output_are_tokens() {
        let chunk = |choice: &str| format!(r#"{{"object":"chat.completion.chunk","choices":[{choice}]}}"#);
        assert!(!carries_output(&chunk(r#"{"index":0,"delta":{"role":"assistant","content":""}}"#)));
        assert!(carries_output(&chunk(r#"{"index":0,"delta":{"content":"Hi"}}"#)));
        assert!(carries_output(&chunk(r#"{"index":0,"delta":{"content":"\"q\""}}"#)));
        assert!(carries_output(&chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}"#)));
        assert!(!carries_output(&chunk(r#"{"index":0,"delta":{"tool_calls":null,"content":null}}"#)));
        assert!(!carries_output(&chunk(r#"{"index":0,"delta":{},"finish_reason":"stop"}"#)));
        assert!(carries_output(r#"{"object":"text_completion","choices":[{"index":0,"text":" the","logprobs":null}]}"#));
        assert!(!carries_output(r#"{"object":"chat.completion.chunk","choices":[],"usage":{"total_tokens":3}}"#));
        assert!(!carries_output("not json"));
    }

    #[test]
    fn counters_and_histograms_print_in_the_text_format() {
        let c = Counter::new("t_requests_total", "Requests.", &["route", "status"]);
        c.inc(&["/v1/a", "200"]);
        c.add(&["/v1/a", "200"], 2);
        c.inc(&["/v1/\"b\"", "429"]);
        assert_eq!(c.get(&["/v1/a", "200"]), 3);
        let h = Histogram::new("t_seconds", "Latency.", &["model"], &[0.1, 1.0]);
        h.observe(&["m"], Duration::from_millis(50));
        h.observe(&["m"], Duration::from_millis(500));
        h.observe(&["m"], Duration::from_secs(3));
        assert_eq!(h.count(&["m"]), 3);
        let mut out = String::new();
        c.write(&mut out);
        h.write(&mut out);
        assert_eq!(
            out,
            "# HELP t_requests_total Requests.\n# TYPE t_requests_total counter\n\
             t_requests_total{route=\"/v1/\\\"b\\\"\",status=\"429\"} 1\n\
             t_requests_total{route=\"/v1/a\",status=\"200\"} 3\n\
             # HELP t_seconds Latency.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{model=\"m\",le=\"0.1\"} 1\nt_seconds_bucket{model=\"m\",le=\"1\"} 2\n\
             t_seconds_bucket{model=\"m\",le=\"+Inf\"} 3\nt_seconds_sum{model=\"m\"} 3.55\nt_seconds_count{model=\"m\"} 3\n"
        );
    }
}
