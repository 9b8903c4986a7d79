//! A small deterministic mutation fuzzer that builds with stable Rust.
//!
//! cargo-fuzz needs nightly (libFuzzer and the sanitizer flags); this project builds with
//! Debian's stable 1.96, so its fuzz targets run on this instead: a seeded PRNG, a corpus
//! of valid inputs per target, byte-level and structure-aware mutations, and
//! `catch_unwind` around every call. There is no coverage feedback, so mutants are kept
//! in a small pool at random rather than by new edges; the seeds and the dictionary of
//! format tokens carry the structure instead.
//!
//! One file, shared by the host's `tests/fuzz.rs` and the guest crates' fuzz tests
//! (through `#[path]`), so every target is driven the same way:
//!
//! - `FUZZ_SECONDS=N` runs each target for N seconds (by hand, `make fuzz`); without it a
//!   target runs its fixed CI iteration count, so CI does the same work on every run;
//! - `FUZZ_SEED=N` changes the PRNG seed (default: derived from the target name, so CI is
//!   reproducible; `make fuzz` passes a fresh one);
//! - `FUZZ_REPRO=path` runs only that input, through the target whose name the file
//!   starts with, to reproduce a crash;
//! - `FUZZ_CRASH_DIR` is where failing inputs are written (default
//!   `$TMPDIR/tensoras-fuzz`);
//! - `FUZZ_HANG_SECONDS` (long runs only, default 10): one input running longer than
//!   this is written out as `<target>.hang` and the process aborts; `FUZZ_SLOW_MS`
//!   (default 1000): slower inputs are written out as `<target>.slow-*.bin` and named,
//!   without failing. CI runs time nothing, so nothing there depends on timing;
//! - `FUZZ_TRACE=1` writes each input to `<target>.current` before running it (an 8-byte
//!   little-endian length, then the input; stale bytes may follow): after an abort no
//!   handler sees (a stack overflow), that is the culprit. `FUZZ_REPRO` reads this format
//!   too.
//!
//! Every file in the target's regression folder (`regressions/<target>/`, next to the
//! test file) runs first, unmutated, on every run: that is how a crash found once
//! becomes a regression test.

#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// splitmix64: tiny, fast and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Small sizes far more often than large ones (fuzzers find most with short inputs).
    pub fn size(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => self.below(4.min(max + 1)),
            1 => self.below(17.min(max + 1)),
            2 => self.below(257.min(max + 1)),
            _ => self.below(max + 1),
        }
    }
}

/// FNV-1a, for default seeds and crash file names.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Bytes that break parsers: invalid UTF-8 (a lone lead byte, a surrogate, an overlong
/// form, 0xFF), NUL, and the largest code point.
const NASTY: &[&[u8]] = &[
    b"\xC3",
    b"\xED\xA0\x80",
    b"\xC0\xAF",
    b"\xFF",
    b"\xF4\x90\x80\x80",
    b"\0",
    "\u{10FFFF}".as_bytes(),
    "\u{FEFF}".as_bytes(),
    "\u{FFFD}".as_bytes(),
    "é".as_bytes(),
    b"\r\n",
    b"\t",
];

/// Numbers at the edges of every integer and float type.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1e309",
    "-1e309",
    "1e-400",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "340282366920938463463374607431768211456",
    "0.1e1",
    "1152921504606846976",
    "123456789012345678901234567890",
    "NaN",
    "Infinity",
    "1.7976931348623157e308",
    "5e-324",
];

