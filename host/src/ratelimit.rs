//! Per-key rate limits over a rolling minute (docs/operations.md#rate-limits).
//!
//! Each key has two rings of 60 one-second buckets: requests and tokens. A request is
//! admitted when the last 60 seconds leave room for it and the key runs fewer requests
//! than its plan's `max_concurrent`; it then holds a [`Ticket`] until its answer is sent.
//! Tokens are reserved at admission (an estimate of the prompt plus `max_tokens`) and
//! held by the ticket; the tokens models really used are added as they are metered, and
//! the reservation is dropped with the ticket. So the window counts what was used, plus
//! what requests still running may use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::plans::Plan;

/// The window, in seconds.
const WINDOW: i64 = 60;
const SLOTS: usize = WINDOW as usize;

/// Counts per second of the last minute; slot `sec % 60` holds second `sec`.
#[derive(Debug, Clone, Copy)]
struct Ring {
    secs: [i64; SLOTS],
    counts: [u64; SLOTS],
}

impl Default for Ring {
    fn default() -> Self {
        Self { secs: [i64::MIN; SLOTS], counts: [0; SLOTS] }
    }
}

fn slot(sec: i64) -> usize {
    sec.rem_euclid(WINDOW) as usize
}

impl Ring {
    /// The seconds of the window ending at `now` that count something, oldest first.
    fn live(&self, now: i64) -> Vec<(i64, u64)> {
        let mut live: Vec<(i64, u64)> = (0..SLOTS)
            .filter(|&i| self.secs[i] > now - WINDOW && self.secs[i] <= now && self.counts[i] > 0)
            .map(|i| (self.secs[i], self.counts[i]))
            .collect();
        live.sort_unstable();
        live
    }

    fn total(&self, now: i64) -> u64 {
        self.live(now).iter().map(|(_, n)| n).sum()
    }

    fn add(&mut self, now: i64, n: u64) {
        let i = slot(now);
        if self.secs[i] != now {
            self.secs[i] = now;
            self.counts[i] = 0;
        }
        self.counts[i] = self.counts[i].saturating_add(n);
    }

    /// Takes back `n` counted at second `sec`, if that second is still in the ring.
    fn remove(&mut self, sec: i64, n: u64) {
        let i = slot(sec);
        if self.secs[i] == sec {
            self.counts[i] = self.counts[i].saturating_sub(n);
        }
    }

    /// When the oldest second still counted leaves the window (`now` when none is).
    fn reset_at(&self, now: i64) -> i64 {
        self.live(now).first().map_or(now, |(sec, _)| sec + WINDOW)
    }

    /// The first second at which `need` more fits under `limit`, or `None` if it never will.
    fn fits_at(&self, now: i64, limit: u64, need: u64) -> Option<i64> {
        if need > limit {
            return None;
        }
        let live = self.live(now);
        let mut total: u64 = live.iter().map(|(_, n)| n).sum();
        if total + need <= limit {
            return Some(now);
        }
        for (sec, n) in live {
            total -= n;
            if total + need <= limit {
                return Some(sec + WINDOW);
            }
        }
        Some(now + WINDOW)
    }
}

#[derive(Debug, Default)]
struct Window {
    requests: Ring,
    tokens: Ring,
    running: u64,
}

/// One limit's state, as the rate-limit headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// The plan's limit per minute.
    pub limit: u64,
    /// What is left of it in the rolling window.
    pub remaining: u64,
    /// Unix seconds when the oldest use in the window leaves it.
    pub reset_at: i64,
}

/// A key's requests and tokens windows (each `None` when its plan does not limit it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Requests per minute.
    pub requests: Option<Quota>,
    /// Tokens per minute.
    pub tokens: Option<Quota>,
    /// The current time, unix seconds (headers count the reset from it).
    pub now: i64,
}

/// The limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Tokens,
    Concurrency,
}

impl Limit {
    /// Its name, a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Concurrency => "concurrency",
        }
    }
}

/// A request the limits refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Which limit.
    pub reason: Limit,
    /// What was exceeded, for the client.
    pub message: String,
    /// Seconds after which the request would fit; `None` when it never will (it alone
    /// exceeds the tokens per minute).
    pub retry_after: Option<u64>,
    /// The key's windows, for the headers.
    pub status: Status,
}

/// Every key's windows.
#[derive(Debug, Default)]
pub struct Limiter {
    keys: Mutex<HashMap<String, Window>>,
}

