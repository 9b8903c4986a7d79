//! The ceiling for the chat path: a bare ONNX Runtime decode loop inside the host, no
//! WebAssembly, no HTTP. Same prompt, template and greedy decoding as the server's
//! benchmark (`benches/inference.sh`), through the library API the server itself uses
//! (`Inference::load`, `DecoderSequence::step`).
//!
//! `cargo bench -p tensoras --bench decode` (harness = false; prints its own figures).
//! Environment:
//! - `TENSORAS_MODELS_DIR`: converted models [default: ~/.cache/tensoras/models]
//! - `TENSORAS_MODEL_MANIFESTS`: manifests folder [default: `models` at the repository root]
//! - `TENSORAS_ORT_LIB`: ONNX Runtime library [default: discovered like the server does]
//! - `DECODE_THREADS`: comma-separated thread counts [default: `1,2`]
//! - `DECODE_TOKENS`: tokens to generate [default: 128]
//! - `DECODE_REPS`: measured repetitions per thread count [default: 5]
//! - `DECODE_KERNELS`: MatMulNBits kernels to compare, `tensoras` (ours) and/or `ort`
//!   (ONNX Runtime's), run in alternation [default: `tensoras,ort`]
//! - `DECODE_SPIN`: `on` lets ONNX Runtime's threads spin on after each run, as the
//!   server's `--ort-spin` does [default: `off`, they park]. One setting a process: a
//!   session left spinning after its last run would slow the next one's prefill, so
//!   compare `off` with `on` in separate processes.
//!
//! Each thread count loads its own session (ONNX Runtime's intra-op pool is fixed per
//! session). One warm-up generation is discarded, then the medians are printed, plus one
//! machine-readable line per thread count starting with `RESULT`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;

use tensoras::inference::text::TemplateMessage;
use tensoras::inference::{Decoder, Graph, Inference, Loaded, OrtOptions};

const MODEL: &str = "smollm2-135m-instruct";
const PROMPT: &str = "Write a long story about a dragon who learns to bake bread.";

struct Run {
    prompt_tokens: usize,
    generated: usize,
    prefill_s: f64,
    decode_s: f64,
    /// Each decode step's time.
    steps_s: Vec<f64>,
}

fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// One greedy generation: prefill with every prompt id (its logits give the first token,
/// so the prefill time is the bare time to first token), then one token per step.
/// Generation stops at `max_tokens` or a stop token, like the server.
fn generate(graph: &Decoder, prompt: &[i64], stop: &[u32], max_tokens: usize) -> Run {
    let mut seq = graph.unbatched();
    let t0 = Instant::now();
    let logits = seq.step(prompt).expect("prefill");
    let mut next = argmax(&logits);
    let prefill_s = t0.elapsed().as_secs_f64();
    let mut generated = 1;
    let mut steps_s = Vec::with_capacity(max_tokens);
    let t1 = Instant::now();
    let mut last = t1;
    while generated < max_tokens && !stop.contains(&(next as u32)) {
        let logits = seq.step(&[next as i64]).expect("decode step");
        next = argmax(&logits);
        generated += 1;
        let now = Instant::now();
        steps_s.push((now - last).as_secs_f64());
        last = now;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    Run { prompt_tokens: prompt.len(), generated, prefill_s, decode_s, steps_s }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // cargo bench passes `--bench`; nothing else is accepted.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifests = std::env::var_os("TENSORAS_MODEL_MANIFESTS").map(PathBuf::from).unwrap_or_else(|| root.join("models"));
    let models_dir =
        std::env::var_os("TENSORAS_MODELS_DIR").map(PathBuf::from).unwrap_or_else(tensoras::config::default_models_dir);
    let library = std::env::var_os("TENSORAS_ORT_LIB").map(PathBuf::from);
    let threads: Vec<usize> = std::env::var("DECODE_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    let max_tokens: usize = env_or("DECODE_TOKENS", 128);
    let reps: usize = env_or("DECODE_REPS", 5).max(1);

    println!("bare ONNX Runtime decode loop: {MODEL}, {max_tokens} tokens, greedy, {reps} runs + 1 warm-up");
    // Both MatMulNBits kernels, in alternating runs (the VM's speed drifts from minute to
    // minute, so back-to-back pairs compare them more steadily than one after the other).
    let kernels: Vec<(&str, bool)> = std::env::var("DECODE_KERNELS")
        .unwrap_or_else(|_| "tensoras,ort".into())
        .split(',')
        .filter_map(|k| match k.trim() {
            "tensoras" => Some(("tensoras", true)),
            "ort" => Some(("ort", false)),
            _ => None,
        })
        .collect();
    let spin_between_runs = std::env::var("DECODE_SPIN").is_ok_and(|v| v.trim() == "on");
    let spin = if spin_between_runs { "on" } else { "off" };
    for &n in &threads {
        let mut loaded = Vec::new();
        for &(name, nbits_kernel) in &kernels {
            let opts = OrtOptions {
                library: library.clone(),
                threads: n,
                cuda: false,
                max_batch: 1,
                prefix_cache_bytes: 0,
                kv_in_place: true,
                nbits_kernel,
                spin_between_runs,
            };
            let inference = Inference::load(&manifests, &models_dir, false, &opts)?;
            let Some(Loaded { graph: Graph::Decoder(graph), text, .. }) = inference.get(MODEL) else {
                anyhow::bail!("{MODEL} is not installed under {} (run `make models`)", models_dir.display());
            };
            let (graph, text) = (graph.clone(), text.clone());
            let rendered = text
                .apply_chat_template(
                    &[TemplateMessage { role: "user".into(), content: PROMPT.into(), tool_call_id: None, tool_calls: None }],
                    None,
                )
                .map_err(|e| anyhow::anyhow!(e))?;
            let prompt: Vec<i64> =
                text.encode(&rendered, false).map_err(|e| anyhow::anyhow!(e))?.into_iter().map(i64::from).collect();
            let stop = text.stop_tokens().to_vec();
            let _ = generate(&graph, &prompt, &stop, max_tokens);
            loaded.push((name, graph, prompt, stop, Vec::new()));
        }
        for _ in 0..reps {
            for (_, graph, prompt, stop, runs) in &mut loaded {
                runs.push(generate(graph, prompt, stop, max_tokens));
            }
        }
        for (name, graph, _, _, runs) in &loaded {
            let generated = runs[0].generated;
            let tps = median(runs.iter().map(|r| (r.generated - 1) as f64 / r.decode_s).collect());
            let ttft_ms = median(runs.iter().map(|r| r.prefill_s * 1e3).collect());
            let prefill_tps = median(runs.iter().map(|r| r.prompt_tokens as f64 / r.prefill_s).collect());
            let all: Vec<String> = runs.iter().map(|r| format!("{:.1}", (r.generated - 1) as f64 / r.decode_s)).collect();
            // The median step is steadier than the mean on a VM whose neighbours come and go.
            let step_ms = median(runs.iter().flat_map(|r| r.steps_s.iter().map(|s| s * 1e3)).collect());
            println!(
                "threads={n} kernel={name} spin={spin} ({} nodes on tensoras' kernel): prompt {} tokens, generated {generated}; \
                 decode {tps:.1} tok/s (runs: {}), median step {step_ms:.2} ms; prefill/TTFT {ttft_ms:.1} ms ({prefill_tps:.0} tok/s)",
                graph.nbits_kernel_nodes(),
                runs[0].prompt_tokens,
                all.join(", ")
            );
            println!(
                "RESULT bare threads={n} kernel={name} spin={spin} decode_tps={tps:.2} step_ms={step_ms:.3} ttft_ms={ttft_ms:.2} prefill_tps={prefill_tps:.1} prompt_tokens={} generated={generated}",
                runs[0].prompt_tokens
            );
        }
    }
    Ok(())
}
