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
