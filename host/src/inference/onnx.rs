//! ONNX Runtime (through `ort`, loaded at run time from the PyPI `onnxruntime` wheel):
//! decoder sequences that keep their KV cache on the host between steps, and encoders.
//!
//! A decoder step takes only the new token ids; the attention mask, position ids and
//! `past_key_values.*` are the host's ([`KvCache`]). Graphs converted with
//! GroupQueryAttention update the cache in place (buffers with room for more positions,
//! bound as both past and present; [`in_place`]); other graphs return a new `present.*`
//! each step, which becomes the next step's past without a copy. Concurrent sequences of
//! one graph are stepped together by its scheduler ([`batch`];
//! docs/design/003-inference-abi.md).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use ort::memory::Allocator;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor};

use super::{batch, in_place, nbits};

/// An in-place cache grows by this many positions at a time (one copy of the cache each
/// time), so a sequence is copied once per 256 tokens instead of every step.
const KV_CHUNK: usize = 256;

/// How a wasi:nn call failed; `code` maps to `wasi:nn/errors.error-code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NnError {
    /// Category.
    pub code: NnErrorCode,
    /// What happened, for the guest.
    pub message: String,
}

/// Error categories (the subset of wasi:nn's that the backend produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NnErrorCode {
    /// Bad tensor name, type, shape or data.
    InvalidArgument,
    /// The sequence would exceed the context length.
    TooLarge,
    /// ONNX Runtime failed.
    RuntimeError,
}

impl NnError {
    fn invalid(message: impl Into<String>) -> Self {
        Self { code: NnErrorCode::InvalidArgument, message: message.into() }
    }
    pub(crate) fn runtime(e: impl std::fmt::Display) -> Self {
        Self { code: NnErrorCode::RuntimeError, message: format!("onnxruntime: {e}") }
    }
}

/// Where the ONNX Runtime library is and which device runs graphs.
#[derive(Debug, Clone)]
pub struct OrtOptions {
    /// `libonnxruntime.so*` to load; discovered when `None`.
    pub library: Option<PathBuf>,
    /// Intra-op threads per session.
    pub threads: usize,
    /// Ask for the CUDA execution provider.
    pub cuda: bool,
    /// Most decoder sequences stepped together in one run (1: no batching).
    pub max_batch: usize,
    /// Memory for the KV caches of finished sequences, reused by prompts that start with
    /// the same tokens (0: no prefix cache).
    pub prefix_cache_bytes: usize,
    /// Update the KV cache in place where the graph allows it (GroupQueryAttention, on
    /// the CPU); off, every step copies it, as other graphs do.
    pub kv_in_place: bool,
    /// Run decoders' `MatMulNBits` nodes on tensoras' own kernel ([`nbits`]) where the
    /// CPU has AVX-512F; off, or where it cannot, ONNX Runtime's kernel runs them.
    pub nbits_kernel: bool,
    /// Let ONNX Runtime's intra-op threads spin on after a run ends, as it does by default.
    /// Off, they still spin between the nodes of a run but park when it ends: a loop that
    /// calls run back to back pays one wake-up a step, while a server whose guest samples,
    /// detokenizes and streams between steps gets its cores back for that work (on a
    /// 2-core machine the spinning thread otherwise takes one of them).
    pub spin_between_runs: bool,
}

/// Loads ONNX Runtime once per process. The error says how to fix a missing library.
pub fn init(opts: &OrtOptions) -> anyhow::Result<PathBuf> {
    let path = match &opts.library {
        Some(p) => p.clone(),
        None => discover_library().ok_or_else(|| {
            anyhow::anyhow!(
                "ONNX Runtime not found. Install it with `pip install onnxruntime` (or run `make run`, which \
                 does), or point TENSORAS_ORT_LIB at libonnxruntime.so"
            )
        })?,
    };
    anyhow::ensure!(path.is_file(), "ONNX Runtime library {} does not exist", path.display());
    ort::init_from(path.to_string_lossy())
        .with_name("tensoras")
        .commit()
        .map_err(|e| anyhow::anyhow!("loading ONNX Runtime from {}: {e}", path.display()))?;
    Ok(path)
}

