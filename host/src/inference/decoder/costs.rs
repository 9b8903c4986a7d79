//! When to run a batch row by row instead.
//!
//! Batching is not always cheaper: on a CPU, ONNX Runtime's 4-bit `MatMulNBits` has a fast
//! kernel for one row only, so two rows can cost more than two single runs. The scheduler
//! learns the mean run time of each batch size and the wait for a batch's members
//! ([`RunCosts`]), and while single runs are cheaper it lets the streams take turns (each
//! guest then works while another's step runs), trying the batch again now and then to
//! notice when that changes.

use std::time::Duration;

/// While a batch size runs row by row, every this many decisions it runs batched once, to
/// keep its cost current (it changes with context length and machine load).
const PROBE_EVERY: u32 = 32;
/// Weight of the newest run in the running mean of a batch size's run time.
const COST_WEIGHT: f64 = 0.2;

/// Mean ONNX Runtime time of a decode run, per batch size, and when to run a batch row by
/// row instead.
///
/// A batch of B costs its run plus the wait for all B guests to send their next steps (a
/// batch cannot start before its last member is back); B single runs taken in turn cost
/// B runs, each guest working while another's step runs. So rows run apart when
/// `B × single < batched + wait`.
#[derive(Default)]
pub(super) struct RunCosts {
    /// `mean[b]`: seconds a run of `b` rows takes (0 until measured).
    mean: Vec<f64>,
    /// Mean seconds spent waiting for the members of a batch to come back.
    wait: f64,
    /// Decisions made for each batch size since it last ran batched.
    since_batched: Vec<u32>,
}

fn running_mean(mean: &mut f64, sample: Duration) {
    let t = sample.as_secs_f64();
    *mean = if *mean == 0.0 { t } else { *mean + COST_WEIGHT * (t - *mean) };
}

impl RunCosts {
    pub(super) fn record(&mut self, rows: usize, took: Duration) {
        if self.mean.len() <= rows {
            self.mean.resize(rows + 1, 0.0);
        }
        running_mean(&mut self.mean[rows], took);
    }

    pub(super) fn record_wait(&mut self, waited: Duration) {
        running_mean(&mut self.wait, waited);
    }

    /// Whether `rows` decode steps should run one by one: only once both costs are known,
    /// while `rows` single runs take less than one batched run and its wait, and not on
    /// the probe turn.
    pub(super) fn split(&mut self, rows: usize) -> bool {
        if rows < 2 {
            return false;
        }
        if self.since_batched.len() <= rows {
            self.since_batched.resize(rows + 1, 0);
        }
        let (single, batched) = (self.mean.get(1).copied().unwrap_or(0.0), self.mean.get(rows).copied().unwrap_or(0.0));
        let cheaper_apart = single > 0.0 && batched > 0.0 && rows as f64 * single < batched + self.wait;
        if cheaper_apart && self.since_batched[rows] + 1 < PROBE_EVERY {
            self.since_batched[rows] += 1;
            true
        } else {
            self.since_batched[rows] = 0;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn batches_until_costs_are_known_then_splits_only_when_cheaper() {
        let mut c = RunCosts::default();
        assert!(!c.split(1));
        assert!(!c.split(2), "unknown costs: batch, to measure");
        c.record(2, ms(40));
        assert!(!c.split(2), "the single-row cost is still unknown");
        c.record(1, ms(18));
        assert!(c.split(2), "2 x 18 ms < 40 ms");
        c.record(4, ms(45));
        assert!(!c.split(4), "4 x 18 ms > 45 ms");
        assert!(!c.split(3), "never measured");
    }

    #[test]
    fn the_wait_for_a_batch_counts_against_it() {
        let mut c = RunCosts::default();
        c.record(1, ms(18));
        c.record(2, ms(34));
        assert!(!c.split(2), "2 x 18 ms > 34 ms");
        c.record_wait(ms(4));
        assert!(c.split(2), "2 x 18 ms < 34 ms + 4 ms waiting for both guests");
    }

    #[test]
    fn a_split_size_is_probed_batched_again_and_follows_the_new_cost() {
        let mut c = RunCosts::default();
        c.record(1, ms(18));
        c.record(2, ms(40));
        let decisions: Vec<bool> = (0..2 * PROBE_EVERY).map(|_| c.split(2)).collect();
        let batched = decisions.iter().filter(|s| !**s).count();
        assert_eq!(batched, 2, "one probe every {PROBE_EVERY} decisions: {decisions:?}");
        assert!(!decisions[PROBE_EVERY as usize - 1]);
        // The batch got cheap (the machine's load changed): the running mean follows it.
        for _ in 0..20 {
            c.record(2, ms(20));
        }
        assert!(!c.split(2));
        assert!(!c.split(2));
    }
}
