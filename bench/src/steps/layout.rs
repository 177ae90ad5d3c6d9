//! What composition costs (issue 14): rooms of 4 under the `speaker` layout with names on the
//! tiles and the speaker's border, against the same rooms under the plain `grid` without them
//! (and `speaker` without them, to tell the picture's cost from the decorations'), measured in
//! two rounds of turns so a drift of the machine falls on each.

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
    // The picture's own cost (a large speaker scaled up, small ones scaled down) and the
    // decorations' (labels, border), told apart.
    let layouts = [
        json!({"preset": "grid", "labels": false, "speaker_highlight": false}),
        json!({"preset": "speaker", "labels": false, "speaker_highlight": false}),
        json!({"preset": "speaker", "labels": true, "speaker_highlight": true}),
    ];
    let mut cpu = [0.0; 3];
    let window = plan.window / 2;
    for _round in 0..2 {
        for (i, layout) in layouts.iter().enumerate() {
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
            cpu[i] += measure_cpu(Some(server.pid()), window).await / 2.0;
        }
    }
    for sim in sims {
        joiner.leave(sim).await;
    }
    let [grid, speaker, decorated] = cpu;
    results.row(
        format!(
            "Composition cost, {rooms} rooms of {SIZE}: `speaker` with labels and border vs `grid` without"
        ),
        format!(
            "{:.0}% vs {:.0}% of a core: {:.3}x (`speaker` alone {:.0}%: {:.3}x; the labels and border {:.3}x of it)",
            decorated * 100.0,
            grid * 100.0,
            decorated / grid.max(1e-9),
            speaker * 100.0,
            speaker / grid.max(1e-9),
            decorated / speaker.max(1e-9),
        ),
        "within 5% (≤ 1.05x)",
    );
    Ok(())
}
