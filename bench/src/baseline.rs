//! The baseline: the same media work as the server's rooms through the project's own
//! pipelines (`tessera::media`), fed in-process, with no WebRTC, in a process of its own
//! (`tessera-bench baseline`) so its CPU is measured alone.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use tessera::config::Config;
use tessera::media::MediaFactory;
use tessera::types::{
    Fit, InputCodec, MediaKind, OutputKey, Placement, RtpSink, SessionId, Tier, VideoCodec,
};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::measure::measure_cpu;
use crate::media::dump::{LEVEL_EXTENSION_ID, RtpDump};
use crate::replay::replay;

/// The output the benchmark's receivers take: what browsers get by default.
const VP8_HIGH: OutputKey = OutputKey {
    codec: VideoCodec::Vp8,
    tier: Tier::High,
};

/// CPU (in cores) of `rooms` rooms of `size` through the project's pipelines, VP8 high only.
pub fn run_baseline(rooms: usize, size: usize, window: Duration, cache: &Path) -> Result<f64> {
    run_baseline_with(rooms, size, window, cache, false, None)
}

/// The same, with the whole encoder ladder (VP8 and H.264, both tiers) when `ladder`, or
/// audio-only rooms where `talkers` of each room talk.
pub fn run_baseline_with(
    rooms: usize,
    size: usize,
    window: Duration,
    cache: &Path,
    ladder: bool,
    talkers: Option<usize>,
) -> Result<f64> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "baseline",
            "--rooms",
            &rooms.to_string(),
            "--size",
            &size.to_string(),
        ])
        .args(ladder.then_some("--ladder"))
        .args(talkers.map(|t| format!("--talkers={t}")))
        .args(["--seconds", &window.as_secs_f64().to_string(), "--cache"])
        .arg(cache)
        .stderr(Stdio::inherit())
        .output()
        .context("running the baseline")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let cores = text
        .lines()
        .find_map(|l| l.strip_prefix("baseline cores "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("the baseline printed no result: {text}"))?;
    Ok(cores)
}

/// The baseline: R rooms of N participants through the project's own pipelines (the same
/// `Mixer` the server runs: N decodes, compositor, one VP8 encode, audio mixes with mix-minus,
/// Opus encodes), fed in real time from the same dumps, with no WebRTC at all. With `talkers`,
/// audio-only rooms: those talk (a mix-minus each, as the server gives speakers), the others
/// send near-silence and hear the shared mix.
pub async fn baseline(
    rooms: usize,
    size: usize,
    seconds: f64,
    cache: &Path,
    ladder: bool,
    talkers: Option<usize>,
) -> Result<()> {
    let media = Arc::new(crate::media::dump::prepare(cache)?);
    let factory = MediaFactory::new(None)?;
    let config = Config::default();
    let mut mixers = Vec::new();
    let mut replays = JoinSet::new();
    let mut drains = JoinSet::new();
    for r in 0..rooms {
        let (mixer, events) = factory
            .start_mixer(
                &format!("baseline-{r}"),
                &config.mix,
                tessera::metrics::RoomMetrics::start(&format!("baseline-{r}")),
            )
            .await?;
        drains.spawn(async move {
            loop {
                events.next().await;
            }
        });
        let tiles = tessera::room::layout::tiles(size, config.mix.width, config.mix.height);
        for (i, tile) in tiles.iter().enumerate() {
            let s = SessionId(i as u64 + 1);
            // The server's speakers: every participant of a video room (the dump's hum is
            // speech), the talkers of an audio-only one.
            let talks = talkers.is_none_or(|t| i < t);
            let kinds: &[(MediaKind, &str, u32, &RtpDump)] = match talkers {
                None => &[
                    (MediaKind::Video, "video/VP8", 90_000, &media.video),
                    (MediaKind::Audio, "audio/opus", 48_000, &media.audio),
                ],
                Some(_) if talks => &[(MediaKind::Audio, "audio/opus", 48_000, &media.audio)],
                Some(_) => &[(MediaKind::Audio, "audio/opus", 48_000, &media.quiet)],
            };
            for &(kind, mime, rate, dump) in kinds {
                let codec = InputCodec {
                    kind,
                    mime_type: mime.into(),
                    clock_rate: rate,
                    // The replayed audio states its level as a browser's does.
                    level_extension: (kind == MediaKind::Audio).then_some(LEVEL_EXTENSION_ID),
                };
                // The server's own grid, as a room lays it out.
                let placement = Placement {
                    session: s,
                    rect: *tile,
                    z: 0,
                    fit: Fit::Contain,
                    upscale: true,
                };
                let input = mixer
                    .add_input(s, codec, (kind == MediaKind::Video).then_some(placement))
                    .await?;
                let (tx, mut rx) = broadcast::channel::<Bytes>(256);
                replays.spawn(replay(
                    Arc::new(dump.clone()),
                    tx,
                    None,
                    kind == MediaKind::Video,
                ));
                drains.spawn(async move {
                    while let Ok(p) = rx.recv().await {
                        input.push(p);
                    }
                });
            }
            if talks {
                let mut audio = mixer.add_mix_minus(s).await?.subscribe();
                mixer.set_speaker(s, true).await?;
                drains.spawn(async move { while audio.recv().await.is_ok() {} });
            }
        }
        let listeners = talkers.is_some_and(|t| t < size);
        if listeners {
            let mut audio = mixer.everyone_audio().subscribe();
            drains.spawn(async move { while audio.recv().await.is_ok() {} });
        }
        // Everyone receives the video (and, with `ladder`, someone receives every output),
        // everyone hears a mix-minus, as in the server's rooms. Subscribers keep the outputs'
        // packets moving, as receivers would.
        let outputs: BTreeSet<OutputKey> = if talkers.is_some() {
            BTreeSet::new()
        } else if ladder {
            [VideoCodec::Vp8, VideoCodec::H264]
                .into_iter()
                .flat_map(|codec| [Tier::High, Tier::Low].map(|tier| OutputKey { codec, tier }))
                .collect()
        } else {
            [VP8_HIGH].into()
        };
        for key in &outputs {
            let mut video = mixer
                .subscribe_video(*key)
                .with_context(|| format!("the baseline mixer has no {key} output"))?;
            drains.spawn(async move { while video.recv().await.is_ok() {} });
        }
        mixer.set_receivers(outputs, listeners).await;
        // Playing, as a server's room is once a session connects (an audio-only room's
        // compositor too: the server's runs as well).
        mixer.wake().await;
        mixers.push(mixer);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cores = measure_cpu(None, Duration::from_secs_f64(seconds)).await;
    println!("baseline cores {cores}");
    replays.abort_all();
    drains.abort_all();
    for mixer in mixers {
        mixer.shutdown().await;
    }
    Ok(())
}
