//! What composition costs (issue 14): rooms of 4 under the `speaker` layout with names on the
//! tiles and the speaker's border, against the same rooms under the plain `grid` without them,
//! measured in turns (grid, speaker, grid, speaker) so a drift of the machine falls on both.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::Bench;
use crate::measure::measure_cpu;
use crate::server::wait_idle;
use crate::sim::{BOTH, Receive, wait_connected};

/// Rooms of 4 measured at once: well inside capacity, so the comparison is of work done, not
/// of a saturated machine.
const ROOMS: usize = 2;
const SIZE: usize = 4;

pub async fn run(bench: &mut Bench) -> Result<()> {
    let Bench {
        joiner,
        server,
        plan,
        results,
        ..
    } = bench;
    wait_idle(&joiner.http, &joiner.base, results).await;
    let rooms = if plan.max_rooms == 1 { 1 } else { ROOMS };
    let mut sims = Vec::new();
    for r in 0..rooms {
        for _ in 0..SIZE {
            sims.push(
                joiner
                    .join(
                        &format!("layout-{r}"),
                        false,
                        BOTH,
                        BOTH,
                        Receive::Discard,
                        None,
                    )
                    .await?,
            );
        }
    }
    wait_connected(&sims, Duration::from_secs(15)).await?;
    let grid = json!({"preset": "grid", "labels": false, "speaker_highlight": false});
    let speaker = json!({"preset": "speaker", "labels": true, "speaker_highlight": true});
    let (mut grid_cpu, mut speaker_cpu) = (0.0, 0.0);
    for turn in 0..4 {
        let (layout, total) = if turn % 2 == 0 {
            (&grid, &mut grid_cpu)
        } else {
            (&speaker, &mut speaker_cpu)
        };
        for r in 0..rooms {
            let response = joiner
                .http
                .put(format!("{}/rooms/layout-{r}/layout", joiner.base))
                .header("content-type", "application/json")
                .body(layout.to_string())
                .send()
                .await
                .context("PUT layout")?;
            anyhow::ensure!(
                response.status().is_success(),
                "PUT layout: {}",
                response.status()
            );
        }
        measure_cpu(Some(server.pid()), Duration::from_secs(2)).await; // settle
        *total += measure_cpu(Some(server.pid()), plan.window).await / 2.0;
    }
    for sim in sims {
        joiner.leave(sim).await;
    }
    results.row(
        format!("Composition cost, {rooms} rooms of {SIZE}: `speaker` with labels and border vs `grid` without"),
        format!(
            "{:.0}% vs {:.0}% of a core: {:.3}x",
            speaker_cpu * 100.0,
            grid_cpu * 100.0,
            speaker_cpu / grid_cpu.max(1e-9)
        ),
        "within 5% (≤ 1.05x)",
    );
    Ok(())
}
