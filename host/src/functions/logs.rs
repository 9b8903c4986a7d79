//! The recent invocations of each deployed function: outcome, duration and what it wrote to
//! stdout and stderr (bounded per invocation by the runtime), and running counts of
//! invocations, errors and time. Kept in memory, tenant-private like the functions
//! themselves, for `GET /v1/functions/{name}/logs` and `tensoras functions logs`; a
//! restart or a delete starts them afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::runtime::{Invocation, InvocationLog};

/// Invocations kept per function; older ones are dropped.
pub const KEEP: usize = 200;

/// One recorded invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Increasing per function: a follower asks for what came after the last it saw.
    pub id: u64,
    /// What happened.
    pub invocation: Invocation,
}

/// Counts since the function was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Invocations recorded.
    pub invocations: u64,
    /// Of those, how many failed.
    pub errors: u64,
    /// Their total duration, in milliseconds.
    pub total_ms: f64,
}

#[derive(Debug, Default)]
struct FunctionLog {
    next_id: u64,
    entries: VecDeque<Entry>,
    stats: Stats,
}

type Key = (String, String);

/// Every function's log.
#[derive(Debug, Default)]
pub struct Logs(Mutex<HashMap<Key, FunctionLog>>);

impl Logs {
    /// The sink a function's sandbox records into.
    pub fn sink(self: &Arc<Self>, tenant: &str, name: &str) -> Arc<dyn InvocationLog> {
        Arc::new(Sink { logs: self.clone(), key: (tenant.to_owned(), name.to_owned()) })
    }

    /// Up to `limit` invocations after id `after` (oldest first), and the counts.
    pub fn read(&self, tenant: &str, name: &str, after: Option<u64>, limit: usize) -> (Vec<Entry>, Stats) {
        let Ok(map) = self.0.lock() else { return (Vec::new(), Stats::default()) };
        let Some(log) = map.get(&(tenant.to_owned(), name.to_owned())) else { return (Vec::new(), Stats::default()) };
        let entries = log.entries.iter().filter(|e| after.is_none_or(|a| e.id > a)).take(limit).cloned().collect();
        (entries, log.stats)
    }

    /// Forgets a deleted function's log.
    pub fn forget(&self, tenant: &str, name: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&(tenant.to_owned(), name.to_owned()));
        }
    }
}

#[derive(Debug)]
struct Sink {
    logs: Arc<Logs>,
    key: Key,
}

impl InvocationLog for Sink {
    fn record(&self, invocation: Invocation) {
        let Ok(mut map) = self.logs.0.lock() else { return };
        let log = map.entry(self.key.clone()).or_default();
        log.stats.invocations += 1;
        log.stats.errors += u64::from(invocation.error.is_some());
        log.stats.total_ms += invocation.duration.as_secs_f64() * 1000.0;
        log.next_id += 1;
        log.entries.push_back(Entry { id: log.next_id, invocation });
        if log.entries.len() > KEEP {
            log.entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn invocation(error: Option<&str>) -> Invocation {
        Invocation { started_at_ms: 1, duration: Duration::from_millis(2), error: error.map(Into::into), output: "out".into() }
    }

    #[test]
    fn keeps_the_last_invocations_per_function_and_counts_them_all() {
        let logs = Arc::new(Logs::default());
        let a = logs.sink("t", "a");
        for i in 0..KEEP + 5 {
            a.record(invocation((i % 2 == 0).then_some("boom")));
        }
        logs.sink("u", "a").record(invocation(None));
        let (entries, stats) = logs.read("t", "a", None, usize::MAX);
        assert_eq!(entries.len(), KEEP);
        assert_eq!((entries[0].id, entries[KEEP - 1].id), (6, KEEP as u64 + 5));
        assert_eq!((stats.invocations, stats.errors), (KEEP as u64 + 5, (KEEP as u64 + 6) / 2));
        assert!((stats.total_ms - 2.0 * (KEEP + 5) as f64).abs() < 1e-6);
        let (after, _) = logs.read("t", "a", Some(KEEP as u64 + 3), 10);
        assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), [KEEP as u64 + 4, KEEP as u64 + 5]);
        // Another tenant's function of the same name has its own log.
        assert_eq!(logs.read("u", "a", None, 10).1.invocations, 1);
        logs.forget("t", "a");
        assert_eq!(logs.read("t", "a", None, 10).0, []);
    }
}
