//! The encoder ladder: one room of 4 whose mix is encoded as VP8 and H.264 at both tiers
//! (four encoders, as when browsers, kiosks and weak phones watch at once), against the
//! same room with VP8 high only; both through the Mixer alone, in one process each.

use anyhow::Result;

use super::Bench;
use crate::baseline::run_baseline_with;

pub fn run(bench: &mut Bench) -> Result<()> {
    let Bench {
        plan,
        results,
        cache,
        ..
    } = bench;
    let single = run_baseline_with(1, 4, plan.window, cache, false, None)?;
    let ladder = run_baseline_with(1, 4, plan.window, cache, true, None)?;
    results.row(
        "Encoder ladder: one room of 4, VP8 + H.264 x 1280x720 + 640x360 (media only)".to_owned(),
        format!(
            "{:.0}% of one core per room, vs {:.0}% with VP8 1280x720 alone ({:.2}x)",
            ladder * 100.0,
            single * 100.0,
            ladder / single
        ),
        "(no target; a kiosk or a weak phone adds at most one encoder per room)",
    );
    Ok(())
}