/// One mutation of `input`. `dict` holds tokens of the target's format (tags, keys,
/// operators); `corpus` other inputs to splice from.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], dict: &[&[u8]], max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.range(1, 4) {
        mutate_once(rng, &mut out, corpus, dict);
    }
    out.truncate(max_len);
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[&[u8]]) {
    let len = out.len();
    let at = rng.below(len + 1);
    match rng.below(15) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            out[i] ^= 1 << rng.below(8);
        }
        // Replace a byte by an interesting one.
        1 if len > 0 => {
            let i = rng.below(len);
            out[i] =
                *rng.pick(&[0u8, 0xFF, 0x7F, 0x80, b'\n', b'"', b'<', b'>', b'{', b'}', b'[', b']', b',', b'\\', b'&', b';']);
        }
        // Insert random bytes.
        2 => {
            let n = rng.size(64);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
        // Delete a range.
        3 if len > 0 => {
            let start = rng.below(len);
            let n = rng.size(len - start).max(1);
            out.drain(start..start + n);
        }
        // Truncate.
        4 => out.truncate(at),
        // Repeat a block many times (deep nesting, long runs, many records).
        5 if len > 0 => {
            let start = rng.below(len);
            let n = rng.size(len - start).max(1);
            let block = out[start..start + n].to_vec();
            let times = *rng.pick(&[2usize, 3, 16, 100, 1000]);
            let repeated: Vec<u8> = block.iter().copied().cycle().take((block.len() * times).min(1 << 16)).collect();
            out.splice(start..start, repeated);
        }
        // Splice with another corpus entry.
        6 if !corpus.is_empty() => {
            let other = rng.pick(corpus);
            let from = rng.below(other.len() + 1);
            let n = rng.size(other.len() - from);
            let cut = rng.below(len + 1);
            out.truncate(cut);
            out.extend_from_slice(&other[from..from + n]);
        }
        // A format token, sometimes many times over (open tags, brackets: nesting).
        7 | 8 if !dict.is_empty() => {
            let token = *rng.pick(dict);
            let times = if rng.one_in(4) { *rng.pick(&[2usize, 10, 200, 5000]) } else { 1 };
            let bytes: Vec<u8> = token.iter().copied().cycle().take((token.len() * times).min(1 << 16)).collect();
            out.splice(at..at, bytes);
        }
        // A huge, tiny or odd number, replacing a run of digits when there is one.
        9 => {
            let number = rng.pick(NUMBERS).as_bytes();
            match out.iter().position(|b| b.is_ascii_digit()) {
                Some(d) if rng.one_in(2) => {
                    let end = out[d..].iter().position(|b| !b.is_ascii_digit()).map_or(len, |e| d + e);
                    out.splice(d..end, number.iter().copied());
                }
                _ => {
                    out.splice(at..at, number.iter().copied());
                }
            }
        }
        // Invalid UTF-8 and other hostile bytes.
        10 => {
            let nasty = *rng.pick(NASTY);
            out.splice(at..at, nasty.iter().copied());
        }
        // Overwrite a range with a copy of another range of the input.
        11 if len > 1 => {
            let from = rng.below(len);
            let n = rng.size(len - from).max(1);
            let block = out[from..from + n].to_vec();
            let to = rng.below(len);
            let end = (to + n).min(len);
            out.splice(to..end, block);
        }
        // Swap two bytes.
        12 if len > 1 => {
            let (i, j) = (rng.below(len), rng.below(len));
            out.swap(i, j);
        }
        // Add or subtract a small amount to a byte (length and count fields).
        13 if len > 0 => {
            let i = rng.below(len);
            out[i] = out[i].wrapping_add(*rng.pick(&[1u8, 255, 16, 240, 128]));
        }
        // A random little-endian u64/u32 at a random place (length and count fields).
        _ if len >= 8 => {
            let i = rng.below(len - 7);
            let v: u64 = *rng.pick(&[u64::MAX, 1 << 60, 1 << 32, u32::MAX as u64, 1 << 31, 0, 1, 0xFFFF]);
            let width = if rng.one_in(2) { 8 } else { 4 };
            out[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
        }
        _ => {
            let n = rng.size(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
    }
}

/// A random node of `v`: the root or, two times in three, somewhere below it.
fn pick_node<'v>(rng: &mut Rng, v: &'v mut Value) -> &'v mut Value {
    let len = match &*v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    if len == 0 || rng.one_in(3) {
        return v;
    }
    let i = rng.below(len);
    match v {
        Value::Array(a) => pick_node(rng, &mut a[i]),
        Value::Object(o) => match o.values_mut().nth(i) {
            Some(child) => pick_node(rng, child),
            None => unreachable!("index below the object's length"),
        },
        _ => unreachable!("only containers have children"),
    }
}

/// A dictionary token as a JSON key or string: quotes and a trailing colon dropped.
fn dict_word(rng: &mut Rng, dict: &[&[u8]]) -> String {
    let raw = if dict.is_empty() { b"k".as_slice() } else { *rng.pick(dict) };
    String::from_utf8_lossy(raw).trim_end_matches(':').trim_matches('"').to_owned()
}

fn random_scalar(rng: &mut Rng, dict: &[&[u8]]) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => serde_json::from_str(rng.pick(NUMBERS)).unwrap_or(Value::from(u64::MAX)),
        3 => Value::from(rng.next_u64() as i64 >> rng.below(64)),
        4 => Value::String(String::from_utf8_lossy(rng.pick(NASTY)).repeat(*rng.pick(&[1usize, 2, 300]))),
        _ => Value::String(dict_word(rng, dict)),
    }
}

