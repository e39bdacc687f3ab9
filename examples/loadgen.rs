//! Open-loop load generator for `POST /api/v1/alerts` at a fixed rate.
//!
//! Sends `RATE` requests per second for `SECONDS` over at most `CONNS`
//! concurrent requests, each a fixture body made unique (its groupKey gets a
//! counter) so the router stores every one instead of answering "duplicate".
//! Latency is measured from each request's *scheduled* start, so a stall
//! shows up in the percentiles instead of silently lowering the rate.
//!
//! Usage: loadgen URL RATE SECONDS CONNS FIXTURE_DIR

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: loadgen URL RATE SECONDS CONNS FIXTURE_DIR");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let rate: u64 = args[2].parse().expect("RATE");
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let conns: usize = args[4].parse().expect("CONNS");
    let mut bodies: Vec<serde_json::Value> = std::fs::read_dir(&args[5])
        .expect("FIXTURE_DIR")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect();
    bodies.sort_by_key(|b| b.to_string());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .unwrap();
    let slots = Arc::new(Semaphore::new(conns));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity((rate * seconds) as usize)));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = rate * seconds;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let mut body = bodies[i as usize % bodies.len()].clone();
        body["groupKey"] = format!("loadgen-{i}").into();
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (client, url, latencies, errors) = (
            client.clone(),
            url.clone(),
            latencies.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ok = client
                .post(&url)
                .body(body.to_string())
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            let took = scheduled.elapsed();
            drop(permit);
            if !ok {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            latencies.lock().await.push(took);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let mut l = latencies.lock().await.clone();
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!(
        "requests={} errors={} achieved_rps={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        l.len(),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        l.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l[l.len() - 1].as_secs_f64() * 1e3,
    );
}
