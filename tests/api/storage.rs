//! Storage faults: the file gone, a full disk, a read-only filesystem. Writes
//! and `/readyz` answer 503, never 200 for a write that would not survive a
//! restart; the fault is logged once.
//!
//! The full-disk and read-only cases mount a small tmpfs (root with
//! CAP_SYS_ADMIN); where mounting is not allowed they print why and pass.
//! The store's unit tests cover the same states without privileges
//! (`max_page_count`, `query_only`).

use crate::helpers::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlops-alert-router");

struct Router {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Router {
    fn start(db: &Path, log: PathBuf) -> Router {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .env(
                "MLOPS_ALERT_ROUTER__SERVER__LISTEN",
                format!("127.0.0.1:{port}"),
            )
            .env("MLOPS_ALERT_ROUTER__STORAGE__PATH", db)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "router never listened: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Router {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(client: &reqwest::Client, base: &str, body: String) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/alerts"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A distinct valid notification (a fresh groupKey each time).
fn notification(i: usize) -> String {
    fixture("accuracy-firing.json").replace(
        "\"groupKey\": \"",
        &format!("\"groupKey\": \"storage-test-{i}-"),
    )
}

#[tokio::test]
async fn removing_the_data_directory_under_a_running_router_refuses_writes_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let router = Router::start(&data.join("router.db"), dir.path().join("router.log"));
    let client = reqwest::Client::new();
    let base = router.base.clone();
    assert!(
        notification(0).contains("storage-test-0-"),
        "fixture has a groupKey"
    );
    assert_eq!(post(&client, &base, notification(0)).await.status(), 200);
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    std::fs::remove_dir_all(&data).unwrap();

    for i in 1..=20 {
        let r = post(&client, &base, notification(i)).await;
        assert_eq!(r.status(), 503, "write {i} after the directory was removed");
        assert_eq!(r.headers()["retry-after"], "5");
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("router.db") && error.contains("gone"),
            "{error}"
        );
    }
    for _ in 0..5 {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("store_writable 0"), "{metrics}");
    // Something at the path again does not make it writable: this process
    // still writes to the deleted file.
    std::fs::create_dir_all(&data).unwrap();
    assert_eq!(post(&client, &base, notification(99)).await.status(), 503);

    let log = router.stop();
    assert_eq!(
        log.matches("Storage fault").count(),
        1,
        "logged once, not per request:\n{log}"
    );

    // A restart opens what is at the path now.
    let router = Router::start(&data.join("router.db"), dir.path().join("router2.log"));
    assert_eq!(
        post(&client, &router.base, notification(100))
            .await
            .status(),
        200
    );
    let ready = client
        .get(format!("{}/readyz", router.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    router.stop();
}

#[tokio::test]
async fn replacing_the_database_file_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    assert_eq!(app.post_alerts(notification(0)).await.status(), 200);
    // Say, a backup copied over it.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&app.db_path, &copy).unwrap();
    std::fs::rename(&copy, &app.db_path).unwrap();
    let r = app.post_alerts(notification(1)).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("replaced"),
        "{body}"
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    app.stop().await;
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(s.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // The store's threads may still be closing their files: lazy unmount
        // detaches now and frees the tmpfs once they have.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `len` hexadecimal digits with no repeats for LZ4 to find (splitmix64).
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.push_str(&format!("{:016x}", z ^ (z >> 31)));
    }
    out.truncate(len);
    out
}

/// Fills the filesystem of `dir` until a write fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    path
}

#[tokio::test]
async fn a_full_disk_answers_503_and_is_not_ready_until_space_is_freed() {
    let Some(fs) = Tmpfs::mount("32m") else {
        return;
    };
    let mut settings = test_settings(fs.path());
    settings.worker.enabled = false;
    let app = spawn_app_with(settings).await;
    assert_eq!(app.post_alerts(notification(0)).await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);

    let filler = fill(fs.path());
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("bytes free"),
        "{body}"
    );
    // A notification of half a megabyte does not fit. The padding does not
    // compress (payloads are stored LZ4-compressed: 500,000 times the same
    // letter would take a few kilobytes, which can fit in WAL blocks the
    // file already has and be stored, rightly, with a 200).
    let big = notification(1).replace(
        "\"annotations\": {",
        &format!("\"annotations\": {{\"padding\": \"{}\", ", noise(500_000)),
    );
    assert!(big.len() > 500_000);
    let r = app.post_alerts(big.clone()).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("store_writable 0"), "{metrics}");

    // Space comes back: so does the store, by itself.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.post_alerts(big).await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("store_writable 1"), "{metrics}");
    app.stop().await;
}

#[test]
fn a_read_only_database_at_startup_is_refused_with_the_reason() {
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let db = fs.path().join("router.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    fs.remount("ro");
    let out = Command::new(BIN)
        .arg("serve")
        .env("MLOPS_ALERT_ROUTER__SERVER__LISTEN", "127.0.0.1:0")
        .env("MLOPS_ALERT_ROUTER__STORAGE__PATH", &db)
        .output()
        .unwrap();
    fs.remount("rw");
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("router.db"), "{text}");
    assert!(
        text.contains("readonly") || text.contains("read-only") || text.contains("unable to open"),
        "{text}"
    );
}
