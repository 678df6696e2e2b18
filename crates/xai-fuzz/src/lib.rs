//! # xai-fuzz
//!
//! Dev-only fuzzing of the workspace on stable Rust (cargo-fuzz needs nightly). Each target in
//! `tests/` starts from a *valid* input (an IDX file, a safetensors file, an ONNX model, a saved
//! L2X explainer, a parameters or explanation JSON, a layer list), applies a few random
//! structure-aware mutations (header fields, declared sizes, attributes, JSON leaves, weight
//! lengths, and plain byte edits) and feeds the result to the library. A case passes when the
//! library returns either a value that works (the targets then use it: predict, explain) or a
//! typed error; a panic, an abort or a case that runs over the time limit fails the target.
//!
//! [`fuzz`] is the driver: case `i` draws its mutations from a generator seeded with
//! `XAI_FUZZ_SEED + i`, so any failure is replayed with `XAI_FUZZ_SEED=<seed> XAI_FUZZ_CASES=1`.
//! Environment variables:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `XAI_FUZZ_CASES` | cases per target (overrides each target's own default) | the target's (a few thousand) |
//! | `XAI_FUZZ_SEED` | seed of case 0 | `0x5eed` |
//! | `XAI_FUZZ_CASE_LIMIT_S` | per-case time limit in seconds: a case over it aborts the run, naming its seed | 20 |
//! | `XAI_FUZZ_MAX_ALLOC` | largest single allocation, in bytes, in a binary that installs [`LimitAlloc`] | 2 GiB |
//!
//! The per-case limit is kept by a watchdog thread (a hang cannot be caught otherwise);
//! allocations over `XAI_FUZZ_MAX_ALLOC` are refused by [`LimitAlloc`] (which then names the
//! running case and lets the allocation fail, an abort), so a size read from a file that drives
//! an allocation before it is checked is found even where the system would grant it lazily.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// What one case did with its (mutated) input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The library accepted the input (and the target used the result without trouble).
    Accepted,
    /// The library refused the input with a typed error.
    Rejected,
}

/// Counts and timings of one target's run, printed at its end.
#[derive(Debug, Clone)]
pub struct Report {
    /// Target name.
    pub target: String,
    /// Cases run.
    pub cases: usize,
    /// Cases whose input was accepted.
    pub accepted: usize,
    /// Cases whose input was refused with a typed error.
    pub rejected: usize,
    /// Wall time of the whole run.
    pub total: Duration,
    /// The slowest case.
    pub slowest: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name} = {v:?}: expected an unsigned integer")))
}

/// The number of cases to run: `XAI_FUZZ_CASES` when set, else `default`.
pub fn cases(default: usize) -> usize {
    env_u64("XAI_FUZZ_CASES").map_or(default, |v| v as usize)
}

/// The per-case time limit (`XAI_FUZZ_CASE_LIMIT_S`, default 20 s).
pub fn case_limit() -> Duration {
    Duration::from_secs(env_u64("XAI_FUZZ_CASE_LIMIT_S").unwrap_or(20))
}

/// One running target, as the watchdog sees it.
struct Slot {
    target: &'static str,
    seed: u64,
    started: Option<Instant>,
}

fn slots() -> &'static Mutex<Vec<Slot>> {
    static SLOTS: OnceLock<Mutex<Vec<Slot>>> = OnceLock::new();
    SLOTS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Starts (once per process) the thread that aborts the process when a case runs over the
/// limit, naming the target and the seed that replays it.
fn start_watchdog(limit: Duration) {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("xai-fuzz-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                let slots = slots().lock().unwrap_or_else(|e| e.into_inner());
                for s in slots.iter() {
                    if let Some(t) = s.started {
                        if t.elapsed() > limit {
                            eprintln!(
                                "xai-fuzz: target `{}`: the case with seed {} has run for more \
                                 than {limit:?} (a hang); replay it with XAI_FUZZ_SEED={} \
                                 XAI_FUZZ_CASES=1",
                                s.target, s.seed, s.seed
                            );
                            std::process::abort();
                        }
                    }
                }
            })
            .expect("spawn the watchdog thread");
    });
}

