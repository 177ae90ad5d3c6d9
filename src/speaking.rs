//! Who is speaking, from each audio input's level: a pure state machine per input, fed levels
//! and the time, answering "started" or "stopped" or nothing. (Issue 13: only a speaker needs a
//! mix of its own; everyone silent shares one. The room acts on it in `room/voice.rs`.)
//!
//! Levels are RFC 6464's: the audio level of a packet in -dBov, 0 (loudest) to 127 (silence),
//! as a browser puts it in the `ssrc-audio-level` header extension, or as measured on the
//! decoded audio when a sender does not. Speech starts quickly and ends slowly, so a speaker
//! does not flap between words: an input starts speaking after [`ATTACK`] of levels at or above
//! [`START_DBOV`], and stops after [`HANG`] without a level at or above [`STOP_DBOV`].

use std::time::{Duration, Instant};

/// A level at least this loud (-dBov, smaller is louder) counts towards starting to speak:
/// conversational speech at a headset sits around 20-40 dBov, a quiet room's noise floor with
/// a browser's noise suppression at 60 and below.
pub const START_DBOV: u8 = 45;
/// A level at least this loud keeps a speaker speaking (lower than [`START_DBOV`]: hysteresis).
pub const STOP_DBOV: u8 = 55;
/// How long levels must stay at [`START_DBOV`] or louder to start: two 20 ms packets, so a
/// click or a cough's single frame does not.
pub const ATTACK: Duration = Duration::from_millis(40);
/// How long a speaker keeps speaking after its last level at [`STOP_DBOV`] or louder: the
/// pauses between words and sentences.
pub const HANG: Duration = Duration::from_millis(800);

/// What an input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speech {
    /// It started speaking.
    Started,
    /// It stopped.
    Stopped,
}

/// One input's speaking state.
#[derive(Debug, Clone, Default)]
pub struct SpeakingDetector {
    speaking: bool,
    /// Since when levels have been loud enough to start (while not speaking).
    loud_since: Option<Instant>,
    /// The last level loud enough to keep speaking (while speaking).
    last_loud: Option<Instant>,
}

impl SpeakingDetector {
    /// Whether the input is speaking now.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Takes the level (-dBov) of a packet that arrived at `now`.
    pub fn level(&mut self, now: Instant, dbov: u8) -> Option<Speech> {
        if self.speaking {
            if dbov <= STOP_DBOV {
                self.last_loud = Some(now);
            }
            return self.tick(now);
        }
        if dbov <= START_DBOV {
            let since = *self.loud_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= ATTACK {
                self.speaking = true;
                self.loud_since = None;
                self.last_loud = Some(now);
                return Some(Speech::Started);
            }
        } else {
            self.loud_since = None;
        }
        None
    }

    /// Checks the hang time without a level: an input that stopped sending (muted, DTX, gone)
    /// stops speaking too.
    pub fn tick(&mut self, now: Instant) -> Option<Speech> {
        if self.speaking
            && self
                .last_loud
                .is_none_or(|t| now.saturating_duration_since(t) >= HANG)
        {
            self.speaking = false;
            self.last_loud = None;
            return Some(Speech::Stopped);
        }
        None
    }
}

/// Which packets of an audio input go on into the pipeline: those of a speaker, and any that
/// is not near-silence (it may be the start of speech). A quiet microphone's packets stop here,
/// so a listener's input costs the room no decoding, mixing or thread wake-up; what goes on is
/// renumbered so that its sequence numbers stay continuous while its timestamps jump, which is
/// how a sender using Opus DTX (RFC 7587 §3.1.3) sends, and what jitter buffers expect.
#[derive(Debug, Clone, Default)]
pub struct VoiceGate {
    detector: SpeakingDetector,
    /// Packets held back so far: subtracted from the sequence numbers of those that go on.
    held: u16,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gated {
    /// Its new sequence number if it goes on; `None` if it stops here.
    pub sequence: Option<u16>,
    /// Whether the input started or stopped speaking with it.
    pub change: Option<Speech>,
}

impl VoiceGate {
    /// Whether the input is speaking now.
    pub fn is_speaking(&self) -> bool {
        self.detector.is_speaking()
    }

