//! Issue 5: recording the mix. A recording reuses the room's encoded outputs; these tests read
//! the files back (gst-discoverer-1.0 for duration and streams, GStreamer for the pictures and
//! tones) as a player would.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::support::analysis::{Rect, Rgb, average_colour, colours, is_close, tone_level_db};
use crate::support::media::{AUDIO_RATE, DecodedFile, decode_file};
use crate::support::{Role, SendMedia, TestClient, TestServer, http};
use crate::support::{eventually, eventually_sync};

const TONES: [f32; 3] = [440.0, 620.0, 1010.0];
const COLOURS: [Rgb; 3] = [colours::RED, colours::GREEN, colours::BLUE];

fn url(base: &str, path: &str) -> Result<reqwest::Url> {
    Ok(reqwest::Url::parse(&format!("{base}{path}"))?)
}

async fn start(base: &str, room: &str, format: &str) -> Result<Value> {
    let response = http::client()?
        .post(url(base, &format!("/rooms/{room}/recordings"))?)
        .json(&json!({ "format": format }))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    ensure!(
        status == 201,
        "starting a {format} recording: HTTP {status} {body}"
    );
    Ok(body)
}

/// What gst-discoverer-1.0 says: duration in seconds, and the stream kinds it lists.
fn discover(path: &Path) -> Result<(f64, Vec<String>)> {
    let out = Command::new("gst-discoverer-1.0")
        .arg(path)
        .output()
        .context("running gst-discoverer-1.0 (gstreamer1.0-plugins-base-apps)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let duration = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Duration: "))
        .and_then(|d| {
            let mut parts = d.trim().split(':');
            let h: f64 = parts.next()?.parse().ok()?;
            let m: f64 = parts.next()?.parse().ok()?;
            let s: f64 = parts.next()?.parse().ok()?;
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .with_context(|| format!("no duration in:\n{text}"))?;
    let streams = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            // "video #1: VP8", "audio #2: Opus"
            ["video #", "audio #"]
                .iter()
                .find(|k| l.starts_with(*k))
                .map(|k| k.trim_end_matches(" #").to_owned())
        })
        .collect();
    Ok((duration, streams))
}

async fn download(base: &str, info: &Value, to: &Path) -> Result<()> {
    let file = info["file"].as_str().context("a file URL")?;
    let bytes = http::client()?
        .get(url(base, file)?)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    std::fs::write(to, &bytes)?;
    Ok(())
}

/// The centre area of tile `i` of a `cols` x `rows` grid on 1280x720.
fn tile(i: u32, cols: u32, rows: u32) -> Rect {
    let (tw, th) = (1280 / cols, 720 / rows);
    // A 2x1 grid of 16:9 tiles is letterboxed into the middle band.
    let top = (720 - th.min(tw * 9 / 16) * rows) / 2;
    let th = th.min(tw * 9 / 16);
    let (cx, cy) = ((i % cols) * tw + tw / 2, top + (i / cols) * th + th / 2);
    Rect::new(cx - 30, cy - 30, 60, 60)
}