/// Looks for `onnxruntime/capi/libonnxruntime.so*` in the project's Python environments
/// and in the `python3` on PATH.
fn discover_library() -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let cache = Path::new(&home).join(".cache/tensoras");
        for venv in ["venv", "importer-venv"] {
            if let Ok(libs) = std::fs::read_dir(cache.join(venv).join("lib")) {
                roots.extend(libs.flatten().map(|e| e.path().join("site-packages/onnxruntime/capi")));
            }
        }
    }
    let probe = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))"])
        .output();
    if let Some(out) = probe.ok().filter(|o| o.status.success()) {
        roots.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi"));
    }
    roots.into_iter().find_map(|dir| {
        let mut libs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
            .collect();
        libs.sort();
        libs.pop()
    })
}

fn builder(opts: &OrtOptions) -> anyhow::Result<ort::session::builder::SessionBuilder> {
    let builder = Session::builder()
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
        .and_then(|b| b.with_intra_threads(opts.threads.max(1)))
        .and_then(super::trim::without_cpu_arena)
        .and_then(|b| if opts.spin_between_runs { Ok(b) } else { b.with_config_entry("session.force_spinning_stop", "1") })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if opts.cuda { with_cuda(builder) } else { Ok(builder) }
}

fn session(path: &Path, opts: &OrtOptions) -> anyhow::Result<Session> {
    builder(opts)?.commit_from_file(path).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))
}

/// A decoder's session, with its `MatMulNBits` nodes on tensoras' kernel where it covers
/// them all (CPU only: on CUDA it would copy every activation to the host); returns how
/// many nodes run on it. Where the kernel refuses a node, or the session fails with it,
/// the graph is loaded again with ONNX Runtime's kernel, with a warning.
fn decoder_session(path: &Path, opts: &OrtOptions) -> anyhow::Result<(Session, usize)> {
    if opts.nbits_kernel && !opts.cuda && nbits::available() {
        let created = Arc::new(AtomicUsize::new(0));
        let with_kernel = nbits::domain(created.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|domain| builder(opts)?.with_operators(domain).map_err(|e| anyhow::anyhow!("{e}")))
            .and_then(|b| b.commit_from_file(path).map_err(|e| anyhow::anyhow!("{e}")));
        match with_kernel {
            Ok(session) => return Ok((session, created.load(Ordering::Relaxed))),
            Err(e) => tracing::warn!(
                "{}: tensoras' MatMulNBits kernel cannot run this graph ({e}); using ONNX Runtime's kernel",
                path.display()
            ),
        }
    }
    Ok((session(path, opts)?, 0))
}