    /// Takes a packet of level `dbov` with sequence number `sequence`, arrived at `now`.
    pub fn packet(&mut self, now: Instant, dbov: u8, sequence: u16) -> Gated {
        let change = self.detector.level(now, dbov);
        let goes_on = self.detector.is_speaking() || dbov <= STOP_DBOV;
        let sequence = if goes_on {
            Some(sequence.wrapping_sub(self.held))
        } else {
            self.held = self.held.wrapping_add(1);
            None
        };
        Gated { sequence, change }
    }
}

/// The RFC 6464 level (-dBov, 0..=127) of 16-bit PCM (what the Opus decoder gives): its RMS
/// against a full-scale square wave, as the RFC defines it, for inputs whose sender puts no
/// level in its packets.
pub fn dbov(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    let mean_square = sum / samples.len() as f64 / (32768.0 * 32768.0);
    if mean_square <= 0.0 {
        return 127;
    }
    (-10.0 * mean_square.log10()).round().clamp(0.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `dbov` every 20 ms for `ms` from `*t`, returning the changes with their offsets.
    fn feed(d: &mut SpeakingDetector, t: &mut Instant, dbov: u8, ms: u64) -> Vec<(u64, Speech)> {
        let start = *t;
        let mut out = Vec::new();
        for _ in 0..ms / 20 {
            *t += Duration::from_millis(20);
            if let Some(change) = d.level(*t, dbov) {
                out.push(((*t - start).as_millis() as u64, change));
            }
        }
        out
    }

    #[test]
    fn speech_starts_after_the_attack_and_ends_after_the_hang() {
        let mut d = SpeakingDetector::default();
        let mut t = Instant::now();
        assert_eq!(feed(&mut d, &mut t, 90, 1000), vec![], "a quiet room");
        // Loud from the first packet on: started once two packets 40 ms apart were loud.
        assert_eq!(feed(&mut d, &mut t, 30, 200), vec![(60, Speech::Started)]);
        assert!(d.is_speaking());
        // Quiet again: still speaking through the hang, stopped right after it.
        let changes = feed(&mut d, &mut t, 90, 1000);
        assert_eq!(changes.len(), 1);
        let (after, change) = changes[0];
        assert_eq!(change, Speech::Stopped);
        assert!(
            (800..=820).contains(&after),
            "stopped {after} ms after the last loud level"
        );
    }

    #[test]
    fn a_single_loud_frame_or_pauses_between_words_change_nothing() {
        let mut d = SpeakingDetector::default();
        let mut t = Instant::now();
        // A click: one loud packet among quiet ones.
        for _ in 0..10 {
            assert_eq!(feed(&mut d, &mut t, 20, 20), vec![]);
            assert_eq!(feed(&mut d, &mut t, 90, 100), vec![]);
        }
        assert!(!d.is_speaking());
        // Speech with 300 ms pauses, and quieter syllables between the start and stop levels.
        assert_eq!(feed(&mut d, &mut t, 30, 100).len(), 1);
        for _ in 0..5 {
            assert_eq!(feed(&mut d, &mut t, 90, 300), vec![]);
            assert_eq!(feed(&mut d, &mut t, 50, 200), vec![]);
        }
        assert!(d.is_speaking());
    }

    #[test]
    fn an_input_that_stops_sending_stops_speaking() {
        let mut d = SpeakingDetector::default();
        let mut t = Instant::now();
        feed(&mut d, &mut t, 30, 100);
        assert!(d.is_speaking());
        assert_eq!(d.tick(t + Duration::from_millis(500)), None);
        assert_eq!(d.tick(t + HANG), Some(Speech::Stopped));
        assert_eq!(d.tick(t + HANG * 2), None);
    }

    #[test]
    fn a_quiet_microphone_is_held_back_and_speech_goes_on_numbered_without_gaps() {
        let mut gate = VoiceGate::default();
        let mut t = Instant::now();
        let mut out = Vec::new();
        let mut changes = Vec::new();
        // 1 s quiet, 1 s of speech, 2 s quiet (the hang lets 800 ms of it through), 20 ms of
        // a cough, quiet again.
        let levels = std::iter::repeat_n(80, 50)
            .chain(std::iter::repeat_n(30, 50))
            .chain(std::iter::repeat_n(80, 100))
            .chain(std::iter::once(30))
            .chain(std::iter::repeat_n(80, 10));
        for (i, level) in levels.enumerate() {
            t += Duration::from_millis(20);
            let g = gate.packet(t, level, 65_000u16.wrapping_add(i as u16));
            out.extend(g.sequence);
            changes.extend(g.change);
        }
        assert_eq!(changes, [Speech::Started, Speech::Stopped]);
        // The speech, the hang and the cough went on, numbered one after the other across
        // the wrap of the sequence numbers.
        assert_eq!(out.len(), 50 + 39 + 1);
        assert!(
            out.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{out:?}"
        );
        assert!(!gate.is_speaking());
    }

    #[test]
    fn levels_are_rfc_6464_dbov() {
        assert_eq!(dbov(&[]), 127);
        assert_eq!(dbov(&[0; 960]), 127);
        // A full-scale square wave is 0 dBov; a full-scale sine 3 dB under it.
        assert_eq!(dbov(&[i16::MAX, i16::MIN, i16::MAX, i16::MIN]), 0);
        let sine = |volume: f32| -> Vec<i16> {
            (0..960)
                .map(|i| {
                    let x = (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin();
                    (x * volume * 32767.0) as i16
                })
                .collect()
        };
        assert_eq!(dbov(&sine(1.0)), 3);
        // The test clients' tone (volume 0.3): about 13.5 dBov, speech by these thresholds.
        let tone = dbov(&sine(0.3));
        assert!((13..=14).contains(&tone), "{tone}");
    }
}
