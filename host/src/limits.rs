//! Per-function resource limits and capability grants, as written in a deploy manifest,
//! and how interactive requests queue for an instance slot. Plain settings with no
//! behaviour of the engine, so the store, the configuration and the runtime all use them
//! without importing one another.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Effective limits of one function call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline of the whole call, instantiation included.
    pub timeout: Duration,
    /// CPU budget in wasmtime fuel units (about one per wasm instruction).
    pub fuel: u64,
}

/// Limits as a manifest states them; unset fields take the server's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Wall-time limit in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Fuel (instruction) budget per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Most model calls (chat or embeddings) one invocation may make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_calls: Option<u32>,
    /// Most tokens the model calls of one invocation may generate, all together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_generated_tokens: Option<u64>,
}

/// A limit a manifest may not have: the manifest field (`limits.memory_mb` ...) and why.
pub type LimitError = (&'static str, String);

impl LimitsSpec {
    /// Applies defaults and checks the bounds (the operator's maximums); the error names
    /// the offending field.
    pub fn resolve(&self, default: &Limits, max: &Limits) -> Result<Limits, LimitError> {
        let memory_bytes = match self.memory_mb {
            None => default.memory_bytes.min(max.memory_bytes),
            Some(0) => return Err(("limits.memory_mb", "limits.memory_mb must be at least 1".into())),
            Some(mb) => usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        };
        if memory_bytes > max.memory_bytes {
            return Err((
                "limits.memory_mb",
                format!(
                    "limits.memory_mb {} exceeds this server's maximum of {}",
                    self.memory_mb.unwrap_or_default(),
                    max.memory_bytes >> 20
                ),
            ));
        }
        let timeout = match self.timeout_ms {
            None => default.timeout.min(max.timeout),
            Some(0) => return Err(("limits.timeout_ms", "limits.timeout_ms must be at least 1".into())),
            Some(ms) => Duration::from_millis(ms),
        };
        if timeout > max.timeout {
            return Err((
                "limits.timeout_ms",
                format!("limits.timeout_ms {} exceeds this server's maximum of {}", timeout.as_millis(), max.timeout.as_millis()),
            ));
        }
        let fuel = match self.fuel {
            None => default.fuel.min(max.fuel),
            Some(0) => return Err(("limits.fuel", "limits.fuel must be at least 1".into())),
            Some(f) if f > max.fuel => {
                return Err(("limits.fuel", format!("limits.fuel {f} exceeds this server's maximum of {}", max.fuel)));
            }
            Some(f) => f,
        };
        Ok(Limits { memory_bytes, timeout, fuel })
    }

    /// The same request with every limit above `max` lowered to it: a function deployed
    /// before the operator lowered the maximums keeps running, within them.
    pub fn clamped(&self, max: &Limits) -> Self {
        let max_mb = (max.memory_bytes >> 20) as u64;
        let max_ms = u64::try_from(max.timeout.as_millis()).unwrap_or(u64::MAX);
        Self {
            memory_mb: self.memory_mb.map(|mb| mb.min(max_mb).max(1)),
            timeout_ms: self.timeout_ms.map(|ms| ms.min(max_ms).max(1)),
            fuel: self.fuel.map(|f| f.min(max.fuel).max(1)),
            ..self.clone()
        }
    }

    /// The model budget of one invocation; the error names the offending field.
    pub fn model_budget(&self) -> Result<ModelBudget, LimitError> {
        let calls = self.max_model_calls.unwrap_or(ModelBudget::DEFAULT.calls);
        let tokens = self.max_generated_tokens.unwrap_or(ModelBudget::DEFAULT.generated_tokens);
        if calls > ModelBudget::MAX.calls {
            return Err(("limits.max_model_calls", format!("limits.max_model_calls may be at most {}", ModelBudget::MAX.calls)));
        }
        if tokens > ModelBudget::MAX.generated_tokens {
            return Err((
                "limits.max_generated_tokens",
                format!("limits.max_generated_tokens may be at most {}", ModelBudget::MAX.generated_tokens),
            ));
        }
        Ok(ModelBudget { calls, generated_tokens: tokens })
    }
}

/// What the model calls of one function invocation may spend. A function that loops on
/// model calls stops here, not at the wall-clock deadline with the server busy meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelBudget {
    /// Chat and embedding calls.
    pub calls: u32,
    /// Completion tokens over every chat call.
    pub generated_tokens: u64,
}

