//! Continuous batching: the scheduler that steps a decoder's sequences together.
//!
//! Every decoder has one scheduler thread. Execution contexts ([`super::Sequence`]) send it
//! their steps; it runs the single-token (decode) steps pending at a moment as one `[B, 1]`
//! ONNX Runtime run and answers each with its own row of logits. Sequences join and leave
//! between steps; a prompt (prefill) runs on its own and its sequence joins the batch at
//! its next step. Their caches live in [`KvGroups`]; finished ones go to the
//! [`PrefixCache`]; whether a batch runs batched or row by row is [`RunCosts`]' call.
//!
//! To keep streams in lockstep the scheduler waits, up to a short deadline, for the
//! sequences that stepped in its previous run; one that misses the deadline is not waited
//! for again until it comes back. A single stream never waits.
//!
//! A sequence alone on its decoder does not go through the scheduler thread at all: its
//! step runs on the calling thread, under the scheduler's lock, with the same bookkeeping.
//! The two thread hand-offs (to the scheduler thread and back, each a futex wake-up) cost
//! ~0.1–0.2 ms a step on a VM, ~2 % of a 10 ms CPU step and far more of a GPU step, and a
//! lone stream has nothing to batch with. As soon as another sequence is known, or the
//! scheduler thread is busy, steps take the channel again.
//!
//! Memory: with no sequence open the scheduler holds no KV buffer but the prefix cache's
//! ([`Stats::kv_bytes`]), and once a burst is over it hands the heap's free pages back to
//! the operating system ([`trim`]), which glibc would otherwise keep.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::costs::RunCosts;
use super::graph::{DecoderGraph, RunInputs};
use super::groups::{Group, Home, KvGroups, Part};
use super::prefix_cache::PrefixCache;
use crate::inference::{NnError, trim};

/// Shortest and longest wait for the rest of the previous batch.
const MIN_WAIT: Duration = Duration::from_millis(2);
const MAX_WAIT: Duration = Duration::from_millis(20);
/// Longest a [`super::Lockstep`] hold keeps steps waiting for the rest of its sequences: a test
/// whose sequence never steps again fails on its figures instead of hanging.
const HOLD_LIMIT: Duration = Duration::from_secs(30);
/// Once no sequence is left and the KV buffers held have shrunk by this much since their
/// peak, the heap's free pages go back to the operating system ([`trim`]).
const TRIM_AFTER: usize = 64 << 20;

type Reply = oneshot::Sender<Result<Vec<f32>, NnError>>;
type Answer = (Reply, Result<Vec<f32>, NnError>);

fn deliver(answers: impl IntoIterator<Item = Answer>) {
    for (reply, result) in answers {
        // A guest that went away no longer waits for its answer.
        let _ = reply.send(result);
    }
}

/// Releases the scheduler's lock, then sends the answers it held: a guest woken by its
/// answer finds the scheduler free.
fn unlock_and_answer(mut scheduler: MutexGuard<'_, Scheduler>) {
    let answers = std::mem::take(&mut scheduler.answers);
    drop(scheduler);
    deliver(answers);
}

enum Msg {
    Step {
        seq: u64,
        scope: u64,
        ids: Vec<i64>,
        reply: Reply,
        /// The sequence's count of prompt tokens taken from the prefix cache.
        reused: Arc<AtomicU64>,
    },
    Close(u64),
    /// A [`super::Lockstep`] hold ended: steps held for it run now.
    Release,
}

