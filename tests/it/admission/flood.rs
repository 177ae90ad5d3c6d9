//! The flood: 200 concurrent valid offers to 200 rooms from one address, with a valid token
//! and without one, against a server on its default limits. Every offer gets 201, 401, 429 or
//! 503 and none hangs; `/healthz` answers within 100 ms throughout; a room already running
//! keeps its frame rate; within 60 s rooms, peers, threads, sockets and memory are back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::auth::{ENV, mint};
use crate::support::resources::{back_to_baseline, resources};

const OFFERS: usize = 200;
/// How long one offer may take to be answered: a hang is a failure.
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// 200 offers at once to rooms `{prefix}0..{prefix}199`; the status of each.
async fn flood(server: &TestServer, prefix: &str, sdp: &str, token: Option<&str>) -> Vec<u16> {
    let offers = (0..OFFERS).map(|i| {
        let target = url(server, &format!("/rooms/{prefix}{i}/whip"));
        let body = sdp.to_owned();
        async move {
            let target = target.ok()?;
            let sent = http::send(
                Method::POST,
                &target,
                token,
                Some(("application/sdp", body)),
            );
            match tokio::time::timeout(ANSWER_DEADLINE, sent).await {
                Ok(Ok(r)) => Some(r.status),
                _ => None,
            }
        }
    });
    futures::future::join_all(offers)
        .await
        .into_iter()
        .map(|s| s.unwrap_or(0))
        .collect()
}

fn tally(statuses: &[u16]) -> BTreeMap<u16, usize> {
    let mut t = BTreeMap::new();
    for s in statuses {
        *t.entry(*s).or_default() += 1;
    }
    t
}

/// Pings `/healthz` one request after another until `stop`, on a thread and runtime of its
/// own (so the flood's 200 requests in this process do not delay the pings' own reading);
/// the worst latency seen, when (after the start), and how many answers.
fn ping_health(
    base: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(Duration, Duration, usize)>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let target = Url::parse(&format!("{base}/healthz"))?;
            let client = http::client()?;
            let begin = Instant::now();
            let (mut worst, mut when, mut n) = (Duration::ZERO, Duration::ZERO, 0);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let r =
                    tokio::time::timeout(Duration::from_secs(5), client.get(target.clone()).send())
                        .await
                        .context("healthz did not answer within 5 s")??;
                ensure!(r.status() == 200, "healthz {}", r.status());
                r.bytes().await?;
                if start.elapsed() > worst {
                    worst = start.elapsed();
                    when = start - begin;
                }
                n += 1;
            }
            Ok((worst, when, n))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_flood_of_200_offers_takes_nothing_down() -> Result<()> {
    // The defaults a user gets, with tokens on (the token flood needs them).
    let server = TestServer::start_with_env(&[], &ENV)?;
    let base = server.base_url().to_owned();
    let admin = mint(&["--admin"])?;
    let anyone = mint(&["--room", "*", "--identity", "flooder", "--grant", "join"])?;
    let steady = mint(&["--room", "steady", "--identity", "s", "--grant", "join"])?;
    // The room that must not notice: a sender and a viewer decoding its composite.
    let (sender, viewer) = crate::support::steady::steady_room(&base, "steady", &steady).await?;
    eventually(DEADLINE, "the viewer at full rate", || async {
        Ok((viewer.fps_over(Duration::from_secs(1)) >= 25.0).then_some(()))
    })
    .await?;
    let (before, rss_before) = resources(&server, &admin).await?;
    println!("baseline: {before}, RSS {rss_before} MiB");

    let sdp = make_offer(Role::Participant, "flood").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = ping_health(base.clone(), stop.clone());
    let mut worst_fps = f64::MAX;
    let mut results = Vec::new();
    for (label, prefix, token, allowed) in [
        (
            "with a token",
            "t",
            Some(anyone.as_str()),
            &[201u16, 429, 503][..],
        ),
        ("without a token", "n", None, &[401, 429][..]),
    ] {
        let start = Instant::now();
        let offers = flood(&server, prefix, &sdp, token);
        tokio::pin!(offers);
        // While the offers are answered, the running room is watched.
        let statuses = loop {
            tokio::select! {
                statuses = &mut offers => break statuses,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    worst_fps = worst_fps.min(viewer.fps_over(Duration::from_secs(1)));
                }
            }
        };
        let took = start.elapsed();
        let t = tally(&statuses);
        println!("{OFFERS} offers {label}: {t:?} in {took:?}");
        for (status, n) in &t {
            ensure!(
                allowed.contains(status),
                "{n} offers {label} got {status} (0: no answer within {ANSWER_DEADLINE:?})"
            );
        }
        results.push((label, t, took));
    }
    // The room keeps going a second longer, still watched.
    for _ in 0..4 {
        worst_fps = worst_fps.min(viewer.fps_over(Duration::from_secs(1)));
        viewer.wait_for_new_frames(7, DEADLINE).await?;
    }
    stop.store(true, Ordering::Relaxed);
    let (worst_health, when, pings) = pinger
        .join()
        .map_err(|_| anyhow::anyhow!("the pinger panicked"))??;
    println!(
        "healthz: {pings} answers, worst {worst_health:?} ({when:?} after the first flood began); \
         the running room's worst fps {worst_fps:.1}"
    );
    ensure!(
        results[0].1.get(&201).copied().unwrap_or(0) > 0,
        "some offers with a token were answered: {:?}",
        results[0].1
    );
    ensure!(
        worst_health < Duration::from_millis(100),
        "healthz took {worst_health:?}"
    );
    ensure!(
        worst_fps >= 25.0,
        "the running room fell to {worst_fps:.1} fps"
    );

    // Within 60 s everything the flood made is gone: the unconnected sessions time out, their
    // rooms end at once.
    let settled = back_to_baseline(&server, &admin, &before).await?;
    println!(
        "back to baseline {:?} after the flood: {}, RSS {} MiB (was {rss_before})",
        settled.0, settled.1, settled.2
    );
    // The allocator keeps some of what 20 rooms' pipelines used (glibc arenas of their
    // threads); what matters is that it is bounded: a second flood must not add to it.
    ensure!(
        settled.2 <= rss_before + 40,
        "memory stayed up: {} MiB, was {rss_before}",
        settled.2
    );
    let again = flood(&server, "again", &sdp, Some(&anyone)).await;
    println!("a second flood with a token: {:?}", tally(&again));
    let second = back_to_baseline(&server, &admin, &before).await?;
    println!(
        "back to baseline {:?} after the second: RSS {} MiB",
        second.0, second.2
    );
    ensure!(
        second.2 <= settled.2 + 16,
        "memory grows flood after flood: {} MiB after the first, {} after the second",
        settled.2,
        second.2
    );
    ensure!(viewer.fps_over(Duration::from_secs(1)) >= 25.0);
    sender.disconnect().await;
    viewer.disconnect().await;
    Ok(())
}
