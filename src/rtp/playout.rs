//! An audio input's playout (pure): when a sender's packets arrive with more jitter than the
//! mix's jitter buffer absorbs (a fixed 40 ms, kept small so a room's audio stays within tens of
//! milliseconds), they are held here a little longer and handed on in order, evenly spaced,
//! so they reach the mix on time, later rather than never. The hold follows the measured
//! jitter (RFC 3550 §6.4.1's interarrival estimate): it rises at once when the jitter grows,
//! and falls back (to nothing, on a calm link) only after the jitter has stayed low for a
//! while, as a browser's playout buffer does. Only that sender's audio is delayed; the room's
//! is not.
//!
//! Times are seconds on the caller's monotonic clock; the caller does the waiting.

use std::collections::BTreeMap;

/// The spread of arrival times the mix's own jitter buffer absorbs (its latency, 40 ms): no
/// hold below it, so a calm link (or a busy machine's loopback) adds no delay.
const ABSORBED: f64 = 0.040;
/// The hold covers this many times the estimated jitter (RFC 3550's estimate is about a third
/// of the spread of a uniform delay: 4 J covers nearly all of it).
const COVER: f64 = 4.0;
/// The longest hold: beyond it a conversation suffers more from the delay than from gaps.
pub const MAX_HOLD: f64 = 0.300;
/// A raise smaller than this is not worth a gap.
const RAISE_STEP: f64 = 0.010;
/// A lower hold is taken only after the jitter has asked for it (by this much) for this long.
const LOWER_STEP: f64 = 0.020;
const LOWER_AFTER: f64 = 5.0;
/// How fast the schedule may follow a sender whose clock runs slower than ours (s per s).
const DRIFT: f64 = 0.001;
/// Packets held at most (a bound, whatever arrives: 300 ms of 20 ms audio is 15).
const MAX_HELD: usize = 64;

/// A packet held until it is due.
struct Held<P> {
    due: f64,
    packet: P,
}

/// One input's playout state.
pub struct Playout<P> {
    rate: f64,
    /// RFC 3550's interarrival jitter estimate, seconds.
    jitter: f64,
    /// The last packet's arrival and extended timestamp (for the jitter estimate).
    last: Option<(f64, i64)>,
    /// The first packet's timestamp, and the extended form of the last one seen.
    first_ts: Option<u32>,
    last_ext: i64,
    /// The lowest transit time (arrival minus media time) seen: the earliest a packet can be
    /// here. A packet is due at its media time + this + the hold.
    base: Option<f64>,
    base_at: f64,
    hold: f64,
    /// Since when the jitter has asked for a lower hold.
    lower_since: Option<f64>,
    /// Held packets by extended timestamp and sequence number: handed on in that order.
    held: BTreeMap<(i64, u16), Held<P>>,
    /// The last handed-on packet's key: anything older goes on at once (it is late).
    released: Option<(i64, u16)>,
}

impl<P: AsRef<[u8]>> Playout<P> {
    /// A playout for a stream whose RTP clock runs at `clock_rate`.
    pub fn new(clock_rate: u32) -> Playout<P> {
        Playout {
            rate: f64::from(clock_rate.max(1)),
            jitter: 0.0,
            last: None,
            first_ts: None,
            last_ext: 0,
            base: None,
            base_at: 0.0,
            hold: 0.0,
            lower_since: None,
            held: BTreeMap::new(),
            released: None,
        }
    }

    /// How long packets are held now, seconds.
    pub fn hold(&self) -> f64 {
        self.hold
    }

    /// The jitter estimate, seconds.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// When the next held packet is due, if any is held.
    pub fn next_due(&self) -> Option<f64> {
        self.held.values().next().map(|h| h.due)
    }