fn set_slot(target: &'static str, seed: u64, started: Option<Instant>) {
    let mut slots = slots().lock().unwrap_or_else(|e| e.into_inner());
    match slots.iter_mut().find(|s| s.target == target) {
        Some(s) => {
            s.seed = seed;
            s.started = started;
        }
        None => slots.push(Slot {
            target,
            seed,
            started,
        }),
    }
}

thread_local! {
    /// The target and seed running on this thread (for [`LimitAlloc`]'s message).
    static CURRENT: Cell<(&'static str, u64)> = const { Cell::new(("", 0)) };
}

/// Runs `cases(default_cases)` cases of `target`. Case `i` gets a generator seeded with
/// `XAI_FUZZ_SEED + i` and returns what the library did with its input, or `Err` when a result
/// the library accepted is wrong (e.g. an array whose length does not match its shape). A
/// panic, an `Err` or a case over the time limit ([`case_limit`]) fails the target; the failure
/// names the seed that replays the case.
///
/// Unless only a handful of cases run, both outcomes must occur in at least 1% of the cases:
/// mutations that are always refused (or never) would not reach the code under test.
pub fn fuzz(
    target: &'static str,
    default_cases: usize,
    mut case: impl FnMut(&mut StdRng) -> Result<Outcome, String>,
) -> Report {
    let n = cases(default_cases);
    let base = env_u64("XAI_FUZZ_SEED").unwrap_or(0x5eed);
    let limit = case_limit();
    start_watchdog(limit);
    let start = Instant::now();
    let (mut accepted, mut rejected) = (0usize, 0usize);
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let seed = base.wrapping_add(i as u64);
        let mut rng = StdRng::seed_from_u64(seed);
        let t = Instant::now();
        set_slot(target, seed, Some(t));
        CURRENT.with(|c| c.set((target, seed)));
        let result = catch_unwind(AssertUnwindSafe(|| case(&mut rng)));
        CURRENT.with(|c| c.set(("", 0)));
        set_slot(target, seed, None);
        let took = t.elapsed();
        slowest = slowest.max(took);
        let replay = format!("replay with XAI_FUZZ_SEED={seed} XAI_FUZZ_CASES=1");
        match result {
            Ok(Ok(Outcome::Accepted)) => accepted += 1,
            Ok(Ok(Outcome::Rejected)) => rejected += 1,
            Ok(Err(msg)) => panic!("xai-fuzz: target `{target}`, case {i}: {msg} ({replay})"),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a non-string panic payload".into());
                panic!("xai-fuzz: target `{target}`, case {i} panicked: {msg} ({replay})");
            }
        }
        if (i + 1) % 10_000 == 0 && i + 1 < n {
            println!(
                "xai-fuzz: target `{target}`: {} cases passed ({accepted} accepted) in {:.1?}",
                i + 1,
                start.elapsed()
            );
        }
        if took > limit {
            panic!(
                "xai-fuzz: target `{target}`, case {i} took {took:?}, over {limit:?} ({replay})"
            );
        }
    }
    let report = Report {
        target: target.to_string(),
        cases: n,
        accepted,
        rejected,
        total: start.elapsed(),
        slowest,
    };
    println!(
        "xai-fuzz: target `{target}`: {n} cases ({accepted} accepted, {rejected} refused with a \
         typed error) in {:.1?}, slowest case {:.1?}, seeds {base}..{}",
        report.total,
        report.slowest,
        base.wrapping_add(n as u64)
    );
    if n >= 200 {
        assert!(
            accepted * 100 >= n && rejected * 100 >= n,
            "xai-fuzz: target `{target}`: {accepted} of {n} cases accepted, {rejected} refused: \
             the mutations do not reach both the accepting and the refusing paths"
        );
    }
    report
}

/// The largest single allocation a [`LimitAlloc`] grants (`XAI_FUZZ_MAX_ALLOC`, read when the
/// first target starts; 2 GiB until then).
static MAX_ALLOC: AtomicUsize = AtomicUsize::new(2 << 30);

