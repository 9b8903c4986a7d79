//! Metering: every model execution (chat, completions, embeddings, RAG; made by a client or
//! by a function on behalf of the key that invoked it) adds its tokens and cost to the
//! (day, tenant, key, model) it belongs to.
//!
//! Recording is a map update under a mutex (no I/O on the request path); a task writes
//! what accumulated once a second, in one transaction that adds to the stored rows. A
//! crash loses at most that second, and a row is never counted twice: a batch is taken out
//! of the map before it is written and merged back only if the write failed. Reads flush
//! first, so a request's usage is visible as soon as its response is.
//!
//! The meter also feeds what it records to the places that limit it: the tokens to the
//! rate limiter's window of the key, the cost to the month's spending of the tenant
//! (checked against its budget); and to the `/metrics` token counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{BatchCounts, MetadataStore, UsageCounts, UsageRow};

/// How often recorded usage is written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

type Bucket = (i64, String, String, String);

/// Usage recorded and not yet written, and where it goes.
pub struct Meter {
    store: Arc<dyn MetadataStore>,
    pending: Mutex<HashMap<Bucket, UsageCounts>>,
    /// Serialises flushes, so a read that flushes sees every earlier batch written.
    writing: tokio::sync::Mutex<()>,
    /// This month's spending of the tenants asked about: (first day of the month, cost
    /// in billionths of a dollar). Locked before `pending` wherever both are.
    spend: Mutex<HashMap<String, (i64, u64)>>,
    limiter: Arc<crate::ratelimit::Limiter>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}

/// The tokens of one model execution, and whether a batch job ran it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens.
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
    /// Of the prompt tokens, those whose keys and values came from the prefix cache.
    pub cached: u64,
    /// A line of a batch (`/v1/batches`): counted apart too, and not against the key's
    /// per-minute window (batches run in idle capacity; the budget still counts them).
    pub batch: bool,
}

/// A catalogue price: US dollars per million input and output tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    /// Per million prompt tokens.
    pub input: f64,
    /// Per million generated tokens.
    pub output: f64,
}

impl Price {
    /// The cost of `input` and `output` tokens, in billionths of a dollar.
    pub fn nano_usd(&self, input: u64, output: u64) -> u64 {
        // $/M tokens × tokens × 1e9 nano / 1e6 = 1000 × price × tokens.
        let cost = 1000.0 * (self.input.max(0.0) * input as f64 + self.output.max(0.0) * output as f64);
        cost.round() as u64
    }
}

impl Meter {
    /// A meter writing to `store`, counting tokens into `limiter`'s windows.
    pub fn new(store: Arc<dyn MetadataStore>, limiter: Arc<crate::ratelimit::Limiter>) -> Arc<Self> {
        Arc::new(Self {
            store,
            pending: Mutex::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
            spend: Mutex::new(HashMap::new()),
            limiter,
        })
    }

