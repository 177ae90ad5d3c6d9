//! Measuring the server process: resident memory, CPU share, percentiles.

use std::time::{Duration, Instant};

use tessera::metrics::cpu_seconds;

/// Resident memory of `pid` in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The machine's cores.
pub fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// CPU share (in cores) of `pid` over `window`, measured while `during` runs.
pub async fn measure_cpu(pid: Option<u32>, window: Duration) -> f64 {
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(window).await;
    (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64()
}

/// The server's CPU share and the whole machine's (server and load generator), in cores, over
/// `window`. When the machine is nearly full, the server's share says how much it got, not how
/// much it needed: a step must stop before that.
pub async fn measure_load(pid: u32, window: Duration) -> (f64, f64) {
    let (c0, m0, t0) = (
        cpu_seconds(Some(pid)),
        machine_busy_seconds(),
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let elapsed = t0.elapsed().as_secs_f64();
    (
        (cpu_seconds(Some(pid)) - c0) / elapsed,
        (machine_busy_seconds() - m0) / elapsed,
    )
}

/// CPU seconds every core of the machine spent busy so far (`/proc/stat`: all but idle and
/// iowait).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    // USER_HZ is 100 on Linux.
    busy / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Median, 95th percentile and count.
pub fn median_p95(mut v: Vec<f64>) -> (f64, f64, usize) {
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 0.5), percentile(&v, 0.95), v.len())
}
