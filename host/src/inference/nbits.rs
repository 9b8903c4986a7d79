//! tensoras' own CPU kernel for `com.microsoft::MatMulNBits`, exact in f32, registered with
//! ONNX Runtime as a custom operator in place of its built-in kernel.
//!
//! Why: a SmolLM2 decode step is almost all 4-bit matrix-vector products, and ONNX
//! Runtime's f32 kernel for them runs at ~11 GMAC/s a core, which left single-stream
//! decode behind llama.cpp on the same weights. Its int8 path is faster but changes the
//! logits (the 135M model stops answering "Paris"). This kernel keeps the f32 product of
//! the dequantized weights: each block of 32 codes is widened with one table lookup
//! (`vpermps` on the block's 16 values `(code - zero_point) * scale`, the same f32 weights
//! ONNX Runtime computes) and multiplied by up to 4 activation rows at once with FMAs;
//! from [`DENSE_ROWS`] rows on (prompts) a task's columns are dequantized once and
//! multiplied as a dense f32 product.
//!
//! A custom domain named `com.microsoft` with an op `MatMulNBits` takes precedence over
//! ONNX Runtime's own kernel (checked with ORT 1.32), so the model file stays standard:
//! Python, CUDA and the importer's tests run it with ORT's kernel. What this kernel does
//! not cover (bits other than 4 and 8, blocks other than 32, int8 activations
//! `accuracy_level=4`, `g_idx`, `bias`) is refused when the kernel is created, and the
//! session is then loaded with ONNX Runtime's kernel instead ([`super::onnx`]).
#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ort::operator::io::{OperatorInput, OperatorOutput};
use ort::operator::kernel::{Kernel, KernelAttributes, KernelContext};
use ort::operator::{Operator, OperatorDomain};
use ort::tensor::TensorElementType;

/// Values a quantization block holds (the only block size the kernel covers).
const BLOCK: usize = 32;
/// Output features one parallel task computes: their weights (~6 KB for K = 576) stay in
/// L1 while every row tile of the activations passes over them.
const TASK_COLUMNS: usize = 16;

/// Whether this CPU can run the kernel.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The `com.microsoft` domain holding the kernel; `created` counts the graph nodes that
/// ended up on it.
pub(super) fn domain(created: Arc<AtomicUsize>) -> ort::Result<OperatorDomain> {
    OperatorDomain::new("com.microsoft")?.add(MatMulNBits { created })
}

struct MatMulNBits {
    created: Arc<AtomicUsize>,
}

fn refuse(why: impl std::fmt::Display) -> ort::Error {
    ort::Error::new(format!("tensoras MatMulNBits kernel: {why}"))
}

impl Operator for MatMulNBits {
    fn name(&self) -> &str {
        "MatMulNBits"
    }

    fn inputs(&self) -> Vec<OperatorInput> {
        use TensorElementType::{Float32, Int32, Uint8};
        vec![
            OperatorInput::required(Float32), // A
            OperatorInput::required(Uint8),   // B: [N, blocks, blob]
            OperatorInput::required(Float32), // scales: [N * blocks]
            OperatorInput::optional(Uint8),   // zero_points
            OperatorInput::optional(Int32),   // g_idx (refused)
            OperatorInput::optional(Float32), // bias (refused)
        ]
    }

    fn outputs(&self) -> Vec<OperatorOutput> {
        vec![OperatorOutput::required(TensorElementType::Float32)]
    }

    fn create_kernel(&self, attrs: &KernelAttributes) -> ort::Result<Box<dyn Kernel>> {
        let int = |name: &str| attrs.get::<i64>(name);
        let (Some(k), Some(n)) = (int("K"), int("N")) else { return Err(refuse("K and N attributes are required")) };
        let bits = int("bits").unwrap_or(4);
        let block = int("block_size").unwrap_or(0);
        let accuracy = int("accuracy_level").unwrap_or(0);
        if bits != 4 && bits != 8 {
            return Err(refuse(format_args!("bits={bits} (covers 4 and 8)")));
        }
        if block != BLOCK as i64 {
            return Err(refuse(format_args!("block_size={block} (covers {BLOCK})")));
        }
        if accuracy >= 4 {
            return Err(refuse("accuracy_level=4 asks for int8 activations"));
        }
        if attrs.inputs()?.iter().skip(4).any(|i| !i.name.is_empty()) {
            return Err(refuse("g_idx and bias inputs are not covered"));
        }
        if k <= 0 || n <= 0 {
            return Err(refuse(format_args!("K={k}, N={n}")));
        }
        let (k, n) = (k as usize, n as usize);
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(NBitsKernel {
            layout: Layout { k, n, bits: bits as usize, blocks: k.div_ceil(BLOCK) },
            x: Activations::default(),
        }))
    }
}

