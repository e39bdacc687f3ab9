//! The fuzz targets' properties (`fuzz/src/*.rs`, see `fuzz/`) replayed on
//! stable over the checked-in seeds and the minimised inputs of every bug the
//! fuzzers found (`fuzz/regressions/<target>/`), so a regression fails plain
//! `cargo test` without the nightly toolchain.

#[path = "../fuzz/src/chat_render.rs"]
mod chat_render;
#[path = "../fuzz/src/ingest.rs"]
mod ingest;
#[path = "../fuzz/src/matcher.rs"]
mod matcher;
#[path = "../fuzz/src/promql_template.rs"]
mod promql_template;

use std::path::Path;

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
