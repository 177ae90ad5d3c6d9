//! What a server process holds, read from outside: its counts (`GET /debug/counts`, as a
//! server administrator) and its resident memory, and the wait until they are back where they
//! were (the flood, the hostile client and the churn tests end on it).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::{Method, Url};
use serde_json::Value;

use super::{TestServer, eventually, http};

/// The counts of `/debug/counts` (as a server admin: `admin` is its token, or empty on an
/// open server) and the resident memory of the process.
pub async fn resources(server: &TestServer, admin: &str) -> Result<(Value, u64)> {
    let counts = http::send(
        Method::GET,
        &Url::parse(&server.url("/debug/counts"))?,
        (!admin.is_empty()).then_some(admin),
        None,
    )
    .await?
    .json()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("VmRSS")?;
    Ok((counts, rss_kib / 1024))
}

/// Waits (60 s at most) until rooms, peers, pipelines, threads and sockets are back to
/// `before`; how long it took, the counts and the memory then.
pub async fn back_to_baseline(
    server: &TestServer,
    admin: &str,
    before: &Value,
) -> Result<(Duration, Value, u64)> {
    let start = Instant::now();
    let base_threads = before["threads"].as_u64().unwrap_or(0);
    let base_sockets = before["sockets"].as_u64().unwrap_or(0);
    let (c, rss) = eventually(Duration::from_secs(60), "back to the baseline", || async {
        let (c, rss) = resources(server, admin).await?;
        // GStreamer keeps a thread or two of its own once it has built many pipelines.
        let back = c["rooms"] == before["rooms"]
            && c["peers"] == before["peers"]
            && c["pipelines"] == before["pipelines"]
            && c["threads"].as_u64().unwrap_or(u64::MAX) <= base_threads + 2
            && c["sockets"].as_u64().unwrap_or(u64::MAX) <= base_sockets;
        anyhow::ensure!(back, "{c}, RSS {rss} MiB");
        Ok(Some((c, rss)))
    })
    .await?;
    Ok((start.elapsed(), c, rss))
}
