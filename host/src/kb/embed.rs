//! Embeddings for knowledge bases through the same path as `/v1/embeddings`: a
//! synthesized request to the `functions/handlers/embeddings` handler component, so chunks and
//! queries are embedded exactly as a client's embeddings request would be (same
//! tokenizer, pooling, normalization and batching).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::inference::{Inference, ModelKind};
use crate::runtime::{HandlerCtx, HandlerFunction, HandlerRequest, Runtime};

/// Inputs per handler call; the handler batches them further for the model.
pub const BATCH: usize = 64;

/// Why embedding failed, in words fit for a data source's `error` or an API message.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model is not installed (or not an embedding model).
    #[error("{0}")]
    Model(String),
    /// The embeddings handler component is missing.
    #[error("the embeddings handler component is not installed on this server")]
    NoHandler,
    /// The handler refused or failed.
    #[error("embedding failed: {0}")]
    Failed(String),
}

/// Runs the embeddings handler on behalf of the host.
#[derive(Clone)]
pub struct Embedder {
    runtime: Arc<Runtime>,
    handler: Option<HandlerFunction>,
    inference: Arc<Inference>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedder")
    }
}

impl Embedder {
    /// An embedder over the server's runtime, handler and models.
    pub fn new(runtime: Arc<Runtime>, handler: Option<HandlerFunction>, inference: Arc<Inference>) -> Self {
        Self { runtime, handler, inference }
    }

    /// The canonical id of an installed embedding model named `name` (id or alias).
    pub fn resolve_model(&self, name: &str) -> Result<String, EmbedError> {
        match self.inference.get(name) {
            Some(m) if m.model.manifest.kind == ModelKind::Embedding => Ok(m.model.manifest.id.clone()),
            Some(m) => Err(EmbedError::Model(format!(
                "`{}` is a {} model, not an embedding model",
                m.model.manifest.id,
                m.model.manifest.kind.as_str()
            ))),
            None => Err(EmbedError::Model(format!("the embedding model `{name}` is not installed on this server"))),
        }
    }

    /// Some installed embedding model, for knowledge bases created without one.
    pub fn default_model(&self) -> Option<String> {
        let mut ids: Vec<String> = self
            .inference
            .catalog()
            .all()
            .filter(|m| m.manifest.kind == ModelKind::Embedding && self.inference.get(&m.manifest.id).is_some())
            .map(|m| m.manifest.id.clone())
            .collect();
        ids.sort();
        ids.into_iter().next()
    }

    /// Embeds `inputs` (in order) with `model` for `tenant`.
    pub async fn embed(&self, tenant: &str, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let handler = self.handler.clone().ok_or(EmbedError::NoHandler)?;
        let mut out = Vec::with_capacity(inputs.len());
        for batch in inputs.chunks(BATCH) {
            let req = HandlerRequest {
                body: json!({"model": model, "input": batch, "encoding_format": "float"}).to_string(),
                stream: false,
                tenant: tenant.to_owned(),
                path: "/v1/embeddings".to_owned(),
            };
            let ctx = HandlerCtx::models_only(self.inference.clone());
            let response = self
                .runtime
                .call_handler(&handler, ctx, req)
                .await
                .map_err(|e| EmbedError::Failed(e.to_string()))?
                .map_err(|e| EmbedError::Failed(e.message))?;
            out.extend(parse(&response.body, batch.len())?);
        }
        Ok(out)
    }
}

/// The vectors of an OpenAI embeddings response, ordered by `index`.
fn parse(body: &str, expected: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let bad = |why: &str| EmbedError::Failed(format!("the embeddings handler returned {why}"));
    let v: Value = serde_json::from_str(body).map_err(|_| bad("invalid JSON"))?;
    let data = v["data"].as_array().ok_or_else(|| bad("no data"))?;
    let mut out = vec![Vec::new(); expected];
    for item in data {
        let i = item["index"].as_u64().map(|i| i as usize).filter(|i| *i < expected).ok_or_else(|| bad("a bad index"))?;
        let emb = item["embedding"].as_array().ok_or_else(|| bad("a non-float embedding"))?;
        out[i] =
            emb.iter().map(|x| x.as_f64().map(|x| x as f32)).collect::<Option<Vec<f32>>>().ok_or_else(|| bad("a non-number"))?;
    }
    if out.iter().any(Vec::is_empty) {
        return Err(bad("fewer embeddings than inputs"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_out_of_order_and_rejects_short() {
        let body = r#"{"data":[{"index":1,"embedding":[0.5]},{"index":0,"embedding":[1.0,2.0]}]}"#;
        assert_eq!(super::parse(body, 2).unwrap(), vec![vec![1.0, 2.0], vec![0.5]]);
        assert!(super::parse(r#"{"data":[{"index":0,"embedding":[1.0]}]}"#, 2).is_err());
        assert!(super::parse("nope", 1).is_err());
    }
}
