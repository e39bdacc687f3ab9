//! ab-simulator scraped by a real Prometheus: the split Prometheus computes
//! from `ab_test_requests_total` follows the weights file, also after the file
//! is replaced (as the router's `file` traffic target does on a shift).
//!
//! Needs Prometheus: `PROMETHEUS` (default `/usr/bin/prometheus`, Debian's
//! `prometheus` package, which `scripts/test.sh` installs). A missing binary
//! fails the test rather than skipping it. Every wait polls with a deadline;
//! both processes are stopped at the end, also when the test fails.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SIMULATOR: &str = env!("CARGO_BIN_EXE_ab-simulator");
const EXPERIMENT: &str = "financial-ab-test-experiment";

/// A child process that is killed (if still running) and reaped when dropped.
/// When the test is failing, the tail of the process's log is printed.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// SIGTERM, then wait up to `within` for it to exit.
    fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            eprintln!(
                "--- last lines of {} log ---\n{}",
                self.name,
                tail.join("\n")
            );
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET over HTTP/1.0 (no chunked encoding, the server closes): (status, body).
fn http_get(port: u16, target: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// An instant query; the result as (model_name, value) pairs.
fn query(prom: u16, expr: &str) -> Result<Vec<(String, f64)>, String> {
    let (status, body) = http_get(
        prom,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )?;
    if status != 200 {
        return Err(format!("HTTP {status}: {body}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let result = v["data"]["result"]
        .as_array()
        .ok_or_else(|| format!("no data.result in {body}"))?;
    result
        .iter()
        .map(|r| {
            let model = r["metric"]["model_name"].as_str().unwrap_or("").to_owned();
            let value = r["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok())
                .ok_or_else(|| format!("bad sample {r}"))?;
            Ok((model, value))
        })
        .collect()
}

/// Observed share per variant (percent) from the last 10 s of Prometheus data.
fn shares(prom: u16) -> Result<Vec<(String, f64)>, String> {
    let rates = query(
        prom,
        &format!("sum by (model_name) (rate(ab_test_requests_total{{experiment=\"{EXPERIMENT}\"}}[10s]))"),
    )?;
    let total: f64 = rates.iter().map(|(_, r)| r).sum();
    if total <= 0.0 {
        return Err(format!("no traffic yet: {rates:?}"));
    }
    let mut out: Vec<(String, f64)> = rates
        .into_iter()
        .map(|(m, r)| (m, 100.0 * r / total))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn share_of(s: &[(String, f64)], model: &str) -> f64 {
    s.iter().find(|(m, _)| m == model).map_or(0.0, |(_, v)| *v)
}

/// Calls `f` every 250 ms until it returns Ok(Some), or panics after `within`
/// with the last state it saw.
fn poll<T>(what: &str, within: Duration, mut f: impl FnMut() -> Result<Option<T>, String>) -> T {
    let deadline = Instant::now() + within;
    let mut last = String::from("never polled");
    loop {
        match f() {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write temp file");
    fs::rename(&tmp, path).expect("rename into place");
}

#[test]
fn prometheus_sees_the_configured_split_and_follows_a_shift() {
    let started = Instant::now();
    let prometheus =
        PathBuf::from(std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into()));
    assert!(
        prometheus.exists(),
        "{} not found: install Debian's `prometheus` package (scripts/test.sh does) or set PROMETHEUS",
        prometheus.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = dir.path().join("weights.yaml");
    let scenario = dir.path().join("scenario.yaml");
    write_atomic(
        &weights,
        "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 70}\n  - {name: enhanced-predictor, weight: 30}\n",
    );
    write_atomic(
        &scenario,
        "variants:\n  baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.01}\n  enhanced-predictor: {accuracy: 78, latency: 60ms, error_rate: 0.005}\n",
    );

    // The simulator, on any free port: it says which on stdout.
    let sim_log = dir.path().join("simulator.log");
    let mut child = Command::new(SIMULATOR)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--rate",
            "100",
            "--tick",
            "100ms",
        ])
        .arg("--weights")
        .arg(&weights)
        .arg("--scenario")
        .arg(&scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&sim_log).expect("simulator log"))
        .spawn()
        .expect("start ab-simulator");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut sim = Proc {
        name: "ab-simulator",
        child,
        log: sim_log,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        // Keep reading so the pipe stays open; the simulator prints nothing more.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the simulator prints its address within 20 s")
        .expect("a first stdout line")
        .expect("readable stdout");
    let sim_addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let sim_port: u16 = sim_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in the address");
    let (status, body) = http_get(sim_port, "/healthz").expect("healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // Prometheus scraping it every second.
    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: ab-simulator\n    static_configs:\n      - targets: ['{sim_addr}']\n"
        ),
    )
    .expect("prometheus.yml");
    let prom_log = dir.path().join("prometheus.log");
    let child = Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&prom_log).expect("prometheus log"))
        .spawn()
        .expect("start prometheus");
    let mut prom = Proc {
        name: "prometheus",
        child,
        log: prom_log,
    };
    poll("Prometheus ready", Duration::from_secs(30), || {
        Ok(http_get(prom_port, "/-/ready")?.0.eq(&200).then_some(()))
    });
    let ready_at = started.elapsed();

    // 70/30 as configured.
    let seen = poll(
        "a 70/30 split in Prometheus",
        Duration::from_secs(60),
        || {
            let s = shares(prom_port)?;
            let ok = (share_of(&s, "baseline-predictor") - 70.0).abs() < 5.0
                && (share_of(&s, "enhanced-predictor") - 30.0).abs() < 5.0;
            if ok {
                Ok(Some(s))
            } else {
                Err(format!("shares {s:?}"))
            }
        },
    );
    let split_at = started.elapsed();

    // The router shifts everything to the default: 100/0.
    write_atomic(
        &weights,
        "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 100}\n  - {name: enhanced-predictor, weight: 0}\n",
    );
    let shift = Instant::now();
    let after = poll(
        "the candidate's share to fall to ~0",
        Duration::from_secs(60),
        || {
            let s = shares(prom_port)?;
            if share_of(&s, "enhanced-predictor") < 0.5 && share_of(&s, "baseline-predictor") > 99.5
            {
                Ok(Some(s))
            } else {
                Err(format!("shares {s:?}"))
            }
        },
    );
    let followed_in = shift.elapsed();
    // The simulator's own recent-share gauge agrees.
    poll(
        "ab_test_traffic_percentage to follow",
        Duration::from_secs(30),
        || {
            let g = query(prom_port, "ab_test_traffic_percentage")?;
            let ok = share_of(&g, "enhanced-predictor") == 0.0
                && share_of(&g, "baseline-predictor") == 100.0;
            Ok(ok.then_some(()))
        },
    );

    // SIGTERM: the simulator exits 0.
    let status = sim.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "ab-simulator on SIGTERM: {status:?}"
    );
    let _ = prom.terminate(Duration::from_secs(10));
    eprintln!(
        "prometheus ready after {ready_at:?}; 70/30 seen after {split_at:?} ({seen:?}); \
         100/0 seen {followed_in:?} after the shift ({after:?}); total {:?}",
        started.elapsed()
    );
}
