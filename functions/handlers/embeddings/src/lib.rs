//! # embeddings
//!
//! The handler component behind `POST /v1/embeddings` (world
//! `tensoras:platform/embeddings-handler`). Per request it:
//!
//! 1. validates the body ([`request`]) and resolves the model
//!    (`models.get`; it must be an `embedding` model);
//! 2. tokenises each string with the model's special tokens (token arrays
//!    are used as given);
//! 3. hands the sequences to [`pooling::embed`], the procedure the host's
//!    knowledge bases run too: truncation to the context length, batches of
//!    up to 32 inputs sorted by length so little padding is computed, one
//!    encoder run over wasi:nn per batch as the inference ABI describes
//!    (`input_ids` + `attention_mask` → `last_hidden_state`), mean pooling
//!    over the mask and L2 normalisation;
//! 4. answers in input order, as floats or base64 ([`response`]).

pub mod base64;
#[cfg(test)]
mod fuzz_props;
mod host;
pub mod request;
pub mod response;

use handler_common::ApiError;

use crate::request::{Inputs, ModelFacts};

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "tensoras:platform/embeddings-handler",
        // wit-parser needs the @unstable clocks-timezone feature to resolve
        // the vendored WASI packages (see guest-sdk/src/lib.rs).
        features: ["clocks-timezone"],
        generate_all,
    });
}

use bindings::exports::tensoras::platform::handler::{Request, Response};
use bindings::tensoras::platform::models;
use bindings::tensoras::platform::types::Usage;

handler_common::export_handler!(EmbeddingsHandler, handle);

fn handle(raw: Request) -> Result<Response, ApiError> {
    if raw.path.trim_end_matches('/') != "/v1/embeddings" {
        return Err(ApiError::unknown_path(&raw.path));
    }
    let req = request::parse(&raw.body)?;
    let info = models::get(&req.model).ok_or_else(|| ApiError::model_not_found(&req.model))?;
    req.check_against(ModelFacts {
        id: &info.id,
        kind: &info.kind,
        embedding_dimensions: info.embedding_dimensions,
        vocab_size: info.vocab_size,
    })?;

    let seqs: Vec<Vec<u32>> = match req.input {
        Inputs::Texts(texts) => texts.iter().map(|t| host::encode(&info.id, t)).collect::<Result<_, _>>()?,
        Inputs::Tokens(arrays) => arrays,
    };
    let max_len = info.context_length as usize;
    let prompt_tokens = seqs.iter().map(|s| pooling::truncated_len(s.len(), max_len)).sum::<usize>();
    let graph = host::load_graph(&info.id)?;
    let expected = info.embedding_dimensions as usize;
    let embeddings = pooling::embed(seqs, max_len, |ids, mask, batch, width| {
        let hidden = host::run_batch(&graph, ids, mask, batch, width)?;
        if expected != 0 && hidden.width != expected {
            return Err(ApiError::server(format!(
                "the model produced {}-dimensional states but is catalogued with {expected} dimensions",
                hidden.width
            )));
        }
        Ok((hidden.values, hidden.width))
    })
    .map_err(|e| match e {
        pooling::EmbedError::Empty(_) => ApiError::invalid("input", "An input produced no tokens."),
        pooling::EmbedError::Run(e) => e,
    })?;
    let prompt_tokens = prompt_tokens.min(u32::MAX as usize) as u32;

    Ok(Response {
        body: response::body(&info.id, &embeddings, req.encoding, prompt_tokens),
        usage: Usage { prompt_tokens, completion_tokens: 0 },
    })
}
