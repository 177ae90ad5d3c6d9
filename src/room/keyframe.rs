//! Coalescing of forced keyframes, as a pure state machine: many receivers may ask for a keyframe
//! at once (a newcomer, a PLI, a FIR), but an encoder forced more than once per interval wastes
//! bitrate on intra frames and makes every receiver's picture pulse. Requests inside the interval
//! are not dropped: they collapse into one keyframe at the end of it.

use std::time::{Duration, Instant};

/// At most one forced keyframe per encoder per this interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// What to do with a keyframe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Force one now.
    ForceNow,
    /// One is already due at this instant; the request is folded into it.
    Deferred(Instant),
}

/// The coalescing state of one encoder.
#[derive(Debug, Default, Clone)]
pub struct KeyframeGate {
    last_forced: Option<Instant>,
    pending: Option<Instant>,
}

impl KeyframeGate {
    /// A request arrived at `now`.
    pub fn request(&mut self, now: Instant) -> Decision {
        if let Some(due) = self.pending {
            return Decision::Deferred(due);
        }
        match self.last_forced {
            Some(last) if now < last + MIN_INTERVAL => {
                let due = last + MIN_INTERVAL;
                self.pending = Some(due);
                Decision::Deferred(due)
            }
            _ => {
                self.last_forced = Some(now);
                Decision::ForceNow
            }
        }
    }

    /// When the deferred keyframe is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        self.pending
    }

    /// Called at or after [`due`](Self::due): returns whether to force the deferred keyframe now.
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.pending {
            Some(due) if now >= due => {
                self.pending = None;
                self.last_forced = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_forces_at_once() {
        let mut g = KeyframeGate::default();
        assert_eq!(g.request(Instant::now()), Decision::ForceNow);
    }

    #[test]
    fn a_burst_collapses_into_one_deferred_keyframe() {
        let mut g = KeyframeGate::default();
        let t0 = Instant::now();
        assert_eq!(g.request(t0), Decision::ForceNow);
        let due = t0 + MIN_INTERVAL;
        for ms in [10, 100, 300, 499] {
            assert_eq!(
                g.request(t0 + Duration::from_millis(ms)),
                Decision::Deferred(due)
            );
        }
        assert!(!g.poll(t0 + Duration::from_millis(499)));
        assert!(g.poll(due));
        assert_eq!(g.due(), None);
        // The deferred one counts as the last forced: the next request waits again.
        assert_eq!(
            g.request(due + Duration::from_millis(1)),
            Decision::Deferred(due + MIN_INTERVAL)
        );
    }

    #[test]
    fn requests_after_the_interval_force_again() {
        let mut g = KeyframeGate::default();
        let t0 = Instant::now();
        g.request(t0);
        assert_eq!(g.request(t0 + MIN_INTERVAL), Decision::ForceNow);
    }
}