    /// Writes once a second until the returned handle is aborted (then [`Meter::flush`]).
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let meter = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                meter.flush().await;
            }
        })
    }

    /// Adds one model execution for `key_id` of `tenant` on `model`, today.
    pub fn record(&self, tenant: &str, key_id: &str, model: &str, tokens: Tokens, price: Price) {
        let Tokens { input, output, cached, batch } = tokens;
        let counts = UsageCounts {
            requests: 1,
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            cost_nano_usd: price.nano_usd(input, output),
            batch: if batch {
                BatchCounts { requests: 1, input_tokens: input, output_tokens: output }
            } else {
                BatchCounts::default()
            },
        };
        let day = today();
        let bucket = (day, tenant.to_owned(), key_id.to_owned(), model.to_owned());
        if !batch {
            self.limiter.consume(key_id, input.saturating_add(output));
        }
        let m = crate::metrics::metrics();
        m.model_requests.inc(&[model]);
        m.tokens.add(&[model, "prompt"], input);
        m.tokens.add(&[model, "completion"], output);
        let mut spend = self.spend.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(mut pending) = self.pending.lock() {
            *pending.entry(bucket).or_default() += counts;
        }
        if let Some((month, total)) = spend.get_mut(tenant)
            && *month == month_of(day)
        {
            *total = total.saturating_add(counts.cost_nano_usd);
        }
    }

    /// What `tenant` spent this calendar month (UTC), in billionths of a dollar. Read from
    /// the store once a month per tenant, then kept up to date by [`Meter::record`].
    pub async fn month_cost(&self, tenant: &str) -> anyhow::Result<u64> {
        let (today, month) = (today(), month_of(today()));
        let cached = |spend: &HashMap<String, (i64, u64)>| spend.get(tenant).filter(|(m, _)| *m == month).map(|(_, t)| *t);
        if let Some(total) = cached(&self.spend.lock().unwrap_or_else(std::sync::PoisonError::into_inner)) {
            return Ok(total);
        }
        // No flush runs meanwhile, so every cost is either pending or stored, not both.
        let _writing = self.writing.lock().await;
        let mut spend = self.spend.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(total) = cached(&spend) {
            return Ok(total);
        }
        let pending: u64 = match self.pending.lock() {
            Ok(pending) => {
                pending.iter().filter(|((day, t, _, _), _)| t == tenant && *day >= month).map(|(_, c)| c.cost_nano_usd).sum()
            }
            Err(_) => 0,
        };
        let stored: u64 = self
            .store
            .usage(month, today, Some(tenant))
            .map_err(|e| anyhow::anyhow!("{e:#}"))?
            .iter()
            .map(|r| r.counts.cost_nano_usd)
            .sum();
        let total = pending.saturating_add(stored);
        spend.insert(tenant.to_owned(), (month, total));
        Ok(total)
    }

    /// Writes what was recorded. A failed write keeps it for the next flush.
    pub async fn flush(&self) {
        let _writing = self.writing.lock().await;
        let batch = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::take(&mut *pending),
            _ => return,
        };
        let rows: Vec<UsageRow> = batch
            .iter()
            .map(|((day, tenant, key_id, model), counts)| UsageRow {
                day: *day,
                tenant: tenant.clone(),
                key_id: key_id.clone(),
                model: model.clone(),
                counts: *counts,
            })
            .collect();
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || store.add_usage(&rows)).await;
        if let Ok(Ok(())) = written {
            return;
        }
        tracing::warn!("writing usage failed; it is kept for the next try: {written:?}");
        if let Ok(mut pending) = self.pending.lock() {
            for (bucket, counts) in batch {
                *pending.entry(bucket).or_default() += counts;
            }
        }
    }

    /// Usage of days `from..=to` (of `tenant`, or every tenant), after writing what is pending.
    pub async fn read(&self, from: i64, to: i64, tenant: Option<&str>) -> anyhow::Result<Vec<UsageRow>> {
        self.flush().await;
        let store = self.store.clone();
        let tenant = tenant.map(str::to_owned);
        tokio::task::spawn_blocking(move || store.usage(from, to, tenant.as_deref())).await?.map_err(|e| anyhow::anyhow!("{e:#}"))
    }
}

/// What a usage report is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupBy {
    /// The day (UTC).
    Day,
    /// The model.
    Model,
    /// The key.
    Key,
    /// The tenant.
    Tenant,
}

impl GroupBy {
    const ALL: [Self; 4] = [Self::Day, Self::Model, Self::Key, Self::Tenant];

    /// Its name in `group_by`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Model => "model",
            Self::Key => "key",
            Self::Tenant => "tenant",
        }
    }

    /// From its name in `group_by`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == s)
    }
}

/// One line of a report: the values of the grouped dimensions (the others are `None`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    /// Days since 1970-01-01.
    pub day: Option<i64>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Key id.
    pub key_id: Option<String>,
    /// Model id.
    pub model: Option<String>,
}