/// A node's shapes, from its attributes.
#[derive(Debug, Clone, Copy)]
struct Layout {
    k: usize,
    n: usize,
    bits: usize,
    blocks: usize,
}

impl Layout {
    /// Bytes of codes a block takes.
    fn blob(&self) -> usize {
        BLOCK * self.bits / 8
    }

    /// Zero-point bytes a column takes (4-bit ones are packed two to a byte).
    fn zero_point_stride(&self) -> usize {
        if self.bits == 4 { self.blocks.div_ceil(2) } else { self.blocks }
    }

    /// The weights, checked against the layout so that the kernel's reads stay in bounds.
    fn weights<'a>(&self, codes: &'a [u8], scales: &'a [f32], zero_points: Option<&'a [u8]>) -> ort::Result<Weights<'a>> {
        if codes.len() != self.n * self.blocks * self.blob() {
            return Err(refuse(format_args!("B has {} bytes, expected {}", codes.len(), self.n * self.blocks * self.blob())));
        }
        if scales.len() != self.n * self.blocks {
            return Err(refuse(format_args!("scales has {} values, expected {}", scales.len(), self.n * self.blocks)));
        }
        if let Some(zp) = zero_points
            && zp.len() != self.n * self.zero_point_stride()
        {
            return Err(refuse(format_args!(
                "zero_points has {} bytes, expected {}",
                zp.len(),
                self.n * self.zero_point_stride()
            )));
        }
        Ok(Weights { layout: *self, codes, scales, zero_points })
    }
}

/// One node's quantized weights, as ONNX Runtime holds them: for column `n` and block
/// `b`, codes at `(n * blocks + b) * blob` (4-bit codes low nibble first), scale at
/// `n * blocks + b`, and a uint8 zero point (default 8 for 4 bits, 128 for 8).
struct Weights<'a> {
    layout: Layout,
    codes: &'a [u8],
    scales: &'a [f32],
    zero_points: Option<&'a [u8]>,
}

impl Weights<'_> {
    fn zero_point(&self, col: usize, block: usize) -> f32 {
        let l = &self.layout;
        match self.zero_points {
            None => (1u32 << (l.bits - 1)) as f32,
            Some(zp) if l.bits == 4 => {
                let byte = zp[col * l.zero_point_stride() + block / 2];
                f32::from(if block.is_multiple_of(2) { byte & 15 } else { byte >> 4 })
            }
            Some(zp) => f32::from(zp[col * l.blocks + block]),
        }
    }
}

/// The activation rows, each padded with zeros to whole blocks. For 4 bits each block is
/// stored as its 16 even-indexed values then its 16 odd ones, matching the low and high
/// nibbles of the codes.
#[derive(Debug, Default)]
struct Activations {
    data: Vec<f32>,
    rows: usize,
    stride: usize,
}

impl Activations {
    fn load(&mut self, a: &[f32], layout: &Layout) {
        let (k, stride) = (layout.k, layout.blocks * BLOCK);
        self.rows = a.len() / k;
        self.stride = stride;
        self.data.clear();
        self.data.resize(self.rows * stride, 0.0);
        for (src, dst) in a.chunks_exact(k).zip(self.data.chunks_exact_mut(stride)) {
            if layout.bits == 4 {
                for (i, &v) in src.iter().enumerate() {
                    let j = i % BLOCK;
                    dst[i - j + (j % 2) * (BLOCK / 2) + j / 2] = v;
                }
            } else {
                dst[..k].copy_from_slice(src);
            }
        }
    }
}

/// The output, written by several threads at once: each task writes only its own columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: tasks write disjoint elements, and `compute` waits for all of them before the
// output is used again.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    // A method, not a field access, so that closures capture the whole (Sync) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