#[cfg(feature = "cuda")]
fn with_cuda(builder: ort::session::builder::SessionBuilder) -> anyhow::Result<ort::session::builder::SessionBuilder> {
    use ort::execution_providers::CUDAExecutionProvider;
    match builder.clone().with_execution_providers([CUDAExecutionProvider::default().build().error_on_failure()]) {
        Ok(b) => Ok(b),
        Err(e) => {
            tracing::warn!(
                "CUDA execution provider unavailable ({e}); running on CPU. For the GPU, load \
                 onnxruntime-gpu's library (pip install onnxruntime-gpu, CUDA 12 + cuDNN 9 on the \
                 library path; TENSORAS_ORT_LIB points at it)"
            );
            Ok(builder)
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(builder: ort::session::builder::SessionBuilder) -> anyhow::Result<ort::session::builder::SessionBuilder> {
    tracing::warn!("CUDA was requested but this build has no `cuda` feature; running on CPU");
    Ok(builder)
}

/// A decoder LLM graph in the standard layout (`input_ids`, `attention_mask`,
/// `position_ids`, `past_key_values.N.key/value` → `logits`, `present.N.key/value`).
///
/// Execution contexts of the server are [`batch::Sequence`]s, stepped together by the
/// graph's scheduler; [`DecoderSequence`] is the same step without the scheduler, for
/// the bare-loop benchmark and backend tests.
pub struct DecoderGraph {
    session: Mutex<Session>,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    context_length: usize,
    has_position_ids: bool,
    in_place: bool,
    nbits_nodes: usize,
    scheduler: batch::Handle,
}

impl std::fmt::Debug for DecoderGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderGraph").field("layers", &self.layers).field("vocab", &self.vocab).finish()
    }
}

/// One batched run's inputs: `batch` rows of `n` new tokens each; `mask` is `batch` rows of
/// the cache's width + `n` (left-padded rows have `attention_mask` 0 in their padding).
pub(crate) struct RunInputs {
    pub batch: usize,
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
    pub positions: Vec<i64>,
}

/// The KV cache of `rows` sequences run together: one tensor per `past_key_values.*`
/// input, `[rows, kv_heads, cap, head_dim]`, of which the first `width` positions are in
/// use; row `r` holds its sequence in positions `width - len .. width` (left padding,
/// zeros, before it). `cap` is `width` unless the graph updates the cache in place.
pub(crate) struct KvCache {
    pub values: Vec<DynValue>,
    pub rows: usize,
    pub width: usize,
    pub cap: usize,
}

impl DecoderGraph {
    /// Loads `model.onnx` with the shapes from its config and starts its scheduler, which
    /// steps up to `opts.max_batch` sequences in one run and keeps finished sequences'
    /// caches within `opts.prefix_cache_bytes`.
    pub fn load(
        path: &Path,
        config: &super::catalog::GraphConfig,
        context_length: u32,
        opts: &OrtOptions,
    ) -> anyhow::Result<Arc<Self>> {
        let (session, nbits_nodes) = decoder_session(path, opts)?;
        let names: Vec<&str> = session.inputs.iter().map(|i| i.name.as_str()).collect();
        anyhow::ensure!(names.contains(&"input_ids"), "{} has no input_ids input", path.display());
        anyhow::ensure!(
            config.n_layers > 0 && config.n_kv_heads > 0 && config.head_dim > 0 && config.vocab_size > 0,
            "config.json of {} lacks n_layers, n_kv_heads, head_dim or vocab_size",
            path.display()
        );
        let has_position_ids = names.contains(&"position_ids");
        Ok(Arc::new_cyclic(|graph| Self {
            session: Mutex::new(session),
            layers: config.n_layers,
            kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            vocab: config.vocab_size,
            context_length: context_length as usize,
            has_position_ids,
            // CPU only: with CUDA the bound host buffers would be copied to the device and
            // back each run, and that path has not run on a GPU yet.
            in_place: opts.kv_in_place && !opts.cuda && config.kv_in_place(),
            nbits_nodes,
            scheduler: batch::Handle::spawn(graph.clone(), opts.max_batch.max(1), opts.prefix_cache_bytes),
        }))
    }

    /// A new, empty execution context stepped by the graph's scheduler; it reuses cached
    /// prompt prefixes only of sequences with the same `scope` (the tenant).
    pub fn sequence(self: &Arc<Self>, scope: u64) -> batch::Sequence {
        batch::Sequence::new(self.clone(), scope)
    }

    /// How many `MatMulNBits` nodes run on tensoras' kernel ([`nbits`]); 0: ONNX
    /// Runtime's kernel runs them all.
    pub fn nbits_kernel_nodes(&self) -> usize {
        self.nbits_nodes
    }

    /// What the scheduler has done so far.
    pub fn batch_stats(&self) -> batch::Stats {
        self.scheduler.stats()
    }

    /// Holds the scheduler in lockstep until the guard is dropped, so a test sees the same
    /// batches on any machine: its next run waits for `sequences` sequences' steps, each
    /// later one for a step of every open sequence; no step runs on its caller's thread
    /// and batches are never split by cost ([`batch::Lockstep`]).
    pub fn lockstep(self: &Arc<Self>, sequences: usize) -> batch::Lockstep {
        batch::Lockstep::new(self.clone(), sequences)
    }

    pub(crate) fn scheduler(&self) -> &batch::Handle {
        &self.scheduler
    }

    /// KV tensor shape of `batch` rows over `width` positions.
    pub(crate) fn kv_shape(&self, batch: usize, width: usize) -> [usize; 4] {
        [batch, self.kv_heads, width, self.head_dim]
    }

    /// Number of `past_key_values.*` tensors (key and value per layer).
    pub(crate) fn kv_tensors(&self) -> usize {
        2 * self.layers
    }

    /// Bytes of a cache of `rows` rows allocated for `cap` positions: every layer's keys
    /// and values, what its buffers hold whether the positions are used or not.
    pub(crate) fn cache_bytes(&self, rows: usize, cap: usize) -> usize {
        self.kv_tensors() * self.kv_shape(rows, cap).iter().product::<usize>() * std::mem::size_of::<f32>()
    }

    /// Checks `ids` appended to a sequence of `len` tokens.
    pub(crate) fn check(&self, len: usize, ids: &[i64]) -> Result<(), NnError> {
        if ids.is_empty() {
            return Err(NnError::invalid("input_ids must hold at least one token"));
        }
        if let Some(bad) = ids.iter().find(|&&t| t < 0 || t as usize >= self.vocab) {
            return Err(NnError::invalid(format!("token id {bad} is outside the vocabulary (0..{})", self.vocab)));
        }
        let total = len + ids.len();
        if total > self.context_length {
            return Err(NnError {
                code: NnErrorCode::TooLarge,
                message: format!("sequence of {total} tokens exceeds the context length of {}", self.context_length),
            });
        }
        Ok(())
    }

    /// Positions a cache `width` wide is allocated with.
    pub(crate) fn capacity(&self, width: usize) -> usize {
        if self.in_place { width.max(1).next_multiple_of(KV_CHUNK) } else { width }
    }

    /// An empty cache for `rows` rows (the first step's past).
    pub(crate) fn empty_cache(&self, rows: usize) -> Result<KvCache, NnError> {
        if self.in_place {
            let cap = self.capacity(0);
            let len = self.kv_shape(rows, cap).iter().product();
            return self.cache_from(rows, 0, cap, (0..self.kv_tensors()).map(|_| vec![0f32; len]).collect());
        }
        // ort rejects zero-length dimensions in from_array; an allocated empty tensor works.
        let shape = self.kv_shape(rows, 0);
        let values = (0..self.kv_tensors())
            .map(|_| Tensor::<f32>::new(&Allocator::default(), shape).map(|t| t.into_dyn()).map_err(NnError::runtime))
            .collect::<Result<_, _>>()?;
        Ok(KvCache { values, rows, width: 0, cap: 0 })
    }

    /// A cache from `kv_tensors()` buffers laid out `[rows, kv_heads, cap, head_dim]`.
    pub(crate) fn cache_from(&self, rows: usize, width: usize, cap: usize, buffers: Vec<Vec<f32>>) -> Result<KvCache, NnError> {
        let shape = self.kv_shape(rows, cap);
        let values = buffers
            .into_iter()
            .map(|b| Tensor::from_array((shape, b)).map(|t| t.into_dyn()).map_err(NnError::runtime))
            .collect::<Result<_, _>>()?;
        Ok(KvCache { values, rows, width, cap })
    }

    /// Copies `kv` into buffers with room for `need` positions.
    fn grow(&self, kv: &mut KvCache, need: usize) -> Result<(), NnError> {
        let cap = self.capacity(need);
        let (heads, dim) = (self.kv_heads, self.head_dim);
        let mut buffers = Vec::with_capacity(kv.values.len());
        for value in &kv.values {
            let (_, old) = value.try_extract_tensor::<f32>().map_err(NnError::runtime)?;
            let mut buf = vec![0f32; kv.rows * heads * cap * dim];
            for plane in 0..kv.rows * heads {
                let (src, dst) = (plane * kv.cap * dim, plane * cap * dim);
                buf[dst..dst + kv.width * dim].copy_from_slice(&old[src..src + kv.width * dim]);
            }
            buffers.push(buf);
        }
        *kv = self.cache_from(kv.rows, kv.width, cap, buffers)?;
        Ok(())
    }

    /// One run over `kv`, which then holds the new positions too: returns the last
    /// position's logits of each row (one `vocab`-wide vector a row, copied straight out
    /// of ONNX Runtime's output). After a failed run the cache is not to be used again.
    pub(crate) fn run(&self, inputs: RunInputs, kv: &mut KvCache) -> Result<Vec<Vec<f32>>, NnError> {
        let RunInputs { batch, ids, mask, positions } = inputs;
        if batch == 0 || ids.len() % batch != 0 || mask.len() % batch != 0 || kv.rows != batch {
            return Err(NnError::runtime(format!("malformed batch of {batch} rows")));
        }
        let (n, total) = (ids.len() / batch, mask.len() / batch);
        if total != kv.width + n {
            return Err(NnError::runtime(format!("mask of {total} positions for a cache of {} and {n} new", kv.width)));
        }
        let ids = Tensor::from_array(([batch, n], ids)).map_err(NnError::runtime)?;
        let mask = Tensor::from_array(([batch, total], mask)).map_err(NnError::runtime)?;
        let positions = Tensor::from_array(([batch, n], positions)).map_err(NnError::runtime)?;
        let past_name = |i: usize| format!("past_key_values.{}.{}", i / 2, if i.is_multiple_of(2) { "key" } else { "value" });
        let present_name = |i: usize| format!("present.{}.{}", i / 2, if i.is_multiple_of(2) { "key" } else { "value" });
        if self.in_place {
            if total > kv.cap {
                self.grow(kv, total)?;
            }
            let logits = Tensor::<f32>::new(&Allocator::default(), [batch, 1, self.vocab]).map_err(NnError::runtime)?;
            let mut session = self.session.lock().map_err(|_| NnError::runtime("session lock poisoned"))?;
            let mut binding = session.create_binding().map_err(NnError::runtime)?;
            binding.bind_input("input_ids", &ids).map_err(NnError::runtime)?;
            binding.bind_input("attention_mask", &mask).map_err(NnError::runtime)?;
            if self.has_position_ids {
                binding.bind_input("position_ids", &positions).map_err(NnError::runtime)?;
            }
            in_place::bind_output(&mut binding, "logits", &logits).map_err(NnError::runtime)?;
            for (i, value) in kv.values.iter().enumerate() {
                binding.bind_input(past_name(i), value).map_err(NnError::runtime)?;
                in_place::bind_output(&mut binding, &present_name(i), value).map_err(NnError::runtime)?;
            }
            in_place::run(&mut session, &binding).map_err(NnError::runtime)?;
            drop(binding);
            kv.width = total;
            let (_, data) = logits.extract_tensor();
            return Ok(data.chunks(self.vocab).map(<[f32]>::to_vec).collect());
        }
        let mut feed: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::with_capacity(3 + kv.values.len());
        feed.push(("input_ids".into(), ids.into()));
        feed.push(("attention_mask".into(), mask.into()));
        if self.has_position_ids {
            feed.push(("position_ids".into(), positions.into()));
        }
        for (i, value) in std::mem::take(&mut kv.values).into_iter().enumerate() {
            feed.push((past_name(i), value.into()));
        }
        let mut session = self.session.lock().map_err(|_| NnError::runtime("session lock poisoned"))?;
        let mut out = session.run(feed).map_err(NnError::runtime)?;
        let logits = out.get("logits").ok_or_else(|| NnError::runtime("graph has no logits output"))?;
        let (shape, data) = logits.try_extract_tensor::<f32>().map_err(NnError::runtime)?;
        // Last position of each row, whether the graph already sliced it or not.
        let row = data.len() / batch;
        if row < self.vocab || data.len() % batch != 0 || shape.last().copied() != Some(self.vocab as i64) {
            return Err(NnError::runtime(format!("unexpected logits shape {shape:?}")));
        }
        let last = (0..batch).map(|r| data[(r + 1) * row - self.vocab..(r + 1) * row].to_vec()).collect();
        let mut present = Vec::with_capacity(self.kv_tensors());
        for i in 0..self.kv_tensors() {
            let name = present_name(i);
            present.push(out.remove(&name).ok_or_else(|| NnError::runtime(format!("graph has no {name} output")))?);
        }
        *kv = KvCache { values: present, rows: batch, width: total, cap: total };
        Ok(last)
    }
}

/// One sequence stepped directly on the calling thread, outside the scheduler: its KV
/// cache lives here between steps.
pub struct DecoderSequence {
    graph: Arc<DecoderGraph>,
    kv: Option<KvCache>,
}

impl std::fmt::Debug for DecoderSequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderSequence").field("len", &self.len()).finish()
    }
}