/// Reads `XAI_FUZZ_MAX_ALLOC` into the allocation limit. Called by [`fuzz`]'s users before
/// their first case (cheap; idempotent).
pub fn configure_alloc_limit() {
    if let Some(v) = env_u64("XAI_FUZZ_MAX_ALLOC") {
        MAX_ALLOC.store(v as usize, Ordering::Relaxed);
    }
}

/// A global allocator (the system's) that refuses any single allocation above
/// `XAI_FUZZ_MAX_ALLOC`, after printing the size and the running target and seed: the failed
/// allocation then aborts the test binary (Rust's allocation-error handler). Install it in a
/// target's test file with `#[global_allocator] static A: xai_fuzz::LimitAlloc = xai_fuzz::LimitAlloc;`.
pub struct LimitAlloc;

impl LimitAlloc {
    fn over(size: usize) -> bool {
        let limit = MAX_ALLOC.load(Ordering::Relaxed);
        if size <= limit {
            return false;
        }
        let (target, seed) = CURRENT.with(|c| c.get());
        // Stderr is unbuffered and formatting integers does not allocate.
        let _ = writeln!(
            std::io::stderr(),
            "xai-fuzz: refused an allocation of {size} bytes (limit {limit}) in target `{target}` \
             (seed {seed}; empty when on another thread): a size read from the input was not \
             bounded before allocating"
        );
        true
    }
}

