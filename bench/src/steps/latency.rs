//! Latency and join time, on a quiet server: A sends stamped video and clicks, B decodes
//! A's tile (tile 0 of a 2-up grid: the left half) and hears A (mix-minus). Then C joins with
//! its camera off (its tile a still placeholder) and a viewer decodes A's tile again (the top
//! left quarter of the 2x2 grid): a still picture in the mix must not delay the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Bench;
use crate::measure::median_p95;
use crate::media::probe::{AudioProbe, VideoProbe};
use crate::replay::SendLog;
use crate::sim::{BOTH, Joiner, NOTHING, Receive, Sim, wait_connected};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let Bench {
        joiner,
        plan,
        results,
        ..
    } = bench;
    let logs: (SendLog, SendLog) = Default::default();
    let a = joiner
        .join(
            "latency",
            false,
            BOTH,
            BOTH,
            Receive::Discard,
            Some(logs.clone()),
        )
        .await?;
    let video = Arc::new(VideoProbe::new(Some((0, 0, 640, 720)))?);
    let audio = Arc::new(AudioProbe::new()?);
    let b = joiner
        .join(
            "latency",
            false,
            BOTH,
            BOTH,
            Receive::Probe {
                video: video.clone(),
                audio: Some(audio.clone()),
            },
            None,
        )
        .await?;
    wait_connected([&a, &b], Duration::from_secs(10)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // past the first keyframes
    let from = Instant::now(); // the audio's window is the video's
    let v_lat = video_latencies(&video, &logs.0, plan.latency_window).await;
    let clicks = logs.1.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut a_lat = Vec::new();
    for onset in audio.onsets().iter().filter(|t| **t >= from) {
        if let Some((_, sent)) = clicks.iter().rev().find(|(_, t)| t <= onset) {
            let ms = onset.duration_since(*sent).as_secs_f64() * 1000.0;
            if ms < 1000.0 {
                a_lat.push(ms);
            }
        }
    }
    let (vm, vp, vn) = median_p95(v_lat);
    let (am, ap, an) = median_p95(a_lat);

    // The same with a camera off in the room.
    let c = joiner
        .join("latency", false, BOTH, BOTH, Receive::Discard, None)
        .await?;
    let quarter = Arc::new(VideoProbe::new(Some((0, 0, 640, 360)))?);
    let viewer = watch(joiner, quarter.clone()).await?;
    wait_connected([&c, &viewer], Duration::from_secs(10)).await?;
    joiner.mute_video(&c).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // past the keyframes and the placeholder's start
    let off_lat = video_latencies(&quarter, &logs.0, plan.latency_window).await;
    joiner.leave(viewer).await;
    joiner.leave(c).await;
    let (om, op, on) = median_p95(off_lat);
    results.row(
        "Added latency, video (send → decoded composite)",
        format!("median {vm:.0} ms, p95 {vp:.0} ms (n={vn})"),
        "median ≤ 50 ms, p95 ≤ 90 ms",
    );
    results.row(
        "Added latency, video, with a camera off in the room (its tile a still placeholder)",
        format!("median {om:.0} ms, p95 {op:.0} ms (n={on})"),
        "as without",
    );
    results.row(
        "Added latency, audio (send → decoded mix-minus)",
        format!("median {am:.0} ms, p95 {ap:.0} ms (n={an})"),
        "median ≤ 30 ms, p95 ≤ 45 ms",
    );

    // Join time: viewers join the running room one after another, 600 ms apart. Joins
    // closer than the 500 ms keyframe coalescing interval share one forced keyframe and
    // wait for it; people joining a room are seldom that close.
    let mut join_ms = Vec::new();
    for _ in 0..plan.joins {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let probe = Arc::new(VideoProbe::new(None)?);
        let t0 = Instant::now();
        let viewer = watch(joiner, probe.clone()).await?;
        let answered = t0.elapsed();
        let mut c = viewer.connected.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.wait_for(|v| *v)).await;
        let connected = t0.elapsed();
        let deadline = t0 + Duration::from_secs(5);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let first = loop {
            tick.tick().await;
            if let Some(first) = probe.report().decoded.first().copied() {
                break Some(first);
            }
            if Instant::now() > deadline {
                break None;
            }
        };
        tracing::info!(
            "join: answered {answered:?}, connected {connected:?}, first frame {:?}",
            first.map(|t| t.duration_since(t0))
        );
        match first {
            Some(t) => join_ms.push(t.duration_since(t0).as_secs_f64() * 1000.0),
            None => results
                .notes
                .push("a viewer decoded no frame within 5 s".into()),
        }
        joiner.leave(viewer).await;
    }
    joiner.leave(a).await;
    joiner.leave(b).await;
    let (jm, jp, jn) = median_p95(join_ms);
    results.row(
        "Join time (POST → first decoded composite frame)",
        format!("median {jm:.0} ms, p95 {jp:.0} ms (n={jn})"),
        "median ≤ 250 ms, p95 ≤ 400 ms",
    );
    Ok(())
}

/// The added latency of each stamped frame `probe` decodes over the next `window`, in ms: from
/// its send (in `sends`) to its decode.
async fn video_latencies(probe: &VideoProbe, sends: &SendLog, window: Duration) -> Vec<f64> {
    let from = Instant::now();
    tokio::time::sleep(window).await;
    let report = probe.report();
    let sends = sends.lock().unwrap_or_else(|e| e.into_inner()).clone();
    report
        .stamps
        .iter()
        .filter(|(_, at)| *at >= from)
        .filter_map(|(stamp, at)| {
            let (_, sent) = sends.iter().rev().find(|(m, t)| m == stamp && t <= at)?;
            Some(at.duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect()
}

/// A viewer of the latency room whose video `probe` decodes.
async fn watch(joiner: &Joiner, probe: Arc<VideoProbe>) -> Result<Sim> {
    let handling = Receive::Probe {
        video: probe,
        audio: None,
    };
    joiner
        .join("latency", true, NOTHING, BOTH, handling, None)
        .await
}
