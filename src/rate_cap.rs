//! The bitrate promise of an encoded output, kept whatever the picture: pure decisions, per raw
//! frame, whether the encoder may take it, and per packet, when it may leave ([`RateCap`]).
//!
//! A CBR encoder keeps its *average* bitrate, but on a noisy picture (a low-light camera) even
//! VP8's coarsest quantizer makes every frame larger than the budget, and the encoder's own
//! frame dropping starts late and overshoots: measured with gst-launch on 720p snow, its worst
//! 2 s window carried 1.25x the 2 Mbit/s target (1.26x at 600 kbit/s), with 140 KB keyframes
//! sent in one burst. A receiver on a link just above the tier's bitrate then loses packets.
//!
//! So each output paces its packets and counts what left over the last [`WINDOW`]; a raw frame
//! enters the encoder only when the window, with the frame it is expected to make, stays within
//! the tier's bitrate and its [`HEADROOM`]: a picture that does not fit loses frame rate, never the
//! bitrate. A picture that fits rarely meets the cap: the encoder's own rate control aims under
//! it.
//!
//! The encoder, the payloader and the pacing wait share one streaming thread (the encoders
//! emit each frame as they take it), so when a raw frame asks, every packet of the frames
//! before it has left. Take any 2 s window and the last frame admitted that sent in it: the
//! frames before left within the 2 s before its admission, which the cap counted, so the
//! window holds at most the budget when the guesses hold. The guess is the largest of the last
//! few frames of the same kind (a keyframe is guessed from the last keyframe), so a picture that
//! grows suddenly overshoots by one frame at most. An empty window always admits, so a frame
//! larger than the whole budget still goes out (alone): the output slows down but never stops.
//!
//! An encoder's rate control gives each frame the bitrate of the time since the last one, so
//! the gaps the cap leaves would feed back: after a keyframe waited a second, libvpx spent a
//! second's budget on the next frame, which then waited a second too (measured in a room: ten
//! 300 KB frames in 12 s), and on an ordinary picture each refused frame made the next one
//! twice as large (a room of 4 lost half its frames). So the encoder is shown a clock
//! ([`RateCap::steady_pts`]) on which a frame follows the last frame *offered*, refused or not,
//! and lasts no longer than [`LONGEST_FRAME`]; each encoded frame gets its real time back. The
//! encoder keeps aiming at the tier's bitrate per frame offered, so what the cap refuses comes
//! off the output's bitrate, not onto the next frame.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The span over which an output keeps its bitrate.
pub const WINDOW: Duration = Duration::from_secs(2);

/// The cap sits this far above the bitrate the encoder aims at: an encoder's rate control
/// swings around its target (a keyframe is several frames' worth), and a cap at the target
/// itself dropped frames of ordinary pictures after every keyframe (a room of 4 whose viewers
/// were joining decoded ~15 fps). The cap is for the pictures the encoder cannot hold.
pub const HEADROOM: f64 = 1.05;

/// The RTP headers on an encoded frame's bytes: 12 bytes of RTP and 4 of VP8 descriptor (or 2
/// of H.264 fragmentation) on each packet of at most 1200 bytes.
const RTP_OVERHEAD: f64 = 16.0 / 1184.0;

/// Frames of each kind whose size the guess remembers.
const REMEMBERED: usize = 3;

/// How much faster than its bitrate an output may send while it catches up after a large frame
/// (libwebrtc's pacer uses the same factor): a 140 KB keyframe of a 2 Mbit/s output leaves over
/// ~220 ms instead of in one burst of ~120 packets, which overflows a receiver's socket buffer
/// (the default 208 KiB holds ~90 such packets), or the queue of a link just above the tier.
pub const PACE_FACTOR: f64 = 2.5;

/// What an output may send at once, at the paced rate, after a pause.
pub const PACE_BURST: Duration = Duration::from_millis(20);

/// The longest a frame lasts on the clock an encoder is shown: a noisy 720p picture settles at
/// its coarsest quantizer near 8 frames a second within 2 Mbit/s, so this leaves the encoder's
/// own rate control the frame sizes it would choose there.
pub const LONGEST_FRAME: Duration = Duration::from_millis(100);