/// Sums `rows` per group of the `by` dimensions, in the groups' order.
pub fn group(rows: &[UsageRow], by: &[GroupBy]) -> Vec<(Group, UsageCounts)> {
    let mut out: BTreeMap<Group, UsageCounts> = BTreeMap::new();
    for r in rows {
        let g = Group {
            day: by.contains(&GroupBy::Day).then_some(r.day),
            tenant: by.contains(&GroupBy::Tenant).then(|| r.tenant.clone()),
            key_id: by.contains(&GroupBy::Key).then(|| r.key_id.clone()),
            model: by.contains(&GroupBy::Model).then(|| r.model.clone()),
        };
        *out.entry(g).or_default() += r.counts;
    }
    out.into_iter().collect()
}

/// Today (UTC), in days since 1970-01-01.
pub fn today() -> i64 {
    crate::unix_now().div_euclid(86_400)
}

/// Dollars in billionths, for a budget given in dollars; `None` unless finite and >= 0.
pub fn nano_from_usd(usd: f64) -> Option<u64> {
    (0.0..1.8e10).contains(&usd).then(|| (usd * 1e9).round() as u64)
}

/// Billionths of a dollar in dollars.
pub fn usd_from_nano(nano: u64) -> f64 {
    nano as f64 / 1e9
}

/// The first day of the month `day` is in.
pub fn month_of(day: i64) -> i64 {
    let date = format_day(day);
    parse_day(&format!("{}-01", &date[..7])).unwrap_or(day)
}

/// `YYYY-MM-DD` for a day number (proleptic Gregorian, UTC).
pub fn format_day(day: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of `YYYY-MM-DD`, or `None` when it is not a valid date.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    // Hinnant's days_from_civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    // Rejects 2026-02-30 and the like: the day must print back as it was given.
    (format_day(day) == s).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_print_and_parse_back() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(format_day(20_429), "2025-12-07");
        for day in [-700_000, -1, 59, 60, 11_016, 20_454, 2_932_896] {
            assert_eq!(parse_day(&format_day(day)), Some(day), "{}", format_day(day));
        }
        assert_eq!(format_day(parse_day("2024-02-29").unwrap() + 1), "2024-03-01");
        assert_eq!(format_day(month_of(parse_day("2024-02-29").unwrap())), "2024-02-01");
        assert_eq!(month_of(parse_day("2026-12-01").unwrap()), parse_day("2026-12-01").unwrap());
        for bad in ["2026-02-30", "2026-13-01", "2026-1-01", "26-01-01", "2026-01-01T00:00", "", "abcd-ef-gh"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn costs_are_exact_billionths() {
        let p = Price { input: 0.20, output: 0.60 };
        // The catalogue's own example: 1,000 in and 500 out on llama-3.3-70b is $0.0005.
        assert_eq!(p.nano_usd(1000, 500), 500_000);
        assert_eq!(Price::default().nano_usd(10, 10), 0);
        assert_eq!(Price { input: 0.01, output: 0.0 }.nano_usd(1, 0), 10);
    }

    #[test]
    fn groups_sum_the_rows_they_hold() {
        let row = |day, key: &str, model: &str, n| UsageRow {
            day,
            tenant: "t".into(),
            key_id: key.into(),
            model: model.into(),
            counts: UsageCounts { requests: 1, input_tokens: n, output_tokens: 2 * n, ..Default::default() },
        };
        let rows = [row(1, "k1", "a", 10), row(1, "k2", "a", 5), row(2, "k1", "b", 1)];
        let by_model = group(&rows, &[GroupBy::Model]);
        assert_eq!(by_model.len(), 2);
        assert_eq!((by_model[0].0.model.as_deref(), by_model[0].1.input_tokens, by_model[0].1.requests), (Some("a"), 15, 2));
        assert_eq!(by_model[0].0.day, None);
        let all = group(&rows, &[]);
        assert_eq!((all.len(), all[0].1.output_tokens), (1, 32));
        let by_day_key = group(&rows, &[GroupBy::Day, GroupBy::Key]);
        assert_eq!(
            by_day_key.iter().map(|(g, _)| (g.day.unwrap(), g.key_id.clone().unwrap())).collect::<Vec<_>>(),
            [(1, "k1".to_owned()), (1, "k2".to_owned()), (2, "k1".to_owned())]
        );
    }
}
