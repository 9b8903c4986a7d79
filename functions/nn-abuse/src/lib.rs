//! # nn-abuse
//!
//! A handler component used only by the host's tests. The request body names a
//! model; the handler throws bad inputs at `wasi:nn` — raw graph bytes, unknown
//! models, wrong tensor types, shapes and lengths, out-of-vocabulary ids, a
//! context overflow — and answers with one line per case: `case: ok` or
//! `case: <error-code>: <message>`. The host must survive all of them and report
//! the backend's real message.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "tensoras:platform/chat-handler",
        features: ["clocks-timezone"],
        generate_all,
    });
}

use bindings::exports::tensoras::platform::handler::{Guest, Request, Response};
use bindings::tensoras::platform::types::{HandlerError, Usage};
use bindings::wasi::nn::graph::{self, ExecutionTarget, GraphEncoding};
use bindings::wasi::nn::inference::GraphExecutionContext;
use bindings::wasi::nn::tensor::{Tensor, TensorType};

struct Abuse;

fn i64s(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn describe(r: Result<Vec<(String, Tensor)>, bindings::wasi::nn::errors::Error>) -> String {
    match r {
        Ok(outputs) => {
            format!("ok {}", outputs.iter().map(|(n, t)| format!("{n}{:?}", t.dimensions())).collect::<Vec<_>>().join(","))
        }
        Err(e) => format!("{:?}: {}", e.code(), e.data()),
    }
}

/// A setup failure the test cannot go on from.
fn fatal(e: bindings::wasi::nn::errors::Error) -> HandlerError {
    HandlerError { status: 500, kind: "server_error".into(), message: e.data(), param: None, code: None }
}

fn run(ctx: &GraphExecutionContext, tensor: Tensor) -> String {
    describe(ctx.compute(vec![("input_ids".to_string(), tensor)]))
}

impl Guest for Abuse {
    fn handle(req: Request) -> Result<Response, HandlerError> {
        let model = req.body.trim().trim_matches('"').to_string();
        let mut lines = Vec::new();
        lines.push(format!(
            "load-bytes: {}",
            match graph::load(&[vec![0u8; 16]], GraphEncoding::Onnx, ExecutionTarget::Cpu) {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{:?}: {}", e.code(), e.data()),
            }
        ));
        lines.push(format!(
            "unknown-model: {}",
            match graph::load_by_name("no-such-model") {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{:?}: {}", e.code(), e.data()),
            }
        ));
        let g = graph::load_by_name(&model).map_err(fatal)?;
        let ctx = g.init_execution_context().map_err(fatal)?;
        lines.push(format!("no-inputs: {}", describe(ctx.compute(vec![]))));
        lines.push(format!(
            "wrong-name: {}",
            describe(ctx.compute(vec![("ids".into(), Tensor::new(&[1, 1], TensorType::I64, &i64s(&[1])))]))
        ));
        lines.push(format!("wrong-type: {}", run(&ctx, Tensor::new(&[1, 1], TensorType::Fp32, &1.0f32.to_le_bytes()))));
        lines.push(format!("short-data: {}", run(&ctx, Tensor::new(&[1, 4], TensorType::I64, &i64s(&[1, 2])))));
        lines.push(format!("bad-rank: {}", run(&ctx, Tensor::new(&[2, 2, 2], TensorType::I64, &i64s(&[1; 8])))));
        lines.push(format!("huge-dims: {}", run(&ctx, Tensor::new(&[u32::MAX, u32::MAX], TensorType::I64, &i64s(&[1])))));
        lines.push(format!("out-of-vocab: {}", run(&ctx, Tensor::new(&[1, 1], TensorType::I64, &i64s(&[i64::MAX])))));
        lines.push(format!("negative-id: {}", run(&ctx, Tensor::new(&[1, 1], TensorType::I64, &i64s(&[-5])))));
        lines.push(format!("empty: {}", run(&ctx, Tensor::new(&[1, 0], TensorType::I64, &[]))));
        lines.push(format!("valid: {}", run(&ctx, Tensor::new(&[1, 2], TensorType::I64, &i64s(&[1, 2])))));
        lines.push(format!("overflow: {}", run(&ctx, Tensor::new(&[1, 9000], TensorType::I64, &i64s(&vec![1; 9000])))));
        lines.push(format!("still-valid: {}", run(&ctx, Tensor::new(&[1, 1], TensorType::I64, &i64s(&[3])))));
        Ok(Response { body: lines.join("\n"), usage: Usage { prompt_tokens: 0, completion_tokens: 0 } })
    }
}

bindings::export!(Abuse with_types_in bindings);
