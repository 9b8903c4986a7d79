//! Function projects on disk: `tensoras functions new` scaffolds one, `functions build`
//! turns it into a component with the environment's toolchain (cargo, componentize-py or
//! componentize-js), and `functions deploy DIR` deploys what it built.
//!
//! A project is a directory with `tensoras.json` (the deploy manifest, plus `language`)
//! and its source: `Cargo.toml` + `src/lib.rs` (Rust), `app.py` (Python) or `app.js`
//! (JavaScript). This binary carries the WIT and the three guest SDKs, so a project needs
//! nothing from the Tensoras repository; the repository's own Python and JS examples are
//! built through this same code (scripts/build-guests.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod templates;

/// The file naming a project, its manifest and language.
pub const PROJECT_FILE: &str = "tensoras.json";

/// A guest's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
}

impl Language {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "rust" => Some(Self::Rust),
            "python" | "py" => Some(Self::Python),
            "js" | "javascript" | "typescript" => Some(Self::Js),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::Js => "js",
        }
    }
}

/// What a function exports, and so which world it is built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Tool,
    Http,
    Chat,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "tool" => Some(Self::Tool),
            "http" => Some(Self::Http),
            "chat" => Some(Self::Chat),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Http => "http",
            Self::Chat => "chat",
        }
    }

    fn world(self) -> &'static str {
        match self {
            Self::Tool => "tool-function",
            Self::Http => "http-function",
            Self::Chat => "chat-function",
        }
    }
}

/// A file this binary carries: its path under the directory it is written to, and its text.
struct Asset {
    path: &'static str,
    text: &'static str,
}

macro_rules! assets {
    ($base:literal; $($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, text: include_str!(concat!($base, $path)) }),*]
    };
}

const WIT: &[Asset] = assets!("../../../../wit/";
    "ai.wit", "files.wit", "handler.wit", "kv.wit", "models.wit", "output.wit", "retrieval.wit", "tokenizer.wit",
    "tool.wit", "toolbox.wit", "types.wit", "worlds.wit", "deps/cli.wit", "deps/clocks.wit",
    "deps/filesystem.wit", "deps/http.wit", "deps/io.wit", "deps/nn.wit", "deps/random.wit",
    "deps/sockets.wit",
);
const PYTHON_SDK: &[Asset] = assets!("../../../../guest-sdk/python/";
    "tensoras/__init__.py", "tensoras/ai.py", "tensoras/chat.py", "tensoras/errors.py", "tensoras/files.py", "tensoras/http.py",
    "tensoras/kb.py", "tensoras/kv.py", "tensoras/tool.py",
);
const JS_SDK: &[Asset] =
    assets!("../../../../guest-sdk/js/"; "tensoras.js", "tensoras.d.ts", "tensoras-chat.js", "tensoras-chat.d.ts");
const RUST_SDK: &[Asset] = assets!("../../../../guest-sdk/";
    "Cargo.toml", "src/lib.rs", "src/ai.rs", "src/chat.rs", "src/error.rs", "src/files.rs", "src/http.rs",
    "src/kb.rs", "src/kv.rs", "src/tool.rs",
);

// The wasi:http the JS engine (StarlingMonkey in componentize-js 0.23) is built against:
// its fetch-event handler exports `wasi:http/incoming-handler@0.2.10`, so JS builds see the
// WIT at that version. The interfaces are the same; the host links any 0.2.x.
const JS_WASI_HTTP: &str = "0.2.10";

