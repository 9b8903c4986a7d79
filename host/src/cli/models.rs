//! `tensoras models`: list the catalogue, import a local GGUF or safetensors model
//! (converted to ONNX by `models/importer`), or pull a pre-exported ONNX model.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use sha2::{Digest, Sha256};
use tensoras::inference::Catalog;

/// Where manifests and model files are.
#[derive(Debug, clap::Args)]
pub struct ModelDirs {
    /// Folder of model manifests.
    #[arg(long, env = "TENSORAS_MODEL_MANIFESTS", default_value = "models")]
    manifests: PathBuf,
    /// Folder of converted models [default: ~/.cache/tensoras/models].
    #[arg(long, env = "TENSORAS_MODELS_DIR")]
    models_dir: Option<PathBuf>,
}

impl ModelDirs {
    fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(tensoras::config::default_models_dir)
    }
}

/// The converter: a Python with `models/importer/requirements.txt` and the scripts.
#[derive(Debug, clap::Args)]
pub struct Importer {
    /// Python with the importer's requirements [default: ~/.cache/tensoras/importer-venv].
    #[arg(long, env = "TENSORAS_IMPORTER_PYTHON")]
    python: Option<PathBuf>,
    /// The importer scripts.
    #[arg(long, default_value = "models/importer")]
    importer: PathBuf,
}

impl Importer {
    /// Runs one importer script with `args`.
    fn run(&self, script: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        run_importer(&python(self.python.clone()), &self.importer.join(script), args)
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the catalogue and what is installed.
    List {
        #[command(flatten)]
        dirs: ModelDirs,
    },
    /// Convert a local model to ONNX and install it.
    Import {
        /// A llama-architecture GGUF file (chat model).
        #[arg(long, conflicts_with = "safetensors")]
        gguf: Option<PathBuf>,
        /// A folder with a BERT-family `model.safetensors` + `tokenizer.json` (embedding model).
        #[arg(long)]
        safetensors: Option<PathBuf>,
        /// Model id to install as (a catalogue id, or a new one).
        #[arg(long)]
        id: String,
        /// GGUF only: int8 activations in the quantized matrix products and an 8-bit LM head,
        /// as llama.cpp computes. Faster decoding and much cheaper batches on CPU, but the
        /// logits are no longer exact, which can change a small model's answers.
        #[arg(long, requires = "gguf")]
        int8_activations: bool,
        #[command(flatten)]
        importer: Importer,
        #[command(flatten)]
        dirs: ModelDirs,
    },
    /// Download a pre-exported ONNX model repository from a model hub.
    Pull {
        /// Repository, e.g. `onnx-community/SmolLM2-135M-Instruct`.
        repo: String,
        /// Model id to install as.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        importer: Importer,
        #[command(flatten)]
        dirs: ModelDirs,
    },
}

fn python(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        tensoras::cache_root()
            .map(|c| c.join("importer-venv/bin/python"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("python3"))
    })
}

fn run_importer(python: &Path, script: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    anyhow::ensure!(
        script.is_file(),
        "importer script {} not found (run from the repository root or pass --importer)",
        script.display()
    );
    let status = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .status()
        .with_context(|| format!("running {} (install the importer with `make setup`)", python.display()))?;
    anyhow::ensure!(status.success(), "{} failed ({status})", script.display());
    Ok(())
}

/// Records a sha256 of every installed file, so a later import can tell it is complete.
fn write_checksums(dir: &Path) -> anyhow::Result<()> {
    let mut sums = serde_json::Map::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name == "checksums.json" {
            continue;
        }
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        sums.insert(name, serde_json::Value::String(tensoras::ids::hex(&hasher.finalize())));
    }
    std::fs::write(dir.join("checksums.json"), serde_json::to_string_pretty(&sums)?)?;
    Ok(())
}

/// The folder a new model `id` is installed into, created.
fn install_dir(dirs: &ModelDirs, id: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(tensoras::ids::valid_name(id), "model ids are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'");
    let out = dirs.models_dir().join(id);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    Ok(out)
}

/// Registers an installed model: a manifest if the id is new, and checksums.
fn finish_install(dirs: &ModelDirs, id: &str, kind: &str, out: &Path) -> anyhow::Result<()> {
    ensure_manifest(dirs, id, kind)?;
    write_checksums(out)?;
    println!("installed {id} ({kind}) in {}", out.display());
    Ok(())
}

/// Adds a manifest for an id the catalogue does not know yet, next to the files.
fn ensure_manifest(dirs: &ModelDirs, id: &str, kind: &str) -> anyhow::Result<()> {
    let catalog = Catalog::load(&dirs.manifests, &dirs.models_dir(), false)?;
    if catalog.get(id).is_some() {
        return Ok(());
    }
    let manifest = format!("id = \"{id}\"\nkind = \"{kind}\"\ndir = \"{id}\"\n");
    std::fs::write(dirs.models_dir().join(id).join("manifest.toml"), manifest)?;
    Ok(())
}

pub fn run(cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::List { dirs } => {
            let catalog = Catalog::load(&dirs.manifests, &dirs.models_dir(), false)?;
            println!("{:<26} {:<10} {:<14} {:>8} {:>14}  source", "id", "kind", "status", "context", "$/M in/out");
            for m in catalog.all() {
                let status = if m.installed.is_some() { "installed" } else { "not installed" };
                let price = format!("{}/{}", m.manifest.price.input, m.manifest.price.output);
                println!(
                    "{:<26} {:<10} {:<14} {:>8} {:>14}  {}",
                    m.manifest.id,
                    m.manifest.kind.as_str(),
                    status,
                    m.context_length(),
                    price,
                    m.manifest.source.as_deref().unwrap_or("-")
                );
            }
            println!("\nmodels directory: {}", dirs.models_dir().display());
        }
        ModelsCommand::Import { gguf, safetensors, id, int8_activations, importer, dirs } => {
            let out = install_dir(&dirs, &id)?;
            let kind = match (gguf, safetensors) {
                (Some(file), None) => {
                    let mut args = vec!["--gguf".as_ref(), file.as_os_str(), "--out".as_ref(), out.as_os_str()];
                    if int8_activations {
                        args.extend(["--activations", "int8", "--head", "q8"].map(std::ffi::OsStr::new));
                    }
                    importer.run("gguf_to_onnx.py", &args)?;
                    "chat"
                }
                (None, Some(dir)) => {
                    let args = ["--model-dir".as_ref(), dir.as_os_str(), "--out".as_ref(), out.as_os_str()];
                    importer.run("safetensors_to_onnx.py", &args)?;
                    "embedding"
                }
                _ => anyhow::bail!("pass exactly one of --gguf FILE or --safetensors DIR"),
            };
            finish_install(&dirs, &id, kind, &out)?;
        }
        ModelsCommand::Pull { repo, id, importer, dirs } => {
            let out = install_dir(&dirs, &id)?;
            importer.run("pull.py", &["--repo".as_ref(), repo.as_ref(), "--out".as_ref(), out.as_os_str()])?;
            let kind = if out.join("chat_template.jinja").is_file() { "chat" } else { "embedding" };
            finish_install(&dirs, &id, kind, &out)?;
        }
    }
    Ok(())
}
