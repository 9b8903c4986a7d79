//! Embeddings for knowledge bases: chunks at ingestion and queries at search time,
//! computed on the host ([`Inference::embed`]) by the same tokenizer, encoder graph and
//! pooling code (the `pooling` crate) as the `/v1/embeddings` handler, so a stored vector
//! and a query vector are alike and no guest instance is spent on either.

use std::sync::Arc;

use crate::inference::{EmbeddingError, Inference, ModelKind};

/// Texts embedded per step of ingestion (one store write each); the encoder batches them
/// further.
pub const BATCH: usize = 64;

/// Why embedding failed, in words fit for a data source's `error` or an API message.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model is not installed (or not an embedding model).
    #[error("{0}")]
    Model(String),
    /// The tokenizer or the encoder failed.
    #[error("embedding failed: {0}")]
    Failed(String),
}

/// Embeds texts with the server's installed embedding models.
#[derive(Clone)]
pub struct Embedder {
    inference: Arc<Inference>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedder")
    }
}

impl Embedder {
    /// An embedder over the server's models.
    pub fn new(inference: Arc<Inference>) -> Self {
        Self { inference }
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

    /// Embeds `inputs` (in order) with `model`, off the async workers.
    pub async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (inference, model, inputs) = (self.inference.clone(), model.to_owned(), inputs.to_vec());
        tokio::task::spawn_blocking(move || inference.embed(&model, &inputs))
            .await
            .map_err(|e| EmbedError::Failed(format!("the embedding task failed: {e}")))?
            .map_err(|e| match e {
                EmbeddingError::NotAnEncoder(_) => EmbedError::Model(e.to_string()),
                e => EmbedError::Failed(e.to_string()),
            })
    }
}