/// The cap of one output, fed from the output's streaming thread: [`RateCap::admit`] before
/// each raw frame, [`RateCap::encoded`] after each encoded one, [`RateCap::send`] for each of
/// its RTP packets.
#[derive(Debug)]
pub struct RateCap {
    budget: u64,
    /// Packets in the window: when each leaves, and its bytes.
    window: VecDeque<(Instant, u64)>,
    in_window: u64,
    recent_inter: VecDeque<u64>,
    recent_key: VecDeque<u64>,
    /// A keyframe has been asked for and not yet produced: the next frame is guessed as one.
    keyframe_due: bool,
    dropped: u64,
    pacer: Pacer,
    /// The last frame shown to the encoder: its real and its steady time (nanoseconds).
    last_shown: Option<(u64, u64)>,
    /// The time of the last frame refused since the last one shown (nanoseconds).
    last_refused: Option<u64>,
}

impl RateCap {
    /// A cap for an output of `bps` bits per second.
    pub fn new(bps: u64) -> RateCap {
        let budget = bps as f64 * HEADROOM / 8.0 * WINDOW.as_secs_f64();
        RateCap {
            budget: budget as u64,
            window: VecDeque::new(),
            in_window: 0,
            recent_inter: VecDeque::with_capacity(REMEMBERED),
            recent_key: VecDeque::with_capacity(REMEMBERED),
            keyframe_due: true,
            dropped: 0,
            pacer: Pacer::new(bps),
            last_shown: None,
            last_refused: None,
        }
    }

    /// A keyframe was asked of the encoder: the frames it is expected to make are keyframes until
    /// one comes out.
    pub fn keyframe_requested(&mut self) {
        self.keyframe_due = true;
    }

    /// Whether the raw frame of time `pts` (nanoseconds) arriving at `now` may enter the
    /// encoder.
    pub fn admit(&mut self, now: Instant, pts: Option<u64>) -> bool {
        self.expire(now);
        let recent = if self.keyframe_due {
            &self.recent_key
        } else {
            &self.recent_inter
        };
        let guess = recent.iter().copied().max().unwrap_or(0);
        let fits = self.in_window == 0 || self.in_window + guess <= self.budget;
        if !fits {
            self.dropped += 1;
            self.last_refused = pts.or(self.last_refused);
        }
        fits
    }

    /// The time to show the encoder for an admitted frame of time `real` (nanoseconds): as
    /// long after the last frame offered (shown or refused) as it really is, up to
    /// [`LONGEST_FRAME`].
    pub fn steady_pts(&mut self, real: u64) -> u64 {
        let refused = self.last_refused.take();
        let steady = match self.last_shown {
            Some((last_real, last_steady)) => {
                let since = refused.map_or(last_real, |r| r.max(last_real));
                let gap = real.saturating_sub(since);
                last_steady + gap.min(LONGEST_FRAME.as_nanos() as u64)
            }
            None => real,
        };
        self.last_shown = Some((real, steady));
        steady
    }

    /// The encoder made a frame of `bytes` (what the next guesses learn from); how far its time
    /// is behind the real one (nanoseconds): the encoders emit each frame as they take it, so
    /// it is the last frame shown.
    pub fn encoded(&mut self, bytes: u64, keyframe: bool) -> u64 {
        let bytes = (bytes as f64 * (1.0 + RTP_OVERHEAD)).ceil() as u64;
        let recent = if keyframe {
            self.keyframe_due = false;
            &mut self.recent_key
        } else {
            &mut self.recent_inter
        };
        if recent.len() == REMEMBERED {
            recent.pop_front();
        }
        recent.push_back(bytes);
        self.last_shown
            .map_or(0, |(real, steady)| real.saturating_sub(steady))
    }

    /// An RTP packet of `bytes` is ready at `now`: when it may leave (the caller waits until
    /// then before the next).
    pub fn send(&mut self, now: Instant, bytes: usize) -> Instant {
        let leave = self.pacer.departure(now, bytes);
        self.window.push_back((leave, bytes as u64));
        self.in_window += bytes as u64;
        leave
    }

    /// Raw frames the cap has kept from the encoder so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, bytes)) = self.window.front() {
            if now.saturating_duration_since(at) < WINDOW {
                break;
            }
            self.window.pop_front();
            self.in_window -= bytes;
        }
    }
}