fn write_assets(dir: &Path, assets: &[Asset]) -> anyhow::Result<()> {
    for a in assets {
        let path = dir.join(a.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, a.text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The WIT as a guest of `language` is built against.
fn write_wit(dir: &Path, language: Language) -> anyhow::Result<()> {
    write_assets(dir, WIT)?;
    if language == Language::Js {
        let vendored = wasi_http_version();
        for file in ["deps/http.wit", "worlds.wit"] {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)?
                .replace(&format!("wasi:http@{vendored}"), &format!("wasi:http@{JS_WASI_HTTP}"))
                .replace(&format!("wasi:http/proxy@{vendored}"), &format!("wasi:http/proxy@{JS_WASI_HTTP}"));
            std::fs::write(&path, text)?;
        }
    }
    Ok(())
}

/// The version of the vendored `wasi:http` package (`package wasi:http@X;`).
fn wasi_http_version() -> &'static str {
    let http = WIT.iter().find(|a| a.path == "deps/http.wit").map_or("", |a| a.text);
    http.lines().find_map(|l| l.trim().strip_prefix("package wasi:http@")).map_or("", |v| v.trim_end_matches(';'))
}

/// A project's manifest, language and kind, from its `tensoras.json`.
pub struct Project {
    pub dir: PathBuf,
    pub manifest: Value,
    pub name: String,
    pub language: Language,
    pub kind: Kind,
}

impl Project {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let file = dir.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {} (is {} a function project?)", file.display(), dir.display()))?;
        let manifest: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let name = manifest["name"].as_str().map(str::to_owned).with_context(|| format!("{}: no \"name\"", file.display()))?;
        let language = match manifest["language"].as_str() {
            Some(l) => {
                Language::parse(l).with_context(|| format!("{}: unknown language {l:?} (rust, python or js)", file.display()))?
            }
            None if dir.join("Cargo.toml").is_file() => Language::Rust,
            None if dir.join("app.py").is_file() => Language::Python,
            None if dir.join("app.js").is_file() => Language::Js,
            None => bail!("{}: no \"language\", and no Cargo.toml, app.py or app.js to tell", file.display()),
        };
        let kind = manifest["kind"].as_str().unwrap_or("tool");
        let kind =
            Kind::parse(kind).with_context(|| format!("{}: unknown kind {kind:?} (tool, http or chat)", file.display()))?;
        Ok(Self { dir: dir.to_owned(), manifest, name, language, kind })
    }

    /// Where `build` puts the component unless told otherwise.
    pub fn default_output(&self) -> PathBuf {
        self.dir.join("build").join(format!("{}.wasm", self.name))
    }

    /// The manifest the server takes: the project file without what only the build uses.
    pub fn deploy_manifest(&self) -> Value {
        let mut m = self.manifest.clone();
        if let Some(o) = m.as_object_mut() {
            o.remove("language");
        }
        m
    }
}

/// Builds a project into `out` (default `DIR/build/NAME.wasm`). Python and JS builds are
/// skipped when nothing they read has changed since the last one (a stamp of the inputs
/// beside the output); cargo decides that for itself.
pub fn build(dir: &Path, out: Option<PathBuf>) -> anyhow::Result<(Project, PathBuf)> {
    let project = Project::open(dir)?;
    let out = out.unwrap_or_else(|| project.default_output());
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let stamp = out.with_extension("wasm.inputs");
    let inputs = match project.language {
        Language::Rust => None,
        Language::Python | Language::Js => Some(inputs_digest(&project)?),
    };
    if let Some(d) = &inputs
        && out.is_file()
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == d)
    {
        eprintln!("{}: unchanged", out.display());
        return Ok((project, out));
    }
    let staging = tempfile::tempdir().context("creating a staging directory")?;
    let tmp = out.with_extension("wasm.tmp");
    match project.language {
        Language::Rust => build_rust(&project, &tmp)?,
        Language::Python => build_python(&project, staging.path(), &tmp)?,
        Language::Js => build_js(&project, staging.path(), &tmp)?,
    }
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    if let Some(d) = inputs {
        std::fs::write(&stamp, d)?;
    }
    eprintln!("{}: built ({} bytes)", out.display(), std::fs::metadata(&out)?.len());
    Ok((project, out))
}

/// Runs a build tool, naming it (and how to get it) when it is missing.
fn run(mut cmd: Command, tool: &str, install: &str) -> anyhow::Result<()> {
    // What the tool says goes to stderr: stdout is the command's result (a path, a JSON body).
    cmd.stdout(std::io::stderr());
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{tool} was not found: {install}"),
        Err(e) => return Err(e).with_context(|| format!("running {tool}")),
    };
    if !status.success() {
        bail!("{tool} failed ({status})");
    }
    Ok(())
}