/// One structure-aware mutation of a JSON tree: a node replaced by a scalar, by another
/// node (of `other` too), wrapped in deep nesting, emptied, deleted, or given new keys
/// and elements. The dictionary gives keys and strings.
pub fn mutate_json(rng: &mut Rng, v: &mut Value, other: &Value, dict: &[&[u8]], max_len: usize) {
    let donor = {
        let mut copy = if rng.one_in(2) { v.clone() } else { other.clone() };
        pick_node(rng, &mut copy).clone()
    };
    let node = pick_node(rng, v);
    match rng.below(8) {
        0 => *node = random_scalar(rng, dict),
        1 => *node = donor,
        2 => {
            // Deep nesting, in arrays or objects.
            let depth = *rng.pick(&[2usize, 16, 200, 3000]);
            let key = dict_word(rng, dict);
            let mut inner = std::mem::take(node);
            for _ in 0..depth {
                inner =
                    if rng.one_in(2) { Value::Array(vec![inner]) } else { Value::Object(Map::from_iter([(key.clone(), inner)])) };
            }
            *node = inner;
        }
        3 => match node {
            Value::Array(a) => a.clear(),
            Value::Object(o) => o.clear(),
            Value::String(s) => s.clear(),
            other => *other = Value::Array(Vec::new()),
        },
        4 => match node {
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                a.remove(i);
            }
            Value::Object(o) if !o.is_empty() => {
                let i = rng.below(o.len());
                if let Some(k) = o.keys().nth(i).cloned() {
                    o.remove(&k);
                }
            }
            other => *other = Value::Object(Map::new()),
        },
        5 => match node {
            Value::Array(a) => {
                let item = a.first().cloned().unwrap_or_else(|| random_scalar(rng, dict));
                // Copies of a big element would compound over stacked mutations: stay
                // within the input size limit.
                let room = max_len / (item.to_string().len() + 1);
                let times = (*rng.pick(&[1usize, 2, 50, 2000])).min(room);
                a.extend(std::iter::repeat_n(item, times));
            }
            Value::Object(o) => {
                o.insert(dict_word(rng, dict), donor);
            }
            other => *other = Value::Array(vec![other.clone(), donor]),
        },
        6 => {
            if let Value::Object(o) = node {
                o.insert(dict_word(rng, dict), random_scalar(rng, dict));
            } else {
                *node = Value::Object(Map::from_iter([(dict_word(rng, dict), random_scalar(rng, dict))]));
            }
        }
        _ => {
            // A number or string next to the edges of its type.
            *node = match node {
                Value::Number(_) => serde_json::from_str(rng.pick(NUMBERS)).unwrap_or(Value::from(i64::MIN)),
                Value::String(s) => Value::String(format!("{s}{}", String::from_utf8_lossy(rng.pick(NASTY)))),
                _ => random_scalar(rng, dict),
            };
        }
    }
}

/// How long one target runs.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Iterations(u64),
    Seconds(u64),
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// One fuzz target: a name (also the regression folder and crash file prefix), its seed
/// inputs, a dictionary of format tokens, and how many inputs to try in CI.
pub struct Target<'a> {
    pub name: &'a str,
    /// Folder holding `regressions/<name>/` (the test file's directory).
    pub dir: &'a Path,
    pub seeds: Vec<Vec<u8>>,
    pub dict: &'a [&'a [u8]],
    pub ci_iterations: u64,
    /// Longest mutant tried.
    pub max_len: usize,
    /// The inputs are JSON: half the mutants are made on the parsed tree (see
    /// [`mutate_json`]), so most stay JSON and reach the validation behind the parser.
    pub json: bool,
}

/// A panic's message.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

fn crash_dir() -> PathBuf {
    std::env::var_os("FUZZ_CRASH_DIR").map_or_else(|| std::env::temp_dir().join("tensoras-fuzz"), PathBuf::from)
}

/// Runs one input; `Err` describes a panic or a violated property.
fn check(check: &dyn Fn(&[u8]) -> Result<(), String>, input: &[u8]) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| check(input))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(format!("property violated: {why}")),
        Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
    }
}

/// Writes the failing input and panics with how to reproduce it.
fn fail(target: &Target<'_>, input: &[u8], why: &str, iteration: u64, seed: u64) -> ! {
    let dir = crash_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}-{:016x}.bin", target.name, fnv(input)));
    let written = std::fs::write(&path, input).is_ok();
    let shown = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
    panic!(
        "fuzz target {} failed at iteration {iteration} (FUZZ_SEED={seed}): {why}\n\
         input ({} bytes, first 300 shown lossily): {shown:?}\n\
         {}\n\
         reproduce: FUZZ_REPRO={} <the same cargo test command> {}\n\
         make it a regression test: copy the file into {}/",
        target.name,
        input.len(),
        if written { format!("written to {}", path.display()) } else { "could not be written".to_owned() },
        path.display(),
        target.name,
        target.dir.join("regressions").join(target.name).display(),
    );
}