/// Counters of one graph's scheduler since start-up, and the memory it holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// ONNX Runtime runs of decode steps.
    pub decode_runs: u64,
    /// Decode steps in those runs (rows); `decode_steps / decode_runs` is the mean batch.
    pub decode_steps: u64,
    /// Largest batch run.
    pub largest_batch: u64,
    /// Batches run row by row because that was measured cheaper (each row counts as a run).
    pub split_batches: u64,
    /// Prompt (multi-token) runs.
    pub prefill_runs: u64,
    /// Times rows were copied into a new group because the members changed.
    pub regroups: u64,
    /// Prompts that started from a cached prefix.
    pub prefix_hits: u64,
    /// Prompt tokens those prompts did not recompute.
    pub prefix_tokens: u64,
    /// Steps a lone sequence ran on its own thread, without the scheduler thread.
    pub direct_steps: u64,
    /// Bytes the prefix cache holds now: the whole KV buffers of its entries (every layer's
    /// keys and values, as allocated). Never above its budget.
    pub prefix_bytes: u64,
    /// Entries in the prefix cache now.
    pub prefix_entries: u64,
    /// Bytes of every KV buffer the scheduler holds now: open sequences' groups (allocated
    /// capacity, padding and rows of finished members included) and the prefix cache.
    pub kv_bytes: u64,
}

/// The decoder's end of its scheduler, shared by the [`super::Decoder`] and its sequences;
/// the scheduler thread ends once every holder is gone (the channel closes).
pub(super) struct Handle {
    tx: mpsc::Sender<Msg>,
    next_id: AtomicU64,
    /// Written once per run, by whichever thread ran it.
    stats: Arc<Mutex<Stats>>,
    /// The scheduler's state: locked by its thread while it handles a message, and by a
    /// lone sequence stepping on its own thread.
    state: Arc<Mutex<Scheduler>>,
    /// Messages sent and not yet accepted: while any is on its way a sequence does not step
    /// on its own thread, which could otherwise keep taking the lock from the scheduler
    /// thread holding a newcomer's first step (the lock is not fair).
    queued: Arc<AtomicUsize>,
    /// Whether a [`super::Lockstep`] hold is on.
    hold: Arc<Hold>,
}