impl ModelBudget {
    /// Unless the manifest says otherwise.
    pub const DEFAULT: Self = Self { calls: 16, generated_tokens: 8192 };
    /// The most a manifest may ask for.
    pub const MAX: Self = Self { calls: 1024, generated_tokens: 1 << 20 };
}

impl Default for ModelBudget {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Capabilities beyond the sandbox's defaults. The default grants nothing: no files,
/// no network, no environment variables.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Outbound destinations allowed, each `*`, `host:port` or `host:*` (TCP and
    /// outgoing HTTP). Hosts of TCP sockets are IP addresses; HTTP may use names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<String>,
    /// Environment variables the function sees.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A private, persistent directory mounted at `/data`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub storage: bool,
    /// Models the function may call through `ai` (ids as `/v1/models` lists them), or
    /// `"*"` for any installed model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Knowledge bases of the invoking tenant it may search (`kb_...`), or `"*"` for all
    /// of them. Whatever it names, it only ever reaches the invoking tenant's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knowledge_bases: Vec<String>,
    /// Its private key-value store (`kv`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kv: bool,
    /// Reading the invoking tenant's files (`files`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub files: bool,
}

impl Grants {
    /// Checks the shape of every network pattern.
    pub fn validate(&self) -> Result<(), String> {
        for pattern in &self.network {
            if pattern == "*" {
                continue;
            }
            let valid = pattern.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !host.contains('/') && (port == "*" || port.parse::<u16>().is_ok())
            });
            if !valid {
                return Err(format!("grants.network entry {pattern:?} must be \"*\", \"host:port\" or \"host:*\""));
            }
        }
        if let Some(k) = self.env.keys().find(|k| k.is_empty() || k.contains('=')) {
            return Err(format!("grants.env name {k:?} is not a valid variable name"));
        }
        if let Some(m) = self.models.iter().find(|m| m.trim().is_empty()) {
            return Err(format!("grants.models entry {m:?} must name a model or be \"*\""));
        }
        if let Some(kb) = self.knowledge_bases.iter().find(|kb| *kb != "*" && !kb.starts_with("kb_")) {
            return Err(format!("grants.knowledge_bases entry {kb:?} must be a knowledge base id (kb_...) or \"*\""));
        }
        Ok(())
    }

    /// Whether the function may call model `id`.
    pub fn allows_model(&self, id: &str) -> bool {
        self.models.iter().any(|m| m == "*" || m == id)
    }

    /// Whether the function may search knowledge base `id` (of its invoking tenant).
    pub fn allows_knowledge_base(&self, id: &str) -> bool {
        self.knowledge_bases.iter().any(|kb| kb == "*" || kb == id)
    }

    /// Whether `host:port` is an allowed destination.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.network.iter().any(|p| {
            if p == "*" {
                return true;
            }
            let Some((h, pp)) = p.rsplit_once(':') else { return false };
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h.eq_ignore_ascii_case(host) && (pp == "*" || pp.parse::<u16>() == Ok(port))
        })
    }
}

/// How interactive requests queue for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionOptions {
    /// Longest wait for a slot before answering 503.
    pub queue_timeout: Duration,
    /// Most requests waiting at once; one more is refused at once.
    pub max_waiting: usize,
    /// Most inference requests running on one model at once (`None`: only the server's
    /// slots bound them).
    pub max_model_requests: Option<usize>,
    /// Most requests waiting for one model at once.
    pub max_model_waiting: usize,
}

/// [`AdmissionOptions::queue_timeout`]'s default.
pub const QUEUE_TIMEOUT_SECS: u64 = 30;
/// [`AdmissionOptions::max_waiting`]'s default.
pub const MAX_QUEUE: usize = 1024;