/// Long runs only: aborts the process when one input runs longer than the limit, after
/// writing it out, since a hang cannot be caught in-process.
struct Watchdog {
    current: Arc<Mutex<Vec<u8>>>,
    started_ms: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(name: &str, limit: Duration, epoch: Instant) -> Self {
        let current = Arc::new(Mutex::new(Vec::new()));
        let started_ms = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (c, s, d) = (current.clone(), started_ms.clone(), done.clone());
        let name = name.to_owned();
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let started = s.load(Ordering::Relaxed);
                let now = epoch.elapsed().as_millis() as u64;
                if started > 0 && now.saturating_sub(started) > limit.as_millis() as u64 {
                    let input = c.lock().map(|g| g.clone()).unwrap_or_default();
                    let dir = crash_dir();
                    let _ = std::fs::create_dir_all(&dir);
                    let path = dir.join(format!("{name}.hang"));
                    let _ = std::fs::write(&path, &input);
                    eprintln!(
                        "fuzz target {name}: one input ran over {} s ({} bytes), written to {}; aborting",
                        limit.as_secs(),
                        input.len(),
                        path.display()
                    );
                    std::process::abort();
                }
            }
        });
        Self { current, started_ms, done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Runs a target: regressions and seeds first, then mutants until the budget is spent.
/// Panics (failing the test) on the first input that panics or breaks a property.
/// Returns the number of inputs tried.
pub fn run(target: Target<'_>, property: impl Fn(&[u8]) -> Result<(), String>) -> u64 {
    let property: &dyn Fn(&[u8]) -> Result<(), String> = &property;
    if let Some(path) = std::env::var_os("FUZZ_REPRO") {
        let path = PathBuf::from(path);
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !file.starts_with(target.name) {
            return 0;
        }
        let mut input = std::fs::read(&path).unwrap_or_else(|e| panic!("FUZZ_REPRO {}: {e}", path.display()));
        if file.ends_with(".current") && input.len() >= 8 {
            let mut len = [0u8; 8];
            len.copy_from_slice(&input[..8]);
            let len = (u64::from_le_bytes(len) as usize).min(input.len() - 8);
            input = input[8..8 + len].to_vec();
        }
        eprintln!("fuzz target {}: reproducing {} ({} bytes)", target.name, path.display(), input.len());
        if let Err(why) = check(property, &input) {
            panic!("fuzz target {}: {why}", target.name);
        }
        eprintln!("fuzz target {}: {} passes", target.name, path.display());
        return 1;
    }

    let seed = env_u64("FUZZ_SEED").unwrap_or_else(|| fnv(target.name.as_bytes()));
    let budget = match env_u64("FUZZ_SECONDS") {
        Some(s) => Budget::Seconds(s),
        None => Budget::Iterations(target.ci_iterations),
    };
    let mut rng = Rng::new(seed ^ fnv(target.name.as_bytes()));

    // Regressions: every file in regressions/<name>/, unmutated.
    let mut regressions = Vec::new();
    if let Ok(entries) = std::fs::read_dir(target.dir.join("regressions").join(target.name)) {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(bytes) = std::fs::read(&p) {
                regressions.push(bytes);
            }
        }
    }
    for input in regressions.iter().chain(&target.seeds) {
        if let Err(why) = check(property, input) {
            fail(&target, input, &why, 0, seed);
        }
    }

    let mut corpus: Vec<Vec<u8>> = target.seeds.iter().chain(&regressions).cloned().collect();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let seeds_len = corpus.len();
    let epoch = Instant::now();
    let watchdog = match budget {
        Budget::Seconds(_) => {
            Some(Watchdog::start(target.name, Duration::from_secs(env_u64("FUZZ_HANG_SECONDS").unwrap_or(10)), epoch))
        }
        Budget::Iterations(_) => None,
    };
    let mut tried = 0u64;
    let slow = Duration::from_millis(env_u64("FUZZ_SLOW_MS").unwrap_or(1000));
    let mut slow_kept = 0;
    let trace = std::env::var_os("FUZZ_TRACE").and_then(|_| {
        let _ = std::fs::create_dir_all(crash_dir());
        std::fs::File::create(crash_dir().join(format!("{}.current", target.name))).ok()
    });
    loop {
        match budget {
            Budget::Iterations(n) if tried >= n => break,
            Budget::Seconds(s) if epoch.elapsed() >= Duration::from_secs(s) => break,
            _ => {}
        }
        let parent = rng.below(corpus.len());
        let tree = if target.json && rng.one_in(2) { serde_json::from_slice::<Value>(&corpus[parent]).ok() } else { None };
        let input = match tree {
            Some(mut v) => {
                let other = serde_json::from_slice::<Value>(rng.pick(&corpus)).unwrap_or(Value::Null);
                for _ in 0..rng.range(1, 3) {
                    mutate_json(&mut rng, &mut v, &other, target.dict, target.max_len);
                }
                let mut bytes = v.to_string().into_bytes();
                bytes.truncate(target.max_len);
                bytes
            }
            None => mutate(&mut rng, &corpus[parent], &corpus, target.dict, target.max_len),
        };
        if let Some(w) = &watchdog {
            if let Ok(mut c) = w.current.lock() {
                c.clone_from(&input);
            }
            w.started_ms.store((Instant::now() - epoch + Duration::from_millis(1)).as_millis() as u64, Ordering::Relaxed);
        }
        if let Some(f) = &trace {
            // The input about to run, for an abort (stack overflow) that no handler sees:
            // its length first, then the bytes, in place (cheaper than a new file).
            use std::os::unix::fs::FileExt;
            let _ = f.write_at(&(input.len() as u64).to_le_bytes(), 0);
            let _ = f.write_at(&input, 8);
        }
        let started = Instant::now();
        let result = check(property, &input);
        if let Some(w) = &watchdog {
            w.started_ms.store(0, Ordering::Relaxed);
            // Long runs also name slow inputs (super-linear work), without failing.
            if started.elapsed() >= slow && slow_kept < 3 {
                slow_kept += 1;
                let dir = crash_dir();
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("{}.slow-{:016x}.bin", target.name, fnv(&input)));
                let _ = std::fs::write(&path, &input);
                eprintln!(
                    "fuzz target {}: one input took {:.1} s ({} bytes), written to {}",
                    target.name,
                    started.elapsed().as_secs_f64(),
                    input.len(),
                    path.display()
                );
            }
        }
        if let Err(why) = result {
            fail(&target, &input, &why, tried, seed);
        }
        tried += 1;
        // Keep some mutants to mutate further (stacked mutations reach deeper), in a
        // bounded pool beside the seeds.
        if rng.one_in(8) {
            if corpus.len() < seeds_len + 256 {
                corpus.push(input);
            } else {
                let i = seeds_len + rng.below(256);
                corpus[i] = input;
            }
        }
    }
    drop(watchdog);
    eprintln!(
        "fuzz target {}: {tried} inputs in {:.1} s, no failure (FUZZ_SEED={seed})",
        target.name,
        epoch.elapsed().as_secs_f64()
    );
    tried
}

