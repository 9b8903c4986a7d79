//! Rate-limit plans (docs/operations.md#plans): requests and tokens per rolling minute,
//! requests at once, and caps on knowledge bases and stored bytes. Tensoras' published
//! plans are built in; an operator's plans file adds plans or redefines them. A key's own
//! plan wins over its tenant's, which wins over the server's default.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

/// One plan. `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Its name (the key of its table in a plans file).
    #[serde(skip)]
    pub name: String,
    /// Requests per rolling minute, per key.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per rolling minute, per key.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests of one key running at once.
    #[serde(default)]
    pub max_concurrent: Option<u64>,
    /// Knowledge bases a tenant may have.
    #[serde(default)]
    pub knowledge_bases: Option<u64>,
    /// Bytes of uploaded files a tenant may store, in MiB.
    #[serde(default)]
    pub storage_mb: Option<u64>,
}

impl Plan {
    /// Stored bytes allowed, if limited.
    pub fn storage_bytes(&self) -> Option<u64> {
        self.storage_mb.map(|mb| mb.saturating_mul(1 << 20))
    }

    /// Whether it limits requests or tokens at all (an unlimited plan adds no headers).
    pub fn limits_rate(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.max_concurrent.is_some()
    }
}

/// The plan a server applies when neither key nor tenant names one.
pub const DEFAULT_PLAN: &str = "enterprise";

/// Tensoras' published plans (docs.tensoras.ai, "Rate Limits"); Enterprise's custom
/// limits are unlimited until a plans file sets them. `unlimited` limits nothing.
fn published() -> Vec<Plan> {
    const GB: u64 = 1024;
    let plan = |name: &str, rpm, tpm, kbs, storage_mb| Plan {
        name: name.into(),
        rpm,
        tpm,
        max_concurrent: None,
        knowledge_bases: kbs,
        storage_mb,
    };
    vec![
        plan("free", Some(30), Some(100_000), Some(2), Some(GB)),
        plan("developer", Some(600), Some(1_000_000), Some(5), Some(5 * GB)),
        plan("pro", Some(3_000), Some(5_000_000), Some(10), Some(10 * GB)),
        plan("enterprise", Some(10_000), None, None, None),
        plan("unlimited", None, None, None, None),
    ]
}

/// The plans a server knows, and its default.
#[derive(Debug, Clone)]
pub struct Plans {
    by_name: BTreeMap<String, Arc<Plan>>,
    default: String,
}

impl Default for Plans {
    fn default() -> Self {
        Self { by_name: published().into_iter().map(|p| (p.name.clone(), Arc::new(p))).collect(), default: DEFAULT_PLAN.into() }
    }
}

/// A plans file: `default = "NAME"` and `[plans.NAME]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlansFile {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    plans: BTreeMap<String, Plan>,
}

impl Plans {
    /// The published plans plus (and over) those of a plans file's text.
    pub fn with_file(text: &str) -> anyhow::Result<Self> {
        let file: PlansFile = toml::from_str(text)?;
        let mut plans = Self::default();
        for (name, mut plan) in file.plans {
            anyhow::ensure!(
                crate::ids::valid_name(&name),
                "plan names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-': {name:?}"
            );
            plan.name.clone_from(&name);
            plans.by_name.insert(name, Arc::new(plan));
        }
        if let Some(default) = file.default {
            plans.set_default(&default)?;
        }
        Ok(plans)
    }

    /// Makes `name` the plan of keys whose key and tenant name none.
    pub fn set_default(&mut self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.by_name.contains_key(name), "no plan named {name:?}; known plans: {}", self.names().join(", "));
        name.clone_into(&mut self.default);
        Ok(())
    }

    /// The plan called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plan>> {
        self.by_name.get(name)
    }

    /// Every plan's name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The default plan's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The plan that applies to a key: its own, else its tenant's, else the default. An
    /// error names a plan that is assigned but no longer configured (the plans file
    /// changed): refused rather than silently swapped for a more generous one.
    pub fn resolve(&self, key: Option<&str>, tenant: Option<&str>) -> Result<Arc<Plan>, String> {
        let name = key.or(tenant).unwrap_or(&self.default);
        self.by_name.get(name).cloned().ok_or_else(|| name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_plans_are_built_in() {
        let plans = Plans::default();
        let free = plans.get("free").unwrap();
        assert_eq!(
            (free.rpm, free.tpm, free.knowledge_bases, free.storage_bytes()),
            (Some(30), Some(100_000), Some(2), Some(1 << 30))
        );
        let pro = plans.get("pro").unwrap();
        assert_eq!((pro.rpm, pro.tpm, pro.knowledge_bases), (Some(3_000), Some(5_000_000), Some(10)));
        assert_eq!(plans.get("enterprise").unwrap().rpm, Some(10_000));
        assert!(!plans.get("unlimited").unwrap().limits_rate());
        assert_eq!(plans.resolve(None, None).unwrap().name, "enterprise");
    }

    #[test]
    fn a_plans_file_adds_and_redefines_plans() {
        let plans = Plans::with_file(
            "default = \"team\"\n[plans.team]\nrpm = 3\nmax_concurrent = 2\n[plans.enterprise]\nrpm = 20000\ntpm = 9000000\n",
        )
        .unwrap();
        let team = plans.resolve(None, None).unwrap();
        assert_eq!((team.name.as_str(), team.rpm, team.tpm, team.max_concurrent), ("team", Some(3), None, Some(2)));
        assert_eq!(plans.get("enterprise").unwrap().tpm, Some(9_000_000));
        assert_eq!(plans.resolve(Some("free"), Some("team")).unwrap().name, "free");
        assert_eq!(plans.resolve(None, Some("pro")).unwrap().name, "pro");
        assert_eq!(plans.resolve(Some("gone"), None).unwrap_err(), "gone");
        assert!(Plans::with_file("[plans.x]\nrpn = 3\n").is_err(), "unknown fields are refused");
        assert!(Plans::with_file("default = \"nope\"\n").is_err());
    }
}
