//! Differential test: our route tree against the real `amtool config routes
//! test` (Alertmanager 0.25, Debian package `prometheus-alertmanager`).
//!
//! Random route trees (seeded) are written twice — as an Alertmanager config
//! with one receiver per route, and as our YAML with one action per route of
//! the same name — and random label sets are routed through both. Outputs must
//! be byte-identical.
//!
//! Knobs (environment):
//! * `AMTOOL`      path of amtool (default `/usr/bin/amtool`); missing = failure.
//! * Our side is `mlops-alert-router routes test --config FILE LABEL=VALUE...`;
//!   `DIFF_IN_PROCESS=1` calls the library instead.
//! * `DIFF_SEED`, `DIFF_TREES`, `DIFF_LABEL_SETS` (label sets per tree).
//!
//! Our matcher parsing follows Alertmanager >= 0.27 (its default fallback
//! mode: the UTF-8 parser, the classic one where it fails or disagrees), while
//! the installed amtool 0.25 has only the classic parser. So every generated
//! matcher string is one where the two readings coincide: it is regenerated
//! until `route::classic::parse_matchers` (0.25's parser) and our fallback
//! `parse_matchers` give the same matchers (no quoted label names, no
//! unbalanced braces, no empty unquoted values, no Go-only escapes). Where
//! 0.25 and >= 0.27 differ, `tests/alertmanager_tables.rs` checks the newer
//! behaviour against Alertmanager's own test tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mlops_alert_router::route::matcher::{parse_label_arg, parse_matchers};
use mlops_alert_router::route::{classic, compile, test_output, RouteConfig};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The two sides

/// Something that behaves like `amtool config routes test`: given a config
/// file and `NAME="VALUE"` arguments, returns what it prints on stdout.
trait RoutesTester: Sync {
    fn name(&self) -> String;
    fn routes_test(&self, config: &Path, label_args: &[String]) -> Result<String, String>;
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("non-UTF-8 output: {e}"))
}

struct Amtool {
    path: PathBuf,
}

impl RoutesTester for Amtool {
    fn name(&self) -> String {
        format!("amtool ({})", self.path.display())
    }
    fn routes_test(&self, config: &Path, label_args: &[String]) -> Result<String, String> {
        run(Command::new(&self.path)
            .arg("config")
            .arg("routes")
            .arg("test")
            .arg(format!("--config.file={}", config.display()))
            .args(label_args))
    }
}

/// The service binary's `routes test --config FILE LABEL=VALUE...`.
struct RouterBinary {
    path: PathBuf,
}

impl RoutesTester for RouterBinary {
    fn name(&self) -> String {
        format!("router binary ({})", self.path.display())
    }
    fn routes_test(&self, config: &Path, label_args: &[String]) -> Result<String, String> {
        run(Command::new(&self.path)
            .arg("routes")
            .arg("test")
            .arg("--config")
            .arg(config)
            .args(label_args))
    }
}

/// This crate, in process: exactly what the `routes test` command will do.
struct InProcess;

#[derive(Serialize, Deserialize)]
struct OurFile {
    /// One `log` action per receiver name, so the config passes `check-config`.
    #[serde(default)]
    actions: BTreeMap<String, serde_yaml::Value>,
    route: RouteConfig,
}

impl OurFile {
    fn new(route: RouteConfig) -> Self {
        let mut names = Vec::new();
        collect_actions(&route, &mut names);
        let log: serde_yaml::Value = serde_yaml::from_str("{type: log}").expect("valid YAML");
        Self {
            actions: names.into_iter().map(|n| (n, log.clone())).collect(),
            route,
        }
    }
}

fn collect_actions(r: &RouteConfig, out: &mut Vec<String>) {
    out.extend(r.actions.iter().flatten().cloned());
    for child in &r.routes {
        collect_actions(child, out);
    }
}

