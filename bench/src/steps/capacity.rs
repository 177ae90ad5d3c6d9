//! Capacity for each room size, adding rooms until a receiver drops under 29 fps or the
//! server passes 80% of the machine; then the baseline at the largest passing load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tessera::metrics::cpu_seconds;

use super::Bench;
use crate::baseline::run_baseline;
use crate::measure::{cores, measure_cpu, rss_mib};
use crate::media::probe::VideoProbe;
use crate::raw::{RawRoom, raw_cores};
use crate::server::wait_idle;
use crate::sim::{BOTH, Receive, Sim, wait_connected};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let Bench {
        joiner,
        server,
        plan,
        results,
        cache,
        idle_rss,
        raw_files,
    } = bench;
    let mut room_seq = 0;
    for &size in &plan.sizes {
        wait_idle(&joiner.http, &joiner.base, results).await;
        let mut sims: Vec<Sim> = Vec::new();
        let mut probes: Vec<Arc<VideoProbe>> = Vec::new();
        let mut best: Option<(usize, f64, f64)> = None; // rooms, server cores, rss
        let mut first_failure: Option<(f64, f64, f64)> = None; // server cores, rss, min fps
        for rooms in 1..=plan.max_rooms {
            room_seq += 1;
            let room = format!("cap{size}-{room_seq}");
            // One sampled receiver per room, for the first two rooms and the newest one.
            let mut new = Vec::new();
            for i in 0..size {
                let handling = if i == size - 1
                    && (rooms <= 2 || rooms == plan.max_rooms || probes.len() < 2)
                {
                    let p = Arc::new(VideoProbe::new(None)?);
                    probes.push(p.clone());
                    Receive::Probe {
                        video: p,
                        audio: None,
                    }
                } else {
                    Receive::Discard
                };
                new.push(
                    joiner
                        .join(&room, false, BOTH, BOTH, handling, None)
                        .await?,
                );
            }
            wait_connected(&new, Duration::from_secs(15)).await?;
            sims.extend(new);
            tokio::time::sleep(Duration::from_secs(3)).await; // settle: keyframes, latency
            let from = Instant::now();
            let gen_cpu0 = cpu_seconds(None);
            let server_cores = measure_cpu(Some(server.pid()), plan.window).await;
            let gen_cores = (cpu_seconds(None) - gen_cpu0) / from.elapsed().as_secs_f64();
            let to = Instant::now();
            let fps: Vec<f64> = probes.iter().map(|p| p.fps_between(from, to)).collect();
            let min_fps = fps.iter().copied().fold(f64::MAX, f64::min);
            let rss = rss_mib(server.pid());
            let ok = min_fps >= 29.0 && server_cores <= 0.8 * cores();
            eprintln!(
                "rooms of {size}: {rooms} rooms, server {:.0}% of a core, generator {:.0}%, min sampled fps {min_fps:.1}, rss {rss:.0} MiB -> {}",
                server_cores * 100.0,
                gen_cores * 100.0,
                if ok { "holds" } else { "over" }
            );
            if !ok {
                if best.is_none() {
                    first_failure = Some((server_cores, rss, min_fps));
                }
                break;
            }
            best = Some((rooms, server_cores, rss));
        }
        for s in sims.drain(..) {
            joiner.leave(s).await;
        }
        drop(probes);
        // When not even one room held, the one-room measurement is still reported (marked).
        let held = best.is_some();
        let best = best.or(first_failure.map(|(c, r, _)| (1, c, r)));
        if let Some((_, _, fps)) = first_failure.filter(|_| !held) {
            results.notes.push(format!(
                "rooms of {size}: even one room missed the bar (min sampled fps {fps:.1}); its figures are shown anyway"
            ));
        }
        match best {
            Some((rooms, server_cores, rss)) => {
                let participants = rooms * size;
                results.row(
                    format!("Capacity, rooms of {size} (360p30 in, 720p30 VP8 out, every sampled receiver ≥ 29 fps, server ≤ 80% of {} cores)", cores()),
                    format!(
                        "{rooms} rooms = {participants} participants at {:.0}% of one core: {:.1} participants per core, {:.3} CPU-s per room-second{}",
                        server_cores * 100.0,
                        participants as f64 / server_cores,
                        server_cores / rooms as f64,
                        if !held {
                            " (did NOT hold)"
                        } else if rooms == plan.max_rooms {
                            " (search limit reached)"
                        } else {
                            ""
                        }
                    ),
                    "≥ 10 participants per core",
                );
                if size == plan.sizes[0] {
                    results.row(
                        format!("Memory, server RSS per room of {size}"),
                        format!(
                            "{:.1} MiB ({rss:.0} MiB at {rooms} rooms, {idle_rss:.0} MiB idle)",
                            (rss - *idle_rss) / rooms as f64
                        ),
                        "≤ 35 MiB per room of 4",
                    );
                }
                // The same media work without tessera's WebRTC, in a separate process.
                let baseline = run_baseline(rooms, size, plan.window, cache)?;
                let raw = raw_cores(raw_files, rooms, RawRoom::Video(size), plan.window)?;
                results.row(
                    format!("Overhead, tessera CPU / baseline CPU ({rooms} rooms of {size}), and / raw gst-launch CPU"),
                    format!(
                        "{:.2} ({:.0}% vs {:.0}% of one core); raw gst-launch {:.0}%: {:.2}",
                        server_cores / baseline,
                        server_cores * 100.0,
                        baseline * 100.0,
                        raw * 100.0,
                        server_cores / raw.max(1e-9),
                    ),
                    "≤ 1.10 (baseline)",
                );
            }
            None => results.row(
                format!("Capacity, rooms of {size}"),
                "not even one room held",
                "≥ 10 participants per core",
            ),
        }
    }
    Ok(())
}