impl DecoderSequence {
    /// An empty sequence.
    pub fn new(graph: Arc<DecoderGraph>) -> Self {
        Self { graph, kv: None }
    }

    /// Tokens held so far.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |kv| kv.width)
    }

    /// Whether nothing has been computed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `ids` and returns the logits of the last position.
    pub fn step(&mut self, ids: &[i64]) -> Result<Vec<f32>, NnError> {
        let g = &self.graph;
        let len = self.len();
        g.check(len, ids)?;
        let total = len + ids.len();
        let mut kv = match self.kv.take() {
            Some(kv) => kv,
            None => g.empty_cache(1)?,
        };
        let logits = g.run(
            RunInputs { batch: 1, ids: ids.to_vec(), mask: vec![1; total], positions: (len as i64..total as i64).collect() },
            &mut kv,
        )?;
        self.kv = Some(kv);
        logits.into_iter().next().ok_or_else(|| NnError::runtime("a one-row run returned no logits"))
    }
}

/// A sentence encoder (`input_ids`, `attention_mask`[, `token_type_ids`] → `last_hidden_state`).
pub struct EncoderGraph {
    session: Mutex<Session>,
    hidden: usize,
    context_length: usize,
    has_token_type_ids: bool,
}

impl std::fmt::Debug for EncoderGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderGraph").field("hidden", &self.hidden).finish()
    }
}

