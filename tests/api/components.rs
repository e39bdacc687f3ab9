//! Real Prometheus and Alertmanager (Debian's packages) on free loopback
//! ports with temp data dirs, stopped when dropped — also when a test fails.

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A child process killed on drop.
pub struct Proc(Child);

impl Proc {
    /// Takes ownership of a started child.
    pub fn new(child: Child) -> Self {
        Self(child)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &str, args: &[String], log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); scripts/test.sh installs it"));
    Proc(child)
}

async fn wait_ready(url: &str, what: &str, log: &Path) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready at {url}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `probe` until it returns `Some`, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct Prometheus {
    pub url: String,
    _proc: Proc,
    _dir: TempDir,
}

impl Prometheus {
    /// Scrapes `targets` (host:port) every second as job `financial_ab_test`.
    pub async fn start(targets: &[String]) -> Self {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: financial_ab_test\n    honor_labels: true\n    static_configs: [{{targets: [{}]}}]\n",
            targets.join(", ")
        );
        Self::start_with_config(&config).await
    }

    /// Starts with a whole `prometheus.yml`; alerts are resent every second.
    pub async fn start_with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("prometheus.log");
        let proc = spawn(
            "prometheus",
            &[
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                // Without it a fresh Prometheus holds a new alert back for a minute.
                "--rules.alert.resend-delay=1s".into(),
                "--log.level=warn".into(),
            ],
            &log,
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{url}/-/ready"), "prometheus", &log).await;
        Self {
            url,
            _proc: proc,
            _dir: dir,
        }
    }

    pub async fn query(&self, q: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `q` returns at least `n` series.
    pub async fn wait_for_series(&self, q: &str, n: usize) {
        eventually(30, q, || async {
            let v = self.query(q).await;
            (v["data"]["result"].as_array().map_or(0, |r| r.len()) >= n).then_some(())
        })
        .await
    }
}

pub struct Alertmanager {
    pub url: String,
    _proc: Proc,
    _dir: TempDir,
}

impl Alertmanager {
    /// Starts `prometheus-alertmanager` with `config` (YAML), no gossip port.
    pub async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("alertmanager.log");
        let proc = spawn(
            "prometheus-alertmanager",
            &[
                format!("--config.file={}", config_path.display()),
                format!("--storage.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".into(),
                "--log.level=warn".into(),
            ],
            &log,
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{url}/-/ready"), "alertmanager", &log).await;
        Self {
            url,
            _proc: proc,
            _dir: dir,
        }
    }
}

/// A static exporter of the A/B metrics: each scrape adds 70 requests to the
/// baseline and 30 to the candidate (3 of them errors), so rates split 70/30;
/// accuracy 72.5 vs 51.2; latency observations 50 ms vs 300 ms.
pub struct Exporter {
    pub target: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub async fn start(experiment: &'static str) -> Self {
        let scrapes = Arc::new(AtomicU64::new(0));
        let counter = scrapes.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                async move { exposition(experiment, n) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            target,
            _server: server,
        }
    }
}

fn exposition(e: &str, n: u64) -> String {
    let mut out = String::new();
    let lines = [
        ("baseline-predictor", 70 * n, 0, 72.5, 0.05, 12.0),
        ("enhanced-predictor", 27 * n, 3 * n, 51.2, 0.3, -25.0),
    ];
    out += "# TYPE ab_test_requests_total counter\n";
    for (m, ok, err, ..) in lines {
        out += &format!("ab_test_requests_total{{model_name=\"{m}\",experiment=\"{e}\",status=\"success\"}} {ok}\n");
        if err > 0 {
            out += &format!("ab_test_requests_total{{model_name=\"{m}\",experiment=\"{e}\",status=\"error\"}} {err}\n");
        }
    }
    out += "# TYPE ab_test_model_accuracy gauge\n";
    for (m, _, _, acc, ..) in lines {
        out += &format!("ab_test_model_accuracy{{model_name=\"{m}\",experiment=\"{e}\"}} {acc}\n");
    }
    out += "# TYPE ab_test_business_impact gauge\n";
    for (m, .., value) in lines {
        out += &format!("ab_test_business_impact{{model_name=\"{m}\",experiment=\"{e}\",metric_type=\"net_business_value\"}} {value}\n");
    }
    out += "# TYPE ab_test_response_time_seconds histogram\n";
    for (m, ok, err, _, latency, _) in lines {
        let total = ok + err;
        for le in [0.01, 0.1, 0.2, 0.5, 1.0] {
            let count = if latency <= le { total } else { 0 };
            out += &format!("ab_test_response_time_seconds_bucket{{model_name=\"{m}\",experiment=\"{e}\",le=\"{le}\"}} {count}\n");
        }
        out += &format!("ab_test_response_time_seconds_bucket{{model_name=\"{m}\",experiment=\"{e}\",le=\"+Inf\"}} {total}\n");
        out += &format!(
            "ab_test_response_time_seconds_sum{{model_name=\"{m}\",experiment=\"{e}\"}} {}\n",
            total as f64 * latency
        );
        out += &format!("ab_test_response_time_seconds_count{{model_name=\"{m}\",experiment=\"{e}\"}} {total}\n");
    }
    out
}
