//! The model catalogue: one TOML manifest per model in `models/`, and the converted
//! files (ONNX graph, tokenizer, chat template, config) in the models directory. A model
//! whose files are missing stays listed as "not installed".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A decoder LLM for chat and text completions.
    Chat,
    /// A sentence encoder for embeddings.
    Embedding,
}

impl ModelKind {
    /// Name used in manifests and over WIT.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
        }
    }
}

/// Sampling defaults of a chat model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Temperature when the request sets none.
    #[serde(default = "one")]
    pub temperature: f32,
    /// top_p when the request sets none.
    #[serde(default = "one")]
    pub top_p: f32,
    /// Completion token limit when the request sets none.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
}

fn one() -> f32 {
    1.0
}
fn default_max_tokens() -> u32 {
    512
}

impl Default for Defaults {
    fn default() -> Self {
        Self { temperature: 1.0, top_p: 1.0, max_tokens: default_max_tokens() }
    }
}

/// Price per million tokens, in US dollars.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Input (prompt) tokens.
    #[serde(default)]
    pub input: f64,
    /// Output (completion) tokens.
    #[serde(default)]
    pub output: f64,
}

/// One `models/<id>.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Canonical id, e.g. `smollm2-135m-instruct`.
    pub id: String,
    /// Other names that resolve to this model.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// OpenAI model names this model answers to when the deployment enables them.
    #[serde(default)]
    pub openai_aliases: Vec<String>,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// Organisation shown as `owned_by`.
    #[serde(default = "owned_by")]
    pub owned_by: String,
    /// Folder under the models directory holding the converted files.
    pub dir: String,
    /// Context length in tokens (overrides the converted config when set).
    #[serde(default)]
    pub context_length: Option<u32>,
    /// Sampling defaults.
    #[serde(default)]
    pub defaults: Defaults,
    /// Price per million tokens.
    #[serde(default)]
    pub price: Price,
    /// Where the weights come from, for `tensoras models list`.
    #[serde(default)]
    pub source: Option<String>,
    /// How the model writes tool calls (what it was trained on).
    #[serde(default)]
    pub tool_call_format: ToolCallFormat,
}

/// The text a chat model writes to call a tool. The chat handler constrains
/// generation to this shape, so it must be what the model was trained on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolCallFormat {
    /// `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>` (Hermes, Qwen 2.5,
    /// SmolLM and the generic prompt for templates without tool support).
    #[default]
    Hermes,
    /// A bare `{"name": …, "parameters": …}` object (Llama 3.1+ JSON tool calling).
    Llama3Json,
    /// `<tool_call>[{"name": …, "arguments": …}, …]</tool_call>`: all calls in one JSON
    /// list (SmolLM2's instruction data).
    JsonList,
}

impl ToolCallFormat {
    /// Name used in manifests and over WIT.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Llama3Json => "llama3-json",
            Self::JsonList => "json-list",
        }
    }
}

fn owned_by() -> String {
    "tensoras".into()
}

/// Facts from the converter's `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphConfig {
    /// Transformer layers (decoders).
    #[serde(default)]
    pub n_layers: usize,
    /// Key/value heads (decoders).
    #[serde(default)]
    pub n_kv_heads: usize,
    /// Head dimension (decoders).
    #[serde(default)]
    pub head_dim: usize,
    /// Vocabulary size (decoders: logits width).
    #[serde(default)]
    pub vocab_size: usize,
    /// Hidden size (encoders: embedding width).
    #[serde(default)]
    pub hidden_size: usize,
    /// Longest sequence (decoders).
    #[serde(default)]
    context_length: Option<u32>,
    /// Longest input the encoder was trained on (sentence-transformers' `max_seq_length`).
    #[serde(default)]
    max_length: Option<u32>,
    /// Position-embedding table size (encoders), the hard limit.
    #[serde(default)]
    max_position_embeddings: Option<u32>,
    /// Token ids that end a turn.
    #[serde(default, alias = "stop_token_ids")]
    pub eos_token_ids: Vec<u32>,
    /// The importer's attention kind (decoders): `gqa` graphs can update their KV cache
    /// in place.
    #[serde(default)]
    attention: Option<String>,
}

impl GraphConfig {
    /// Whether `past_key_values.*` and `present.*` may be one buffer: GroupQueryAttention
    /// then writes only the new positions (the importer's `--attention gqa`, its default).
    pub fn kv_in_place(&self) -> bool {
        self.attention.as_deref() == Some("gqa")
    }

    /// Longest sequence to accept.
    pub fn context_length(&self) -> u32 {
        self.context_length.or(self.max_length).or(self.max_position_embeddings).unwrap_or(0)
    }
}

/// A catalogue entry with its installation state.
#[derive(Debug, Clone)]
pub struct Model {
    /// The manifest.
    pub manifest: Manifest,
    /// Folder with the converted files, if they exist.
    pub installed: Option<Installed>,
}

/// Paths and facts of an installed model.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Folder with the files.
    pub dir: PathBuf,
    /// Graph facts.
    pub config: GraphConfig,
}

