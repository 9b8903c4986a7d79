//! The `tensoras` command: `serve` runs the API server; `keys` manages API keys in the
//! data directory; `functions` deploys and manages functions on a running server.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let telemetry = match tensoras::telemetry::init(args.log_format(), args.traces()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: setting up logs and traces: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if tensoras::telemetry::exporting() {
        tracing::info!("exporting request traces over OTLP");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The spans of the last requests, sent before the process ends.
    drop(telemetry);
    code
}