impl RoutesTester for InProcess {
    fn name(&self) -> String {
        "in process".to_string()
    }
    fn routes_test(&self, config: &Path, label_args: &[String]) -> Result<String, String> {
        let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
        let file: OurFile = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
        // Every action name is defined in this harness.
        let route = compile(&file.route, &|_| true).map_err(|e| e.to_string())?;
        let mut labels = BTreeMap::new();
        for arg in label_args {
            let (name, value) = parse_label_arg(arg).map_err(|e| e.to_string())?;
            labels.insert(name, value);
        }
        Ok(test_output(&route, &labels))
    }
}

// ---------------------------------------------------------------------------
// Deterministic RNG (SplitMix64), no dependency needed.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------
// Generators

/// Label names; the last ones are rarely set on alerts, so matchers on them
/// mostly see a missing label.
const NAMES: &[&str] = &[
    "alertname",
    "severity",
    "team",
    "model_name",
    "env",
    "region",
    "rare_a",
    "rare_b",
];
const COMMON_NAMES: usize = 6;

/// Label and matcher values: UTF-8, commas, quotes, backslashes, braces,
/// whitespace, newlines, operators, Unicode digits and letters.
const VALUES: &[&str] = &[
    "ModelAccuracyDegraded",
    "DriftDetected",
    "critical",
    "warning",
    "info",
    "ml",
    "infra",
    "ML",
    "",
    "ünï",
    "Ünï",
    "a,b",
    "say \"hi\"",
    "back\\slash",
    "a\\tb",
    "baseline",
    "baseline-v2",
    "new-baseline",
    "prod",
    "dev",
    "42",
    "٣",
    "x y",
    " padded ",
    "line1\nline2",
    "{braced}",
    "=~tricky",
    "é",
    "a{",
    "x{,3}",
    "a&b",
    "a.b*",
    "<tag>",
    "-dash",
];

/// Regexes: alternations, anchoring quirks, Go-vs-Rust differences (ASCII
/// `\d`/`\w`/`\s`/`\b`, class set operators, literal braces, `\Q..\E`).
const REGEXES: &[&str] = &[
    "critical|warning",
    "baseline.*",
    ".*baseline.*",
    ".*",
    ".+",
    "",
    "ünï|ml",
    "(?i)ml|ÜNÏ",
    "a,b|x y",
    r"\d+",
    r"[\d]+",
    r"\D+",
    r"[\w-]+",
    r"\w+",
    r"\S+",
    r".*\s.*",
    r"[[:alpha:]]+",
    "pro?d|dev",
    "(ml|infra)",
    "ml)|(infra",
    r"say \x22hi\x22",
    r"back\\slash",
    r"a\\tb|a\tb",
    r".*\bml\b.*",
    r".*\Bml.*",
    "x{,3}",
    "a{",
    "[a&&b]+",
    r"[a~~b]",
    r"\Qa.b*\E",
    r"\{braced\}",
    "[{}a-z]+",
    r"\<tag\>",
    "[^a-z]+",
    "-dash|.*line2",
    "(?s).*line2",
    "line1.line2",
    r"[\x{E9}\x{FC}]",
    r"\p{Greek}+|é",
];