impl Default for AdmissionOptions {
    fn default() -> Self {
        Self {
            queue_timeout: Duration::from_secs(QUEUE_TIMEOUT_SECS),
            max_waiting: MAX_QUEUE,
            max_model_requests: None,
            max_model_waiting: MAX_QUEUE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> (Limits, Limits) {
        let d = Limits { memory_bytes: 64 << 20, timeout: Duration::from_secs(1), fuel: 1000 };
        let m = Limits { memory_bytes: 256 << 20, timeout: Duration::from_secs(10), fuel: 10_000 };
        (d, m)
    }

    #[test]
    fn limits_default_and_bound() {
        let (d, m) = defaults();
        assert_eq!(LimitsSpec::default().resolve(&d, &m), Ok(d));
        let spec = LimitsSpec { memory_mb: Some(32), timeout_ms: Some(500), fuel: Some(5), ..Default::default() };
        let l = spec.resolve(&d, &m).unwrap();
        assert_eq!((l.memory_bytes, l.timeout.as_millis(), l.fuel), (32 << 20, 500, 5));
        let too_big = LimitsSpec { memory_mb: Some(1024), ..Default::default() };
        assert_eq!(too_big.resolve(&d, &m).unwrap_err().0, "limits.memory_mb");
        let too_long = LimitsSpec { timeout_ms: Some(10_001), ..Default::default() };
        assert_eq!(too_long.resolve(&d, &m).unwrap_err().0, "limits.timeout_ms");
        let too_hungry = LimitsSpec { fuel: Some(10_001), ..Default::default() };
        assert_eq!(too_hungry.resolve(&d, &m).unwrap_err().0, "limits.fuel");
        let zero = LimitsSpec { timeout_ms: Some(0), ..Default::default() };
        assert_eq!(zero.resolve(&d, &m).unwrap_err().0, "limits.timeout_ms");
        // At the maximum is fine.
        let at_max = LimitsSpec { memory_mb: Some(256), timeout_ms: Some(10_000), fuel: Some(10_000), ..Default::default() };
        assert_eq!(at_max.resolve(&d, &m), Ok(m));
        // Lowered maximums: defaults above them are capped, requests above them clamp.
        let low = Limits { memory_bytes: 16 << 20, timeout: Duration::from_millis(100), fuel: 10 };
        assert_eq!(LimitsSpec::default().resolve(&d, &low), Ok(low));
        let old = LimitsSpec { memory_mb: Some(1024), timeout_ms: Some(300_000), ..Default::default() };
        assert_eq!(old.clamped(&low).resolve(&d, &low), Ok(low));
    }

    #[test]
    fn network_patterns() {
        let g = Grants { network: vec!["127.0.0.1:8080".into(), "example.com:*".into()], ..Default::default() };
        assert!(g.validate().is_ok());
        assert!(g.allows("127.0.0.1", 8080));
        assert!(!g.allows("127.0.0.1", 8081));
        assert!(g.allows("EXAMPLE.com", 443));
        assert!(!Grants::default().allows("127.0.0.1", 80));
        assert!(Grants { network: vec!["*".into()], ..Default::default() }.allows("10.0.0.1", 1));
        assert!(Grants { network: vec!["nope".into()], ..Default::default() }.validate().is_err());
        assert!(Grants { network: vec!["h:99999".into()], ..Default::default() }.validate().is_err());
    }

    #[test]
    fn platform_grants_and_model_budgets() {
        let g = Grants { models: vec!["m".into()], knowledge_bases: vec!["kb_1".into()], ..Default::default() };
        assert!(g.validate().is_ok());
        assert!(g.allows_model("m") && !g.allows_model("n"));
        assert!(g.allows_knowledge_base("kb_1") && !g.allows_knowledge_base("kb_2"));
        let any = Grants { models: vec!["*".into()], knowledge_bases: vec!["*".into()], ..Default::default() };
        assert!(any.allows_model("n") && any.allows_knowledge_base("kb_2"));
        assert!(!Grants::default().allows_model("m") && !Grants::default().allows_knowledge_base("kb_1"));
        assert!(Grants { models: vec![" ".into()], ..Default::default() }.validate().is_err());
        assert!(Grants { knowledge_bases: vec!["docs".into()], ..Default::default() }.validate().is_err());

        assert_eq!(LimitsSpec::default().model_budget(), Ok(ModelBudget::DEFAULT));
        let spec = LimitsSpec { max_model_calls: Some(3), max_generated_tokens: Some(12), ..Default::default() };
        assert_eq!(spec.model_budget(), Ok(ModelBudget { calls: 3, generated_tokens: 12 }));
        let greedy = LimitsSpec { max_model_calls: Some(ModelBudget::MAX.calls + 1), ..Default::default() };
        assert_eq!(greedy.model_budget().unwrap_err().0, "limits.max_model_calls");
        let verbose = LimitsSpec { max_generated_tokens: Some(u64::MAX), ..Default::default() };
        assert_eq!(verbose.model_budget().unwrap_err().0, "limits.max_generated_tokens");
        // Clamping the engine limits keeps the budget.
        let max = Limits { memory_bytes: 1 << 20, timeout: Duration::from_secs(1), fuel: 1 };
        assert_eq!(spec.clamped(&max).max_model_calls, Some(3));
    }
}
