//! ab-simulator: simulated A/B traffic for one experiment, exported as the
//! `ab_test_*` metrics of the A/B test's client on `/metrics`.
//!
//! ```text
//! ab-simulator --listen 127.0.0.1:0 --weights simulator/weights.yaml \
//!              --scenario simulator/scenario-accuracy-drop.yaml [--rate 50] [--tick 100ms]
//! ```
//!
//! The weights file is the router's `file` traffic target: it is re-read
//! whenever it changes, so the router's traffic shifts change what Prometheus
//! sees. The scenario sets each variant's accuracy, p95 latency and error rate
//! over time. Everything is deterministic (no randomness in the split; a fixed
//! seed for latencies). Once bound, prints exactly one line to stdout,
//! `listening on IP:PORT`; logs go to stderr. SIGTERM/SIGINT: exit 0.
//!
//! `--noise` draws each request's failure and each prediction's correctness
//! at random (seeded) instead of following the scenario's rates exactly.
//!
//! `--push-gateway URL` also pushes the metrics to a Prometheus Pushgateway
//! every `--push-interval`, as the models' demo client does (job
//! `financial_ab_test`). Each push is a PUT, which replaces the job's whole
//! group: a variant taken to 0% loses its accuracy and business series on the
//! gateway too, instead of keeping its last values (and its alert) forever.
//! See `simulator/README.md`.

mod rng;
mod scenario;
mod sim;
mod weights;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::scenario::Scenario;
use crate::sim::Simulator;
use crate::weights::{Poll, WeightsWatcher};

/// How long in-flight scrapes may take after SIGTERM/SIGINT before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Window of `ab_test_traffic_percentage`.
const SHARE_WINDOW: Duration = Duration::from_secs(5);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Simulated A/B traffic: serves the ab_test_* metrics of one experiment.
#[derive(Debug, Parser)]
#[command(name = "ab-simulator", version, about)]
struct Args {
    /// IP:port to serve /metrics and /healthz on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
    /// Weights file (the router's `file` traffic target), re-read when it changes.
    #[arg(long)]
    weights: PathBuf,
    /// Scenario file: each variant's accuracy, latency, error rate over time.
    #[arg(long)]
    scenario: PathBuf,
    /// Requests per second, over all variants.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Simulation step (humantime: 100ms, 1s).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// Experiment label, unless the weights file has an `experiment:` key.
    #[arg(long, default_value = "financial-ab-test-experiment")]
    experiment: String,
    /// Seed of the latency/prediction generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Draw each request's failure and each prediction's correctness at random
    /// (seeded by --seed) instead of following the scenario's rates exactly:
    /// counts fluctuate as real traffic does, and a threshold on a small
    /// variant's rate can fire on that noise alone.
    #[arg(long)]
    noise: bool,
    /// Also push the metrics to this Prometheus Pushgateway (e.g.
    /// http://pushgateway.monitoring.svc:9091), replacing the job's group each time.
    #[arg(long, value_name = "URL")]
    push_gateway: Option<String>,
    /// Job name of the pushed group.
    #[arg(long, default_value = "financial_ab_test")]
    push_job: String,
    /// How often to push (humantime).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    push_interval: Duration,
}

macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("ab-simulator: {}", format_args!($($arg)*))
    };
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate: {} is not a number >= 0", args.rate);
    }
    if args.tick < Duration::from_millis(1) {
        bail!("--tick: must be at least 1ms");
    }
    let push_url = match &args.push_gateway {
        Some(base) => Some(push_url(base, &args.push_job)?),
        None => None,
    };
    if args.push_interval < Duration::from_millis(10) {
        bail!("--push-interval: must be at least 10ms");
    }
    let scenario = Scenario::load(&args.scenario)?;
    let mut watcher = WeightsWatcher::new(&args.weights);
    let weights = match watcher.poll() {
        Poll::Changed(w) => w,
        Poll::Failed(e) => return Err(e).context("initial weights"),
        Poll::Unchanged => bail!("initial weights: {} not read", watcher.path().display()),
    };
    let experiment = weights
        .experiment
        .clone()
        .unwrap_or_else(|| args.experiment.clone());
    let mut sim = Simulator::new(&experiment, scenario, &weights, args.seed, SHARE_WINDOW)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("weights file {}", args.weights.display()))?;
    sim.set_noise(args.noise);
    log!(
        "experiment {experiment}, variants {:?}, weights {}, {} rps, tick {}{}",
        sim.variant_names(),
        weights.describe(),
        args.rate,
        humantime::format_duration(args.tick),
        if args.noise { ", with noise" } else { "" }
    );

    // Signal handlers first, so that a SIGTERM right after the "listening on"
    // line already means a clean exit.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => log!("SIGTERM received"),
            _ = sigint.recv() => log!("SIGINT received"),
        }
        // Nobody listening any more is fine: we are shutting down anyway.
        let _ = stop_tx.send(true);
    });

    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(sim.registry());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("local address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("stdout")?;
        out.flush().context("stdout")?;
    }

    if let Some(url) = push_url {
        log!(
            "pushing to {url} every {}",
            humantime::format_duration(args.push_interval)
        );
        tokio::spawn(push_loop(url, sim.registry(), args.push_interval));
    }

    // The simulation loop.
    let rate = args.rate;
    let tick = args.tick;
    let sim_task = tokio::spawn(async move {
        let start = Instant::now();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut experiment_warned = false;
        let names: Vec<String> = sim
            .variant_names()
            .iter()
            .map(|n| (*n).to_owned())
            .collect();
        let mut summary = Summary::new(names.len(), start);
        loop {
            interval.tick().await;
            match watcher.poll() {
                Poll::Unchanged => {}
                Poll::Changed(w) => {
                    if w.experiment.as_deref().is_some_and(|e| e != experiment)
                        && !experiment_warned
                    {
                        log!("weights file names another experiment; the label stays {experiment}");
                        experiment_warned = true;
                    }
                    match sim.set_weights(&w) {
                        Ok(()) => log!("weights reloaded: {}", w.describe()),
                        Err(e) => log!(
                            "weights file {} refused, keeping the last good weights: {e}",
                            watcher.path().display()
                        ),
                    }
                }
                Poll::Failed(e) => log!("{e}; keeping the last good weights"),
            }
            let elapsed = start.elapsed();
            let out = sim.tick(elapsed, rate);
            for step in &out.steps {
                log!(
                    "scenario step at {} applied: {step}",
                    humantime::format_duration(step.after)
                );
            }
            summary.add(&out.requests, &out.errors, &out.correct);
            if let Some(line) = summary.take_if_due(&names) {
                log!("{line}");
            }
        }
    });

    let mut graceful = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        // An error means the sender is gone, which only happens after it sent.
        let _ = graceful.wait_for(|stop| *stop).await;
    });
    let mut deadline = stop_rx;
    tokio::select! {
        res = server => res.context("server")?,
        _ = async {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => log!("connections still open after {}s; exiting", SHUTDOWN_GRACE.as_secs()),
    }
    sim_task.abort();
    log!("stopped");
    Ok(())
}

