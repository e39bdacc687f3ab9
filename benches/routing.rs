//! Routing throughput: alerts through a 50-route tree with regex matchers,
//! on one core (criterion runs single-threaded). Figures in BENCHMARKS.md.
//!
//!   cargo bench --bench routing

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mlops_alert_router::route::{compile, RouteConfig};
use std::collections::BTreeMap;
use std::hint::black_box;

/// 9 teams × 4 alert families + team fallbacks, a critical `continue` route
/// and 3 more: 50 routes, most of them with regexes, 3 levels deep.
fn tree() -> RouteConfig {
    let mut yaml = String::from(
        "actions: [default]\nroutes:\n  - matchers: ['severity=~\"critical|page\"']\n    actions: [pager]\n    continue: true\n",
    );
    for team in 0..9 {
        yaml += &format!(
            "  - matchers: ['team=~\"team-{team}|squad-{team}.*\"', 'env!~\"dev|test\"']\n    actions: [team-{team}]\n    routes:\n"
        );
        for (i, family) in [
            "Model.*Accuracy.*",
            "High(Response|Latency).*",
            "ABTest.*",
            ".*Server(Down|CPU|Memory)",
        ]
        .iter()
        .enumerate()
        {
            yaml += &format!(
                "      - matchers: ['alertname=~\"{family}\"', 'model_name!~\"baseline.*\"']\n        actions: [team-{team}-{i}]\n"
            );
        }
    }
    yaml += "  - matchers: ['alertname=\"Watchdog\"']\n    actions: []\n";
    yaml += "  - matchers: ['component=\"alert-router\"']\n    actions: [self]\n";
    yaml += "  - matchers: ['{namespace=~\"financial-.*\", severity=\"warning\"}']\n    actions: [fin]\n";
    serde_yaml::from_str(&yaml).expect("valid tree")
}

fn labels(i: usize) -> BTreeMap<String, String> {
    let names = [
        "ModelAccuracyDegraded",
        "HighResponseTime",
        "ABTestTrafficImbalance",
        "ModelServerDown",
        "Watchdog",
    ];
    let mut l = BTreeMap::new();
    l.insert("alertname".into(), names[i % names.len()].into());
    l.insert("team".into(), format!("team-{}", i % 12));
    l.insert(
        "severity".into(),
        ["critical", "warning", "info"][i % 3].into(),
    );
    l.insert(
        "model_name".into(),
        ["baseline-predictor", "enhanced-predictor"][i % 2].into(),
    );
    l.insert("experiment".into(), "financial-ab-test-experiment".into());
    l.insert("namespace".into(), "financial-inference".into());
    l.insert("env".into(), ["prod", "dev"][i % 7 / 6].into());
    l
}

fn count_routes(r: &RouteConfig) -> usize {
    1 + r.routes.iter().map(count_routes).sum::<usize>()
}

fn bench(c: &mut Criterion) {
    let config = tree();
    assert_eq!(count_routes(&config), 50, "the tree must have 50 routes");
    let route = compile(&config, &|_| true).expect("compiles");
    let alerts: Vec<_> = (0..1000).map(labels).collect();
    let mut group = c.benchmark_group("route_50_regex");
    group.throughput(Throughput::Elements(alerts.len() as u64));
    group.bench_function("evaluate", |b| {
        b.iter(|| {
            for l in &alerts {
                black_box(route.evaluate(black_box(l)));
            }
        })
    });
    group.bench_function("for_each_match", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for l in &alerts {
                route.for_each_match(black_box(l), &mut |r| n += r.actions().len());
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
