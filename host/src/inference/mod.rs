//! Model execution on the host: the catalogue, ONNX Runtime graphs, tokenizers and chat
//! templates. Guests reach all of it through WIT (`wasi:nn`, `tokenizer`, `models`); they
//! never hold weights or KV caches. A decoder owns its graph and the scheduler that steps
//! its concurrent sequences together ([`decoder`]); an encoder runs one batch at a time
//! ([`encoder`]), and the host embeds its own texts with it ([`embedding`]);
//! [`environment`] loads ONNX Runtime and builds their sessions.

pub mod catalog;
pub mod chat_prompt;
pub mod decoder;
pub mod embedding;
pub mod encoder;
pub mod environment;
mod error;
mod in_place;
mod nbits;
pub mod ports;
pub mod text;
mod trim;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

pub use catalog::{Catalog, Model, ModelKind};
pub use decoder::Decoder;
pub use embedding::EmbeddingError;
pub use encoder::EncoderGraph;
pub use environment::{OrtOptions, init};
pub use error::{NnError, NnErrorCode};
pub use text::TextModel;

/// A loaded graph.
#[derive(Debug, Clone)]
pub enum Graph {
    /// Decoder LLM, with its scheduler.
    Decoder(Arc<Decoder>),
    /// Encoder.
    Encoder(Arc<EncoderGraph>),
}

impl Graph {
    /// Loads the graph of an installed model.
    fn load(model: &Model, installed: &catalog::Installed, opts: &OrtOptions) -> anyhow::Result<Self> {
        let path = installed.graph_path();
        let ctx = model.context_length();
        let what = || format!("model {}", model.manifest.id);
        Ok(match model.manifest.kind {
            ModelKind::Chat => Self::Decoder(Arc::new(Decoder::load(&path, &installed.config, ctx, opts).with_context(what)?)),
            ModelKind::Embedding => {
                Self::Encoder(Arc::new(EncoderGraph::load(&path, &installed.config, ctx, opts).with_context(what)?))
            }
        })
    }
}

/// An installed model ready to run.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Catalogue entry.
    pub model: Model,
    /// The graph.
    pub graph: Graph,
    /// Tokenizer and template.
    pub text: Arc<TextModel>,
}

/// The catalogue plus every installed model, loaded.
#[derive(Debug, Default)]
pub struct Inference {
    catalog: Catalog,
    loaded: HashMap<String, Loaded>,
}

impl Inference {
    /// Reads the catalogue and loads every installed model. ONNX Runtime is loaded only
    /// when some model is installed; if it cannot be found, the error says how to fix it.
    pub fn load(manifests: &Path, models_dir: &Path, openai_aliases: bool, ort: &OrtOptions) -> anyhow::Result<Self> {
        let catalog = Catalog::load(manifests, models_dir, openai_aliases)?;
        let mut loaded = HashMap::new();
        let installed: Vec<&Model> = catalog.all().filter(|m| m.installed.is_some()).collect();
        if !installed.is_empty() {
            let lib = init(ort)?;
            tracing::info!(library = %lib.display(), "loaded ONNX Runtime");
        }
        for model in installed {
            let Some(files) = &model.installed else { continue };
            let started = std::time::Instant::now();
            let graph = Graph::load(model, files, ort)?;
            let template = (model.manifest.kind == ModelKind::Chat).then(|| files.chat_template_path());
            let text = TextModel::load(&files.tokenizer_path(), template.as_deref(), &files.config.eos_token_ids)
                .with_context(|| format!("model {}", model.manifest.id))?;
            let nbits_kernel_nodes = match &graph {
                Graph::Decoder(d) => d.nbits_kernel_nodes(),
                Graph::Encoder(_) => 0,
            };
            tracing::info!(model = %model.manifest.id, ms = started.elapsed().as_millis() as u64, nbits_kernel_nodes, "loaded model");
            loaded.insert(model.manifest.id.clone(), Loaded { model: model.clone(), graph, text: Arc::new(text) });
        }
        Ok(Self { catalog, loaded })
    }

    /// The catalogue.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A loaded model by id or alias.
    pub fn get(&self, name: &str) -> Option<&Loaded> {
        self.catalog.get(name).and_then(|m| self.loaded.get(&m.manifest.id))
    }
}
