//! The handler's side of the host interfaces: tokenisation and one encoder
//! `compute` per batch over wasi:nn. Host failures become 500
//! `server_error`s with the host's message; they never trap.

use handler_common::ApiError;

use crate::bindings::tensoras::platform::tokenizer::{self, TokenizerError};
use crate::bindings::wasi::nn::graph::{self, Graph};
use crate::bindings::wasi::nn::tensor::{Tensor, TensorType};

handler_common::nn_error_fn!();

/// Tokenises one input with the model's special tokens (`[CLS] … [SEP]`).
/// Invalid input is the client's (400 on `input`).
pub fn encode(model: &str, text: &str) -> Result<Vec<u32>, ApiError> {
    tokenizer::encode(model, text, true).map_err(|e| match e {
        TokenizerError::InvalidInput(msg) => ApiError::invalid("input", msg),
        TokenizerError::TooLong(msg) => ApiError::invalid("input", msg).with_code("context_length_exceeded"),
        TokenizerError::UnknownModel(msg) => ApiError::server(format!("tokenizer encode failed: unknown model: {msg}")),
    })
}

/// Loads the model's graph by its canonical id.
pub fn load_graph(model: &str) -> Result<Graph, ApiError> {
    graph::load_by_name(model).map_err(|e| nn_error(&format!("load of `{model}`"), e))
}

/// The `[b, s, h]` hidden states, as (values, h).
pub struct Hidden {
    /// Row-major `[b, s, h]`.
    pub values: Vec<f32>,
    /// `h`.
    pub width: usize,
}

fn i64_tensor(dims: &[u32], values: &[i64]) -> Tensor {
    let data: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    Tensor::new(dims, TensorType::I64, &data)
}

/// Runs the encoder on one padded batch (`ids` and `mask` are `[b, s]`).
pub fn run_batch(graph: &Graph, ids: &[i64], mask: &[i64], batch: usize, seq: usize) -> Result<Hidden, ApiError> {
    let dims = [batch as u32, seq as u32];
    let ctx = graph.init_execution_context().map_err(|e| nn_error("init-execution-context", e))?;
    let outputs = ctx
        .compute(vec![("input_ids".to_owned(), i64_tensor(&dims, ids)), ("attention_mask".to_owned(), i64_tensor(&dims, mask))])
        .map_err(|e| nn_error("compute", e))?;
    let Some((_, hidden)) = outputs.into_iter().find(|(name, _)| name == "last_hidden_state") else {
        return Err(ApiError::server("the model returned no `last_hidden_state` output"));
    };
    if !matches!(hidden.ty(), TensorType::Fp32) {
        return Err(ApiError::server("the model's `last_hidden_state` is not FP32"));
    }
    read_hidden(&hidden.dimensions(), &hidden.data(), batch, seq)
}

/// Checks the output is `[batch, seq, h]` and reads its f32 values.
pub fn read_hidden(dims: &[u32], data: &[u8], batch: usize, seq: usize) -> Result<Hidden, ApiError> {
    let &[b, s, h] = dims else {
        return Err(ApiError::server(format!("`last_hidden_state` has dimensions {dims:?}, expected [batch, sequence, hidden]")));
    };
    let (b, s, h) = (b as usize, s as usize, h as usize);
    if b != batch || s != seq || h == 0 || data.len() != b * s * h * 4 {
        return Err(ApiError::server(format!(
            "`last_hidden_state` has dimensions {dims:?} and {} bytes for a [{batch}, {seq}] input",
            data.len()
        )));
    }
    let values = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Hidden { values, width: h })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_state_shape_is_checked() {
        let data: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let h = read_hidden(&[2, 2, 3], &data, 2, 2).unwrap();
        assert_eq!(h.width, 3);
        assert_eq!(h.values[11], 11.0);
        assert!(read_hidden(&[2, 6], &data, 2, 2).is_err());
        assert!(read_hidden(&[2, 3, 2], &data, 2, 2).is_err());
    }
}
