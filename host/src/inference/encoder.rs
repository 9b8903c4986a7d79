//! A sentence encoder graph, run by ONNX Runtime one batch at a time.

use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;

use super::environment::{OrtOptions, session};
use super::{NnError, NnErrorCode};

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
