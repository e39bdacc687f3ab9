//! The fuzz targets' properties (`fuzz/src/*.rs`, see `fuzz/`) replayed on
//! stable over the checked-in seeds and the minimised inputs of every bug the
//! fuzzers found (`fuzz/regressions/<target>/`), so a regression fails plain
//! `cargo test` without the nightly toolchain.
//!
//! Each target also gets a short mutation smoke on stable: a fixed number of
//! inputs derived from its seeds by a seeded generator (bit flips, byte
//! insertions and deletions, splices of two seeds, repeated chunks). It is no
//! substitute for coverage-guided runs (`scripts/fuzz.sh`, figures in
//! RELIABILITY.md); it makes CI exercise every property on inputs nobody
//! wrote, in seconds. `FUZZ_SMOKE_INPUTS` sets the count per target (default
//! 1,500; a fifth for the chat renderers, which render every platform per
//! input) and `FUZZ_SMOKE_SEED` the generator's seed; a failing input is
//! written to `target/fuzz-smoke-<target>.bin` to be minimised and kept in
//! `fuzz/regressions/`.

#[path = "../fuzz/src/chat_render.rs"]
mod chat_render;
#[path = "../fuzz/src/ingest.rs"]
mod ingest;
#[path = "../fuzz/src/matcher.rs"]
mod matcher;
#[path = "../fuzz/src/promql_template.rs"]
mod promql_template;

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        out.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
    }
    out
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers: JSON and matcher punctuation, escapes,
/// template delimiters, chat mentions, multi-byte and invalid UTF-8.
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"=~",
    b"!=",
    b"!~",
    b"=",
    b"\n",
    b"{{",
    b"}}",
    b"{%",
    b"<!channel>",
    b"@here",
    b"<users/all>",
    b"[x](y)",
    b"\\u0000",
    b"\xf0\x9f\x99\x82",
    b"\xff",
    b"\xc3",
    b"null",
    b"0",
    b"-1",
    b"1e999",
    "\u{202e}".as_bytes(),
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            2 if !data.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(64)).min(other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
            4 if !data.is_empty() => {
                let from = rng.below(data.len());
                let to = (from + 1 + rng.below(32)).min(data.len());
                let chunk = data[from..to].repeat(1 + rng.below(200));
                data.splice(at..at, chunk);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

/// Runs `check` on generated inputs; on a failure keeps the input and fails.
fn smoke(target: &str, check: fn(&[u8]), share: usize) -> usize {
    let seeds = inputs(target);
    assert!(!seeds.is_empty(), "{target}: no seeds");
    let count: usize = std::env::var("FUZZ_SMOKE_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500)
        / share;
    let seed: u64 = std::env::var("FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f022);
    let mut rng = Rng(seed | 1);
    for i in 0..count {
        let data = mutate(&mut rng, &seeds);
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            let keep = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join(format!("fuzz-smoke-{target}.bin"));
            let _ = std::fs::write(&keep, &data);
            panic!(
                "{target}: generated input {i} (seed {seed}) breaks the property; kept in {}",
                keep.display()
            );
        }
    }
    count
}

/// Runs `check` on every file under `fuzz/seeds/<target>` and
/// `fuzz/regressions/<target>`; returns how many inputs it ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} breaks the property",
                path.display()
            );
            ran += 1;
        }
    }
    ran
}

#[test]
fn ingest_corpus() {
    assert!(replay("ingest", ingest::check) > 0);
}

#[test]
fn matcher_corpus() {
    assert!(replay("matcher", matcher::check) > 0);
}

#[test]
fn promql_template_corpus() {
    assert!(replay("promql_template", promql_template::check) > 0);
}

#[test]
fn chat_render_corpus() {
    assert!(replay("chat_render", chat_render::check) > 0);
}

#[test]
fn ingest_mutation_smoke() {
    assert!(smoke("ingest", ingest::check, 1) > 0);
}

#[test]
fn matcher_mutation_smoke() {
    assert!(smoke("matcher", matcher::check, 1) > 0);
}

#[test]
fn promql_template_mutation_smoke() {
    assert!(smoke("promql_template", promql_template::check, 1) > 0);
}

#[test]
fn chat_render_mutation_smoke() {
    assert!(smoke("chat_render", chat_render::check, 5) > 0);
}
