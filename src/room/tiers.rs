//! Which tier of the ladder a receiver gets, from its bandwidth estimate (REMB): a pure state
//! machine, fed the estimates and the time, answering "switch now" or nothing.
//!
//! Down is quick and up is slow, so a receiver does not flap: it moves down when its estimate
//! has stayed clearly under its tier's bitrate ([`DOWN_MARGIN`]) for [`DOWN_AFTER`], and up
//! when it has stayed above the higher tier's bitrate for [`UP_AFTER`]. A receiver that asked for a quality (`?quality=`)
//! is pinned there.

use std::time::{Duration, Instant};

use crate::sdp::h264::Level;
use crate::types::Tier;

/// How long the estimate must stay under the current tier's bitrate to move down.
pub const DOWN_AFTER: Duration = Duration::from_secs(3);
/// How long the estimate must stay above the higher tier's bitrate to move up.
pub const UP_AFTER: Duration = Duration::from_secs(10);
/// "Under the tier's bitrate" means under this share of it: a receive-side estimate (REMB)
/// hovers around what the receiver gets, a little under it on a busy host, and a receiver that
/// moved down has no way back up until its estimate clears the higher tier (no probing yet), so
/// only a clear shortfall moves it.
pub const DOWN_MARGIN: f64 = 0.7;

/// The best tier an H.264 receiver may get, and the level to declare in its answer.
///
/// A receiver's `profile-level-id` (its `declared` level) is the most it decodes (RFC 6184
/// §8.2.2), so it gets the best tier whose level (`needs`) fits. If none fits, it gets the
/// lowest tier anyway, and the answer declares that tier's level: tessera has nothing smaller to
/// send, and an answer that names the level of what is really sent is the honest failure. With
/// no declared level (no `profile-level-id`) nothing is capped.
pub fn h264_ceiling(declared: Option<Level>, needs: impl Fn(Tier) -> Level) -> (Tier, Level) {
    Tier::ALL
        .into_iter()
        .map(|tier| (tier, needs(tier)))
        .find(|(_, level)| declared.is_none_or(|d| *level <= d))
        .unwrap_or_else(|| (Tier::Low, needs(Tier::Low)))
}

/// One receiver's tier and the evidence gathered for a change.
#[derive(Debug, Clone)]
pub struct TierPolicy {
    tier: Tier,
    pinned: bool,
    /// The best tier it may ever get (its decoder's limit).
    ceiling: Tier,
    /// Since when the estimate has been under the current tier's bitrate.
    below_since: Option<Instant>,
    /// Since when the estimate has been above the higher tier's bitrate.
    above_since: Option<Instant>,
}

impl TierPolicy {
    /// Starts at `tier`; `pinned` when the receiver asked for it.
    pub fn new(tier: Tier, pinned: bool) -> TierPolicy {
        TierPolicy {
            tier,
            pinned,
            ceiling: Tier::High,
            below_since: None,
            above_since: None,
        }
    }

    /// Never above `ceiling` (it starts there if it started above).
    pub fn with_ceiling(mut self, ceiling: Tier) -> TierPolicy {
        self.ceiling = ceiling;
        self.tier = self.tier.max(ceiling);
        self
    }

    /// The current tier.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Takes an estimate (bit/s) at `now`; `bitrate(tier)` is each tier's bitrate (bit/s).
    /// Returns the new tier when the receiver should switch.
    pub fn on_estimate(
        &mut self,
        now: Instant,
        estimate_bps: u64,
        bitrate: impl Fn(Tier) -> u64,
    ) -> Option<Tier> {
        if self.pinned {
            return None;
        }
        let (down, up) = match self.tier {
            Tier::High => (Some(Tier::Low), None),
            Tier::Low => (None, Some(Tier::High)),
        };
        if down.is_some() && (estimate_bps as f64) < bitrate(self.tier) as f64 * DOWN_MARGIN {
            let since = *self.below_since.get_or_insert(now);
            if now.duration_since(since) >= DOWN_AFTER {
                return down.map(|t| self.switch(t));
            }
        } else {
            self.below_since = None;
        }
        match up.filter(|higher| *higher >= self.ceiling) {
            Some(higher) if estimate_bps > bitrate(higher) => {
                let since = *self.above_since.get_or_insert(now);
                if now.duration_since(since) >= UP_AFTER {
                    return Some(self.switch(higher));
                }
            }
            _ => self.above_since = None,
        }
        None
    }

