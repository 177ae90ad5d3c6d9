//! Fitting the mix to its receivers: which encoders run (only those someone receives), which
//! tier each receiver gets (from its bandwidth estimate), and when an output is asked for a
//! keyframe (coalesced per output by its [`KeyframeGate`]).

use std::collections::BTreeSet;
use std::time::Instant;

use super::actor::RoomActor;
use super::keyframe::Decision;
use crate::metrics;
use crate::types::{MediaKind, OutputKey, Tier};

impl RoomActor {
    /// Runs the encoders someone receives (a receiver that is connected, or a recording) and
    /// idles the rest.
    pub(super) async fn update_receivers(&self) {
        let live = || self.sessions.iter().filter(|s| s.sending);
        let mut outputs: BTreeSet<OutputKey> = live().filter_map(|s| s.output).collect();
        outputs.extend(self.recordings.iter().map(|r| r.info.format.output()));
        let everyone = live().any(|s| s.hears_everyone()) || !self.recordings.is_empty();
        let mut counts = std::collections::BTreeMap::new();
        for key in live().filter_map(|s| s.output) {
            *counts.entry(key.to_string()).or_insert(0) += 1;
        }
        self.ctx.metrics.set_receivers(counts);
        self.mixer.set_receivers(outputs, everyone).await;
    }

    /// Asks for a keyframe of `key` now, or once its gate opens (requests are coalesced);
    /// `why` is for the log.
    pub(super) async fn request_keyframe(&mut self, key: OutputKey, why: &'static str) {
        let decision = self
            .keyframes
            .entry(key)
            .or_default()
            .request(Instant::now());
        tracing::debug!(room = %self.ctx.name, %key, why, ?decision, "keyframe requested");
        if decision == Decision::ForceNow {
            metrics::families().keyframes_forced.inc();
            self.mixer.force_keyframe(key).await;
        }
    }

    /// Forces the keyframes whose deferred time has come.
    pub(super) async fn force_due_keyframes(&mut self) {
        let now = Instant::now();
        let due: Vec<OutputKey> = self
            .keyframes
            .iter_mut()
            .filter_map(|(key, gate)| gate.poll(now).then_some(*key))
            .collect();
        for key in due {
            tracing::debug!(room = %self.ctx.name, %key, "deferred keyframe forced");
            metrics::families().keyframes_forced.inc();
            self.mixer.force_keyframe(key).await;
        }
    }

    /// Moves a receiver to another tier when its estimate says so: the new output starts (if it
    /// was idle), gets a keyframe, and the receiver's writer moves over at that keyframe.
    pub(super) async fn on_estimate(&mut self, idx: usize, bps: u64) {
        let Some(current) = self.sessions[idx].output else {
            return;
        };
        let actual = self.output_rate(current);
        let mix = &self.ctx.config.mix;
        let s = &mut self.sessions[idx];
        // The current tier needs what it actually sends (a still picture sends far less than
        // its nominal bitrate, and a receiver's estimate hovers near what it receives); the
        // other tier, not running for this receiver, is judged by its nominal bitrate.
        let bitrate = |tier: Tier| {
            let nominal = u64::from(mix.output(OutputKey { tier, ..current }).2) * 1000;
            match actual {
                Some(rate) if tier == current.tier => nominal.min(rate as u64),
                _ => nominal,
            }
        };
        let Some(tier) = s.tier_policy.on_estimate(Instant::now(), bps, bitrate) else {
            return;
        };
        let next = OutputKey { tier, ..current };
        let Some(rx) = self.mixer.subscribe_video(next) else {
            return;
        };
        tracing::info!(room = %self.ctx.name, session = %s.id, estimate_bps = bps, actual_bps = actual.unwrap_or(0.0) as u64, "moving from {current} to {next}");
        s.output = Some(next);
        metrics::families().tier_switches.inc();
        s.peer.switch_output(MediaKind::Video, rx).await;
        self.update_receivers().await;
        self.request_keyframe(next, "tier switch").await;
        self.publish_updated(idx);
    }

    /// The measured bitrate (bit/s) of an output, smoothed over the last second or so; `None`
    /// until two samples exist.
    fn output_rate(&mut self, key: OutputKey) -> Option<f64> {
        let bytes = self.mixer.output_bytes(key)?;
        let now = Instant::now();
        match self.output_rates.get_mut(&key) {
            Some((last_bytes, last_at, rate)) => {
                let dt = now.duration_since(*last_at).as_secs_f64();
                if dt >= 0.25 {
                    let sample = bytes.saturating_sub(*last_bytes) as f64 * 8.0 / dt;
                    *rate = if *rate == 0.0 {
                        sample
                    } else {
                        0.5 * *rate + 0.5 * sample
                    };
                    (*last_bytes, *last_at) = (bytes, now);
                }
                (*rate > 0.0).then_some(*rate)
            }
            None => {
                self.output_rates.insert(key, (bytes, now, 0.0));
                None
            }
        }
    }
}