impl EncoderGraph {
    /// Loads `model.onnx`.
    pub fn load(
        path: &Path,
        config: &super::catalog::GraphConfig,
        context_length: u32,
        opts: &OrtOptions,
    ) -> anyhow::Result<Self> {
        let session = session(path, opts)?;
        let has_token_type_ids = session.inputs.iter().any(|i| i.name == "token_type_ids");
        anyhow::ensure!(config.hidden_size > 0, "config.json of {} lacks hidden_size", path.display());
        Ok(Self {
            session: Mutex::new(session),
            hidden: config.hidden_size,
            context_length: context_length as usize,
            has_token_type_ids,
        })
    }

    /// Embedding width.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Runs a `[batch, seq]` batch; returns `last_hidden_state` `[batch, seq, hidden]`.
    pub fn encode(
        &self,
        batch: usize,
        seq: usize,
        ids: Vec<i64>,
        mask: Vec<i64>,
        types: Option<Vec<i64>>,
    ) -> Result<Vec<f32>, NnError> {
        if batch == 0 || seq == 0 || ids.len() != batch * seq || mask.len() != batch * seq {
            return Err(NnError::invalid(format!(
                "input_ids and attention_mask must both be [batch, seq] = [{batch}, {seq}] with batch, seq > 0"
            )));
        }
        if seq > self.context_length {
            return Err(NnError {
                code: NnErrorCode::TooLarge,
                message: format!("sequence of {seq} tokens exceeds the model's limit of {}", self.context_length),
            });
        }
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
            ("input_ids".into(), Tensor::from_array(([batch, seq], ids)).map_err(NnError::runtime)?.into()),
            ("attention_mask".into(), Tensor::from_array(([batch, seq], mask)).map_err(NnError::runtime)?.into()),
        ];
        if self.has_token_type_ids {
            let types = types.unwrap_or_else(|| vec![0; batch * seq]);
            if types.len() != batch * seq {
                return Err(NnError::invalid("token_type_ids must be [batch, seq] like input_ids"));
            }
            inputs.push(("token_type_ids".into(), Tensor::from_array(([batch, seq], types)).map_err(NnError::runtime)?.into()));
        }
        let mut session = self.session.lock().map_err(|_| NnError::runtime("session lock poisoned"))?;
        let out = session.run(inputs).map_err(NnError::runtime)?;
        let hidden = out.get("last_hidden_state").ok_or_else(|| NnError::runtime("graph has no last_hidden_state output"))?;
        let (_, data) = hidden.try_extract_tensor::<f32>().map_err(NnError::runtime)?;
        if data.len() != batch * seq * self.hidden {
            return Err(NnError::runtime(format!(
                "last_hidden_state has {} values, expected {}",
                data.len(),
                batch * seq * self.hidden
            )));
        }
        Ok(data.to_vec())
    }
}

/// Loads a graph for an installed model.
pub fn load_graph(
    model: &super::catalog::Model,
    installed: &super::catalog::Installed,
    opts: &OrtOptions,
) -> anyhow::Result<Graph> {
    let path = installed.graph_path();
    let ctx = model.context_length();
    Ok(match model.manifest.kind {
        super::catalog::ModelKind::Chat => Graph::Decoder(
            DecoderGraph::load(&path, &installed.config, ctx, opts).with_context(|| format!("model {}", model.manifest.id))?,
        ),
        super::catalog::ModelKind::Embedding => Graph::Encoder(Arc::new(
            EncoderGraph::load(&path, &installed.config, ctx, opts).with_context(|| format!("model {}", model.manifest.id))?,
        )),
    })
}

/// A loaded graph.
#[derive(Debug, Clone)]
pub enum Graph {
    /// Decoder LLM.
    Decoder(Arc<DecoderGraph>),
    /// Encoder.
    Encoder(Arc<EncoderGraph>),
}
