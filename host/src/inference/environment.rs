//! ONNX Runtime's environment: the library (loaded at run time from the PyPI
//! `onnxruntime` wheel, through `ort`), and how sessions are built: threads, no CPU arena,
//! spinning, the CUDA execution provider, and tensoras' own `MatMulNBits` kernel.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::nbits;

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
    if let Some(cache) = crate::cache_root() {
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

pub(crate) fn session(path: &Path, opts: &OrtOptions) -> anyhow::Result<Session> {
    builder(opts)?.commit_from_file(path).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))
}

/// A decoder's session, with its `MatMulNBits` nodes on tensoras' kernel where it covers
/// them all (CPU only: on CUDA it would copy every activation to the host); returns how
/// many nodes run on it. Where the kernel refuses a node, or the session fails with it,
/// the graph is loaded again with ONNX Runtime's kernel, with a warning.
pub(crate) fn decoder_session(path: &Path, opts: &OrtOptions) -> anyhow::Result<(Session, usize)> {
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