impl Handle {
    /// Starts the scheduler thread of `graph`, which batches up to `max_batch` steps and
    /// keeps finished sequences' caches within `prefix_cache_bytes`.
    pub(super) fn spawn(graph: Arc<DecoderGraph>, max_batch: usize, prefix_cache_bytes: usize) -> Self {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(Stats::default()));
        let queued = Arc::new(AtomicUsize::new(0));
        let hold = Arc::new(Hold::default());
        let scheduler = Scheduler::new(graph, max_batch, prefix_cache_bytes, stats.clone(), queued.clone(), hold.clone());
        let state = Arc::new(Mutex::new(scheduler));
        let thread_state = state.clone();
        let spawned = std::thread::Builder::new().name("tensoras-batch".into()).spawn(move || serve(&thread_state, rx));
        if let Err(e) = spawned {
            // Without a thread every step sent is answered "scheduler stopped" (the channel
            // is closed); a lone sequence still steps on its own thread.
            tracing::error!("cannot start the decoder scheduler thread: {e}");
        }
        Self { tx, next_id: AtomicU64::new(1), stats, state, queued, hold }
    }

    fn send(&self, msg: Msg) -> Result<(), mpsc::SendError<Msg>> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.tx.send(msg)
    }

    pub(super) fn stats(&self) -> Stats {
        // A poisoned lock still holds the counts as they were.
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An id for a new sequence.
    pub(super) fn new_sequence(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends `ids` to sequence `seq` and returns the logits of the last position, once
    /// this step has run (possibly together with other sequences' steps).
    pub(super) async fn step(&self, seq: u64, scope: u64, ids: Vec<i64>, reused: &Arc<AtomicU64>) -> Result<Vec<f32>, NnError> {
        let ids = match self.step_here(seq, scope, ids, reused) {
            Ok(answer) => return answer,
            Err(ids) => ids,
        };
        let (reply, answer) = oneshot::channel();
        let stopped = || NnError::internal("the model's scheduler has stopped");
        self.send(Msg::Step { seq, scope, ids, reply, reused: reused.clone() }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs the step on the calling thread when `seq` is the only sequence the scheduler
    /// knows and its thread is idle; gives `ids` back otherwise. Only on a multi-threaded
    /// tokio runtime, where `block_in_place` moves the worker's other tasks elsewhere while
    /// ONNX Runtime runs.
    fn step_here(
        &self,
        seq: u64,
        scope: u64,
        ids: Vec<i64>,
        reused: &Arc<AtomicU64>,
    ) -> Result<Result<Vec<f32>, NnError>, Vec<i64>> {
        let multi_thread =
            tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            return Err(ids);
        }
        let mut scheduler = match self.state.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(ids),
        };
        if self.queued.load(Ordering::SeqCst) > 0 || self.hold.on() || !scheduler.alone(seq) {
            return Err(ids);
        }
        let (reply, mut answer) = oneshot::channel();
        let mut pending = Vec::new();
        scheduler.accept(Msg::Step { seq, scope, ids, reply, reused: reused.clone() }, &mut pending, &mut Vec::new());
        scheduler.count(|s| s.direct_steps += 1);
        let graph = scheduler.graph.clone();
        tokio::task::block_in_place(|| scheduler.run_pending(&graph, pending));
        scheduler.publish_memory(&graph);
        unlock_and_answer(scheduler);
        // `execute` answers every step it is given.
        Ok(answer.try_recv().unwrap_or_else(|_| Err(NnError::internal("the step was not answered"))))
    }

    /// Sequence `seq` is gone: its cache goes to the prefix cache or is freed.
    pub(super) fn close(&self, seq: u64) {
        // A closed channel means the scheduler is gone, and the cache with it.
        let _ = self.send(Msg::Close(seq));
    }

    /// Starts a [`super::Lockstep`] hold whose first run waits for `sequences` steps.
    pub(super) fn hold(&self, sequences: usize) {
        self.hold.first.store(sequences, Ordering::SeqCst);
        self.hold.holders.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends a hold that [`Self::hold`] started.
    pub(super) fn release(&self) {
        self.hold.holders.fetch_sub(1, Ordering::SeqCst);
        // Wakes a scheduler thread waiting for the hold; a closed channel has none.
        let _ = self.send(Msg::Release);
    }
}

/// The state of [`super::Lockstep`] holds, shared by the scheduler and the handle.
#[derive(Default)]
struct Hold {
    /// Holds alive.
    holders: AtomicUsize,
    /// Steps the next run waits for (0 once that run has gathered them).
    first: AtomicUsize,
}

impl Hold {
    fn on(&self) -> bool {
        self.holders.load(Ordering::SeqCst) > 0
    }
}

struct SeqState {
    scope: u64,
    /// The tokens in the cache.
    tokens: Vec<i64>,
    /// `None` before the first step, and after a failed run lost the cache.
    home: Option<Home>,
    /// Prompt tokens taken from the prefix cache, read by the sequence's owner
    /// ([`super::Sequence::take_reused`]) for the request's usage.
    reused: Arc<AtomicU64>,
}

impl SeqState {
    fn len(&self) -> usize {
        self.tokens.len()
    }
}

struct Step {
    seq: u64,
    ids: Vec<i64>,
    reply: Reply,
}

struct Scheduler {
    graph: Arc<DecoderGraph>,
    max_batch: usize,
    stats: Arc<Mutex<Stats>>,
    seqs: HashMap<u64, SeqState>,
    groups: KvGroups,
    /// Sequences that stepped in the last run: the next gathering waits for them.
    rhythm: HashSet<u64>,
    /// How long the last decode run took; the wait for stragglers is half of it.
    last_run: Duration,
    prefixes: PrefixCache,
    costs: RunCosts,
    /// The last batch of several ran row by row: steps run as they come, without waiting
    /// for the previous run's sequences, until a batch of several runs batched again.
    turns: bool,
    /// When the last run ended.
    ran_at: Instant,
    /// Answers not yet sent: those of a message's last run go out once the lock is
    /// released, so that a guest woken by its answer finds the scheduler free (and, alone,
    /// steps on its own thread at once).
    answers: Vec<Answer>,
    /// Messages sent to the scheduler thread and not yet accepted (the same counter as
    /// [`Handle::queued`]).
    queued: Arc<AtomicUsize>,
    hold: Arc<Hold>,
    /// Most bytes of KV buffers held since the heap was last trimmed.
    kv_peak: usize,
    /// The burst is over: trim the heap once the lock is released.
    trim_due: bool,
}

/// The scheduler thread: waits for a message without the lock, then handles it and what
/// follows under the lock, until every sender is gone.
fn serve(state: &Mutex<Scheduler>, rx: mpsc::Receiver<Msg>) {
    while let Ok(first) = rx.recv() {
        let mut scheduler = state.lock().unwrap_or_else(PoisonError::into_inner);
        scheduler.handle(first, &rx);
        let trim = std::mem::take(&mut scheduler.trim_due);
        unlock_and_answer(scheduler);
        if trim {
            // On a thread of its own: it takes 30-50 ms after a burst of 64 streams, which
            // the next sequences' steps need not wait for.
            let trimming = std::thread::Builder::new().name("tensoras-trim".into()).spawn(|| {
                let started = Instant::now();
                trim::release_free_memory();
                tracing::debug!(us = started.elapsed().as_micros() as u64, "returned the heap's free pages");
            });
            if let Err(e) = trimming {
                tracing::debug!("cannot start a thread to trim the heap: {e}");
            }
        }
    }
}

impl Scheduler {
    fn new(
        graph: Arc<DecoderGraph>,
        max_batch: usize,
        prefix_budget: usize,
        stats: Arc<Mutex<Stats>>,
        queued: Arc<AtomicUsize>,
        hold: Arc<Hold>,
    ) -> Self {
        Self {
            graph,
            max_batch,
            stats,
            seqs: HashMap::new(),
            groups: KvGroups::new(),
            rhythm: HashSet::new(),
            last_run: Duration::ZERO,
            prefixes: PrefixCache::new(prefix_budget),
            costs: RunCosts::default(),
            turns: false,
            ran_at: Instant::now(),
            answers: Vec::new(),
            queued,
            hold,
            kv_peak: 0,
            trim_due: false,
        }
    }

    fn count(&self, update: impl FnOnce(&mut Stats)) {
        update(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Whether `seq` is the only sequence known (or none is): nothing to batch it with.
    fn alone(&self, seq: u64) -> bool {
        self.seqs.keys().all(|&id| id == seq)
    }

    /// Handles the messages that arrived since the last run, and the ones that come while
    /// it waits for the previous run's sequences.
    fn handle(&mut self, first: Msg, rx: &mpsc::Receiver<Msg>) {
        let mut pending = Vec::new();
        let mut closed = Vec::new();
        self.receive(first, &mut pending, &mut closed);
        while let Ok(m) = rx.try_recv() {
            self.receive(m, &mut pending, &mut closed);
        }
        if self.hold.on() {
            self.wait_for_lockstep(rx, &mut pending, &mut closed);
        } else if !pending.is_empty() && self.max_batch > 1 && !self.turns {
            // (Taking turns, the last batch ran row by row: run what is here, so each
            // stream's guest works while another's step runs, as with batching off.)
            let (started, lockstep) = (Instant::now(), self.rhythm.len() > 1);
            self.wait_for_rhythm(rx, &mut pending, &mut closed);
            if lockstep && pending.len() > 1 {
                // From the end of the last run, so the wait for the first step counts
                // too; capped, as a member that long away is not in lockstep anyway.
                self.costs.record_wait(self.ran_at.elapsed().min(MAX_WAIT));
            }
            tracing::trace!(
                pending = pending.len(),
                wait_us = started.elapsed().as_micros() as u64,
                idle_us = self.ran_at.elapsed().as_micros() as u64,
                "gathered"
            );
        }
        let graph = self.graph.clone();
        for state in closed {
            self.retire(&graph, state);
        }
        self.run_pending(&graph, pending);
        self.publish_memory(&graph);
    }

    /// Puts the bytes held now into the stats, and asks for the heap to be trimmed when a
    /// burst is over: no sequence left, and much less held than at the peak.
    fn publish_memory(&mut self, graph: &DecoderGraph) {
        let kv = self.groups.bytes(graph);
        self.kv_peak = self.kv_peak.max(kv);
        if self.seqs.is_empty() && self.kv_peak - kv >= TRIM_AFTER {
            self.trim_due = true;
            self.kv_peak = kv;
        }
        let (prefix, entries) = (self.prefixes.bytes(), self.prefixes.len());
        self.count(|s| {
            s.kv_bytes = kv as u64;
            s.prefix_bytes = prefix as u64;
            s.prefix_entries = entries as u64;
        });
    }

    fn run_pending(&mut self, graph: &DecoderGraph, pending: Vec<Step>) {
        if !pending.is_empty() {
            self.execute(graph, pending);
            self.ran_at = Instant::now();
        }
    }

    /// [`Self::accept`] for a message that came through the channel.
    fn receive(&mut self, msg: Msg, pending: &mut Vec<Step>, closed: &mut Vec<SeqState>) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.accept(msg, pending, closed);
    }

    fn accept(&mut self, msg: Msg, pending: &mut Vec<Step>, closed: &mut Vec<SeqState>) {
        match msg {
            Msg::Step { seq, scope, ids, reply, reused } => {
                if pending.iter().any(|s| s.seq == seq) {
                    self.answers.push((reply, Err(NnError::internal("a step of this context is already running"))));
                } else {
                    self.seqs.entry(seq).or_insert(SeqState { scope, tokens: Vec::new(), home: None, reused });
                    pending.push(Step { seq, ids, reply });
                }
            }
            Msg::Close(seq) => {
                closed.extend(self.seqs.remove(&seq));
                self.rhythm.remove(&seq);
            }
            Msg::Release => {}
        }
    }

    /// Under a [`super::Lockstep`] hold: gathers steps until the hold's first count of them is
    /// pending (its first run only) and every open sequence has one, or the hold ends, or
    /// [`HOLD_LIMIT`] passes.
    fn wait_for_lockstep(&mut self, rx: &mpsc::Receiver<Msg>, pending: &mut Vec<Step>, closed: &mut Vec<SeqState>) {
        let deadline = Instant::now() + HOLD_LIMIT;
        while self.hold.on() {
            let first = self.hold.first.load(Ordering::SeqCst);
            if pending.len() >= first && self.seqs.keys().all(|id| pending.iter().any(|s| s.seq == *id)) {
                self.hold.first.store(0, Ordering::SeqCst);
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(pending = pending.len(), open = self.seqs.len(), "lockstep hold timed out");
                return;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(m) => self.receive(m, pending, closed),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Holds the gathered steps until every sequence of the previous run has sent its next
    /// one, or the deadline passes; late ones leave the rhythm.
    fn wait_for_rhythm(&mut self, rx: &mpsc::Receiver<Msg>, pending: &mut Vec<Step>, closed: &mut Vec<SeqState>) {
        let deadline = Instant::now() + (self.last_run / 2).clamp(MIN_WAIT, MAX_WAIT);
        while self.rhythm.iter().any(|id| !pending.iter().any(|s| s.seq == *id)) {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(m) => self.receive(m, pending, closed),
                // Timed out, or every sender is gone and no one is left to wait for.
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn execute(&mut self, graph: &DecoderGraph, pending: Vec<Step>) {
        let mut decode = Vec::new();
        let mut prompts = Vec::new();
        for step in pending {
            let Some(state) = self.seqs.get(&step.seq) else { continue };
            if let Err(e) = graph.check(state.len(), &step.ids) {
                self.answers.push((step.reply, Err(e)));
            } else if state.len() > 0 && state.home.is_none() {
                self.answers.push((step.reply, Err(NnError::internal("this context lost its cache in an earlier failed step"))));
            } else if step.ids.len() == 1 && state.len() > 0 {
                decode.push(step);
            } else {
                prompts.push(step);
            }
        }
        self.rhythm.clear();
        // Decode first, so running streams are not held up behind a long prompt.
        let mut decode = decode.into_iter().peekable();
        while decode.peek().is_some() {
            let chunk: Vec<Step> = decode.by_ref().take(self.max_batch).collect();
            let (started, n) = (Instant::now(), chunk.len() as u64);
            // Under a lockstep hold (tests) batches always run batched.
            let split = !self.hold.on() && self.costs.split(chunk.len());
            if chunk.len() > 1 {
                self.turns = split;
            }
            let ort: Duration =
                if split { chunk.into_iter().map(|step| self.run(graph, vec![step])).sum() } else { self.run(graph, chunk) };
            self.last_run = started.elapsed();
            // run_us also counts the time after the replies until this thread runs again
            // (a woken guest may take its core); ort_us is ONNX Runtime's alone.
            tracing::trace!(
                batch = n,
                split,
                run_us = self.last_run.as_micros() as u64,
                ort_us = ort.as_micros() as u64,
                "decode run"
            );
            self.count(|s| {
                if split {
                    s.decode_runs += n;
                    s.split_batches += 1;
                } else {
                    s.decode_runs += 1;
                    s.largest_batch = s.largest_batch.max(n);
                }
                s.decode_steps += n;
            });
        }
        for mut step in prompts {
            self.count(|s| s.prefill_runs += 1);
            if let Err(e) = self.reuse_prefix(graph, &mut step) {
                self.answers.push((step.reply, Err(e)));
                continue;
            }
            self.run(graph, vec![step]);
        }
    }

    /// Runs `steps` (all with the same number of new tokens) as one batch, answers each,
    /// and leaves their caches in one group; returns how long ONNX Runtime took.
    fn run(&mut self, graph: &DecoderGraph, steps: Vec<Step>) -> Duration {
        // The answers of earlier runs go out now, so their guests work while this one runs;
        // only the last run's wait for the lock's release.
        deliver(self.answers.drain(..));
        let members: Vec<u64> = steps.iter().map(|s| s.seq).collect();
        let group_id = match self.group_of(graph, &members) {
            Ok(id) => id,
            Err(e) => {
                for step in steps {
                    self.answers.push((step.reply, Err(e.clone())));
                }
                return Duration::ZERO;
            }
        };
        let Some(group) = self.groups.get_mut(group_id) else { return Duration::ZERO };
        // Rows in the group's order; `group_of` made the group exactly `members`.
        let mut by_seq: HashMap<u64, Step> = steps.into_iter().map(|s| (s.seq, s)).collect();
        let ordered: Vec<Step> = group.rows.iter().flatten().filter_map(|id| by_seq.remove(id)).collect();
        let n = ordered.first().map_or(1, |s| s.ids.len());
        let width = group.kv.width;
        let mut inputs = RunInputs {
            batch: ordered.len(),
            ids: Vec::with_capacity(ordered.len() * n),
            mask: Vec::with_capacity(ordered.len() * (width + n)),
            positions: Vec::with_capacity(ordered.len() * n),
        };
        for step in &ordered {
            let len = self.seqs.get(&step.seq).map_or(0, SeqState::len);
            inputs.ids.extend_from_slice(&step.ids);
            inputs.mask.extend(std::iter::repeat_n(0, width.saturating_sub(len)).chain(std::iter::repeat_n(1, len + n)));
            inputs.positions.extend(len as i64..(len + n) as i64);
        }
        let (started, rows) = (Instant::now(), inputs.batch);
        let result = graph.run(inputs, &mut group.kv);
        let ran = started.elapsed();
        if n == 1 && result.is_ok() {
            self.costs.record(rows, ran);
        }
        match result {
            Ok(logits) => {
                for (step, row) in ordered.into_iter().zip(logits) {
                    if let Some(state) = self.seqs.get_mut(&step.seq) {
                        state.tokens.extend_from_slice(&step.ids);
                    }
                    self.rhythm.insert(step.seq);
                    self.answers.push((step.reply, Ok(row)));
                }
            }
            Err(e) => {
                // A failed run may leave the cache consumed or half written: it is gone.
                self.groups.remove(group_id);
                for step in ordered {
                    if let Some(state) = self.seqs.get_mut(&step.seq) {
                        state.home = None;
                    }
                    self.answers.push((step.reply, Err(e.clone())));
                }
            }
        }
        ran
    }

    /// A group holding exactly `members`: the one they already share when nothing else is
    /// in it, otherwise a new one gathered from their rows.
    fn group_of(&mut self, graph: &DecoderGraph, members: &[u64]) -> Result<u64, NnError> {
        let homes: Vec<Option<Home>> = members.iter().map(|id| self.seqs.get(id).and_then(|s| s.home)).collect();
        if let Some(Some(first)) = homes.first() {
            let same = homes.iter().all(|h| h.is_some_and(|h| h.group == first.group));
            if same
                && self
                    .groups
                    .get(first.group)
                    .is_some_and(|g| g.rows.len() == members.len() && g.rows.iter().all(Option::is_some))
            {
                return Ok(first.group);
            }
        }
        let lens: Vec<usize> = members.iter().map(|id| self.seqs.get(id).map_or(0, SeqState::len)).collect();
        let width = lens.iter().copied().max().unwrap_or(0);
        let kv = if width == 0 {
            graph.empty_cache(members.len())?
        } else {
            self.count(|s| s.regroups += 1);
            let parts: Vec<Option<Part>> =
                homes.iter().zip(&lens).map(|(h, &len)| h.map(|home| Part { home, len, take: len })).collect();
            self.groups.gather(graph, &parts, width, graph.capacity(width))?
        };
        for home in homes {
            self.groups.leave(home);
        }
        let rows = members.iter().copied().map(Some).collect();
        let id = self.groups.insert(Group { kv, rows });
        for (row, seq) in members.iter().enumerate() {
            if let Some(state) = self.seqs.get_mut(seq) {
                state.home = Some(Home { group: id, row });
            }
        }
        Ok(id)
    }

    /// A closed sequence's cache goes to the prefix cache, or is freed.
    fn retire(&mut self, graph: &DecoderGraph, state: SeqState) {
        let Some(home) = state.home else { return };
        self.prefixes.keep(&mut self.groups, graph, state.scope, state.tokens, home);
    }

    /// Starts a new sequence's prompt from the longest cached prefix of the same scope.
    fn reuse_prefix(&mut self, graph: &DecoderGraph, step: &mut Step) -> Result<(), NnError> {
        let Some(state) = self.seqs.get(&step.seq) else { return Ok(()) };
        if state.len() > 0 {
            return Ok(());
        }
        let Some((kv, take)) = self.prefixes.reuse(&self.groups, graph, state.scope, &step.ids)? else { return Ok(()) };
        let group = self.groups.insert(Group { kv, rows: vec![Some(step.seq)] });
        if let Some(state) = self.seqs.get_mut(&step.seq) {
            state.tokens = step.ids.drain(..take).collect();
            state.home = Some(Home { group, row: 0 });
            state.reused.fetch_add(take as u64, Ordering::Relaxed);
        }
        self.count(|s| {
            s.prefix_hits += 1;
            s.prefix_tokens += take as u64;
        });
        Ok(())
    }
}
