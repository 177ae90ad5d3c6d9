//! Rooms that wait: each has one session that was offered and answered but never connects (a
//! participant still behind its ICE checks, or gone). What such a room costs the server, in CPU
//! and threads, is what a server full of empty or connecting rooms pays for nothing.

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use super::Bench;
use crate::client::ClientPeer;
use crate::measure::measure_cpu;
use crate::server::{debug_counts, wait_idle};
use crate::sim::BOTH;

/// Rooms measured at once.
const ROOMS: usize = 10;

pub async fn run(bench: &mut Bench) -> Result<()> {
    let Bench {
        joiner,
        server,
        plan,
        results,
        ..
    } = bench;
    wait_idle(&joiner.http, &joiner.base, results).await;
    let window = plan.fanout_window;
    let idle = measure_cpu(Some(server.pid()), window).await;
    let threads_before = threads(joiner).await?;
    let mut peers = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..ROOMS {
        // The offer's own peer stays open but is never given the answer: the server's side
        // keeps checking its candidates until it gives up on the session.
        let (events, _) = mpsc::channel(64);
        let (peer, offer) = ClientPeer::offer(BOTH, BOTH, events).await?;
        let (session, _answer) = joiner
            .post_offer(&format!("waiting-{i}"), false, offer)
            .await?;
        sessions.push(session);
        peers.push(peer);
    }
    measure_cpu(Some(server.pid()), std::time::Duration::from_secs(1)).await; // settle
    let waiting = measure_cpu(Some(server.pid()), window).await;
    let threads_after = threads(joiner).await?;
    for s in sessions {
        let _ = joiner.http.delete(s).send().await;
    }
    for p in peers {
        p.close().await;
    }
    let per_room = (waiting - idle).max(0.0) / ROOMS as f64;
    let threads_per_room = threads_after.saturating_sub(threads_before) as f64 / ROOMS as f64;
    results.row(
        format!("A room whose one session is still connecting ({ROOMS} such rooms)"),
        format!(
            "{:.2}% of a core and {threads_per_room:.1} threads per room (the idle server: {:.2}%)",
            per_room * 100.0,
            idle * 100.0
        ),
        "< 0.2% of a core, ≤ 2 threads",
    );
    Ok(())
}

/// The server's threads now (its debug counts).
async fn threads(joiner: &crate::sim::Joiner) -> Result<u64> {
    debug_counts(&joiner.http, &joiner.base)
        .await
        .and_then(|counts| counts["threads"].as_u64())
        .context("the server's thread count")
}
