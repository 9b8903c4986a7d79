//! `misbehave`: a tool that breaks on purpose, to test the host's sandbox.
//!
//! `{"mode": ...}` picks the failure:
//!
//! | mode | what happens | what the host should do |
//! |---|---|---|
//! | `trap` | `panic!` (an `unreachable` trap, since panics abort) | report a trap |
//! | `loop` | spins forever | stop it by fuel or epoch deadline |
//! | `alloc` | allocates and touches 1 MiB chunks forever | stop it at the memory limit |
//! | `stack` | recurses without bound (or to `"depth"` if given) | report a stack overflow trap |
//! | `ok` | returns `{"ok": true}` | nothing; proves the instance works |
//!
//! Each bad mode is written so the optimiser cannot remove or shortcut it.

use std::hint::black_box;

use tensoras_guest::serde_json::{Value, json};
use tensoras_guest::{Tool, ToolError, ToolInfo};

/// One memory-bomb step.
const CHUNK: usize = 1024 * 1024;

/// The exported tool.
struct Misbehave;

impl Tool for Misbehave {
    fn info() -> ToolInfo {
        ToolInfo::new(
            "misbehave",
            "Misbehaves on purpose (trap, endless loop, memory bomb, stack overflow) to test sandbox limits",
            json!({
                "type": "object",
                "properties": {
                    "mode": {
                        "type": "string",
                        "enum": ["trap", "loop", "alloc", "stack", "ok"],
                        "description": "How to misbehave"
                    },
                    "depth": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "For `stack`: stop after this many levels instead of overflowing"
                    }
                },
                "required": ["mode"],
                "additionalProperties": false
            }),
        )
    }

    fn call(args: Value) -> Result<Value, ToolError> {
        match tensoras_guest::tool::required_str(&args, "mode")? {
            "trap" => panic!("deliberate trap"),
            "loop" => spin(),
            "alloc" => hoard(),
            // `depth` (optional) bounds the recursion, for testing that the
            // tool itself works; without it the recursion never ends.
            "stack" => {
                let limit = args.get("depth").and_then(Value::as_u64).unwrap_or(u64::MAX);
                Ok(json!({ "depth": recurse(0, limit) }))
            }
            "ok" => Ok(json!({ "ok": true })),
            other => Err(ToolError::InvalidArguments(format!("unknown mode `{other}`; expected trap, loop, alloc, stack or ok"))),
        }
    }
}

/// Loops forever. The counter goes through `black_box` each turn, so the loop
/// has an observable effect and cannot be deleted as side-effect free (an
/// empty infinite loop is undefined behaviour in LLVM's eyes).
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks forever, writing every page so the memory is really
/// committed, and keeps them all alive.
fn hoard() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        kept.push(black_box(chunk));
        black_box(&kept);
    }
}

/// Recurses until the wasm call stack overflows.
///
/// The frames live on the engine's native stack, so the host sees a real
/// stack-overflow trap. Hence no `black_box` and no large arrays here: their
/// addresses would put them on the shadow stack in linear memory (1 MiB, at
/// the bottom of memory), whose overflow is an out-of-bounds memory trap that
/// the host cannot tell from other memory faults. The work after the call
/// keeps it from being a tail call that LLVM could turn into a loop, and
/// `limit` comes from the caller's arguments, so the optimiser cannot prove
/// the recursion endless and delete it either.
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if depth >= limit {
        return depth;
    }
    let below = recurse(depth + 1, limit);
    below.wrapping_mul(31).wrapping_add(depth.rotate_left(7) ^ 0x9E37_79B9_7F4A_7C15)
}

tensoras_guest::export_tool!(Misbehave);