fn shows(file: &DecodedFile, at: f64, expected: &[(Rect, Rgb)]) -> Result<()> {
    let frame = file.frame_at(at).context("a frame")?;
    ensure!(
        frame.width == 1280 && frame.height == 720,
        "{}x{}",
        frame.width,
        frame.height
    );
    for (rect, colour) in expected {
        let seen = average_colour(frame, *rect);
        ensure!(
            is_close(seen, *colour, 48),
            "at {at:.1} s, {rect:?} is {seen:?}, expected {colour:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn issue5_a_recording_keeps_the_room_as_people_come_and_go() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir_arg = dir.path().join("rec");
    let server = TestServer::start(&["--recordings-dir", dir_arg.to_str().context("utf-8")?])?;
    let base = server.base_url();
    let room = "rec";
    let join = |i: usize, name: &'static str| {
        TestClient::join(
            base,
            room,
            Role::Contributor,
            Some(SendMedia::new(COLOURS[i], TONES[i])),
            name,
        )
    };
    let red = join(0, "red").await?;
    let webm = start(base, room, "webm").await?;
    let mp4 = start(base, room, "mp4").await?;
    let t0 = Instant::now();
    assert_eq!(webm["state"], "recording", "{webm}");
    // The scenario, paced by the clock: green at 2 s, blue at 4 s, green leaves at 7 s.
    tokio::time::sleep_until((t0 + Duration::from_secs(2)).into()).await;
    let green = join(1, "green").await?;
    tokio::time::sleep_until((t0 + Duration::from_secs(4)).into()).await;
    let blue = join(2, "blue").await?;
    tokio::time::sleep_until((t0 + Duration::from_secs(7)).into()).await;
    green.leave().await?;
    tokio::time::sleep_until((t0 + Duration::from_secs(10)).into()).await;
    let mut stopped = Vec::new();
    for r in [&webm, &mp4] {
        let id = r["id"].as_str().context("an id")?;
        let response = http::delete(&url(base, &format!("/rooms/{room}/recordings/{id}"))?).await?;
        ensure!(response.status == 200, "stopping: {}", response.body);
        let info = response.json()?;
        assert_eq!(info["state"], "stopped", "{info}");
        stopped.push(info);
    }
    let list = http::get_json(&url(base, &format!("/rooms/{room}/recordings"))?).await?;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    for info in &stopped {
        let format = info["format"].as_str().unwrap_or("?");
        let path = dir.path().join(format!("download.{format}"));
        download(base, info, &path).await?;
        let (duration, streams) = discover(&path)?;
        println!(
            "{format}: {duration:.2} s, streams {streams:?}, {} bytes",
            info["bytes"]
        );
        ensure!(
            (9.0..=11.0).contains(&duration),
            "{format}: duration {duration:.2} s"
        );
        assert_eq!(
            streams,
            ["video", "audio"],
            "{format}: one video and one audio stream"
        );
        let file = decode_file(&path, 0.25, Duration::from_secs(60))?;
        // Red alone, then the 2x2 grid of three, then red and blue side by side.
        shows(&file, 1.0, &[(Rect::new(600, 320, 80, 80), colours::RED)])
            .with_context(|| format!("{format}: red alone"))?;
        let grid: Vec<(Rect, Rgb)> = (0..3)
            .map(|i| (tile(i, 2, 2), COLOURS[i as usize]))
            .collect();
        shows(&file, 5.6, &grid).with_context(|| format!("{format}: three in a grid"))?;
        shows(
            &file,
            9.0,
            &[
                (tile(0, 2, 1), colours::RED),
                (tile(1, 2, 1), colours::BLUE),
            ],
        )
        .with_context(|| format!("{format}: red and blue after green left"))?;
        let audio = file.audio_between(5.0, 6.5);
        let levels = TONES.map(|hz| tone_level_db(audio, AUDIO_RATE, hz));
        println!("{format}: tones at 5-6.5 s {levels:?} dBFS");
        ensure!(
            levels.iter().all(|l| *l > -40.0),
            "{format}: tones {levels:?}"
        );
    }
    red.leave().await?;
    blue.leave().await?;
    Ok(())
}

#[tokio::test]
async fn issue5_a_recording_cut_by_kill_9_still_plays() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rec = dir.path().join("rec");
    let mut server = TestServer::start(&["--recordings-dir", rec.to_str().context("utf-8")?])?;
    let base = server.base_url().to_owned();
    let _red = TestClient::join(
        &base,
        "crash",
        Role::Contributor,
        Some(SendMedia::new(colours::RED, 440.0)),
        "red",
    )
    .await?;
    let mut files = Vec::new();
    for format in ["webm", "mp4"] {
        let info = start(&base, "crash", format).await?;
        let id = info["id"].as_str().context("an id")?;
        files.push((format, rec.join("crash").join(format!("{id}.{format}"))));
    }
    // A few seconds in, and both files hold more than their headers (a still red picture
    // compresses to a few kB a second).
    let started = Instant::now();
    eventually_sync(
        Duration::from_secs(15),
        "three seconds of both files",
        || {
            let sizes: Vec<u64> = files
                .iter()
                .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .collect();
            if started.elapsed() > Duration::from_secs(3) && sizes.iter().all(|&s| s > 50_000) {
                Ok(())
            } else {
                Err(format!("{sizes:?} bytes"))
            }
        },
    )
    .await?;
    server.kill();
    for (format, path) in files {
        let file = decode_file(&path, 0.5, Duration::from_secs(60))
            .with_context(|| format!("the {format} file after kill -9"))?;
        println!("{format} after kill -9: {} frames", file.frame_count);
        ensure!(
            file.frame_count >= 30,
            "{format}: only {} frames",
            file.frame_count
        );
        shows(&file, 0.5, &[(Rect::new(600, 320, 80, 80), colours::RED)])?;
    }
    Ok(())
}

#[tokio::test]
async fn issue5_an_unwritable_directory_fails_the_recording_not_the_room() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A file where the recordings directory should be: nothing can be created under it.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"")?;
    let server = TestServer::start(&["--recordings-dir", blocked.to_str().context("utf-8")?])?;
    let base = server.base_url();
    let red = TestClient::join(
        base,
        "disk",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "red",
    )
    .await?;
    let response = http::client()?
        .post(url(base, "/rooms/disk/recordings")?)
        .body("")
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "recording_failed", "{body}");
    let list = http::get_json(&url(base, "/rooms/disk/recordings")?).await?;
    assert_eq!(list[0]["state"], "failed", "{list}");
    // The room goes on.
    red.wait_for_new_frames(30, Duration::from_secs(5)).await?;
    let unknown = http::client()?
        .post(url(base, "/rooms/nobody-here/recordings")?)
        .send()
        .await?;
    if unknown.status().as_u16() != 404 {
        bail!("recording an absent room: HTTP {}", unknown.status());
    }
    Ok(())
}

#[tokio::test]
async fn issue5_auto_record_starts_with_the_room_and_stops_cleanly_when_it_ends() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rec = dir.path().join("rec");
    let server = TestServer::start(&[
        "--recordings-dir",
        rec.to_str().context("utf-8")?,
        "--auto-record",
        "webm",
        "--room-linger-secs",
        "0.5",
    ])?;
    let base = server.base_url();
    let red = TestClient::join(
        base,
        "auto",
        Role::Contributor,
        Some(SendMedia::new(colours::RED, 440.0)),
        "red",
    )
    .await?;
    let list = http::get_json(&url(base, "/rooms/auto/recordings")?).await?;
    assert_eq!(list[0]["state"], "recording", "{list}");
    // Two seconds of the room (joined means connected: the client waits for it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    red.leave().await?;
    // The room ends after its linger time; its recording with it, cleanly.
    let info = eventually(
        Duration::from_secs(10),
        "the recording ends with its room",
        || async {
            let list = http::get_json(&url(base, "/rooms/auto/recordings")?).await?;
            ensure!(list[0]["state"] != "recording", "still recording: {list}");
            Ok(Some(list[0].clone()))
        },
    )
    .await?;
    assert_eq!(info["state"], "stopped", "{info}");
    let path = dir.path().join("auto.webm");
    download(base, &info, &path).await?;
    let (duration, streams) = discover(&path)?;
    assert_eq!(streams, ["video", "audio"]);
    ensure!(duration > 1.5, "duration {duration:.2} s");
    Ok(())
}
