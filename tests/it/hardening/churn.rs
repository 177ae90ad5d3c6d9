//! Churn: 1,000 real WebRTC joins across 10 rooms, one every [`INTERVAL`], each leaving one of
//! three ways: `DELETE` (6 in 10; half of them send a camera and a microphone first), an
//! abrupt close (DTLS close_notify, no `DELETE`; 3 in 10), or silence (the peer's process
//! stops answering, as a laptop that sleeps: the server must notice by ICE's timeout, 1 in
//! 10). The server counts each way as it should (`tessera_leaves_total` by reason), and then
//! rooms, peers, pipelines, tasks, threads, sockets and file descriptors are back to their
//! baseline, and its resident memory within 10% of it. (This test found two leaks: every video
//! session's name overlay, about 0.7 MiB with its font map, kept alive by a pad probe that held
//! its own element; and the allocator's freed memory never given back, see
//! `media/handle.rs`: +200 MiB after 1,000 joins before.)
//!
//! The clients read the server's tracks without decoding them, and the server mixes a small
//! canvas: what is measured is sessions coming and going, not the cost of their media.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::analysis::colours;
use crate::support::resources::{back_to_baseline, resources};
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer, eventually};

const JOINS: usize = 1000;
const ROOMS: usize = 10;
/// Joins before the baseline is taken.
const WARM_UP: usize = 50;
/// One join every this long: 1,000 in 3 min 40 s (the issue asks for about five minutes; the
/// whole suite must stay under twenty on two cores).
const INTERVAL: Duration = Duration::from_millis(220);
/// How long a client stays connected before it leaves.
const STAY: Duration = Duration::from_millis(1500);

/// How a client leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Leave {
    Delete,
    Close,
    Silence,
}

fn leave_of(i: usize) -> Leave {
    match i % 10 {
        0..=5 => Leave::Delete,
        6..=8 => Leave::Close,
        _ => Leave::Silence,
    }
}

fn options() -> JoinOptions {
    JoinOptions {
        no_decode: true,
        ..Default::default()
    }
}

/// Join `room`, stay, leave as `how`.
async fn churn_one(base: String, i: usize) -> Result<Leave> {
    let room = format!("churn-{}", i % ROOMS);
    let name = format!("c{i}");
    let how = leave_of(i);
    if how == Leave::Silence {
        // On a thread with a runtime of its own, which is then dropped: every task of the
        // client stops at once, its socket closes, nothing says goodbye.
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let result = (|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                let client = runtime.block_on(async {
                    let c = TestClient::join_with(
                        &base,
                        &room,
                        Role::Participant,
                        None,
                        &name,
                        options(),
                    )
                    .await?;
                    tokio::time::sleep(STAY).await;
                    anyhow::Ok(c)
                })?;
                runtime.shutdown_background();
                // Outside any runtime now: its drop cannot close the connection.
                drop(client);
                anyhow::Ok(())
            })();
            let _ = done_tx.send(result);
        });
        done.await.context("the silent client's thread")??;
        return Ok(how);
    }
    let media = (how == Leave::Delete && i.is_multiple_of(2)).then(|| SendMedia {
        width: 160,
        height: 120,
        ..SendMedia::new(colours::YELLOW, 440.0)
    });
    let client = TestClient::join_with(&base, &room, Role::Participant, media, &name, options())
        .await
        .with_context(|| format!("{name} joins {room}"))?;
    tokio::time::sleep(STAY).await;
    match how {
        Leave::Delete => client.leave().await?,
        _ => client.disconnect().await,
    }
    Ok(how)
}