/// `{base}/metrics/job/{job}`, the Pushgateway's URL of one job's group.
fn push_url(base: &str, job: &str) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(base)
        .with_context(|| format!("--push-gateway: {base:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--push-gateway: {base:?} is not an http(s) URL");
    }
    if job.is_empty() {
        bail!("--push-job: must not be empty");
    }
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--push-gateway: {base:?} cannot have a path"))?
        .pop_if_empty()
        .extend(["metrics", "job", job]);
    Ok(url)
}

/// Pushes the registry every `every` (PUT: the group is replaced, so series
/// the simulator removed disappear from the gateway too). A failed push is
/// logged and retried at the next interval.
async fn push_loop(url: reqwest::Url, registry: Arc<Registry>, every: Duration) {
    let client = reqwest::Client::builder()
        .timeout(every.max(Duration::from_secs(1)))
        .build()
        .unwrap_or_default();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        interval.tick().await;
        let body = match sim::encode(&registry) {
            Ok(text) => to_prometheus_text(&text),
            Err(e) => {
                log!("cannot encode metrics for the push: {e}");
                continue;
            }
        };
        let res = client
            .put(url.clone())
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(body)
            .send()
            .await;
        match res.map(|r| r.status()) {
            Ok(s) if s.is_success() => {
                if failing {
                    log!("push to {url} works again");
                }
                failing = false;
            }
            Ok(s) => {
                log!("push to {url}: HTTP {s}");
                failing = true;
            }
            Err(e) => {
                log!("push to {url}: {e}");
                failing = true;
            }
        }
    }
}

/// OpenMetrics text (what prometheus-client encodes) as the Prometheus text
/// format 0.0.4 the Pushgateway parses: counters are typed by their `_total`
/// name, and `# EOF`, `# UNIT` and `_created` samples are dropped.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        if let Some(l) = renamed {
            out.push_str(&l);
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            if !line.starts_with('#')
                && name
                    .strip_suffix("_created")
                    .is_some_and(|f| counters.contains(f))
            {
                continue;
            }
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Requests, errors and correct predictions per variant, logged every [`SUMMARY_EVERY`].
struct Summary {
    requests: Vec<u64>,
    errors: Vec<u64>,
    correct: Vec<u64>,
    since: Instant,
}

const SUMMARY_EVERY: Duration = Duration::from_secs(30);

impl Summary {
    fn new(n: usize, since: Instant) -> Self {
        Self {
            requests: vec![0; n],
            errors: vec![0; n],
            correct: vec![0; n],
            since,
        }
    }

    fn add(&mut self, requests: &[u64], errors: &[u64], correct: &[u64]) {
        self.correct
            .iter_mut()
            .zip(correct)
            .for_each(|(a, b)| *a += b);
        self.requests
            .iter_mut()
            .zip(requests)
            .for_each(|(a, b)| *a += b);
        self.errors
            .iter_mut()
            .zip(errors)
            .for_each(|(a, b)| *a += b);
    }

    fn take_if_due(&mut self, names: &[String]) -> Option<String> {
        if self.since.elapsed() < SUMMARY_EVERY {
            return None;
        }
        let parts: Vec<String> = names
            .iter()
            .zip(self.requests.iter().zip(&self.errors).zip(&self.correct))
            .map(|(n, ((r, e), c))| format!("{n}={r} ({e} errors, {c} correct)"))
            .collect();
        let line = format!(
            "last {}s: {}",
            self.since.elapsed().as_secs(),
            parts.join(", ")
        );
        *self = Self::new(names.len(), Instant::now());
        Some(line)
    }
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    match sim::encode(&registry) {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}\n"),
        )
            .into_response(),
    }
}
