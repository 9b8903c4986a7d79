//! A decoder LLM: its graph, and the scheduler that steps its concurrent sequences
//! together (continuous batching).
//!
//! [`Decoder`] is the one owner of both. The graph ([`graph`]) runs ONNX Runtime and
//! knows nothing of scheduling. The scheduler ([`scheduler`]) batches steps, keeps the
//! sequences' KV caches in groups ([`groups`]), keeps finished ones for prompts that start
//! the same ([`prefix_cache`]) and decides by measured cost whether a batch runs batched or
//! row by row ([`costs`]). Its thread holds the graph and ends once the decoder and every
//! sequence are gone. Tests make batching deterministic with a [`Lockstep`] hold.

mod costs;
mod graph;
mod groups;
mod prefix_cache;
mod scheduler;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use self::graph::DecoderGraph;
pub use self::graph::DecoderSequence;
use self::scheduler::Handle;
pub use self::scheduler::Stats;
use super::environment::OrtOptions;
use super::{NnError, catalog};

/// A loaded decoder: the graph and its scheduler.
pub struct Decoder {
    graph: Arc<DecoderGraph>,
    scheduler: Arc<Handle>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("graph", &self.graph).finish_non_exhaustive()
    }
}

impl Decoder {
    /// Loads `model.onnx` with the shapes from its config and starts its scheduler, which
    /// steps up to `opts.max_batch` sequences in one run and keeps finished sequences'
    /// caches within `opts.prefix_cache_bytes`.
    pub fn load(path: &Path, config: &catalog::GraphConfig, context_length: u32, opts: &OrtOptions) -> anyhow::Result<Self> {
        let graph = Arc::new(DecoderGraph::load(path, config, context_length, opts)?);
        let scheduler = Arc::new(Handle::spawn(graph.clone(), opts.max_batch.max(1), opts.prefix_cache_bytes));
        Ok(Self { graph, scheduler })
    }

    /// A new, empty execution context stepped by the scheduler; it reuses cached prompt
    /// prefixes only of sequences with the same `scope` (the tenant).
    pub fn sequence(&self, scope: u64) -> Sequence {
        Sequence { id: self.scheduler.new_sequence(), scope, scheduler: self.scheduler.clone(), reused: Arc::default() }
    }

    /// A sequence stepped on the calling thread without the scheduler: the bare loop the
    /// decode benchmark and the backend tests measure against.
    pub fn unbatched(&self) -> DecoderSequence {
        DecoderSequence::new(self.graph.clone())
    }

    /// How many `MatMulNBits` nodes run on tensoras' kernel; 0: ONNX Runtime's kernel runs
    /// them all.
    pub fn nbits_kernel_nodes(&self) -> usize {
        self.graph.nbits_kernel_nodes()
    }

    /// What the scheduler has done so far.
    pub fn batch_stats(&self) -> Stats {
        self.scheduler.stats()
    }

    /// Holds the scheduler in lockstep until the guard is dropped ([`Lockstep`]).
    pub fn lockstep(&self, sequences: usize) -> Lockstep {
        self.scheduler.hold(sequences);
        Lockstep { scheduler: self.scheduler.clone() }
    }
}

/// One execution context of a decoder: a sequence whose KV cache the scheduler keeps.
/// Dropping it frees the cache (or hands it to the prefix cache).
pub struct Sequence {
    id: u64,
    scope: u64,
    scheduler: Arc<Handle>,
    /// Prompt tokens the scheduler took from the prefix cache for this sequence.
    reused: Arc<AtomicU64>,
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence").field("id", &self.id).finish()
    }
}

impl Sequence {
    /// Appends `ids` and returns the logits of the last position, once the scheduler has
    /// run this step (possibly together with other sequences' steps).
    pub async fn step(&self, ids: Vec<i64>) -> Result<Vec<f32>, NnError> {
        self.scheduler.step(self.id, self.scope, ids, &self.reused).await
    }

    /// The prompt tokens taken from the prefix cache since the last call: counted once,
    /// as the cached part of the request's prompt (OpenAI's `cached_tokens`).
    pub fn take_reused(&self) -> u64 {
        self.reused.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Sequence {
    fn drop(&mut self) {
        self.scheduler.close(self.id);
    }
}

/// A test hook that makes batching deterministic ([`Decoder::lockstep`]): while it lives,
/// the scheduler's next run waits until `sequences` sequences have a step pending, and
/// every later run until each open sequence has one (a closed sequence no longer counts),
/// instead of the short deadline that normally keeps streams together. No step runs on its
/// caller's thread, and a batch is never run row by row. A hold that waits more than 30 s
/// runs what it has. Dropping it returns the scheduler to normal.
pub struct Lockstep {
    scheduler: Arc<Handle>,
}

impl std::fmt::Debug for Lockstep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockstep").finish_non_exhaustive()
    }
}

impl Drop for Lockstep {
    fn drop(&mut self) {
        self.scheduler.release();
    }
}
