//! A decoder LLM graph and its KV cache, run by ONNX Runtime.
//!
//! A decoder step takes only the new token ids; the attention mask, position ids and
//! `past_key_values.*` are the host's ([`KvCache`]). Graphs converted with
//! GroupQueryAttention update the cache in place (buffers with room for more positions,
//! bound as both past and present; [`in_place`]); other graphs return a new `present.*`
//! each step, which becomes the next step's past without a copy. The graph knows nothing
//! of scheduling: [`super::Decoder`] pairs it with the scheduler that steps concurrent
//! sequences together (docs/design/003-inference-abi.md).

use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::memory::Allocator;
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use crate::inference::environment::{OrtOptions, decoder_session};
use crate::inference::{NnError, NnErrorCode, catalog, in_place};

/// An in-place cache grows by this many positions at a time (one copy of the cache each
/// time), so a sequence is copied once per 256 tokens instead of every step.
const KV_CHUNK: usize = 256;

/// A decoder LLM graph in the standard layout (`input_ids`, `attention_mask`,
/// `position_ids`, `past_key_values.N.key/value` → `logits`, `present.N.key/value`).
///
/// Execution contexts of the server are [`super::Sequence`]s, stepped together by the
/// decoder's scheduler; [`DecoderSequence`] is the same step without the scheduler, for
/// the bare-loop benchmark and backend tests.
pub(super) struct DecoderGraph {
    session: Mutex<Session>,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    context_length: usize,
    has_position_ids: bool,
    in_place: bool,
    nbits_nodes: usize,
}

impl std::fmt::Debug for DecoderGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderGraph").field("layers", &self.layers).field("vocab", &self.vocab).finish()
    }
}

/// One batched run's inputs: `batch` rows of `n` new tokens each; `mask` is `batch` rows of
/// the cache's width + `n` (left-padded rows have `attention_mask` 0 in their padding).
pub(super) struct RunInputs {
    pub batch: usize,
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
    pub positions: Vec<i64>,
}

/// The KV cache of `rows` sequences run together: one tensor per `past_key_values.*`
/// input, `[rows, kv_heads, cap, head_dim]`, of which the first `width` positions are in
/// use; row `r` holds its sequence in positions `width - len .. width` (left padding,
/// zeros, before it). `cap` is `width` unless the graph updates the cache in place.
pub(super) struct KvCache {
    pub values: Vec<DynValue>,
    pub rows: usize,
    pub width: usize,
    pub cap: usize,
}

impl DecoderGraph {
    /// Loads `model.onnx` with the shapes from its config.
    pub(super) fn load(
        path: &Path,
        config: &catalog::GraphConfig,
        context_length: u32,
        opts: &OrtOptions,
    ) -> anyhow::Result<Self> {
        let (session, nbits_nodes) = decoder_session(path, opts)?;
        let names: Vec<&str> = session.inputs.iter().map(|i| i.name.as_str()).collect();
        anyhow::ensure!(names.contains(&"input_ids"), "{} has no input_ids input", path.display());
        anyhow::ensure!(
            config.n_layers > 0 && config.n_kv_heads > 0 && config.head_dim > 0 && config.vocab_size > 0,
            "config.json of {} lacks n_layers, n_kv_heads, head_dim or vocab_size",
            path.display()
        );
        let has_position_ids = names.contains(&"position_ids");
        Ok(Self {
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
        })
    }

    /// How many `MatMulNBits` nodes run on tensoras' kernel ([`crate::inference::nbits`]);
    /// 0: ONNX Runtime's kernel runs them all.
    pub(super) fn nbits_kernel_nodes(&self) -> usize {
        self.nbits_nodes
    }

    /// KV tensor shape of `batch` rows over `width` positions.
    pub(super) fn kv_shape(&self, batch: usize, width: usize) -> [usize; 4] {
        [batch, self.kv_heads, width, self.head_dim]
    }

    /// Number of `past_key_values.*` tensors (key and value per layer).
    pub(super) fn kv_tensors(&self) -> usize {
        2 * self.layers
    }

    /// Bytes of a cache of `rows` rows allocated for `cap` positions: every layer's keys
    /// and values, what its buffers hold whether the positions are used or not.
    pub(super) fn cache_bytes(&self, rows: usize, cap: usize) -> usize {
        self.kv_tensors() * self.kv_shape(rows, cap).iter().product::<usize>() * std::mem::size_of::<f32>()
    }

    /// Checks `ids` appended to a sequence of `len` tokens.
    pub(super) fn check(&self, len: usize, ids: &[i64]) -> Result<(), NnError> {
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
    pub(super) fn capacity(&self, width: usize) -> usize {
        if self.in_place { width.max(1).next_multiple_of(KV_CHUNK) } else { width }
    }

    /// An empty cache for `rows` rows (the first step's past).
    pub(super) fn empty_cache(&self, rows: usize) -> Result<KvCache, NnError> {
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
    pub(super) fn cache_from(&self, rows: usize, width: usize, cap: usize, buffers: Vec<Vec<f32>>) -> Result<KvCache, NnError> {
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
    pub(super) fn run(&self, inputs: RunInputs, kv: &mut KvCache) -> Result<Vec<Vec<f32>>, NnError> {
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
    pub(super) fn new(graph: Arc<DecoderGraph>) -> Self {
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
