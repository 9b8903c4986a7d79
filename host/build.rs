//! Embeds the web console: the files `npm run build` leaves in `host/console/dist`
//! (scripts/setup.sh runs it before cargo) become a table of `include_bytes!`, so the
//! binary serves `/console` with nothing beside it. A checkout built without npm gets an
//! empty table and a console that says how to build it.

use std::io::{Error, Result};
use std::path::{Path, PathBuf};

fn main() -> Result<()> {
    let manifest = PathBuf::from(cargo_var("CARGO_MANIFEST_DIR")?);
    let dist = manifest.join("console").join("dist");
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        // Cargo scans a directory named here for changed files, so a rebuilt console
        // relinks the binary and an unchanged one costs nothing.
        println!("cargo:rerun-if-changed=console/dist");
        collect(&dist, &dist, &mut files)?;
    } else {
        println!("cargo:rerun-if-changed=console");
        println!("cargo:warning=host/console/dist is missing: the binary's /console says how to build it (make setup)");
    }
    files.sort();
    let mut table =
        String::from("/// The console's files: path under `/console/`, bytes.\npub static ASSETS: &[(&str, &[u8])] = &[\n");
    // Paths from the crate's directory as the compiler sees it, not as this script did:
    // checkouts at other paths share one target directory (scripts/env.sh), and a table
    // naming another checkout's files would build from them, or fail once they are gone.
    for name in &files {
        let path = format!("/console/dist/{name}");
        table.push_str(&format!("    ({name:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {path:?}))),\n"));
    }
    table.push_str("];\n");
    std::fs::write(PathBuf::from(cargo_var("OUT_DIR")?).join("console_assets.rs"), table)
}

fn cargo_var(name: &str) -> Result<std::ffi::OsString> {
    std::env::var_os(name).ok_or_else(|| Error::other(format!("cargo did not set {name}")))
}

/// The files under `dir`, as `/`-separated paths from `root`.
fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let name = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            files.push(name);
        }
    }
    Ok(())
}