    fn switch(&mut self, tier: Tier) -> Tier {
        self.tier = tier;
        self.below_since = None;
        self.above_since = None;
        tier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(t: Tier) -> u64 {
        match t {
            Tier::High => 2_000_000,
            Tier::Low => 600_000,
        }
    }

    /// Feeds `bps` every 500 ms for `secs` seconds from `t`; returns the first switch and when.
    fn feed(p: &mut TierPolicy, t: &mut Instant, bps: u64, secs: u64) -> Option<(Tier, Duration)> {
        let start = *t;
        for _ in 0..secs * 2 {
            *t += Duration::from_millis(500);
            if let Some(tier) = p.on_estimate(*t, bps, rate) {
                return Some((tier, t.duration_since(start)));
            }
        }
        None
    }

    #[test]
    fn a_low_estimate_moves_down_after_three_seconds_and_a_high_one_up_after_ten() {
        let mut t = Instant::now();
        let mut p = TierPolicy::new(Tier::High, false);
        assert_eq!(
            feed(&mut p, &mut t, 3_000_000, 20),
            None,
            "enough bandwidth"
        );
        let (tier, after) = feed(&mut p, &mut t, 400_000, 10).expect("moves down");
        assert_eq!(tier, Tier::Low);
        assert!(
            (DOWN_AFTER..DOWN_AFTER + Duration::from_secs(1)).contains(&after),
            "{after:?}"
        );
        // Just enough for the low tier but not for the high one: stays.
        assert_eq!(feed(&mut p, &mut t, 1_500_000, 30), None);
        let (tier, after) = feed(&mut p, &mut t, 2_500_000, 20).expect("moves up");
        assert_eq!(tier, Tier::High);
        assert!(
            (UP_AFTER..UP_AFTER + Duration::from_secs(1)).contains(&after),
            "{after:?}"
        );
    }

    #[test]
    fn a_dip_shorter_than_three_seconds_does_not_move_and_pinned_never_moves() {
        let mut t = Instant::now();
        let mut p = TierPolicy::new(Tier::High, false);
        assert_eq!(feed(&mut p, &mut t, 400_000, 2), None);
        assert_eq!(
            feed(&mut p, &mut t, 3_000_000, 1),
            None,
            "recovered: the clock restarts"
        );
        assert_eq!(feed(&mut p, &mut t, 400_000, 2), None);
        let mut pinned = TierPolicy::new(Tier::High, true);
        assert_eq!(feed(&mut pinned, &mut t, 100_000, 30), None);
        assert_eq!(pinned.tier(), Tier::High);
    }

    #[test]
    fn issue9_a_ceiling_is_never_passed() {
        let mut t = Instant::now();
        let mut p = TierPolicy::new(Tier::High, false).with_ceiling(Tier::Low);
        assert_eq!(p.tier(), Tier::Low, "starts at its ceiling");
        assert_eq!(
            feed(&mut p, &mut t, 10_000_000, 30),
            None,
            "plenty, but capped"
        );
    }

    #[test]
    fn issue9_h264_receivers_get_the_best_tier_their_level_allows() {
        // 1280x720 needs 3.1, 640x360 needs 3.0 (at 30 fps).
        let needs = |tier| match tier {
            Tier::High => Level(31),
            Tier::Low => Level(30),
        };
        assert_eq!(
            h264_ceiling(Some(Level(31)), needs),
            (Tier::High, Level(31))
        );
        assert_eq!(
            h264_ceiling(Some(Level(40)), needs),
            (Tier::High, Level(31))
        );
        assert_eq!(h264_ceiling(Some(Level(30)), needs), (Tier::Low, Level(30)));
        // webrtcbin's 2.2 fits nothing: the low tier, declared as what it is.
        assert_eq!(h264_ceiling(Some(Level(22)), needs), (Tier::Low, Level(30)));
        assert_eq!(h264_ceiling(None, needs), (Tier::High, Level(31)));
    }
}