struct NBitsKernel {
    layout: Layout,
    x: Activations,
}

fn input<'a>(ctx: &'a KernelContext, i: usize, name: &str) -> ort::Result<ort::value::ValueRef<'a>> {
    ctx.input(i)?.ok_or_else(|| refuse(format_args!("input {name} is missing")))
}

impl Kernel for NBitsKernel {
    fn compute(&mut self, ctx: &KernelContext) -> ort::Result<()> {
        let layout = self.layout;
        let a = input(ctx, 0, "A")?;
        let (a_shape, a) = a.try_extract_tensor::<f32>()?;
        if a_shape.last().copied() != Some(layout.k as i64) {
            return Err(refuse(format_args!("A has shape {a_shape}, its last dimension must be K={}", layout.k)));
        }
        let (b, scales) = (input(ctx, 1, "B")?, input(ctx, 2, "scales")?);
        let zp = ctx.input(3)?;
        let zp = zp.as_ref().map(|v| v.try_extract_tensor::<u8>().map(|(_, d)| d)).transpose()?;
        let w = layout.weights(b.try_extract_tensor::<u8>()?.1, scales.try_extract_tensor::<f32>()?.1, zp)?;
        let mut out_shape = a_shape.to_vec();
        let Some(last) = out_shape.last_mut() else { return Err(refuse("A has no dimensions")) };
        *last = layout.n as i64;
        let mut y = ctx.output(0, out_shape)?.ok_or_else(|| refuse("output Y is missing"))?;
        let (_, y) = y.try_extract_tensor_mut::<f32>()?;
        self.x.load(a, &layout);
        if self.x.rows == 0 {
            return Ok(());
        }
        if y.len() != self.x.rows * layout.n {
            return Err(refuse(format_args!("output of {} values for {} rows", y.len(), self.x.rows)));
        }
        let (x, out) = (&self.x, SharedOut(y.as_mut_ptr()));
        let tasks = layout.n.div_ceil(TASK_COLUMNS);
        ctx.par_for(tasks, tasks, |t| task(&w, x, t, out))
    }
}

/// From this many rows on, a task dequantizes its columns once and runs a dense f32
/// product; below it, each row tile looks the weights up again.
const DENSE_ROWS: usize = 12;