// SAFETY: every method forwards to `System` with the same arguments, or returns null (which
// `GlobalAlloc` allows to signal failure).
unsafe impl GlobalAlloc for LimitAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::over(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::over(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::over(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// An "interesting" unsigned value: the edges of the integer types, powers of two and their
/// neighbours, and small numbers (what declared sizes, counts and offsets are mutated to).
pub fn interesting_u64(rng: &mut StdRng) -> u64 {
    const EDGES: [u64; 20] = [
        0,
        1,
        2,
        3,
        7,
        255,
        256,
        65_535,
        65_536,
        (1 << 31) - 1,
        1 << 31,
        (1 << 32) - 1,
        1 << 32,
        1 << 40,
        1 << 53,
        (1 << 62) + 1,
        (1 << 63) - 1,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ];
    match rng.gen_range(0..4) {
        0 => EDGES[rng.gen_range(0..EDGES.len())],
        1 => rng.gen_range(0..64),
        2 => 1u64 << rng.gen_range(0..64),
        _ => rng.gen(),
    }
}

/// An "interesting" signed value: [`interesting_u64`] reinterpreted, negated or small negative.
pub fn interesting_i64(rng: &mut StdRng) -> i64 {
    match rng.gen_range(0..5) {
        0 => -(rng.gen_range(1..4)),
        1 => i64::MIN,
        2 => i64::MAX,
        3 => (interesting_u64(rng) as i64).wrapping_neg(),
        _ => interesting_u64(rng) as i64,
    }
}

/// A value `v` nudged: `v ± 1`, doubled, halved, zero, or an [`interesting_u64`].
pub fn nudge_u64(rng: &mut StdRng, v: u64) -> u64 {
    match rng.gen_range(0..6) {
        0 => v.wrapping_add(1),
        1 => v.wrapping_sub(1),
        2 => v.wrapping_mul(2),
        3 => v / 2,
        4 => 0,
        _ => interesting_u64(rng),
    }
}

/// Applies `ops` random byte-level edits: bit flips, interesting bytes, insertions, deletions,
/// duplicated runs, truncation and appended garbage.
pub fn mutate_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>, ops: usize) {
    for _ in 0..ops {
        let len = bytes.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                bytes[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                bytes[i] = [0, 1, 0x7f, 0x80, 0xff][rng.gen_range(0..5)];
            }
            2 => {
                let i = rng.gen_range(0..=len);
                let k = rng.gen_range(1..=16);
                let ins: Vec<u8> = (0..k).map(|_| rng.gen()).collect();
                bytes.splice(i..i, ins);
            }
            3 if len > 0 => {
                let i = rng.gen_range(0..len);
                let k = rng.gen_range(1..=(len - i).min(64));
                bytes.drain(i..i + k);
            }
            4 if len > 0 => {
                let i = rng.gen_range(0..len);
                let k = rng.gen_range(1..=(len - i).min(64));
                let run = bytes[i..i + k].to_vec();
                let at = rng.gen_range(0..=len);
                bytes.splice(at..at, run);
            }
            5 => bytes.truncate(rng.gen_range(0..=len)),
            6 => {
                let k = rng.gen_range(1..=32);
                bytes.extend((0..k).map(|_| rng.gen::<u8>()));
            }
            _ if len >= 8 => {
                // An interesting little- or big-endian integer written over 4 or 8 bytes.
                let v = interesting_u64(rng);
                let w = if rng.gen() { 4 } else { 8 };
                let i = rng.gen_range(0..=len - w);
                let b = if rng.gen() {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                bytes[i..i + w].copy_from_slice(&b[..w]);
            }
            _ => {}
        }
    }
}

/// Paths (object keys and array indices) of every node of a JSON value, the root included.
fn json_paths(v: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                prefix.push(PathStep::Key(k.clone()));
                json_paths(c, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            // Long arrays (weights) contribute a few sampled elements, not all of them.
            let step = (a.len() / 16).max(1);
            for (i, c) in a.iter().enumerate().step_by(step) {
                prefix.push(PathStep::Index(i));
                json_paths(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn json_at<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            PathStep::Key(k) => cur.get_mut(k.as_str())?,
            PathStep::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

/// A JSON number at an edge: zero, ±1, huge integers, tiny and huge floats, fractions.
pub fn interesting_json_number(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..6) {
        0 => Value::from(interesting_u64(rng)),
        1 => Value::from(interesting_i64(rng)),
        2 => Value::from(
            [
                0.5, -0.5, 1e-30, -1e-30, 1e30, 1e308, -1e308, 0.0, -0.0, 1.5,
            ][rng.gen_range(0..10)],
        ),
        3 => Value::from(rng.gen_range(-3i64..=3)),
        4 => Value::from(rng.gen_range(-10.0f64..10.0)),
        _ => Value::from(rng.gen_range(0u64..100)),
    }
}

fn nudge_json_number(rng: &mut StdRng, v: &Value) -> Value {
    if let Some(u) = v.as_u64() {
        if rng.gen() {
            return Value::from(nudge_u64(rng, u));
        }
    }
    if let Some(f) = v.as_f64() {
        let choices = [f * 2.0, f / 2.0, -f, f + 1.0, f - 1.0, 0.0];
        if let Some(n) = serde_json::Number::from_f64(choices[rng.gen_range(0..choices.len())]) {
            return Value::Number(n);
        }
    }
    interesting_json_number(rng)
}

fn random_json_leaf(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..7) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => interesting_json_number(rng),
        3 => Value::String(
            [
                "", "NaN", "inf", "-inf", "auto", "x", "PN", "PP", "Add", "Relu", "Same",
            ][rng.gen_range(0..11)]
            .into(),
        ),
        4 => Value::Array(Vec::new()),
        5 => Value::Object(serde_json::Map::new()),
        _ => Value::Array(vec![interesting_json_number(rng); rng.gen_range(1..4)]),
    }
}

/// Applies `ops` structure-aware edits to a JSON value: a number nudged or set to an edge
/// value, a value replaced by one of another type, a key removed or added, an array element
/// removed, duplicated or appended, two values swapped.
pub fn mutate_json(rng: &mut StdRng, value: &mut Value, ops: usize) {
    for _ in 0..ops {
        let mut paths = Vec::new();
        json_paths(value, &mut Vec::new(), &mut paths);
        let path = paths[rng.gen_range(0..paths.len())].clone();
        let other = paths[rng.gen_range(0..paths.len())].clone();
        let other_value = json_at(value, &other).cloned();
        let Some(node) = json_at(value, &path) else {
            continue;
        };
        match rng.gen_range(0..8) {
            0 | 1 => {
                if node.is_number() {
                    *node = nudge_json_number(rng, node);
                } else {
                    *node = interesting_json_number(rng);
                }
            }
            2 => *node = random_json_leaf(rng),
            3 => match node {
                Value::Object(m) if !m.is_empty() => {
                    let k = m.keys().nth(rng.gen_range(0..m.len())).cloned();
                    if let Some(k) = k {
                        m.remove(&k);
                    }
                }
                Value::Array(a) if !a.is_empty() => {
                    a.remove(rng.gen_range(0..a.len()));
                }
                _ => *node = Value::Null,
            },
            4 => match node {
                Value::Array(a) if !a.is_empty() => {
                    let e = a[rng.gen_range(0..a.len())].clone();
                    let at = rng.gen_range(0..=a.len());
                    a.insert(at, e);
                }
                Value::Object(m) => {
                    m.insert("unexpected".into(), random_json_leaf(rng));
                }
                _ => *node = Value::Array(vec![node.clone()]),
            },
            5 => {
                if let Some(o) = other_value {
                    *node = o;
                }
            }
            6 => {
                if let Value::Array(a) = node {
                    a.truncate(rng.gen_range(0..=a.len()));
                } else if let Value::String(s) = node {
                    s.push('x');
                }
            }
            _ => {
                if let Value::Array(a) = node {
                    let k = rng.gen_range(1..4);
                    for _ in 0..k {
                        a.push(random_json_leaf(rng));
                    }
                } else {
                    *node = nudge_json_number(rng, node);
                }
            }
        }
    }
}

/// Mutates JSON text: usually structure-aware ([`mutate_json`] on the parsed value), sometimes
/// byte-level on the text itself (to reach the parser's error paths).
pub fn mutate_json_text(rng: &mut StdRng, text: &str) -> Vec<u8> {
    if rng.gen_range(0..5) == 0 {
        let mut b = text.as_bytes().to_vec();
        let ops = rng.gen_range(1..4);
        mutate_bytes(rng, &mut b, ops);
        return b;
    }
    let mut v: Value = serde_json::from_str(text).expect("a valid seed JSON");
    let ops = rng.gen_range(1..4);
    mutate_json(rng, &mut v, ops);
    serde_json::to_vec(&v).expect("a JSON value serialises")
}

/// Gzips `data` (default compression) as one member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("write to memory");
    enc.finish().expect("write to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_stay_deterministic() {
        let text = r#"{"a": 1, "b": [1, 2, 3], "c": {"d": "x"}}"#;
        let mut changed = 0;
        for seed in 0..200 {
            let a = mutate_json_text(&mut StdRng::seed_from_u64(seed), text);
            let b = mutate_json_text(&mut StdRng::seed_from_u64(seed), text);
            assert_eq!(a, b);
            let same = serde_json::from_slice::<Value>(&a)
                .is_ok_and(|v| v == serde_json::from_str::<Value>(text).unwrap());
            changed += usize::from(!same);
        }
        assert!(changed > 150, "{changed} of 200 mutations changed the JSON");
        let mut bytes = vec![7u8; 64];
        mutate_bytes(&mut StdRng::seed_from_u64(1), &mut bytes, 3);
        assert_ne!(bytes, vec![7u8; 64]);
    }

    #[test]
    fn the_driver_counts_outcomes_and_reports_panics() {
        let r = fuzz("driver-self-test", 300, |rng| {
            Ok(if rng.gen() {
                Outcome::Accepted
            } else {
                Outcome::Rejected
            })
        });
        assert_eq!(r.accepted + r.rejected, r.cases);
        let caught = catch_unwind(|| {
            fuzz(
                "driver-self-test-panics",
                10,
                |_| -> Result<Outcome, String> { panic!("boom") },
            )
        });
        let msg = caught.expect_err("a panicking case fails the target");
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("boom") && msg.contains("XAI_FUZZ_SEED="),
            "{msg}"
        );
    }
}
