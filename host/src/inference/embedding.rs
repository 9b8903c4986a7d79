//! Sentence embeddings computed on the host, for the host's own needs (knowledge-base
//! chunks and queries): the model's tokenizer with its special tokens, then
//! [`pooling::embed`], the procedure the embeddings handler runs for `/v1/embeddings`,
//! over the same [`EncoderGraph`]. No guest instance, so a RAG request's query costs no
//! second handler, and a vector stored at ingestion and a query vector are computed alike.

use super::{Graph, Inference, NnError};

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// The model is not installed, or is not an embedding model.
    #[error("`{0}` is not an installed embedding model")]
    NotAnEncoder(String),
    /// The tokenizer refused a text.
    #[error("tokenizing failed: {0}")]
    Tokenizer(String),
    /// A text produced no tokens.
    #[error("input {0} produced no tokens")]
    Empty(usize),
    /// ONNX Runtime failed.
    #[error("the encoder failed: {}", .0.message)]
    Encoder(NnError),
}

impl Inference {
    /// The unit-length embeddings of `texts`, in order, by the embedding model `model`
    /// (id or alias). Blocking: tokenising and ONNX Runtime run on the caller's thread.
    pub fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        self.embed_counted(model, texts).map(|(vectors, _)| vectors)
    }

    /// [`Self::embed`], and how many tokens the model read (after truncation).
    pub fn embed_counted(&self, model: &str, texts: &[String]) -> Result<(Vec<Vec<f32>>, u64), EmbeddingError> {
        let not_an_encoder = || EmbeddingError::NotAnEncoder(model.to_owned());
        let loaded = self.get(model).ok_or_else(not_an_encoder)?;
        let Graph::Encoder(encoder) = &loaded.graph else { return Err(not_an_encoder()) };
        let seqs = texts
            .iter()
            .map(|t| loaded.text.encode(t, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(EmbeddingError::Tokenizer)?;
        let max_len = loaded.model.context_length() as usize;
        let tokens = seqs.iter().map(|s| pooling::truncated_len(s.len(), max_len) as u64).sum();
        let hidden = encoder.hidden();
        let vectors = pooling::embed(seqs, max_len, |ids, mask, batch, seq| {
            Ok((encoder.encode(batch, seq, ids.to_vec(), mask.to_vec(), None)?, hidden))
        })
        .map_err(|e| match e {
            pooling::EmbedError::Empty(i) => EmbeddingError::Empty(i),
            pooling::EmbedError::Run(e) => EmbeddingError::Encoder(e),
        })?;
        Ok((vectors, tokens))
    }
}
