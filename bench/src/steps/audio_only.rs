//! Audio-only rooms: everyone sends and receives Opus only (a mix-minus each). Rooms are
//! added until the server passes 80% of the machine or a join is refused or times out.

use std::time::Duration;

use anyhow::Result;

use super::Bench;
use crate::measure::{cores, measure_cpu};
use crate::server::wait_idle;
use crate::sim::{AUDIO, Receive, wait_connected};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let Bench {
        joiner,
        server,
        plan,
        results,
        ..
    } = bench;
    wait_idle(&joiner.http, &joiner.base, results).await;
    let (max_rooms, size) = plan.audio_only;
    let mut sims = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    'rooms: for r in 0..max_rooms {
        let mut new = Vec::new();
        for _ in 0..size {
            match joiner
                .join(
                    &format!("audio-{r}"),
                    false,
                    AUDIO,
                    AUDIO,
                    Receive::Discard,
                    None,
                )
                .await
            {
                Ok(sim) => new.push(sim),
                Err(e) => {
                    results.notes.push(format!(
                        "audio-only: a join failed at {} rooms: {e:#}",
                        r + 1
                    ));
                    sims.extend(new);
                    break 'rooms;
                }
            }
        }
        if wait_connected(&new, Duration::from_secs(20)).await.is_err() {
            results.notes.push(format!(
                "audio-only: a participant did not connect at {} rooms",
                r + 1
            ));
            sims.extend(new);
            break;
        }
        sims.extend(new);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let server_cores =
            measure_cpu(Some(server.pid()), plan.window.min(Duration::from_secs(20))).await;
        eprintln!(
            "audio-only rooms of {size}: {} rooms, server {:.0}% of a core",
            r + 1,
            server_cores * 100.0
        );
        if server_cores > 0.8 * cores() {
            break;
        }
        best = Some((r + 1, server_cores));
    }
    for s in sims {
        joiner.leave(s).await;
    }
    let value = match best {
        Some((rooms, cores_used)) => {
            let p = rooms * size;
            format!(
                "{p} participants in {rooms} rooms of {size} at {:.0}% of one core: {:.0} participants per core{}",
                cores_used * 100.0,
                p as f64 / cores_used,
                if rooms == max_rooms {
                    " (search limit reached)"
                } else {
                    ""
                }
            )
        }
        None => "no measurement (the first room already passed 80% of the machine)".into(),
    };
    results.row(
        "Audio-only rooms (Opus 48 kHz, mix-minus for everyone)",
        value,
        "≥ 150 participants per core",
    );
    Ok(())
}
