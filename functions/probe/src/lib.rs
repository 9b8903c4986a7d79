//! `probe`: a tool that reports which WASI capabilities it was granted.
//!
//! Each action tries one capability through the Rust standard library and
//! reports the outcome as `{"ok": bool, "detail": string}` instead of failing,
//! so host tests can check that a manifest's grants (preopened directories,
//! network, environment) are enforced:
//!
//! | arguments | `detail` when `ok` |
//! |---|---|
//! | `{"action":"read_file","path":P}` | the file's content (lossy UTF-8) |
//! | `{"action":"write_file","path":P,"content":C}` | `wrote N bytes` |
//! | `{"action":"connect","addr":"127.0.0.1:PORT"}` | `connected` |
//! | `{"action":"env","name":N}` | the variable's value |
//! | `{"action":"list_dir","path":P}` | entry names, sorted, one per line |
//!
//! When `ok` is false, `detail` is the error text. Only malformed arguments
//! are a [`ToolError`]; a denied capability never is, and never traps.
//!
//! `connect` talks to `wasi:sockets` directly (module `tcp`) rather than through
//! `std::net::TcpStream`: std's wasm32-wasip2 sockets go through wasi-libc, and
//! the Debian wasi-libc the project builds with on machines without the rustup
//! target has no `socket`/`connect`, so `TcpStream::connect` does not link there.

mod tcp;

use std::net::SocketAddr;

use tensoras_guest::serde_json::{Value, json};
use tensoras_guest::tool::required_str;
use tensoras_guest::{Tool, ToolError, ToolInfo};

/// The exported tool.
struct Probe;

impl Tool for Probe {
    fn info() -> ToolInfo {
        ToolInfo::new(
            "probe",
            "Reports whether WASI capabilities (files, network, environment) are available",
            json!({
                "type": "object",
                "properties": {
                    "action": {
                        "type": "string",
                        "enum": ["read_file", "write_file", "connect", "env", "list_dir"]
                    },
                    "path": {"type": "string", "description": "File or directory (read_file, write_file, list_dir)"},
                    "content": {"type": "string", "description": "Text to write (write_file)"},
                    "addr": {"type": "string", "description": "IP:port to connect to (connect)"},
                    "name": {"type": "string", "description": "Environment variable (env)"}
                },
                "required": ["action"]
            }),
        )
    }

    fn call(args: Value) -> Result<Value, ToolError> {
        let outcome = match required_str(&args, "action")? {
            "read_file" => read_file(required_str(&args, "path")?),
            "write_file" => write_file(required_str(&args, "path")?, required_str(&args, "content")?),
            "connect" => connect(required_str(&args, "addr")?)?,
            "env" => env(required_str(&args, "name")?),
            "list_dir" => list_dir(required_str(&args, "path")?),
            other => {
                return Err(ToolError::InvalidArguments(format!(
                    "unknown action `{other}`; expected read_file, write_file, connect, env or list_dir"
                )));
            }
        };
        Ok(match outcome {
            Ok(detail) => json!({ "ok": true, "detail": detail }),
            Err(detail) => json!({ "ok": false, "detail": detail }),
        })
    }
}

/// The result of one probe: the detail text either way.
type Outcome = Result<String, String>;

fn read_file(path: &str) -> Outcome {
    std::fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).map_err(|e| format!("{path}: {e}"))
}

fn write_file(path: &str, content: &str) -> Outcome {
    std::fs::write(path, content).map(|()| format!("wrote {} bytes", content.len())).map_err(|e| format!("{path}: {e}"))
}

/// Connects over TCP. Only a literal `ip:port` is accepted (a malformed one is
/// a [`ToolError`]): a host name would need DNS, a separate capability.
fn connect(addr: &str) -> Result<Outcome, ToolError> {
    let addr: SocketAddr =
        addr.parse().map_err(|e| ToolError::InvalidArguments(format!("`addr` must be IP:port, got `{addr}`: {e}")))?;
    Ok(tcp::connect(addr).map(|()| "connected".to_string()).map_err(|e| format!("{addr}: {e}")))
}

fn env(name: &str) -> Outcome {
    std::env::var(name).map_err(|e| format!("{name}: {e}"))
}

fn list_dir(path: &str) -> Outcome {
    let entries = std::fs::read_dir(path).map_err(|e| format!("{path}: {e}"))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{path}: {e}"))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    // Directory order is up to the host file system; sort for stable output.
    names.sort();
    Ok(names.join("\n"))
}

tensoras_guest::export_tool!(Probe);
