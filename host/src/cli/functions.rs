//! `tensoras functions`: a client of a running server's `/v1/functions` API.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};

use super::project;

/// Server and credentials.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// Server base URL.
    #[arg(long, env = "TENSORAS_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key.
    #[arg(long, env = "TENSORAS_API_KEY", hide_env_values = true)]
    api_key: String,
}

#[derive(Debug, Subcommand)]
pub enum FunctionsCommand {
    /// Scaffold a function project that builds as it is (`tensoras.json` and its source).
    New {
        /// Function name (also the directory, unless --dir says otherwise).
        name: String,
        /// The language it is written in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: project::Language,
        /// What it exports: a tool, an HTTP handler or a chat model (`fn:NAME`).
        #[arg(long, value_enum, default_value = "tool")]
        kind: project::Kind,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a function project into a component (with cargo, componentize-py or
    /// componentize-js, as its language needs).
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: DIR/build/NAME.wasm).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Deploy a component, or a project directory (built first; `tensoras.json` is its manifest).
    Deploy {
        /// Path to the `.wasm` component, or to a project directory.
        path: PathBuf,
        /// Function name (defaults to the file name).
        #[arg(long)]
        name: Option<String>,
        /// `tool`, `http` or `chat` (served as model `fn:NAME`).
        #[arg(long, default_value = "tool")]
        kind: String,
        /// Description shown to models (tools).
        #[arg(long)]
        description: Option<String>,
        /// A manifest JSON file with limits and grants; flags override its fields.
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List functions.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one function.
    Get {
        /// Function name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a function.
    Delete {
        /// Function name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a function's versions (each deploy is one; the serving one is marked active).
    Versions {
        /// Function name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make an earlier version serve again.
    Rollback {
        /// Function name.
        name: String,
        /// The version to serve.
        version: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a function's recent invocations and what each wrote to stdout and stderr.
    Logs {
        /// Function name.
        name: String,
        /// Keep printing new invocations as they happen (polls once a second).
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Call a tool function with JSON arguments.
    Call {
        /// Function name.
        name: String,
        /// Arguments object, as JSON.
        #[arg(default_value = "{}")]
        arguments: String,
        #[command(flatten)]
        remote: Remote,
    },
}

impl Remote {
    fn endpoint(&self, path: &str) -> String {
        self.url(&format!("/v1/functions{path}"))
    }

    /// The server's URL for `path`.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }
}

/// Sends a request and returns its JSON body, turning API errors into readable errors.
pub(super) async fn send(req: reqwest::RequestBuilder, remote: &Remote) -> anyhow::Result<Value> {
    let resp = req.bearer_auth(&remote.api_key).send().await.with_context(|| format!("connecting to {}", remote.url))?;
    let status = resp.status();
    let body: Value = resp.json().await.context("reading the server's answer")?;
    if !status.is_success() {
        let msg = body["error"]["message"].as_str().unwrap_or("unknown error");
        anyhow::bail!("{status}: {msg}");
    }
    Ok(body)
}

/// Prints invocations after `after` until none are left (and, with `follow`, forever).
async fn print_logs(client: &reqwest::Client, name: &str, follow: bool, remote: &Remote) -> anyhow::Result<()> {
    let mut after: Option<u64> = None;
    loop {
        let query = after.map_or(String::new(), |a| format!("&after={a}"));
        let page = send(client.get(remote.endpoint(&format!("/{name}/logs?limit=200{query}"))), remote).await?;
        let entries = page["data"].as_array().cloned().unwrap_or_default();
        for e in &entries {
            let status = match e["error"].as_str() {
                Some(err) => format!("error: {err}"),
                None => "ok".into(),
            };
            println!("#{} at {} ms, {:.1} ms, {status}", e["id"], e["started_at_ms"], e["duration_ms"].as_f64().unwrap_or(0.0));
            let output = e["output"].as_str().unwrap_or_default();
            if !output.is_empty() {
                println!("{}", output.trim_end());
            }
            after = e["id"].as_u64().or(after);
        }
        if !follow && entries.len() < 200 {
            return Ok(());
        }
        if entries.is_empty() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

async fn deploy(client: &reqwest::Client, wasm: Vec<u8>, manifest: &Value, remote: &Remote) -> anyhow::Result<Value> {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(wasm).file_name("function.wasm").mime_str("application/wasm")?)
        .text("manifest", manifest.to_string());
    send(client.post(remote.endpoint("")).multipart(form), remote).await
}

/// Overlays `extra`'s fields on `base` (objects merged key by key, anything else replaced).
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

pub async fn run(cmd: FunctionsCommand) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let out = match cmd {
        FunctionsCommand::Logs { name, follow, remote } => return print_logs(&client, &name, follow, &remote).await,
        FunctionsCommand::New { name, lang, kind, dir } => {
            let dir = project::new(&name, lang, kind, dir)?;
            println!("created {}: build it with `tensoras functions build {0}`", dir.display());
            return Ok(());
        }
        FunctionsCommand::Build { dir, out } => {
            let (_, built) = tokio::task::spawn_blocking(move || project::build(&dir, out)).await??;
            println!("{}", built.display());
            return Ok(());
        }
        FunctionsCommand::Deploy { path, name, kind, description, manifest, remote } if path.is_dir() => {
            let (project, built) = tokio::task::spawn_blocking(move || project::build(&path, None)).await??;
            let mut m = project.deploy_manifest();
            if let Some(p) = &manifest {
                let extra: Value =
                    serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                        .with_context(|| format!("parsing {}", p.display()))?;
                merge(&mut m, extra);
            }
            if let Some(n) = name {
                m["name"] = Value::String(n);
            }
            if kind != "tool" {
                m["kind"] = Value::String(kind);
            }
            if let Some(d) = description {
                m["description"] = Value::String(d);
            }
            let wasm = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
            deploy(&client, wasm, &m, &remote).await?
        }
        FunctionsCommand::Deploy { path, name, kind, description, manifest, remote } => {
            let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut m: Value = match &manifest {
                Some(p) => serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                    .with_context(|| format!("parsing {}", p.display()))?,
                None => json!({}),
            };
            let default_name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("function").to_owned();
            if let Some(n) = name.or_else(|| m.get("name").is_none().then_some(default_name)) {
                m["name"] = Value::String(n);
            }
            if manifest.is_none() || m.get("kind").is_none() {
                m["kind"] = Value::String(kind);
            }
            if let Some(d) = description {
                m["description"] = Value::String(d);
            }
            deploy(&client, wasm, &m, &remote).await?
        }
        FunctionsCommand::List { remote } => send(client.get(remote.endpoint("")), &remote).await?,
        FunctionsCommand::Get { name, remote } => send(client.get(remote.endpoint(&format!("/{name}"))), &remote).await?,
        FunctionsCommand::Versions { name, remote } => {
            send(client.get(remote.endpoint(&format!("/{name}/versions"))), &remote).await?
        }
        FunctionsCommand::Rollback { name, version, remote } => {
            send(client.post(remote.endpoint(&format!("/{name}/rollback"))).json(&json!({"version": version})), &remote).await?
        }
        FunctionsCommand::Delete { name, remote } => send(client.delete(remote.endpoint(&format!("/{name}"))), &remote).await?,
        FunctionsCommand::Call { name, arguments, remote } => {
            let args: Value = serde_json::from_str(&arguments).context("arguments must be a JSON object")?;
            send(client.post(remote.endpoint(&format!("/{name}/call"))).json(&args), &remote).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