thread_local! {
    /// A task's dequantized columns (reused: ONNX Runtime's pool threads live long).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Columns `t * TASK_COLUMNS ..` of every output row.
fn task(w: &Weights<'_>, x: &Activations, t: usize, out: SharedOut) {
    let start = t * TASK_COLUMNS;
    let cols = start..(start + TASK_COLUMNS).min(w.layout.n);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the kernel is registered only where `available()` found AVX-512F; `w` was
    // checked against its layout, `x` was loaded with it, and `out` holds `x.rows * n`
    // values of which this task writes only its own columns.
    unsafe {
        if x.rows >= DENSE_ROWS {
            SCRATCH.with_borrow_mut(|scratch| avx512::dense_columns(w, x, cols, out.get(), scratch))
        } else {
            avx512::columns(w, x, cols, out.get())
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, cols, out);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{Activations, BLOCK, TASK_COLUMNS, Weights};

    /// How far ahead of the block being read its weights are prefetched, in bytes (1 KiB
    /// and 4 KiB measured alike; without a prefetch the kernel gained only 6 % a decode step).
    const PREFETCH: usize = 1024;

    /// `y[r][cols]` for every row `r` (fewer than [`super::DENSE_ROWS`]), in tiles of up
    /// to 4 rows by up to 4 columns (at most 16 accumulators: the even and odd halves of
    /// each block apart), each block's weights looked up once a tile.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn columns(w: &Weights<'_>, x: &Activations, cols: Range<usize>, y: *mut f32) {
        let mut row = 0;
        while row < x.rows {
            // SAFETY: each tile's rows `row..row + R` exist; the caller's contract for the rest.
            row += unsafe {
                match x.rows - row {
                    1 => tiles::<1, 4>(w, x, row, cols.clone(), y),
                    2 => tiles::<2, 4>(w, x, row, cols.clone(), y),
                    3 => tiles::<3, 2>(w, x, row, cols.clone(), y),
                    _ => tiles::<4, 2>(w, x, row, cols.clone(), y),
                }
            };
        }
    }

    /// The 32 weights of block `b` of column `col`, in the order of [`Activations`]: for
    /// 4 bits the low nibbles' values then the high ones'. The codes are prefetched
    /// `PREFETCH` bytes ahead: decode streams every weight from memory once a token.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block(w: &Weights<'_>, col: usize, b: usize) -> (__m512, __m512) {
        let l = &w.layout;
        let at = col * l.blocks + b;
        // SAFETY: `Layout::weights` checked that there are `n * blocks` scales and blobs;
        // prefetching a line past the end is harmless.
        unsafe {
            let scale = _mm512_set1_ps(*w.scales.get_unchecked(at));
            let p = w.codes.as_ptr().add(at * l.blob());
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH).cast());
            _mm_prefetch::<_MM_HINT_T0>(w.scales.as_ptr().wrapping_add(at + PREFETCH / 4).cast());
            let zero = _mm512_set1_ps(w.zero_point(col, b));
            if l.bits == 4 {
                // The 16 values a block's codes can take, then one lookup a half:
                // `vpermps` uses only the low 4 bits of each index.
                let iota = _mm512_setr_ps(0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12., 13., 14., 15.);
                let table = _mm512_mul_ps(_mm512_sub_ps(iota, zero), scale);
                let codes = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast()));
                (_mm512_permutexvar_ps(codes, table), _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(codes), table))
            } else {
                let widen = |q: *const u8| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(q.cast())));
                (_mm512_mul_ps(_mm512_sub_ps(widen(p), zero), scale), _mm512_mul_ps(_mm512_sub_ps(widen(p.add(16)), zero), scale))
            }
        }
    }

    /// Many rows (the prompt's path): the task's columns are dequantized once into
    /// `scratch`, transposed so that position `p` of all 16 columns is one vector
    /// (`scratch[p * 16 + c]`, positions in the order of [`Activations`]), then multiplied
    /// in blocks of up to [`ROW_BLOCK`] rows: per position one weight vector, and per row one
    /// FMA with the row's activation broadcast, accumulating 16 outputs a row in one
    /// register. Against dot products of 4 rows by 4 columns this reads the weights a
    /// third as often, needs no horizontal sums, and keeps ONNX Runtime's SGEMM pace.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dense_columns(
        w: &Weights<'_>,
        x: &Activations,
        cols: Range<usize>,
        y: *mut f32,
        scratch: &mut Vec<f32>,
    ) {
        let (l, stride) = (&w.layout, x.stride);
        // Every value is written below, so a grown scratch needs no clearing.
        if scratch.len() < stride * TASK_COLUMNS {
            scratch.resize(stride * TASK_COLUMNS, 0.0);
        }
        let width = cols.len();
        for b in 0..l.blocks {
            let mut lo = [_mm512_setzero_ps(); TASK_COLUMNS];
            let mut hi = [_mm512_setzero_ps(); TASK_COLUMNS];
            for (i, col) in cols.clone().enumerate() {
                // SAFETY: a block of the checked weights.
                (lo[i], hi[i]) = unsafe { block(w, col, b) };
            }
            // SAFETY: positions `b * 32 .. b * 32 + 32` of `scratch`, which holds `stride` (a
            // multiple of 32) positions of 16 values.
            unsafe {
                let dst = scratch.as_mut_ptr().add(b * BLOCK * TASK_COLUMNS);
                for (half, rows) in [lo, hi].iter().enumerate() {
                    for (j, v) in transpose(rows).iter().enumerate() {
                        _mm512_storeu_ps(dst.add((half * BLOCK / 2 + j) * TASK_COLUMNS), *v);
                    }
                }
            }
        }
        let mask: __mmask16 = if width == TASK_COLUMNS { !0 } else { (1 << width) - 1 };
        let dense = Dense { w: scratch.as_ptr(), first: cols.start, n: l.n, mask };
        let mut row = 0;
        while row < x.rows {
            // SAFETY: rows `row..row + R` exist; the caller's contract for `y`.
            row += unsafe {
                match x.rows - row {
                    1 => dense.rows::<1>(x, row, y),
                    2 => dense.rows::<2>(x, row, y),
                    3 => dense.rows::<3>(x, row, y),
                    4 => dense.rows::<4>(x, row, y),
                    5 => dense.rows::<5>(x, row, y),
                    6 => dense.rows::<6>(x, row, y),
                    7 => dense.rows::<7>(x, row, y),
                    8 => dense.rows::<8>(x, row, y),
                    9 => dense.rows::<9>(x, row, y),
                    10 => dense.rows::<10>(x, row, y),
                    11 => dense.rows::<11>(x, row, y),
                    _ => dense.rows::<ROW_BLOCK>(x, row, y),
                }
            };
        }
    }

    /// Rows a dense block accumulates at once: 12 accumulators, enough independent FMAs to
    /// cover their latency, with registers to spare.
    const ROW_BLOCK: usize = 12;

    /// The 16 vectors `rows[c][e]` as `out[e][c]`: four rounds of shuffles, within 128-bit
    /// lanes first, then across them.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose(rows: &[__m512; 16]) -> [__m512; 16] {
        // t: pairs of rows interleaved by 32 bits; u[4g + i]: element 4L + i of rows
        // 4g..4g + 4, in lane L.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (rows[i & !1], rows[i | 1]);
            if i % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) }
        });
        let u: [__m512; 16] = std::array::from_fn(|k| {
            let (g, i) = (k / 4, k % 4);
            let (a, b) = (_mm512_castps_pd(t[4 * g + i / 2]), _mm512_castps_pd(t[4 * g + 2 + i / 2]));
            _mm512_castpd_ps(if i % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
        });
        // v[8h + 4s + i]: row groups 2h and 2h + 1, lanes s and s + 2 of each.
        let v: [__m512; 16] = std::array::from_fn(|k| {
            let (h, s, i) = (k / 8, (k / 4) % 2, k % 4);
            let (a, b) = (u[8 * h + i], u[8 * h + 4 + i]);
            if s == 0 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xdd>(a, b) }
        });
        std::array::from_fn(|e| {
            let (lane, i) = (e / 4, e % 4);
            let (a, b) = (v[4 * (lane % 2) + i], v[8 + 4 * (lane % 2) + i]);
            if lane < 2 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xdd>(a, b) }
        })
    }

    /// A task's transposed dequantized weights, for output columns `first..` (`mask`: the
    /// ones that exist).
    struct Dense {
        w: *const f32,
        first: usize,
        n: usize,
        mask: __mmask16,
    }

    impl Dense {
        /// `y[row..row + R][first..first + 16]`; returns `R`.
        #[target_feature(enable = "avx512f")]
        unsafe fn rows<const R: usize>(&self, x: &Activations, row: usize, y: *mut f32) -> usize {
            let mut acc = [_mm512_setzero_ps(); R];
            // SAFETY: rows `row..row + R` of `x` exist, `stride` values each, and the scratch
            // holds `stride` positions; the caller's output holds `rows * n` values, of which
            // the mask keeps this task's columns.
            unsafe {
                let xs = x.data.as_ptr().add(row * x.stride);
                for p in 0..x.stride {
                    let wv = _mm512_loadu_ps(self.w.add(p * TASK_COLUMNS));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_fmadd_ps(_mm512_set1_ps(*xs.add(r * x.stride + p)), wv, *acc);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(y.add((row + r) * self.n + self.first), self.mask, *acc);
                }
            }
            R
        }
    }

    /// `R` rows from `row` over `cols`, `C` columns at a time (the rest one by one);
    /// returns `R`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tiles<const R: usize, const C: usize>(
        w: &Weights<'_>,
        x: &Activations,
        row: usize,
        cols: Range<usize>,
        y: *mut f32,
    ) -> usize {
        let mut col = cols.start;
        // SAFETY: every tile stays within `cols` and rows `row..row + R`.
        unsafe {
            while col + C <= cols.end {
                tile::<R, C>(w, x, row, col, y);
                col += C;
            }
            while col < cols.end {
                tile::<R, 1>(w, x, row, col, y);
                col += 1;
            }
        }
        R
    }

    /// `y[row..row + R][col..col + C]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize, const C: usize>(w: &Weights<'_>, x: &Activations, row: usize, col: usize, y: *mut f32) {
        let l = &w.layout;
        let mut even = [[_mm512_setzero_ps(); C]; R];
        let mut odd = [[_mm512_setzero_ps(); C]; R];
        for b in 0..l.blocks {
            for c in 0..C {
                // SAFETY: column `col + c` and block `b` are within the checked weights.
                let (lo, hi) = unsafe { block(w, col + c, b) };
                for r in 0..R {
                    // SAFETY: row `row + r` exists and has `blocks * BLOCK` values.
                    unsafe {
                        let xp = x.data.as_ptr().add((row + r) * x.stride + b * BLOCK);
                        even[r][c] = _mm512_fmadd_ps(_mm512_loadu_ps(xp), lo, even[r][c]);
                        odd[r][c] = _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(BLOCK / 2)), hi, odd[r][c]);
                    }
                }
            }
        }
        for r in 0..R {
            for c in 0..C {
                // SAFETY: the caller's output holds `rows * n` values.
                unsafe { *y.add((row + r) * l.n + col + c) = _mm512_reduce_add_ps(_mm512_add_ps(even[r][c], odd[r][c])) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (no test dependency on `rand`).
    fn bytes(seed: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (*seed >> 33) as u8
            })
            .collect()
    }

    /// The product of the dequantized weights in f64, straight from the layout.
    fn reference(w: &Weights<'_>, a: &[f32], rows: usize) -> Vec<f64> {
        let l = &w.layout;
        let mut y = vec![0f64; rows * l.n];
        for r in 0..rows {
            for n in 0..l.n {
                let mut sum = 0f64;
                for k in 0..l.k {
                    let (b, j) = (k / BLOCK, k % BLOCK);
                    let blob = &w.codes[(n * l.blocks + b) * l.blob()..];
                    let code = if l.bits == 4 { (blob[j / 2] >> (4 * (j % 2))) & 15 } else { blob[j] };
                    let weight = (f32::from(code) - w.zero_point(n, b)) * w.scales[n * l.blocks + b];
                    sum += f64::from(weight) * f64::from(a[r * l.k + k]);
                }
                y[r * l.n + n] = sum;
            }
        }
        y
    }

    #[test]
    fn matches_the_dequantized_product() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let mut seed = 7;
        // K not a multiple of 32, N not a multiple of the task or tile widths, every row
        // tile (1, 2, 3, 4, 4 + 1, 8, 8 + 3), the dense path with a partial row block and
        // with whole ones (12, 15, 12 + 12 + 3).
        for (bits, with_zp) in [(4, false), (4, true), (8, false), (8, true)] {
            for rows in [1, 2, 3, 5, 8, 12, 15, 27] {
                let layout = Layout { k: 80, n: 37, bits, blocks: 3 };
                let codes = bytes(&mut seed, layout.n * layout.blocks * layout.blob());
                let scales: Vec<f32> =
                    bytes(&mut seed, layout.n * layout.blocks).iter().map(|&b| (f32::from(b) - 128.0) / 512.0).collect();
                let zp = with_zp.then(|| bytes(&mut seed, layout.n * layout.zero_point_stride()));
                let a: Vec<f32> = bytes(&mut seed, rows * layout.k).iter().map(|&b| (f32::from(b) - 100.0) / 64.0).collect();
                let w = layout.weights(&codes, &scales, zp.as_deref()).unwrap();
                let mut x = Activations::default();
                x.load(&a, &layout);
                let mut y = vec![f32::NAN; rows * layout.n];
                let out = SharedOut(y.as_mut_ptr());
                for t in 0..layout.n.div_ceil(TASK_COLUMNS) {
                    task(&w, &x, t, out);
                }
                for (i, (got, want)) in y.iter().zip(reference(&w, &a, rows)).enumerate() {
                    assert!(
                        (f64::from(*got) - want).abs() < 1e-4 * want.abs().max(1.0),
                        "bits {bits} zp {with_zp} rows {rows} [{i}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn weights_of_the_wrong_size_are_refused() {
        let layout = Layout { k: 64, n: 2, bits: 4, blocks: 2 };
        assert!(layout.weights(&[0; 64], &[1.0; 4], None).is_ok());
        assert!(layout.weights(&[0; 63], &[1.0; 4], None).is_err());
        assert!(layout.weights(&[0; 64], &[1.0; 3], None).is_err());
        assert!(layout.weights(&[0; 64], &[1.0; 4], Some(&[0; 3])).is_err());
    }
}