    /// `packet` arrived at `now`: appends to `out` what goes on now (it, if nothing needs
    /// holding; else whatever is due).
    pub fn arrive(&mut self, now: f64, packet: P, out: &mut Vec<P>) {
        let bytes = packet.as_ref();
        if bytes.len() < 12 {
            // Not RTP: nothing to order it by.
            out.push(packet);
            return;
        }
        let ts = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let seq = u16::from_be_bytes([bytes[2], bytes[3]]);
        let ext = self.extend(ts);
        self.measure(now, ext);
        let media = ext as f64 / self.rate;
        let transit = now - media;
        // The earliest schedule, allowed to drift later slowly (a sender's clock slower than
        // ours makes every transit grow).
        let base = match self.base {
            Some(b) => (b + DRIFT * (now - self.base_at).max(0.0)).min(transit),
            None => transit,
        };
        self.base = Some(base);
        self.base_at = now;
        let key = (ext, seq);
        let due = media + base + self.hold;
        let late = self.released.is_some_and(|r| key <= r);
        if late || (self.hold == 0.0 && self.held.is_empty()) || due <= now {
            if !late {
                // Whatever is held before it goes first.
                self.release_through(key, out);
                self.released = Some(key);
            }
            out.push(packet);
            return;
        }
        self.held.insert(key, Held { due, packet });
        if self.held.len() > MAX_HELD {
            let first = *self.held.keys().next().expect("just inserted");
            self.release_through(first, out);
        }
    }

    /// Appends to `out` every held packet due at `now`, in order.
    pub fn due(&mut self, now: f64, out: &mut Vec<P>) {
        while let Some(entry) = self.held.first_entry() {
            if entry.get().due > now {
                break;
            }
            let (key, held) = entry.remove_entry();
            self.released = Some(key);
            out.push(held.packet);
        }
    }