/// Joins `range` one every [`INTERVAL`], each leaving its way; the most at once.
async fn churn(base: &str, range: std::ops::Range<usize>) -> Result<usize> {
    let mut tick = tokio::time::interval(INTERVAL);
    let mut running = tokio::task::JoinSet::new();
    let mut peak = 0;
    for i in range {
        tick.tick().await;
        running.spawn(churn_one(base.to_owned(), i));
        peak = peak.max(running.len());
        while let Some(done) = running.try_join_next() {
            done??;
        }
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(peak)
}

/// The sum of `tessera_leaves_total` for `reason`.
async fn leaves(server: &TestServer, reason: &str) -> Result<f64> {
    let text = reqwest::get(server.url("/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("tessera_leaves_total{") && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn fds(server: &TestServer) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{}/fd", server.pid()))?.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_a_thousand_joins_and_leaves_leave_nothing_behind() -> Result<()> {
    let server = TestServer::start_with_env(
        &[
            "--width",
            "320",
            "--height",
            "180",
            "--fps",
            "15",
            "--room-linger-secs",
            "0",
            "--rate-per-sec",
            "100",
            "--rate-burst",
            "100",
            // Every client comes from 127.0.0.1.
            "--max-pending-per-addr",
            "1000",
        ],
        // One malloc arena, as in the hostile test: what is measured is what the server
        // holds, not what glibc's per-thread arenas cache for threads that come and go
        // (with them, two clean-clone runs read +1.7% and +12.5% on a 56-60 MiB baseline).
        &[("MALLOC_ARENA_MAX", "1")],
    )?;
    let base = server.base_url().to_owned();
    // A server that has served: a first churn of [`WARM_UP`] joins at the same pace, so that
    // the baseline holds what any server builds once and keeps (GStreamer's plugins and
    // registry, thread pools, the allocator's high-water mark of ten sessions at once): what
    // is measured afterwards is what the thousand joins leave behind.
    churn(&base, JOINS..JOINS + WARM_UP).await?;
    eventually(
        Duration::from_secs(60),
        "the warm-up's rooms end",
        || async {
            let (c, _) = resources(&server, "").await?;
            Ok((c["rooms"] == 0 && c["peers"] == 0).then_some(()))
        },
    )
    .await?;
    let (before, rss_before) = resources(&server, "").await?;
    let fds_before = fds(&server)?;
    let counted_before = [
        leaves(&server, "left").await?,
        leaves(&server, "closed").await?,
        leaves(&server, "failed").await?,
    ];
    println!("baseline: {before}, {fds_before} descriptors, RSS {rss_before} MiB");

    let started = Instant::now();
    let peak = churn(&base, 0..JOINS).await?;
    let churned = started.elapsed();
    // The silent ones are noticed by ICE's timeout (8 s): wait for the counts, not a time.
    let (after, rss_after) = {
        let (_, c, rss) = back_to_baseline(&server, "", &before).await?;
        (c, rss)
    };
    let fds_after = fds(&server)?;
    let counted = [
        leaves(&server, "left").await? - counted_before[0],
        leaves(&server, "closed").await? - counted_before[1],
        leaves(&server, "failed").await? - counted_before[2],
    ];
    println!(
        "{JOINS} joins in {churned:?} across {ROOMS} rooms (at most {peak} at once); \
         leaves counted by the server: {} left (DELETE), {} closed, {} failed (silent)",
        counted[0], counted[1], counted[2]
    );
    println!("after: {after}, {fds_after} descriptors, RSS {rss_after} MiB (was {rss_before})");
    let expected = |how: Leave| (0..JOINS).filter(|&i| leave_of(i) == how).count() as f64;
    ensure!(counted[0] == expected(Leave::Delete), "left: {counted:?}");
    // webrtc-rs 0.21 keeps a connection whose peer sent close_notify "connected" (the W3C
    // state algorithm counts a closed DTLS transport as connected) and has no event for it, so
    // an abrupt close is noticed as a silent peer is: ICE's consent fails after 8 s.
    ensure!(
        counted[1] + counted[2] == expected(Leave::Close) + expected(Leave::Silence),
        "closed and failed: {counted:?}"
    );
    ensure!(
        after["media_tasks"] == before["media_tasks"],
        "media tasks: {after}"
    );
    ensure!(
        after["runtime_tasks"].as_u64() <= before["runtime_tasks"].as_u64(),
        "runtime tasks: {after}, were {before}"
    );
    // Sockets are compared exactly by `back_to_baseline`; one descriptor more of another kind
    // (seen once in CI, a file opened once) is not a leak of sessions.
    ensure!(
        fds_after <= fds_before + 1,
        "descriptors: {fds_after}, were {fds_before}"
    );
    let grown = rss_after as f64 / rss_before as f64 - 1.0;
    println!(
        "memory: {rss_after} MiB after, {rss_before} MiB before: {:+.1}%",
        grown * 100.0
    );
    ensure!(
        grown <= 0.10,
        "resident memory {rss_after} MiB after {JOINS} joins, {rss_before} MiB before"
    );
    Ok(())
}
