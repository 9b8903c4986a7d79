//! Command-line interface.

mod functions;
mod keys;
mod models;
mod project;
mod serve;
mod tenants;
mod usage;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tensoras::telemetry::LogFormat;

/// Tensoras: an OpenAI-compatible inference platform with WebAssembly functions.
#[derive(Debug, Parser)]
#[command(name = "tensoras", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one object a line,
    /// the request's id, method and path in `span`) for log collectors.
    #[arg(long, global = true, env = "TENSORAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

impl Cli {
    /// The log format asked for.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// Whether traces are exported: by `serve` only (a command's spans would be noise in a
    /// collector), to the endpoint it was given or OpenTelemetry's variables name.
    pub fn traces(&self) -> tensoras::telemetry::Traces<'_> {
        match &self.command {
            Command::Serve(args) => tensoras::telemetry::Traces::IfConfigured { endpoint: args.otlp_endpoint.as_deref() },
            _ => tensoras::telemetry::Traces::Off,
        }
    }
}

// Parsed once per process, so the size of `Serve`'s many flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server.
    Serve(serve::ServeArgs),
    /// Manage API keys (works on the data directory; the server may be running).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Set tenants' plans and monthly budgets (works on the data directory).
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Deploy and manage functions on a running server.
    #[command(subcommand)]
    Functions(functions::FunctionsCommand),
    /// List, import and pull models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Tokens, requests and cost per day, model, key or tenant, from a running server.
    Usage(usage::UsageArgs),
}

/// Where state lives; shared by the commands that open the database.
#[derive(Debug, clap::Args)]
struct DataDirArg {
    /// Directory holding all state (database, components, caches).
    #[arg(long, env = "TENSORAS_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

/// The operator's plans file, read by the server and by the commands that assign plans.
#[derive(Debug, Clone, clap::Args)]
struct PlansArg {
    /// Rate-limit plans (TOML: `default = "NAME"`, `[plans.NAME]` with `rpm`, `tpm`,
    /// `max_concurrent`, `knowledge_bases`, `storage_mb`), added to the published ones.
    #[arg(long = "plans", env = "TENSORAS_PLANS_FILE", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl PlansArg {
    fn load(&self) -> anyhow::Result<tensoras::plans::Plans> {
        use anyhow::Context as _;
        let Some(path) = &self.file else { return Ok(tensoras::plans::Plans::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the plans file {}", path.display()))?;
        tensoras::plans::Plans::with_file(&text).with_context(|| format!("plans file {}", path.display()))
    }

    /// `name` if it is a plan these plans know.
    fn check(&self, name: &str) -> anyhow::Result<()> {
        let plans = self.load()?;
        anyhow::ensure!(plans.get(name).is_some(), "no plan named {name:?}; known plans: {}", plans.names().join(", "));
        Ok(())
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Keys(cmd) => keys::run(cmd),
        Command::Tenants(cmd) => tenants::run(cmd),
        Command::Functions(cmd) => functions::run(cmd).await,
        Command::Models(cmd) => models::run(cmd),
        Command::Usage(args) => usage::run(args).await,
    }
}