fn now() -> i64 {
    crate::unix_now()
}

impl Limiter {
    /// An empty limiter.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Admits one request of `key` under `plan`, or says why not and when to retry.
    pub fn admit(self: &Arc<Self>, key: &str, plan: &Arc<Plan>) -> Result<Ticket, Refusal> {
        self.admit_at(key, plan, now())
    }

    fn admit_at(self: &Arc<Self>, key: &str, plan: &Arc<Plan>, now: i64) -> Result<Ticket, Refusal> {
        let mut keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = keys.entry(key.to_owned()).or_default();
        let refuse = |w: &Window, reason, message: String, retry_at: i64| Refusal {
            reason,
            message,
            retry_after: Some(u64::try_from(retry_at - now).unwrap_or(0).max(1)),
            status: status_of(w, plan, now),
        };
        if let Some(max) = plan.max_concurrent
            && w.running >= max
        {
            let message = format!("Rate limit reached: this key may run {max} requests at once. Retry when one has finished.");
            return Err(refuse(w, Limit::Concurrency, message, now + 1));
        }
        if let Some(rpm) = plan.rpm {
            let at = w.requests.fits_at(now, rpm, 1).unwrap_or(now + WINDOW);
            if at > now {
                let message = format!(
                    "Rate limit reached for requests per minute (limit {rpm}). Please retry after {} seconds.",
                    (at - now).max(1)
                );
                return Err(refuse(w, Limit::Requests, message, at));
            }
        }
        w.requests.add(now, 1);
        w.running += 1;
        Ok(Ticket { limiter: self.clone(), key: key.to_owned(), plan: plan.clone(), reserved: Mutex::new(Vec::new()) })
    }

    /// Counts `tokens` a model really used for `key` (metering calls this). Keys that
    /// were never admitted under a limited plan have no window and are not tracked.
    pub fn consume(&self, key: &str, tokens: u64) {
        self.consume_at(key, tokens, now());
    }

    fn consume_at(&self, key: &str, tokens: u64, now: i64) {
        let mut keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = keys.get_mut(key) {
            w.tokens.add(now, tokens);
        }
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Window) -> T) -> Option<T> {
        let mut keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.get_mut(key).map(f)
    }
}

fn status_of(w: &Window, plan: &Plan, now: i64) -> Status {
    let quota =
        |ring: &Ring, limit: u64| Quota { limit, remaining: limit.saturating_sub(ring.total(now)), reset_at: ring.reset_at(now) };
    Status { requests: plan.rpm.map(|l| quota(&w.requests, l)), tokens: plan.tpm.map(|l| quota(&w.tokens, l)), now }
}

/// An admitted request: counts as running, and holds its token reservations, until dropped.
#[derive(Debug)]
pub struct Ticket {
    limiter: Arc<Limiter>,
    key: String,
    plan: Arc<Plan>,
    reserved: Mutex<Vec<(i64, u64)>>,
}

impl Ticket {
    /// Reserves `tokens` (what the request may use at most) in the tokens window, or
    /// refuses when they do not fit.
    pub fn reserve(&self, tokens: u64) -> Result<(), Refusal> {
        self.reserve_at(tokens, now())
    }

    fn reserve_at(&self, tokens: u64, now: i64) -> Result<(), Refusal> {
        let Some(tpm) = self.plan.tpm else { return Ok(()) };
        let plan = &self.plan;
        let outcome = self.limiter.with(&self.key, |w| match w.tokens.fits_at(now, tpm, tokens) {
            Some(at) if at <= now => {
                w.tokens.add(now, tokens);
                Ok(())
            }
            Some(at) => Err(Refusal {
                reason: Limit::Tokens,
                message: format!(
                    "Rate limit reached for tokens per minute (limit {tpm}, this request may use {tokens}). Please retry after {} seconds.",
                    at - now
                ),
                retry_after: Some(u64::try_from(at - now).unwrap_or(1).max(1)),
                status: status_of(w, plan, now),
            }),
            None => Err(Refusal {
                reason: Limit::Tokens,
                message: format!(
                    "Request too large for tokens per minute (limit {tpm}): it may use {tokens} tokens (its prompt and max_tokens). \
                     Send a shorter prompt or a smaller max_tokens."
                ),
                retry_after: None,
                status: status_of(w, plan, now),
            }),
        });
        match outcome {
            Some(Ok(())) => {
                self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((now, tokens));
                Ok(())
            }
            Some(Err(refusal)) => Err(refusal),
            None => Ok(()),
        }
    }