/// Spreads an output's packets over time: each leaves when the output's paced rate allows
/// (a generic cell rate algorithm: a packet's cost is its bytes at [`PACE_FACTOR`] times the
/// bitrate, and up to [`PACE_BURST`] of them may leave at once).
#[derive(Debug)]
struct Pacer {
    /// Seconds a byte occupies at the paced rate.
    per_byte: f64,
    /// When the output will have sent everything so far, at the paced rate.
    busy_until: Option<Instant>,
}

impl Pacer {
    fn new(bps: u64) -> Pacer {
        Pacer {
            per_byte: 8.0 / (bps.max(1) as f64 * PACE_FACTOR),
            busy_until: None,
        }
    }

    /// When a packet of `bytes` that is ready at `now` may leave.
    fn departure(&mut self, now: Instant, bytes: usize) -> Instant {
        let busy = self.busy_until.map_or(now, |t| t.max(now));
        let leave = busy.checked_sub(PACE_BURST).map_or(now, |t| t.max(now));
        self.busy_until = Some(busy + Duration::from_secs_f64(bytes as f64 * self.per_byte));
        leave
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_nanos(33_333_333);
    const MTU: u64 = 1200;

    /// Runs a 30 fps camera for `secs` through a cap of `bps` and an encoder that makes
    /// keyframes of `key` bytes and inter frames of `inter`, a keyframe asked every `key_every`
    /// frames (0: only the first). Like the pipeline, one thread encodes and waits for each
    /// packet to leave; raw frames that come meanwhile are dropped but the newest. Returns
    /// (frames encoded, the largest bytes that left in any 2 s window).
    fn run(bps: u64, secs: u64, key: u64, inter: u64, key_every: u64) -> (u64, u64) {
        let mut cap = RateCap::new(bps);
        let start = Instant::now();
        let mut sent: Vec<(Instant, u64)> = Vec::new();
        let (mut want_key, mut frames, mut thread_free) = (true, 0, start);
        for i in 0..secs * 30 {
            let captured = start + FRAME * i as u32;
            if key_every > 0 && i > 0 && i % key_every == 0 {
                cap.keyframe_requested();
                want_key = true;
            }
            if thread_free > captured + FRAME {
                continue; // a newer frame replaced it in the queue
            }
            let mut now = captured.max(thread_free);
            if !cap.admit(now, None) {
                continue;
            }
            let size = if want_key { key } else { inter };
            cap.encoded(size, want_key);
            want_key = false;
            frames += 1;
            let mut left = size;
            while left > 0 {
                let packet = left.min(MTU - 16);
                left -= packet;
                let leave = cap.send(now, (packet + 16) as usize);
                now = now.max(leave);
                sent.push((leave, packet + 16));
            }
            thread_free = now;
        }
        let worst = sent
            .iter()
            .map(|&(t, _)| {
                sent.iter()
                    .filter(|&&(u, _)| u >= t && u < t + WINDOW)
                    .map(|&(_, b)| b)
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0);
        (frames, worst)
    }

    #[test]
    fn a_picture_within_the_budget_never_meets_the_cap() {
        // 2 Mbit/s is 8,333 bytes a frame at 30 fps; frames of 7,500 and a keyframe of 40,000.
        let (frames, worst) = run(2_000_000, 10, 40_000, 7_500, 0);
        assert_eq!(frames, 300);
        assert!(worst <= 500_000 + 60_000, "{worst}"); // the keyframe's extra, under the cap
    }

    #[test]
    fn a_noisy_picture_loses_frames_not_the_bitrate() {
        // What VP8 makes of 720p snow at its coarsest quantizer: 139 KB keyframes, 30 KB frames,
        // and a receiver asking for a keyframe every 3 s.
        let (frames, worst) = run(2_000_000, 20, 139_000, 30_000, 90);
        // 2 Mbit/s over 2 s is 500,000 bytes; the cap's 5% headroom makes it 525,000.
        assert!(worst <= 525_000, "worst window {worst} over 525,000 bytes");
        // It still moves: about 8 frames a second fit.
        assert!(frames >= 20 * 6, "{frames} frames in 20 s");
    }

    #[test]
    fn a_frame_larger_than_the_whole_budget_still_goes_out_alone() {
        // 800 KB keyframes of a 600 kbit/s output: each takes 4.3 s at the paced rate.
        let (frames, worst) = run(600_000, 20, 800_000, 200_000, 0);
        assert!(frames >= 5, "{frames}");
        // Then nothing else is in the window: it carries what the pacer lets out in 2 s (and
        // its first burst, and the packet under way).
        let paced = 600_000.0 / 8.0 * PACE_FACTOR * (WINDOW + PACE_BURST).as_secs_f64();
        assert!(worst as f64 <= paced + MTU as f64, "{worst}");
    }

    #[test]
    fn the_rtp_headers_count() {
        // 2 Mbit/s over 2 s with the headroom is 525,000 bytes. 52 frames of 10,000 would fit as
        // payload (520,000), but with their packets' headers (10,128 each) the 52nd does not.
        let mut cap = RateCap::new(2_000_000);
        let t0 = Instant::now();
        for i in 0..51u32 {
            let now = t0 + FRAME * i;
            assert!(cap.admit(now, None));
            cap.encoded(10_000, i == 0);
            for _ in 0..8 {
                cap.send(now, 1_250 + 16);
            }
        }
        assert!(!cap.admit(t0 + FRAME * 51, None));
    }

    #[test]
    fn a_requested_keyframe_waits_until_it_fits() {
        let mut cap = RateCap::new(2_000_000);
        let t0 = Instant::now();
        cap.encoded(150_000, true);
        cap.send(t0, 150_000);
        for i in 1..=10u32 {
            assert!(cap.admit(t0 + FRAME * i, None));
            cap.encoded(30_000, false);
            cap.send(t0 + FRAME * i, 30_000);
        }
        cap.keyframe_requested();
        // 450 KB in the window: a 150 KB keyframe does not fit (525 KB) until the first frames
        // leave it.
        assert!(!cap.admit(t0 + FRAME * 11, None));
        assert_eq!(cap.dropped(), 1);
        assert!(cap.admit(t0 + WINDOW + FRAME, None));
    }

    #[test]
    fn the_encoder_never_sees_a_frame_last_longer_than_the_longest() {
        let mut cap = RateCap::new(2_000_000);
        let ms = 1_000_000;
        assert_eq!(cap.steady_pts(1_000 * ms), 1_000 * ms);
        assert_eq!(cap.encoded(30_000, true), 0);
        // A frame 33 ms later is 33 ms later; one that waited a second, 100 ms.
        assert_eq!(cap.steady_pts(1_033 * ms), 1_033 * ms);
        assert_eq!(cap.steady_pts(2_033 * ms), 1_133 * ms);
        assert_eq!(cap.encoded(30_000, false), 900 * ms);
        assert_eq!(cap.steady_pts(2_066 * ms), 1_166 * ms);
        assert_eq!(cap.encoded(30_000, false), 900 * ms);
        // Frames the cap refuses are not time the encoder may spend on the next one: after two
        // refused, the next is one frame after the last refused.
        let mut cap = RateCap::new(600_000);
        let t0 = Instant::now();
        assert!(cap.admit(t0, Some(0)));
        assert_eq!(cap.steady_pts(0), 0);
        cap.encoded(200_000, true);
        cap.send(t0, 200_000);
        assert!(!cap.admit(t0 + FRAME, Some(33 * ms)));
        assert!(!cap.admit(t0 + FRAME * 2, Some(66 * ms)));
        assert!(cap.admit(t0 + WINDOW * 3, Some(100 * ms)));
        assert_eq!(cap.steady_pts(100 * ms), 34 * ms);
    }

    #[test]
    fn a_keyframe_leaves_at_the_paced_rate_after_its_burst() {
        // 2 Mbit/s paced at 5: a 1,250-byte packet every 2 ms; the first 20 ms leave at once.
        let mut pacer = Pacer::new(2_000_000);
        let t0 = Instant::now();
        let leaves: Vec<Duration> = (0..120).map(|_| pacer.departure(t0, 1_250) - t0).collect();
        assert!(leaves[..=10].iter().all(|d| d.is_zero()), "{leaves:?}");
        assert_eq!(leaves[11].as_micros(), 2_000);
        // 150 KB leave over ~220 ms (240 at the paced rate, less the first burst).
        assert_eq!(leaves[119].as_millis(), 218);
        // After a pause the output is idle again: the next packet leaves at once.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pacer.departure(later, 1_250), later);
    }
}