/// Escape for a double-quoted matcher value (the classic escapes).
fn quote(value: &str) -> String {
    let mut s = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Whether `value` can be written unquoted with the same meaning for both
/// Alertmanager 0.25 and us.
fn unquotable(value: &str) -> bool {
    !value.is_empty()
        && value.trim() == value
        && !value.starts_with(['~', '='])
        && !value.contains(['"', ',', '\\', '{', '}', '\n'])
}

fn regex_escape(lit: &str) -> String {
    let mut s = String::new();
    for c in lit.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// `hints` receives label pairs that satisfy the positive matchers.
fn gen_matcher(
    rng: &mut Rng,
    interesting: &mut Vec<(String, String)>,
    hints: &mut Vec<(String, String)>,
) -> String {
    let name = if rng.chance(80) {
        NAMES[rng.below(COMMON_NAMES)]
    } else {
        *rng.pick(NAMES)
    };
    let (op, value) = match rng.below(4) {
        0 | 1 => {
            let value = rng.pick(VALUES).to_string();
            interesting.push((name.to_string(), value.clone()));
            let op = if rng.below(2) == 0 { "=" } else { "!=" };
            if op == "=" {
                hints.push((name.to_string(), value.clone()));
            }
            (op, value)
        }
        _ => {
            let op = if rng.below(2) == 0 { "=~" } else { "!~" };
            let value = if rng.chance(60) {
                rng.pick(REGEXES).to_string()
            } else {
                // Alternation of escaped literal values.
                let n = 1 + rng.below(3);
                let alts: Vec<String> = (0..n)
                    .map(|_| {
                        let v = rng.pick(VALUES).to_string();
                        interesting.push((name.to_string(), v.clone()));
                        regex_escape(&v)
                    })
                    .collect();
                if op == "=~" {
                    let chosen = interesting[interesting.len() - 1 - rng.below(n)].clone();
                    hints.push(chosen);
                }
                alts.join("|")
            };
            (op, value)
        }
    };
    let sp = |rng: &mut Rng| if rng.chance(25) { " " } else { "" };
    let value_text = if unquotable(&value) && rng.chance(40) {
        value
    } else {
        quote(&value)
    };
    format!("{name}{}{op}{}{value_text}", sp(rng), sp(rng))
}

/// One entry of a route's `matchers:` list: a single matcher, a comma list,
/// or a brace set (optionally with a trailing comma).
fn gen_matcher_string(
    rng: &mut Rng,
    interesting: &mut Vec<(String, String)>,
    hints: &mut Vec<(String, String)>,
) -> String {
    let n = if rng.chance(70) { 1 } else { 2 };
    let ms: Vec<String> = (0..n)
        .map(|_| gen_matcher(rng, interesting, hints))
        .collect();
    match rng.below(3) {
        0 => ms.join(if rng.chance(50) { "," } else { ", " }),
        1 => format!(
            "{{{}{}}}",
            ms.join(", "),
            if rng.chance(40) { ", " } else { "" }
        ),
        _ => ms[0].clone(),
    }
}

/// Whether Alertmanager 0.25 (classic parser only) and our >= 0.27 fallback
/// mode read a matcher string the same way.
fn same_in_025_and_fallback(text: &str) -> bool {
    match (classic::parse_matchers(text), parse_matchers(text)) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

/// [`gen_matcher_string`], regenerated until 0.25 and the fallback mode agree
/// on it (see the module docs); side effects only from the accepted one.
fn gen_agreeing_matcher_string(
    rng: &mut Rng,
    interesting: &mut Vec<(String, String)>,
    hints: &mut Vec<(String, String)>,
) -> String {
    loop {
        let (mut i, mut h) = (Vec::new(), Vec::new());
        let text = gen_matcher_string(rng, &mut i, &mut h);
        if same_in_025_and_fallback(&text) {
            interesting.extend(i);
            hints.extend(h);
            return text;
        }
    }
}

/// A generated route: our config plus the receiver name (None = inherit).
struct GenRoute {
    matchers: Vec<String>,
    receiver: Option<String>,
    continue_: bool,
    routes: Vec<GenRoute>,
    /// Label pairs that satisfy this route's positive matchers.
    hints: Vec<(String, String)>,
}

fn gen_route(
    rng: &mut Rng,
    id: &str,
    depth: usize,
    interesting: &mut Vec<(String, String)>,
) -> GenRoute {
    let root = depth == 0;
    let children = if depth >= 3 {
        0
    } else if root {
        1 + rng.below(5)
    } else if rng.chance(45) {
        1 + rng.below(3)
    } else {
        0
    };
    let routes = (0..children)
        .map(|i| gen_route(rng, &format!("{id}_{i}"), depth + 1, interesting))
        .collect();
    let mut hints = Vec::new();
    let matchers = if root {
        Vec::new()
    } else {
        let n = match rng.below(10) {
            0 => 0,
            1..=6 => 1,
            7 | 8 => 2,
            _ => 3,
        };
        (0..n)
            .map(|_| gen_agreeing_matcher_string(rng, interesting, &mut hints))
            .collect()
    };
    GenRoute {
        matchers,
        receiver: (root || rng.chance(75)).then(|| id.to_string()),
        continue_: !root && rng.chance(30),
        routes,
        hints,
    }
}

fn receivers(r: &GenRoute, out: &mut Vec<String>) {
    if let Some(name) = &r.receiver {
        out.push(name.clone());
    }
    for c in &r.routes {
        receivers(c, out);
    }
}

/// Alertmanager config. Built as a YAML value so serde_yaml does the quoting.
fn alertmanager_yaml(root: &GenRoute) -> String {
    use serde_yaml::{Mapping, Value};
    fn route(r: &GenRoute) -> Value {
        let mut m = Mapping::new();
        if let Some(rcv) = &r.receiver {
            m.insert("receiver".into(), rcv.clone().into());
        }
        if !r.matchers.is_empty() {
            let list: Vec<Value> = r.matchers.iter().map(|s| s.clone().into()).collect();
            m.insert("matchers".into(), list.into());
        }
        if r.continue_ {
            m.insert("continue".into(), true.into());
        }
        if !r.routes.is_empty() {
            let list: Vec<Value> = r.routes.iter().map(route).collect();
            m.insert("routes".into(), list.into());
        }
        Value::Mapping(m)
    }
    let mut names = Vec::new();
    receivers(root, &mut names);
    let mut top = Mapping::new();
    top.insert("route".into(), route(root));
    let recv: Vec<Value> = names
        .into_iter()
        .map(|n| {
            let mut m = Mapping::new();
            m.insert("name".into(), n.into());
            Value::Mapping(m)
        })
        .collect();
    top.insert("receivers".into(), recv.into());
    serde_yaml::to_string(&Value::Mapping(top)).expect("serializable")
}

fn our_config(r: &GenRoute) -> RouteConfig {
    RouteConfig {
        matchers: r.matchers.clone(),
        actions: r.receiver.clone().map(|n| vec![n]),
        continue_: r.continue_,
        enrich: Vec::new(),
        routes: r.routes.iter().map(our_config).collect(),
        ..Default::default()
    }
}

/// Half the label sets follow a random path down the tree and satisfy the
/// positive matchers on it (so deep routes get hit); the rest are random.
fn gen_labels(
    rng: &mut Rng,
    root: &GenRoute,
    interesting: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if rng.chance(50) {
        let mut node = root;
        loop {
            for (n, v) in &node.hints {
                labels.insert(n.clone(), v.clone());
            }
            if node.routes.is_empty() || rng.chance(15) {
                break;
            }
            node = rng.pick(&node.routes);
        }
        if rng.chance(40) {
            let name = NAMES[rng.below(COMMON_NAMES)];
            labels.insert(name.to_string(), rng.pick(VALUES).to_string());
        }
        return labels;
    }
    for _ in 0..rng.below(7) {
        if !interesting.is_empty() && rng.chance(60) {
            let (n, v) = rng.pick(interesting);
            labels.insert(n.clone(), v.clone());
        } else {
            let name = if rng.chance(85) {
                NAMES[rng.below(COMMON_NAMES)]
            } else {
                *rng.pick(NAMES)
            };
            labels.insert(name.to_string(), rng.pick(VALUES).to_string());
        }
    }
    labels
}

/// `NAME="VALUE"` arguments, quoted so any value survives amtool's parser.
fn label_args(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .iter()
        .map(|(n, v)| format!("{n}={}", quote(v)))
        .collect()
}

/// The reference must be there: this test is the proof that our routing is
/// Alertmanager's, so a missing amtool fails it rather than skipping.
fn require(amtool: &Path) {
    assert!(
        amtool.exists(),
        "{} not found: install Debian's prometheus-alertmanager (scripts/test.sh does)",
        amtool.display()
    );
}

/// Our side: the service binary's `routes test` by default (what users run);
/// `DIFF_IN_PROCESS=1` uses the library directly, for quick iteration.
fn ours() -> Box<dyn RoutesTester> {
    if std::env::var_os("DIFF_IN_PROCESS").is_some() {
        Box::new(InProcess)
    } else {
        Box::new(RouterBinary {
            path: env!("CARGO_BIN_EXE_mlops-alert-router").into(),
        })
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------

#[test]
fn amtool_differential() {
    let amtool =
        PathBuf::from(std::env::var("AMTOOL").unwrap_or_else(|_| "/usr/bin/amtool".into()));
    require(&amtool);
    let reference = Amtool { path: amtool };
    let ours = ours();

    let seed = env_usize("DIFF_SEED", 20_240_611) as u64;
    let trees = env_usize("DIFF_TREES", 30);
    let sets_per_tree = env_usize("DIFF_LABEL_SETS", 20);
    let mut rng = Rng(seed);

    let dir = std::env::temp_dir().join(format!("amtool_differential_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let started = Instant::now();
    let mut comparisons = 0usize;
    let mut label_sets = 0usize;
    let mut routes_total = 0usize;
    let mut distinct_outputs = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let mut non_root = 0usize;
    let mut multi = 0usize;
    let mut deep = 0usize;

    for t in 0..trees {
        let mut interesting = Vec::new();
        let root = gen_route(&mut rng, "r", 0, &mut interesting);
        let mut names = Vec::new();
        receivers(&root, &mut names);
        let am_path = dir.join(format!("tree{t}.alertmanager.yml"));
        let our_path = dir.join(format!("tree{t}.ours.yml"));
        let am_yaml = alertmanager_yaml(&root);
        let our_yaml =
            serde_yaml::to_string(&OurFile::new(our_config(&root))).expect("serializable");
        routes_total += count_routes(&root);
        std::fs::write(&am_path, &am_yaml).expect("write");
        std::fs::write(&our_path, &our_yaml).expect("write");

        let cases: Vec<Vec<String>> = (0..sets_per_tree)
            .map(|_| label_args(&gen_labels(&mut rng, &root, &interesting)))
            .collect();
        label_sets += cases.len();

        // Two workers: amtool is one process per label set.
        let work = |chunk: &[Vec<String>]| {
            chunk
                .iter()
                .map(|args| {
                    (
                        reference.routes_test(&am_path, args),
                        ours.routes_test(&our_path, args),
                    )
                })
                .collect::<Vec<_>>()
        };
        let results: Vec<(Result<String, String>, Result<String, String>)> =
            std::thread::scope(|s| {
                let (a, b) = cases.split_at(cases.len() / 2);
                let ha = s.spawn(|| work(a));
                let hb = s.spawn(|| work(b));
                let mut all = ha.join().expect("worker");
                all.extend(hb.join().expect("worker"));
                all
            });

        for (args, (theirs, mine)) in cases.iter().zip(results) {
            comparisons += 1;
            if let Ok(out) = &theirs {
                distinct_outputs.insert((t, out.clone()));
                if out != "r\n" {
                    non_root += 1;
                }
                if out.contains(',') {
                    multi += 1;
                }
                if out.split(',').any(|r| r.matches('_').count() >= 2) {
                    deep += 1;
                }
            }
            if theirs != mine {
                let mut report = String::new();
                let _ = writeln!(report, "tree {t} ({}), labels {args:?}", am_path.display());
                let _ = writeln!(report, "  {}: {theirs:?}", reference.name());
                let _ = writeln!(report, "  {}: {mine:?}", ours.name());
                failures.push(report);
            }
        }
    }

    let secs = started.elapsed().as_secs_f64();
    println!(
        "amtool differential: seed {seed}, {trees} trees ({routes_total} routes), \
         {label_sets} label sets, {comparisons} comparisons, {} mismatches, \
         {} distinct (tree, output) pairs ({non_root} routed below the root, {deep} to depth >= 2, \
         {multi} to several receivers), {secs:.1}s; ours = {}",
        failures.len(),
        distinct_outputs.len(),
        ours.name()
    );
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        for f in failures.iter().take(20) {
            println!("{f}");
        }
        panic!(
            "{} of {comparisons} comparisons differ (configs kept in {})",
            failures.len(),
            dir.display()
        );
    }
    // Sanity: the generator must route well below the root and through
    // `continue` chains, or the comparison proves little.
    assert!(
        non_root * 4 >= comparisons && multi * 20 >= comparisons,
        "generator too weak: {non_root} non-root, {multi} multi-receiver of {comparisons}"
    );
}

fn count_routes(r: &GenRoute) -> usize {
    1 + r.routes.iter().map(count_routes).sum::<usize>()
}

/// Exhaustive table: every regex in `REGEXES` (as `=~`, and as `!~` on a
/// second label) and every value in `VALUES` (as `=`) against every value,
/// plus the missing label. One tree holds all of them as sibling routes with
/// `continue: true`, so one amtool run checks a whole row.
#[test]
fn amtool_regex_and_value_table() {
    let amtool =
        PathBuf::from(std::env::var("AMTOOL").unwrap_or_else(|_| "/usr/bin/amtool".into()));
    require(&amtool);
    let reference = Amtool { path: amtool };
    let ours = ours();
    let started = Instant::now();
    let leaf = |matcher: String, receiver: String| GenRoute {
        matchers: vec![matcher],
        receiver: Some(receiver),
        continue_: true,
        routes: Vec::new(),
        hints: Vec::new(),
    };
    let mut routes = Vec::new();
    for (i, re) in REGEXES.iter().enumerate() {
        routes.push(leaf(format!("x=~{}", quote(re)), format!("re{i}")));
        routes.push(leaf(format!("y!~{}", quote(re)), format!("nre{i}")));
    }
    for (i, v) in VALUES.iter().enumerate() {
        routes.push(leaf(format!("x={}", quote(v)), format!("eq{i}")));
        if unquotable(v) {
            routes.push(leaf(format!("x = {v}"), format!("uq{i}")));
        }
    }
    for r in &routes {
        for m in &r.matchers {
            assert!(
                same_in_025_and_fallback(m),
                "{m:?} reads differently in 0.25"
            );
        }
    }
    let root = GenRoute {
        matchers: Vec::new(),
        receiver: Some("r".into()),
        continue_: false,
        routes,
        hints: Vec::new(),
    };
    let dir = std::env::temp_dir().join(format!("amtool_table_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let am_path = dir.join("alertmanager.yml");
    let our_path = dir.join("ours.yml");
    std::fs::write(&am_path, alertmanager_yaml(&root)).expect("write");
    let ours_yaml = serde_yaml::to_string(&OurFile::new(our_config(&root))).expect("serializable");
    std::fs::write(&our_path, ours_yaml).expect("write");

    let mut rows: Vec<Vec<String>> = vec![Vec::new()];
    for v in VALUES {
        rows.push(vec![format!("x={}", quote(v)), format!("y={}", quote(v))]);
    }
    let mut failures = Vec::new();
    let mut matched_cells = 0usize;
    for args in &rows {
        let theirs = reference.routes_test(&am_path, args);
        let mine = ours.routes_test(&our_path, args);
        if let Ok(out) = &theirs {
            matched_cells += out.trim_end().split(',').filter(|s| !s.is_empty()).count();
        }
        if theirs != mine {
            failures.push(format!(
                "labels {args:?}\n  amtool: {theirs:?}\n  ours:   {mine:?}"
            ));
        }
    }
    let cells = rows.len() * root.routes.len();
    println!(
        "amtool table: {} routes x {} label sets = {cells} matcher evaluations, \
         {matched_cells} matched, {} mismatching rows, {:.1}s",
        root.routes.len(),
        rows.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        panic!(
            "{}\n(configs kept in {})",
            failures.join("\n"),
            dir.display()
        );
    }
}