impl Installed {
    /// The ONNX graph.
    pub fn graph_path(&self) -> PathBuf {
        self.dir.join("model.onnx")
    }
    /// The HF tokenizer.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
    /// The Jinja chat template (chat models).
    pub fn chat_template_path(&self) -> PathBuf {
        self.dir.join("chat_template.jinja")
    }
}

impl Model {
    /// Effective context length.
    pub fn context_length(&self) -> u32 {
        self.manifest.context_length.or_else(|| self.installed.as_ref().map(|i| i.config.context_length())).unwrap_or(0)
    }
}

/// All models, by id, with an alias index.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    models: BTreeMap<String, Model>,
    aliases: BTreeMap<String, String>,
}

impl Catalog {
    /// Reads every `*.toml` in `manifests` and looks for files under `models_dir`.
    pub fn load(manifests: &Path, models_dir: &Path, openai_aliases: bool) -> anyhow::Result<Self> {
        let mut catalog = Self::default();
        let entries = std::fs::read_dir(manifests).with_context(|| format!("reading {}", manifests.display()))?;
        let mut paths: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
        paths.sort();
        // Models imported under ids the shipped catalogue does not know carry their own manifest.
        if let Ok(dirs) = std::fs::read_dir(models_dir) {
            let mut extra: Vec<PathBuf> =
                dirs.flatten().map(|e| e.path().join("manifest.toml")).filter(|p| p.is_file()).collect();
            extra.sort();
            paths.extend(extra);
        }
        for path in paths {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let manifest: Manifest = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            let installed = installed(models_dir, &manifest)?;
            catalog.insert(Model { manifest, installed }, openai_aliases)?;
        }
        Ok(catalog)
    }

    fn insert(&mut self, model: Model, openai_aliases: bool) -> anyhow::Result<()> {
        let id = model.manifest.id.clone();
        let mut names = model.manifest.aliases.clone();
        if openai_aliases {
            names.extend(model.manifest.openai_aliases.iter().cloned());
        }
        for name in names.into_iter().chain(std::iter::once(id.clone())) {
            if let Some(other) = self.aliases.insert(name.clone(), id.clone()) {
                anyhow::ensure!(other == id, "model name '{name}' is claimed by both '{other}' and '{id}'");
            }
        }
        self.models.insert(id, model);
        Ok(())
    }

    /// A model by id or alias.
    pub fn get(&self, name: &str) -> Option<&Model> {
        self.aliases.get(name).and_then(|id| self.models.get(id))
    }

    /// An installed model by id or alias.
    pub fn installed(&self, name: &str) -> Option<(&Model, &Installed)> {
        self.get(name).and_then(|m| m.installed.as_ref().map(|i| (m, i)))
    }

    /// Every model, by id.
    pub fn all(&self) -> impl Iterator<Item = &Model> {
        self.models.values()
    }
}

/// The installed files of a manifest, if complete.
fn installed(models_dir: &Path, manifest: &Manifest) -> anyhow::Result<Option<Installed>> {
    let dir = models_dir.join(&manifest.dir);
    let config_path = dir.join("config.json");
    if !dir.join("model.onnx").is_file() || !config_path.is_file() || !dir.join("tokenizer.json").is_file() {
        return Ok(None);
    }
    let config: GraphConfig = serde_json::from_str(
        &std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?,
    )
    .with_context(|| format!("parsing {}", config_path.display()))?;
    Ok(Some(Installed { dir, config }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_load_and_aliases_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("m");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(
            manifests.join("a.toml"),
            "id = \"tiny\"\naliases = [\"t\"]\nopenai_aliases = [\"gpt-4o-mini\"]\nkind = \"chat\"\ndir = \"tiny\"\n[price]\ninput = 0.05\noutput = 0.10\n",
        )
        .unwrap();
        let files = dir.path().join("files/tiny");
        std::fs::create_dir_all(&files).unwrap();
        let catalog = Catalog::load(&manifests, &dir.path().join("files"), false).unwrap();
        assert_eq!(catalog.get("t").unwrap().manifest.id, "tiny");
        assert!(catalog.get("gpt-4o-mini").is_none());
        assert!(catalog.installed("tiny").is_none(), "no files yet");
        for f in ["model.onnx", "tokenizer.json"] {
            std::fs::write(files.join(f), b"x").unwrap();
        }
        std::fs::write(files.join("config.json"), r#"{"context_length": 2048, "vocab_size": 10}"#).unwrap();
        let catalog = Catalog::load(&manifests, &dir.path().join("files"), true).unwrap();
        let (m, i) = catalog.installed("gpt-4o-mini").unwrap();
        assert_eq!(m.context_length(), 2048);
        assert_eq!(i.config.vocab_size, 10);
        assert_eq!(m.manifest.price.output, 0.10);
    }

    #[test]
    fn unknown_manifest_fields_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "id = \"x\"\nkind = \"chat\"\ndir = \"x\"\nprize = 1\n").unwrap();
        assert!(Catalog::load(dir.path(), dir.path(), false).is_err());
    }
}