    /// Hands on every held packet up to `key`, in order.
    fn release_through(&mut self, key: (i64, u16), out: &mut Vec<P>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > key {
                break;
            }
            let (k, held) = entry.remove_entry();
            self.released = Some(k);
            out.push(held.packet);
        }
    }

    /// The timestamp extended past its 32-bit wrap, relative to the first packet's.
    fn extend(&mut self, ts: u32) -> i64 {
        let Some(first) = self.first_ts else {
            self.first_ts = Some(ts);
            self.last_ext = 0;
            return 0;
        };
        let last = first.wrapping_add(self.last_ext as u32);
        let ext = self.last_ext + i64::from(ts.wrapping_sub(last) as i32);
        self.last_ext = self.last_ext.max(ext);
        ext
    }

    /// Updates the jitter estimate (RFC 3550 §6.4.1) and the hold it asks for.
    fn measure(&mut self, now: f64, ext: i64) {
        if let Some((then, last)) = self.last {
            let d = (now - then) - (ext - last) as f64 / self.rate;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last = Some((now, ext));
        let wanted = if self.jitter * COVER <= ABSORBED {
            0.0
        } else {
            (self.jitter * COVER).min(MAX_HOLD)
        };
        if wanted > self.hold + RAISE_STEP {
            self.hold = wanted;
            self.lower_since = None;
        } else if wanted < self.hold - LOWER_STEP {
            let since = *self.lower_since.get_or_insert(now);
            if now - since >= LOWER_AFTER {
                self.hold = wanted;
                self.lower_since = None;
            }
        } else {
            self.lower_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    /// 20 ms of 48 kHz audio.
    const STEP: u32 = 960;

    fn packet(seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p
    }

    fn seq(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[2], p[3]])
    }

    /// A tiny deterministic generator (the tests need no crate for it).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Runs `n` packets 20 ms apart, each delayed by `delay(i)`, through a playout, driving
    /// its timer; returns each packet's (sequence, handed-on time) and the playout.
    fn run(
        n: u16,
        first_ts: u32,
        mut delay: impl FnMut(u16) -> f64,
    ) -> (Vec<(u16, f64)>, Playout<Vec<u8>>) {
        let mut playout = Playout::new(RATE);
        let mut arrivals: Vec<(f64, Vec<u8>)> = (0..n)
            .map(|i| {
                let sent = f64::from(i) * 0.020;
                (
                    sent + 0.005 + delay(i),
                    packet(i, first_ts.wrapping_add(u32::from(i) * STEP)),
                )
            })
            .collect();
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut handed = Vec::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (at, p) in arrivals {
            while let Some(due) = playout.next_due().filter(|d| *d <= at) {
                playout.due(due, &mut out);
                handed.extend(out.drain(..).map(|p| (seq(&p), due)));
            }
            playout.arrive(at, p, &mut out);
            handed.extend(out.drain(..).map(|p| (seq(&p), at)));
        }
        while let Some(due) = playout.next_due() {
            playout.due(due, &mut out);
            handed.extend(out.drain(..).map(|p| (seq(&p), due)));
        }
        (handed, playout)
    }

    #[test]
    fn a_calm_link_passes_every_packet_on_at_once() {
        let mut random = Lcg(1);
        // 2 ms of jitter: the mix's own buffer absorbs it.
        let (handed, playout) = run(500, 7, |_| random.next() * 0.002);
        assert_eq!(playout.hold(), 0.0);
        assert_eq!(handed.len(), 500);
        assert!(handed.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn jitter_of_100_ms_is_held_and_handed_on_in_order_evenly() {
        let mut random = Lcg(16);
        // netem's `delay 100ms 100ms`: 0 to 200 ms, packets overtaking each other.
        let (handed, playout) = run(1000, 0, |_| random.next() * 0.200);
        assert!(
            (0.150..=MAX_HOLD).contains(&playout.hold()),
            "hold {} for jitter {}",
            playout.hold(),
            playout.jitter()
        );
        assert_eq!(handed.len(), 1000, "every packet handed on, none lost");
        // Once the hold has grown (the first second), packets go on in order, 20 ms apart.
        let settled: Vec<&(u16, f64)> = handed.iter().filter(|(s, _)| *s >= 100).collect();
        let in_order = settled.windows(2).filter(|w| w[0].0 < w[1].0).count();
        assert!(
            in_order * 100 >= settled.len() * 97,
            "{in_order} of {}",
            settled.len()
        );
        let even = settled
            .windows(2)
            .filter(|w| ((w[1].1 - w[0].1) - 0.020).abs() < 0.005)
            .count();
        assert!(
            even * 100 >= settled.len() * 90,
            "{even} of {}",
            settled.len()
        );
    }

    #[test]
    fn the_hold_falls_back_once_the_link_is_calm_again() {
        let mut random = Lcg(3);
        // Five seconds of jitter, then ten calm ones.
        let (handed, playout) = run(
            750,
            0,
            |i| {
                if i < 250 { random.next() * 0.200 } else { 0.0 }
            },
        );
        assert_eq!(playout.hold(), 0.0, "jitter {}", playout.jitter());
        assert_eq!(handed.len(), 750);
    }

    #[test]
    fn timestamps_wrap_without_a_jump() {
        let mut random = Lcg(5);
        let (handed, playout) = run(400, u32::MAX - 100 * STEP, |_| random.next() * 0.200);
        assert_eq!(handed.len(), 400);
        assert!(playout.hold() > 0.1 && playout.hold() <= MAX_HOLD);
        let settled: Vec<&(u16, f64)> = handed.iter().filter(|(s, _)| *s >= 100).collect();
        let in_order = settled.windows(2).filter(|w| w[0].0 < w[1].0).count();
        assert!(
            in_order * 100 >= settled.len() * 95,
            "{in_order} of {}",
            settled.len()
        );
    }

    #[test]
    fn what_is_not_rtp_goes_on_at_once() {
        let mut playout: Playout<Vec<u8>> = Playout::new(RATE);
        let mut out = Vec::new();
        playout.arrive(0.0, vec![1, 2, 3], &mut out);
        assert_eq!(out, vec![vec![1, 2, 3]]);
    }
}
