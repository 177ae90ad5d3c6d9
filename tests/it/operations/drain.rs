//! Issue 15: the first SIGTERM drains (readiness 503, no new rooms, the rooms that run go on
//! until empty), a drain that times out ends the rooms with reason `shutdown`, a second signal
//! stops at once; every way out exits 0 and leaves recordings that play.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::analysis::{Rect, average_colour, colours, is_close};
use crate::support::client::post_offer;
use crate::support::events::EventStream;
use crate::support::media::decode_file;
use crate::support::{Role, SendMedia, TestClient, TestServer, http};

const DEADLINE: Duration = Duration::from_secs(15);

/// `GET /readyz`: its status and JSON body.
async fn readyz(base: &str) -> Result<(u16, serde_json::Value)> {
    let response = http::get(&http::endpoint(base, &["readyz"])?).await?;
    Ok((response.status, response.json()?))
}

/// The only recording file of `room` under `dir`, once the server is gone.
fn recording_of(dir: &Path, room: &str) -> Result<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join(room))
        .with_context(|| format!("the recordings of {room}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "webm"))
        .collect();
    ensure!(files.len() == 1, "{room}: recordings {files:?}");
    Ok(files[0].clone())
}

/// The recording plays as a player would: at least `secs` of frames, red in the middle.
fn plays_red(path: &Path, secs: f64) -> Result<u64> {
    let file = decode_file(path, 0.5, Duration::from_secs(60))
        .with_context(|| format!("decoding {}", path.display()))?;
    ensure!(
        file.frame_count as f64 >= secs * 25.0,
        "{}: {} frames, expected {secs} s at 30 fps",
        path.display(),
        file.frame_count
    );
    let frame = file.frame_at(secs / 2.0).context("a frame")?;
    let seen = average_colour(frame, Rect::new(600, 320, 80, 80));
    ensure!(is_close(seen, colours::RED, 48), "the middle is {seen:?}");
    Ok(file.frame_count)
}

async fn red_participant(base: &str, room: &str) -> Result<TestClient> {
    let red = TestClient::join(
        base,
        room,
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "red",
    )
    .await?;
    red.wait_for_frame(DEADLINE, |f| {
        is_close(
            average_colour(f, Rect::new(600, 320, 80, 80)),
            colours::RED,
            48,
        )
    })
    .await
    .context("red sees itself in the mix")?;
    Ok(red)
}

#[tokio::test]
async fn issue15_sigterm_drains_and_the_participant_keeps_its_call_until_it_leaves() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rec = dir.path().join("rec");
    let mut server = TestServer::start(&[
        "--recordings-dir",
        rec.to_str().context("utf-8")?,
        "--auto-record",
        "webm",
    ])?;
    let base = server.base_url().to_owned();
    let (status, body) = readyz(&base).await?;
    ensure!(
        status == 200 && body["status"] == "ready",
        "before: {status} {body}"
    );
    let red = red_participant(&base, "stay").await?;

    let t0 = Instant::now();
    let at = |t: Instant| t.duration_since(t0).as_secs_f64();
    server.signal("TERM")?;
    server
        .wait_for_line("draining", DEADLINE)
        .await
        .context("the server says it drains")?;
    let (status, body) = readyz(&base).await?;
    ensure!(
        status == 503 && body["status"] == "draining",
        "draining: {status} {body}"
    );
    let t_ready = Instant::now();

    // A new room is refused, with a time to come back; the running room still takes a join.
    let refused = post_offer(&base, "elsewhere", Role::Viewer, "late").await?;
    ensure!(
        refused.status == 503 && refused.json()?["error"] == "draining",
        "a join to a new room while draining: {} {}",
        refused.status,
        refused.body
    );
    ensure!(refused.retry_after.is_some(), "503 without Retry-After");
    let t_refused = Instant::now();
    let viewer = TestClient::join(&base, "stay", Role::Viewer, None, "viewer").await?;
    viewer
        .wait_for_new_frames(10, DEADLINE)
        .await
        .context("a viewer joins the running room while the server drains")?;
    viewer.leave().await?;

    // The participant's call goes on: five seconds at the full rate.
    let before = red.frame_count();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fps = (red.frame_count() - before) as f64 / window.elapsed().as_secs_f64();
    ensure!(
        fps >= 25.0,
        "red decoded {fps:.1} fps while the server drained"
    );
    ensure!(
        server.has_exited()?.is_none(),
        "the server quit with a room running"
    );

    let t_leave = Instant::now();
    red.leave().await?;
    let status = server.exited(DEADLINE).await?;
    let t_exit = Instant::now();
    ensure!(status.success(), "the server exited with {status}");
    let frames = plays_red(&recording_of(&rec, "stay")?, 5.0)?;
    println!(
        "drain timeline: SIGTERM at 0 s; /readyz 503 by {:.2} s; new room refused (503 draining) \
         by {:.2} s; red decoded {fps:.1} fps over 5 s; red left at {:.2} s; exit 0 at {:.2} s \
         ({:.2} s after the last leave); the recording plays ({frames} frames)",
        at(t_ready),
        at(t_refused),
        at(t_leave),
        at(t_exit),
        t_exit.duration_since(t_leave).as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn issue15_a_drain_that_times_out_ends_rooms_with_reason_shutdown_and_a_second_signal_stops_at_once()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let rec = dir.path().join("rec");
    let rec_arg = rec.to_str().context("utf-8")?;

    // A drain of 2 s with somebody who stays: the room is ended for them.
    let mut server = TestServer::start(&[
        "--recordings-dir",
        rec_arg,
        "--auto-record",
        "webm",
        "--drain-timeout",
        "2s",
    ])?;
    let base = server.base_url().to_owned();
    let red = red_participant(&base, "stays").await?;
    let mut events = EventStream::open(&base, "stays").await?;
    // Three seconds of the call in its recording.
    red.wait_for_new_frames(90, DEADLINE).await?;
    let t0 = Instant::now();
    server.signal("TERM")?;
    let left = events.until("participant_left", DEADLINE).await?;
    ensure!(left["reason"] == "shutdown", "{left}");
    let ended = events.until("room_ended", DEADLINE).await?;
    ensure!(ended["reason"] == "shutdown", "{ended}");
    let status = server.exited(DEADLINE).await?;
    let timed_out_after = t0.elapsed().as_secs_f64();
    ensure!(status.success(), "exit after the drain timeout: {status}");
    ensure!(
        timed_out_after >= 2.0,
        "the room was ended {timed_out_after:.2} s after SIGTERM, before its 2 s drain"
    );
    drop(red);
    plays_red(&recording_of(&rec, "stays")?, 3.0)?;

    // Two signals: the second ends a 10-minute drain at once.
    let mut server = TestServer::start(&["--recordings-dir", rec_arg, "--auto-record", "webm"])?;
    let base = server.base_url().to_owned();
    let red = red_participant(&base, "hurry").await?;
    red.wait_for_new_frames(90, DEADLINE).await?;
    server.signal("TERM")?;
    server.wait_for_line("draining", DEADLINE).await?;
    let t1 = Instant::now();
    server.signal("INT")?;
    let status = server.exited(DEADLINE).await?;
    let second_after = t1.elapsed().as_secs_f64();
    ensure!(status.success(), "exit after a second signal: {status}");
    drop(red);
    plays_red(&recording_of(&rec, "hurry")?, 3.0)?;
    println!(
        "drain timeout 2 s: participant_left and room_ended with reason shutdown, exit 0 \
         {timed_out_after:.2} s after SIGTERM; a second signal: exit 0 {second_after:.2} s after it"
    );
    Ok(())
}
