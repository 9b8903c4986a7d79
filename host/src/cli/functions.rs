//! `tensoras functions`: a client of a running server's `/v1/functions` API.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};

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
    /// Deploy a component.
    Deploy {
        /// Path to the `.wasm` component.
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
        format!("{}/v1/functions{path}", self.url.trim_end_matches('/'))
    }
}

/// Sends a request and returns its JSON body, turning API errors into readable errors.
async fn send(req: reqwest::RequestBuilder, remote: &Remote) -> anyhow::Result<Value> {
    let resp = req.bearer_auth(&remote.api_key).send().await.with_context(|| format!("connecting to {}", remote.url))?;
    let status = resp.status();
    let body: Value = resp.json().await.context("reading the server's answer")?;
    if !status.is_success() {
        let msg = body["error"]["message"].as_str().unwrap_or("unknown error");
        anyhow::bail!("{status}: {msg}");
    }
    Ok(body)
}

pub async fn run(cmd: FunctionsCommand) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let out = match cmd {
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
            let form = reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(wasm).file_name("function.wasm").mime_str("application/wasm")?)
                .text("manifest", m.to_string());
            send(client.post(remote.endpoint("")).multipart(form), &remote).await?
        }
        FunctionsCommand::List { remote } => send(client.get(remote.endpoint("")), &remote).await?,
        FunctionsCommand::Get { name, remote } => send(client.get(remote.endpoint(&format!("/{name}"))), &remote).await?,
        FunctionsCommand::Delete { name, remote } => send(client.delete(remote.endpoint(&format!("/{name}"))), &remote).await?,
        FunctionsCommand::Call { name, arguments, remote } => {
            let args: Value = serde_json::from_str(&arguments).context("arguments must be a JSON object")?;
            send(client.post(remote.endpoint(&format!("/{name}/call"))).json(&args), &remote).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
