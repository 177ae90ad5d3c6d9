//! Fan-out: one room of 4 and WHEP viewers of its output (the teacher-to-students case). The
//! room's own cost is measured first; then viewers are added in batches (they decrypt what
//! they receive and drop it; a few sampled ones decode) until a sampled viewer decodes under
//! 29 fps or the server passes 80% of the machine. Reported as viewers per core beyond the
//! room's own cost, at the last batch that held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tessera::metrics::cpu_seconds;

use super::Bench;
use crate::measure::{cores, measure_cpu};
use crate::media::probe::VideoProbe;
use crate::server::wait_idle;
use crate::sim::{BOTH, NOTHING, Receive, Sim, wait_connected};

/// Sampled viewers (decoding), the first to join.
const SAMPLED: usize = 3;

pub async fn run(bench: &mut Bench) -> Result<()> {
    let Bench {
        joiner,
        server,
        plan,
        results,
        ..
    } = bench;
    let (batch, max_viewers) = plan.fanout;
    wait_idle(&joiner.http, &joiner.base, results).await;
    let room = "fanout";
    let mut sims: Vec<Sim> = Vec::new();
    for _ in 0..4 {
        sims.push(
            joiner
                .join(room, false, BOTH, BOTH, Receive::Discard, None)
                .await?,
        );
    }
    wait_connected(&sims, Duration::from_secs(15)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await; // settle: keyframes, latency
    let room_cores = measure_cpu(Some(server.pid()), plan.fanout_window).await;
    eprintln!(
        "fan-out: the room alone {:.0}% of a core",
        room_cores * 100.0
    );

    let mut probes: Vec<Arc<VideoProbe>> = Vec::new();
    let mut viewers = 0;
    // (viewers, server cores) at the last batch that held; the first batch that did not.
    let mut best: Option<(usize, f64)> = None;
    let mut over: Option<(usize, f64, f64, f64)> = None;
    while viewers < max_viewers {
        let mut new = Vec::new();
        for _ in 0..batch.min(max_viewers - viewers) {
            let handling = if probes.len() < SAMPLED {
                let p = Arc::new(VideoProbe::new(None)?);
                probes.push(p.clone());
                Receive::Probe {
                    video: p,
                    audio: None,
                }
            } else {
                Receive::Discard
            };
            match joiner.join(room, true, NOTHING, BOTH, handling, None).await {
                Ok(s) => new.push(s),
                Err(e) => {
                    results.notes.push(format!(
                        "fan-out: a viewer's join failed at {viewers}: {e:#}"
                    ));
                    break;
                }
            }
        }
        let joined = new.len();
        let connected = wait_connected(&new, Duration::from_secs(30)).await;
        sims.extend(new);
        viewers += joined;
        if let Err(e) = connected {
            results.notes.push(format!(
                "fan-out: viewers did not connect at {viewers}: {e:#}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // settle: their first keyframes
        let from = Instant::now();
        let gen_cpu0 = cpu_seconds(None);
        let server_cores = measure_cpu(Some(server.pid()), plan.fanout_window).await;
        let gen_cores = (cpu_seconds(None) - gen_cpu0) / from.elapsed().as_secs_f64();
        let to = Instant::now();
        let min_fps = probes
            .iter()
            .map(|p| p.fps_between(from, to))
            .fold(f64::MAX, f64::min);
        let ok = min_fps >= 29.0 && server_cores <= 0.8 * cores();
        eprintln!(
            "fan-out: {viewers} viewers, server {:.0}% of a core, generator {:.0}%, min sampled fps {min_fps:.1} -> {}",
            server_cores * 100.0,
            gen_cores * 100.0,
            if ok { "holds" } else { "over" }
        );
        if !ok {
            over = Some((viewers, server_cores, gen_cores, min_fps));
            break;
        }
        best = Some((viewers, server_cores));
    }
    for s in sims.drain(..) {
        joiner.leave(s).await;
    }
    let what = format!(
        "Fan-out: WHEP viewers of one room of 4 (720p30 VP8 + Opus each, decrypted; {SAMPLED} sampled viewers decode, each ≥ 29 fps; server ≤ 80% of {} cores)",
        cores()
    );
    let stopped = match over {
        Some((n, c, g, fps)) => format!(
            "; at {n} viewers: server {:.0}%, load generator {:.0}% of a core, min sampled fps {fps:.1}",
            c * 100.0,
            g * 100.0
        ),
        None => format!(" (search limit of {max_viewers} reached)"),
    };
    match best {
        Some((n, c)) => {
            let extra = (c - room_cores).max(1e-6);
            results.row(
                what,
                format!(
                    "{n} viewers at {:.0}% of one core, the room alone {:.0}%: {:.0} viewers per core beyond the room{stopped}",
                    c * 100.0,
                    room_cores * 100.0,
                    n as f64 / extra
                ),
                "≥ 500 viewers per core",
            );
        }
        None => results.row(
            what,
            format!("not even {batch} viewers held{stopped}"),
            "≥ 500 viewers per core",
        ),
    }
    Ok(())
}