/// A tool named by an environment variable, else found on PATH.
fn tool(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn build_python(p: &Project, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let (wit, sdk) = (staging.join("wit"), staging.join("sdk"));
    write_wit(&wit, Language::Python)?;
    write_assets(&sdk, PYTHON_SDK)?;
    if !p.dir.join("app.py").is_file() {
        bail!("{}: no app.py", p.dir.display());
    }
    let mut cmd = Command::new(tool("TENSORAS_COMPONENTIZE_PY", "componentize-py"));
    cmd.arg("-d").arg(&wit).args(["-w", p.kind.world(), "componentize", "-p"]).arg(&sdk).arg("-p").arg(&p.dir);
    cmd.args(["app", "-o"]).arg(out);
    run(cmd, "componentize-py", "pip install componentize-py==0.25.1, or set TENSORAS_COMPONENTIZE_PY")
}

fn build_js(p: &Project, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let (wit, src) = (staging.join("wit"), staging.join("src"));
    write_wit(&wit, Language::Js)?;
    // componentize-js reads the entry module and what it imports from one directory: the
    // project's scripts, and the SDK beside them.
    copy_sources(&p.dir, &src, &["js", "mjs", "json"])?;
    write_assets(&src, JS_SDK)?;
    let entry = src.join("app.js");
    if !entry.is_file() {
        bail!("{}: no app.js", p.dir.display());
    }
    let mut cmd = Command::new(tool("TENSORAS_COMPONENTIZE_JS", "componentize-js"));
    cmd.arg(&entry).arg("--wit").arg(&wit).args(["--world-name", p.kind.world(), "-o"]).arg(out);
    if p.kind != Kind::Http {
        // Only an HTTP function answers fetch events; the others would carry the
        // engine's unused handler.
        cmd.args(["-d", "fetch-event"]);
    }
    run(cmd, "componentize-js", "npm install @bytecodealliance/componentize-js@0.23.0, or set TENSORAS_COMPONENTIZE_JS")
}

fn build_rust(p: &Project, out: &Path) -> anyhow::Result<()> {
    const TARGET: &str = "wasm32-wasip2";
    let rustup = Command::new("rustup").args(["target", "list", "--installed"]).output();
    let has_target = rustup.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET));
    let mut cmd = Command::new(if has_target { "cargo" } else { "/usr/bin/cargo" });
    cmd.current_dir(&p.dir).args(["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics"]);
    if !has_target {
        // Debian's rustc-web builds std for the target from source (as the project's own
        // guests are built; see TOOLCHAIN.md): rust-web-src, wasi-libc and lld-16.
        if !Path::new("/usr/bin/cargo").is_file() || !Path::new("/usr/lib/wasm32-wasi").is_dir() {
            bail!(
                "no {TARGET} target: run `rustup target add {TARGET}` (or install Debian's rustc-web, cargo-web, rust-web-src, wasi-libc and lld-16)"
            );
        }
        let path = std::env::var("PATH").unwrap_or_default();
        let flags = std::env::var("RUSTFLAGS").map(|f| f + " ").unwrap_or_default();
        cmd.arg("-Zbuild-std=std,panic_abort")
            .env("PATH", format!("/usr/bin:/usr/lib/llvm-16/bin:{path}"))
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", format!("{flags}-L /usr/lib/wasm32-wasi"));
    }
    let output = match cmd.stderr(std::process::Stdio::inherit()).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("cargo was not found: install Rust (rustup.rs)"),
        Err(e) => return Err(e).context("running cargo"),
    };
    if !output.status.success() {
        bail!("cargo build failed ({})", output.status);
    }
    // The cdylib's artefact, from cargo's own report of what it wrote.
    let built = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .filter_map(|m| {
            m["filenames"].as_array()?.iter().filter_map(Value::as_str).find(|f| f.ends_with(".wasm")).map(PathBuf::from)
        })
        .next_back()
        .context("cargo built no .wasm: the crate must be a cdylib (crate-type = [\"cdylib\"])")?;
    std::fs::copy(&built, out).with_context(|| format!("copying {}", built.display()))?;
    Ok(())
}

/// Directories a build never reads from a project.
const SKIPPED: &[&str] = &["build", "target", "node_modules", "__pycache__", ".tensoras", ".git"];

/// Copies the project's files with these extensions, keeping their layout.
fn copy_sources(from: &Path, to: &Path, extensions: &[&str]) -> anyhow::Result<()> {
    for path in project_files(from)? {
        if path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)) {
            let dest = to.join(path.strip_prefix(from)?);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&path, &dest).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// The project's files, sorted, without build outputs and caches.
fn project_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                if !SKIPPED.iter().any(|s| name == *s) {
                    pending.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What a Python or JS build reads: the project's files, the SDK, the WIT, the tool.
fn inputs_digest(p: &Project) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(format!("{} {} {}\n", env!("CARGO_PKG_VERSION"), p.language.name(), p.kind.name()));
    for path in project_files(&p.dir)? {
        h.update(path.strip_prefix(&p.dir)?.to_string_lossy().as_bytes());
        h.update(std::fs::read(&path)?);
    }
    let sdk = if p.language == Language::Python { PYTHON_SDK } else { JS_SDK };
    for a in WIT.iter().chain(sdk) {
        h.update(a.path);
        h.update(a.text);
    }
    let tool = match p.language {
        Language::Python => tool("TENSORAS_COMPONENTIZE_PY", "componentize-py"),
        _ => tool("TENSORAS_COMPONENTIZE_JS", "componentize-js"),
    };
    h.update(tool.to_string_lossy().as_bytes());
    Ok(format!("{:x}", h.finalize()))
}

