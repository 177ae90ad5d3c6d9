//! Audio-only rooms: everyone sends and receives Opus only. Two rows: everyone talking (each a
//! speaker with a mix-minus: the worst case), and a conversation (two talkers per room, the
//! others send what a browser sends while its user listens: Opus frames of near-silence).
//! Rooms are added until the server passes 80% of the machine or a join is refused or times
//! out; the last load that held is then run through the project's pipelines without WebRTC
//! (the baseline) for the overhead ratio.

use std::time::Duration;

use anyhow::Result;

use super::Bench;
use crate::baseline::run_baseline_with;
use crate::measure::{cores, measure_load};
use crate::raw::{RawRoom, raw_cores};
use crate::server::{room_state, wait_idle};
use crate::sim::{AUDIO, QUIET_AUDIO, Receive, wait_connected};

/// The share of the machine (server and load generator together) past which a measurement of
/// the server's own share stops meaning what it needs.
const MACHINE_FULL: f64 = 0.9;

/// Talkers per room in the conversational row.
const TALKERS: usize = 2;

pub async fn run(bench: &mut Bench) -> Result<()> {
    let (max_rooms, size) = bench.plan.audio_only;
    let everyone = measure(bench, max_rooms, size, size).await?;
    report(
        bench,
        "Audio-only rooms, everyone talking (Opus 48 kHz, a mix-minus each)",
        everyone,
        max_rooms,
        size,
        size,
    )?;
    let max_rooms = bench.plan.conversational_rooms;
    let talking = TALKERS.min(size);
    let conversation = measure(bench, max_rooms, size, talking).await?;
    report(
        bench,
        &format!(
            "Audio-only rooms, conversational ({talking} of {size} talk, the others send near-silence)"
        ),
        conversation,
        max_rooms,
        size,
        talking,
    )
}

/// Adds rooms of `size` where `talkers` talk until the server is over 80% of the machine;
/// the last load that held as (rooms, server cores).
async fn measure(
    bench: &mut Bench,
    max_rooms: usize,
    size: usize,
    talkers: usize,
) -> Result<Option<(usize, f64)>> {
    let Bench {
        joiner,
        server,
        plan,
        results,
        ..
    } = bench;
    wait_idle(&joiner.http, &joiner.base, results).await;
    let mut sims = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    'rooms: for r in 0..max_rooms {
        let mut new = Vec::new();
        for i in 0..size {
            let send = if i < talkers { AUDIO } else { QUIET_AUDIO };
            match joiner
                .join(
                    &format!("audio-{talkers}-{r}"),
                    false,
                    send,
                    AUDIO,
                    Receive::Discard,
                    None,
                )
                .await
            {
                Ok(sim) => new.push(sim),
                Err(e) => {
                    results.notes.push(format!(
                        "audio-only ({talkers} talking): a join failed at {} rooms: {e:#}",
                        r + 1
                    ));
                    sims.extend(new);
                    break 'rooms;
                }
            }
        }
        if wait_connected(&new, Duration::from_secs(20)).await.is_err() {
            results.notes.push(format!(
                "audio-only ({talkers} talking): a participant did not connect at {} rooms",
                r + 1
            ));
            sims.extend(new);
            break;
        }
        sims.extend(new);
        // Long enough for the speakers to be detected and moved to their own mixes.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (server_cores, machine) =
            measure_load(server.pid(), plan.window.min(Duration::from_secs(20))).await;
        eprintln!(
            "audio-only rooms of {size}, {talkers} talking: {} rooms, server {:.0}% of a core, \
             the machine {:.0}%",
            r + 1,
            server_cores * 100.0,
            machine * 100.0
        );
        if server_cores > 0.8 * cores() {
            break;
        }
        if machine > MACHINE_FULL * cores() {
            // The server and the load generator share the machine: beyond this the server
            // gets less than it needs, and its share would read as a lower cost.
            results.notes.push(format!(
                "audio-only ({talkers} of {size} talking): stopped at {} rooms, the machine \
                 {:.0}% busy (server {:.0}%, the rest the load generator); the row is the \
                 largest count before that",
                r + 1,
                machine * 100.0,
                server_cores * 100.0
            ));
            break;
        }
        best = Some((r + 1, server_cores));
    }
    // How the server knew who speaks: the levels the senders stated (RFC 6464), or decoded.
    if let Some(room) = room_state(&joiner.http, &joiner.base, &format!("audio-{talkers}-0")).await
    {
        let sum = |key: &str| -> u64 {
            room["participants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p[key].as_u64())
                .sum()
        };
        eprintln!(
            "audio-only ({talkers} talking), first room: {} packets' levels stated by their \
             senders, {} held as near-silence, {} Opus encoders",
            sum("stated_levels"),
            sum("held_packets"),
            room["mixer"]["audio_encoders"]
        );
    }
    for s in sims {
        joiner.leave(s).await;
    }
    Ok(best)
}

fn report(
    bench: &mut Bench,
    what: &str,
    measured: Option<(usize, f64)>,
    max_rooms: usize,
    size: usize,
    talkers: usize,
) -> Result<()> {
    let value = match measured {
        Some((rooms, cores_used)) => {
            let baseline = run_baseline_with(
                rooms,
                size,
                bench.plan.window.min(Duration::from_secs(20)),
                &bench.cache,
                false,
                Some(talkers),
            )?;
            let raw = raw_cores(
                &bench.raw_files,
                rooms,
                RawRoom::Audio { size, talkers },
                bench.plan.window.min(Duration::from_secs(20)),
            )?;
            let p = rooms * size;
            format!(
                "{p} participants in {rooms} rooms of {size} at {:.0}% of one core: {:.0} participants per core, {:.3} CPU-s per room-second{}; tessera / baseline {:.2} ({:.0}% vs {:.0}%); tessera / raw gst-launch {:.2} ({:.0}%)",
                cores_used * 100.0,
                p as f64 / cores_used,
                cores_used / rooms as f64,
                if rooms == max_rooms {
                    " (search limit reached)"
                } else {
                    ""
                },
                cores_used / baseline.max(1e-9),
                cores_used * 100.0,
                baseline * 100.0,
                cores_used / raw.max(1e-9),
                raw * 100.0,
            )
        }
        None => "no measurement (the first room already passed 80% of the machine)".into(),
    };
    bench
        .results
        .row(what, value, "≥ 150 participants per core (resolve at ≥ 80)");
    Ok(())
}