    /// Ends the token reservations: the request's model calls are over and what they
    /// used is counted (so the headers of its answer show the real use, not a guess).
    pub fn release_tokens(&self) {
        let reserved = std::mem::take(&mut *self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.limiter.with(&self.key, |w| {
            for (sec, n) in reserved {
                w.tokens.remove(sec, n);
            }
        });
    }

    /// The key's windows now.
    pub fn status(&self) -> Status {
        let now = now();
        self.limiter.with(&self.key, |w| status_of(w, &self.plan, now)).unwrap_or_default()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.release_tokens();
        self.limiter.with(&self.key, |w| w.running = w.running.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rpm: Option<u64>, tpm: Option<u64>, max_concurrent: Option<u64>) -> Arc<Plan> {
        Arc::new(Plan { name: "t".into(), rpm, tpm, max_concurrent, ..Plan::default() })
    }

    #[test]
    fn requests_count_down_and_the_window_rolls() {
        let l = Limiter::new();
        let p = plan(Some(3), None, None);
        let t0 = 1_000_000;
        let mut held = Vec::new();
        for (i, at) in [t0, t0 + 10, t0 + 20].into_iter().enumerate() {
            let t = l.admit_at("k", &p, at).unwrap();
            let q = l.with("k", |w| status_of(w, &p, at)).unwrap().requests.unwrap();
            assert_eq!((q.limit, q.remaining, q.reset_at), (3, 2 - i as u64, t0 + 60));
            held.push(t);
        }
        drop(held);
        let refused = l.admit_at("k", &p, t0 + 30).unwrap_err();
        assert_eq!(refused.retry_after, Some(30), "the first request leaves the window at t0+60");
        assert_eq!(refused.status.requests.unwrap().remaining, 0);
        assert!(l.admit_at("k", &p, t0 + 59).is_err());
        let _ = l.admit_at("k", &p, t0 + 60).unwrap();
        assert!(l.admit_at("k", &p, t0 + 65).is_err(), "t0+10, t0+20, t0+60 fill it again");
        assert!(l.admit_at("other", &p, t0 + 65).is_ok(), "keys have windows of their own");
    }

    #[test]
    fn running_requests_are_capped() {
        let l = Limiter::new();
        let p = plan(None, None, Some(2));
        let a = l.admit_at("k", &p, 5).unwrap();
        let _b = l.admit_at("k", &p, 5).unwrap();
        let refused = l.admit_at("k", &p, 5).unwrap_err();
        assert_eq!(refused.retry_after, Some(1));
        drop(a);
        assert!(l.admit_at("k", &p, 5).is_ok());
    }

    #[test]
    fn tokens_are_reserved_then_replaced_by_what_was_used() {
        let l = Limiter::new();
        let p = plan(None, Some(1000), None);
        let t0 = 7_000;
        let a = l.admit_at("k", &p, t0).unwrap();
        a.reserve_at(600, t0).unwrap();
        let b = l.admit_at("k", &p, t0 + 1).unwrap();
        let refused = b.reserve_at(600, t0 + 1).unwrap_err();
        assert_eq!(refused.retry_after, Some(59));
        assert_eq!(refused.status.tokens.unwrap().remaining, 400);
        // `a` used 100 of its 600: once it ends, 900 are left.
        l.consume_at("k", 100, t0 + 2);
        drop(a);
        b.reserve_at(600, t0 + 2).unwrap();
        assert_eq!(l.with("k", |w| w.tokens.total(t0 + 2)), Some(700));
        let too_large = b.reserve_at(1001, t0 + 2).unwrap_err();
        assert_eq!(too_large.retry_after, None);
        drop(b);
        assert_eq!(l.with("k", |w| w.tokens.total(t0 + 3)), Some(100));
        assert_eq!(l.with("k", |w| w.tokens.total(t0 + 62)), Some(0), "used tokens leave with the window");
    }

    #[test]
    fn a_plan_without_limits_never_refuses() {
        let l = Limiter::new();
        let p = plan(None, None, None);
        let tickets: Vec<_> = (0..1000).map(|_| l.admit_at("k", &p, 1).unwrap()).collect();
        tickets[0].reserve_at(u64::MAX, 1).unwrap();
        assert_eq!(tickets[0].status().requests, None);
    }
}