/// Property tests over generated cases rather than mutated bytes: case `i` draws
/// everything from `Rng::new(seed ^ i)`, so a failure names the one case to rerun
/// (`FUZZ_CASE=i`). Same budget rules as [`run`]: `ci_cases` cases by default,
/// `FUZZ_SECONDS` seconds under `make fuzz`. Returns the number of cases run.
pub fn cases(name: &str, ci_cases: u64, property: impl Fn(&mut Rng) -> Result<(), String>) -> u64 {
    let seed = env_u64("FUZZ_SEED").unwrap_or_else(|| fnv(name.as_bytes()));
    let case_seed = |i: u64| seed ^ fnv(name.as_bytes()) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let one = |i: u64| {
        let mut rng = Rng::new(case_seed(i));
        match catch_unwind(AssertUnwindSafe(|| property(&mut rng))) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("property {name} failed on case {i} (FUZZ_SEED={seed} FUZZ_CASE={i}): {why}"),
            Err(p) => {
                panic!("property {name} panicked on case {i} (FUZZ_SEED={seed} FUZZ_CASE={i}): {}", panic_message(p.as_ref()))
            }
        }
    };
    if let Some(i) = env_u64("FUZZ_CASE") {
        one(i);
        return 1;
    }
    let budget = match env_u64("FUZZ_SECONDS") {
        Some(s) => Budget::Seconds(s),
        None => Budget::Iterations(ci_cases),
    };
    let epoch = Instant::now();
    let mut i = 0u64;
    loop {
        match budget {
            Budget::Iterations(n) if i >= n => break,
            Budget::Seconds(s) if epoch.elapsed() >= Duration::from_secs(s) => break,
            _ => {}
        }
        one(i);
        i += 1;
    }
    eprintln!("property {name}: {i} cases in {:.1} s, no failure (FUZZ_SEED={seed})", epoch.elapsed().as_secs_f64());
    i
}