/// Scaffolds a project that builds as it is: `tensoras.json`, the source and, for Rust,
/// the SDK and WIT it compiles against (under `.tensoras/`).
pub fn new(name: &str, language: Language, kind: Kind, dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        bail!("a function name is 1 to 64 letters, digits, '-' or '_': {name:?}");
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ident = name.replace('-', "_");
    let manifest = json!({
        "name": name,
        "kind": kind.name(),
        "language": language.name(),
        "description": format!("{name}: describe what it does"),
        "grants": {"models": ["smollm2-135m-instruct"]},
        "limits": {"timeout_ms": 30000},
    });
    std::fs::write(dir.join(PROJECT_FILE), serde_json::to_string_pretty(&manifest)? + "\n")?;
    std::fs::write(dir.join(".gitignore"), "build/\ntarget/\n__pycache__/\n")?;
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{ident}}", &ident);
    match language {
        Language::Python => std::fs::write(dir.join("app.py"), fill(templates::python(kind)))?,
        Language::Js => std::fs::write(dir.join("app.js"), fill(templates::js(kind)))?,
        Language::Rust => {
            let sdk = dir.join(".tensoras");
            write_assets(&sdk.join("guest-sdk"), RUST_SDK)?;
            write_wit(&sdk.join("wit"), Language::Rust)?;
            std::fs::create_dir_all(dir.join("src"))?;
            std::fs::write(dir.join("Cargo.toml"), fill(templates::CARGO_TOML))?;
            std::fs::write(dir.join("src/lib.rs"), fill(templates::rust(kind)))?;
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new interface in wit/ must be carried too, or projects fail to build against it.
    #[test]
    fn every_wit_file_is_carried() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut on_disk = Vec::new();
        for dir in [root.clone(), root.join("deps")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "wit") {
                    on_disk.push(path.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut carried: Vec<String> = WIT.iter().map(|a| a.path.to_owned()).collect();
        carried.sort();
        assert_eq!(carried, on_disk);
    }

    #[test]
    fn js_wit_names_the_engines_wasi_http() {
        let dir = tempfile::tempdir().unwrap();
        write_wit(dir.path(), Language::Js).unwrap();
        let worlds = std::fs::read_to_string(dir.path().join("worlds.wit")).unwrap();
        assert!(worlds.contains(&format!("wasi:http/proxy@{JS_WASI_HTTP}")), "{worlds}");
        let http = std::fs::read_to_string(dir.path().join("deps/http.wit")).unwrap();
        assert!(http.starts_with(&format!("package wasi:http@{JS_WASI_HTTP};")));
        assert!(!wasi_http_version().is_empty());
    }

    #[test]
    fn new_refuses_bad_names_and_non_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(new("no spaces", Language::Python, Kind::Tool, Some(dir.path().join("a"))).is_err());
        std::fs::write(dir.path().join("c"), "").ok();
        let taken = dir.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("x"), "").unwrap();
        assert!(new("ok", Language::Js, Kind::Tool, Some(taken)).is_err());
    }

    #[test]
    fn a_new_project_opens_with_its_language_and_kind() {
        let root = tempfile::tempdir().unwrap();
        let cases = [
            (Language::Python, Kind::Http),
            (Language::Js, Kind::Tool),
            (Language::Rust, Kind::Chat),
            (Language::Python, Kind::Chat),
            (Language::Js, Kind::Chat),
        ];
        for (lang, kind) in cases {
            let dir = new("my-fn", lang, kind, Some(root.path().join(format!("{}-{}", lang.name(), kind.name())))).unwrap();
            let p = Project::open(&dir).unwrap();
            assert_eq!((p.language, p.kind, p.name.as_str()), (lang, kind, "my-fn"));
            assert!(p.deploy_manifest().get("language").is_none());
            assert!(!std::fs::read_to_string(dir.join(PROJECT_FILE)).unwrap().contains("{{"));
        }
        // Python's blocks are its indentation: the template keeps it.
        let app = std::fs::read_to_string(root.path().join("python-http/app.py")).unwrap();
        assert!(app.contains("(req):\n    text = "), "{app}");
        assert!(root.path().join("rust-chat/.tensoras/wit/worlds.wit").is_file());
        assert!(root.path().join("rust-chat/.tensoras/guest-sdk/src/lib.rs").is_file());
    }

    #[test]
    fn the_inputs_digest_follows_the_sources() {
        let root = tempfile::tempdir().unwrap();
        let dir = new("d", Language::Python, Kind::Tool, Some(root.path().join("d"))).unwrap();
        let before = inputs_digest(&Project::open(&dir).unwrap()).unwrap();
        std::fs::create_dir_all(dir.join("build")).unwrap();
        std::fs::write(dir.join("build/d.wasm"), "x").unwrap();
        assert_eq!(before, inputs_digest(&Project::open(&dir).unwrap()).unwrap(), "outputs are not inputs");
        std::fs::write(dir.join("helper.py"), "X = 1\n").unwrap();
        assert_ne!(before, inputs_digest(&Project::open(&dir).unwrap()).unwrap());
    }
}
