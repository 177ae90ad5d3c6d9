//! Who has the floor: the room's active speaker, from its inputs' audio levels (issue 14). A pure
//! machine: it is fed the levels of each input's packets with the time they arrived, and says
//! when the floor moves.
//!
//! Not the same question as `crate::speaking` (who needs a mix of their own, which must start
//! at a voice's first syllable): the floor must not move on a cough, a 200 ms "mm" or two
//! people talking over each other, and should still move within a second or so of a new person
//! talking. Like LiveKit's speaker detection it counts speech over a sliding window rather than
//! reacting to single levels, and like FreeSWITCH's video floor a speaker holds it for a while:
//! - an input has spoken in the window (twice [`SpeakerSettings::min_speech_ms`]) for as long as
//!   its packets there at or above [`SpeakerSettings::threshold_dbov`] last;
//! - it may take the floor once that is at least `min_speech_ms` and more than the holder's own
//!   speech in the same window by half of `min_speech_ms` (so two people talking at once do not
//!   flap: their inputs report at different instants, so equal talkers' counts differ by up to
//!   a report), and the holder has had the floor for [`SpeakerSettings::hold_ms`];
//! - silence moves nothing: the last speaker keeps the floor until someone else talks.
//!
//! With the defaults a continuous voice takes the floor about 0.5 s after it starts (plus up to
//! one report interval of the input), a 200 ms burst never does.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::types::{AudioLevel as Level, SessionId};

/// Per-room settings of the active-speaker detection (part of the room's layout, `speaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeakerSettings {
    /// How long a speaker keeps the floor at least, once it took it, in ms.
    pub hold_ms: u32,
    /// How much speech (in ms, within a window of twice this) takes the floor.
    pub min_speech_ms: u32,
    /// How loud a packet must be to count as speech, in dBov (0 is the loudest, -70 the
    /// quietest allowed).
    pub threshold_dbov: i32,
}

impl Default for SpeakerSettings {
    fn default() -> Self {
        SpeakerSettings {
            hold_ms: 1000,
            min_speech_ms: 400,
            // LiveKit's -35 with some margin for a quiet microphone; a room's noise floor with
            // a browser's noise suppression sits near -60.
            threshold_dbov: -40,
        }
    }
}

impl SpeakerSettings {
    /// The limits of each field, or what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.hold_ms > 60_000 {
            return Err(format!("speaker.hold_ms {} is over 60000", self.hold_ms));
        }
        if !(20..=5_000).contains(&self.min_speech_ms) {
            return Err(format!(
                "speaker.min_speech_ms {} is outside 20..=5000",
                self.min_speech_ms
            ));
        }
        // Quieter levels are never reported to the room (near-silence costs no wake-ups).
        let quietest = -i32::from(crate::media::QUIETEST_REPORTED_DBOV);
        if !(quietest..=0).contains(&self.threshold_dbov) {
            return Err(format!(
                "speaker.threshold_dbov {} is outside {quietest}..=0",
                self.threshold_dbov
            ));
        }
        Ok(())
    }

    fn window(&self) -> Duration {
        Duration::from_millis(2 * u64::from(self.min_speech_ms))
    }
}

/// The room's floor.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    settings: SpeakerSettings,
    /// Each input's speech in the window: (when it ended, ms of speech), oldest first.
    speech: HashMap<SessionId, VecDeque<(Instant, u32)>>,
    holder: Option<SessionId>,
    since: Option<Instant>,
    previous: Option<SessionId>,
}

impl Floor {
    /// A floor with `settings`.
    pub fn new(settings: SpeakerSettings) -> Floor {
        Floor {
            settings,
            ..Default::default()
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> SpeakerSettings {
        self.settings
    }

    /// New settings, from the next level on (what was counted so far stays counted).
    pub fn set_settings(&mut self, settings: SpeakerSettings) {
        self.settings = settings;
    }

    /// Who has the floor.
    pub fn speaker(&self) -> Option<SessionId> {
        self.holder
    }

    /// Who had it before them.
    pub fn previous(&self) -> Option<SessionId> {
        self.previous
    }

    /// `session`'s packets that ended at `now` (the last one at `now`, each earlier one its
    /// duration before the next). Returns the new holder when the floor moved.
    pub fn levels(
        &mut self,
        session: SessionId,
        now: Instant,
        levels: &[Level],
    ) -> Option<SessionId> {
        let threshold = (-self.settings.threshold_dbov).clamp(0, 127) as u8;
        let mut end = now;
        let entries = self.speech.entry(session).or_default();
        let mut loud = Vec::new();
        for level in levels.iter().rev() {
            if level.dbov <= threshold {
                loud.push((end, u32::from(level.ms)));
            }
            end = end
                .checked_sub(Duration::from_millis(u64::from(level.ms)))
                .unwrap_or(end);
        }
        entries.extend(loud.into_iter().rev());
        self.decide(session, now)
    }

    /// `session` left: it no longer holds or competes for the floor.
    pub fn remove(&mut self, session: SessionId) {
        self.speech.remove(&session);
        if self.holder == Some(session) {
            self.holder = None;
            self.since = None;
        }
        if self.previous == Some(session) {
            self.previous = None;
        }
    }

    /// How much `session` spoke in the window that ends at `now`, in ms.
    pub fn spoken_ms(&self, session: SessionId, now: Instant) -> u32 {
        let start = now.checked_sub(self.settings.window()).unwrap_or(now);
        self.speech.get(&session).map_or(0, |e| {
            e.iter().filter(|(t, _)| *t > start).map(|(_, ms)| ms).sum()
        })
    }

    fn decide(&mut self, candidate: SessionId, now: Instant) -> Option<SessionId> {
        let window = self.settings.window();
        for entries in self.speech.values_mut() {
            while entries
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= window)
            {
                entries.pop_front();
            }
        }
        if self.holder == Some(candidate) {
            return None;
        }
        let spoken = self.spoken_ms(candidate, now);
        if spoken < self.settings.min_speech_ms {
            return None;
        }
        if let Some(holder) = self.holder {
            let held = self
                .since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.hold());
            let margin = self.settings.min_speech_ms / 2;
            if !held || spoken <= self.spoken_ms(holder, now) + margin {
                return None;
            }
        }
        self.previous = self.holder.replace(candidate);
        self.since = Some(now);
        Some(candidate)
    }

    fn hold(&self) -> Duration {
        Duration::from_millis(u64::from(self.settings.hold_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds 20 ms packets of `dbov` from `who` for `ms`, reported every 100 ms as an input
    /// does, returning when (ms from the start) the floor moved to whom.
    fn talk(
        floor: &mut Floor,
        t: &mut Instant,
        who: SessionId,
        dbov: u8,
        ms: u64,
    ) -> Vec<(u64, SessionId)> {
        let start = *t;
        let mut moves = Vec::new();
        for _ in 0..ms / 100 {
            *t += Duration::from_millis(100);
            let batch = [Level { dbov, ms: 20 }; 5];
            if let Some(to) = floor.levels(who, *t, &batch) {
                moves.push(((*t - start).as_millis() as u64, to));
            }
        }
        moves
    }

    const RED: SessionId = SessionId(1);
    const GREEN: SessionId = SessionId(2);
    const BLUE: SessionId = SessionId(3);

    #[test]
    fn a_talker_takes_the_floor_in_half_a_second_and_keeps_it_through_silence() {
        let mut floor = Floor::default();
        let mut t = Instant::now();
        assert_eq!(talk(&mut floor, &mut t, GREEN, 90, 2000), vec![], "noise");
        assert_eq!(
            talk(&mut floor, &mut t, GREEN, 20, 2000),
            vec![(400, GREEN)]
        );
        // Silence (reports of quiet packets, or none at all) keeps the last speaker.
        talk(&mut floor, &mut t, GREEN, 90, 5000);
        assert_eq!(floor.speaker(), Some(GREEN));
        // Blue talks: it takes the floor once it spoke 400 ms.
        assert_eq!(talk(&mut floor, &mut t, BLUE, 25, 2000), vec![(400, BLUE)]);
        assert_eq!(floor.previous(), Some(GREEN));
    }

    #[test]
    fn a_cough_or_a_short_mm_does_not_move_it() {
        let mut floor = Floor::default();
        let mut t = Instant::now();
        talk(&mut floor, &mut t, GREEN, 20, 1000);
        assert_eq!(floor.speaker(), Some(GREEN));
        talk(&mut floor, &mut t, GREEN, 90, 3000);
        for _ in 0..5 {
            assert_eq!(
                talk(&mut floor, &mut t, RED, 10, 200),
                vec![],
                "a 200 ms burst"
            );
            talk(&mut floor, &mut t, RED, 90, 1000);
        }
        assert_eq!(floor.speaker(), Some(GREEN));
    }

    #[test]
    fn talking_over_the_holder_moves_it_only_with_more_speech_after_the_hold() {
        let mut floor = Floor::default();
        let mut t = Instant::now();
        talk(&mut floor, &mut t, GREEN, 20, 2000);
        // Both talk continuously: equal speech in the window, the holder keeps it.
        for _ in 0..20 {
            assert_eq!(talk(&mut floor, &mut t, BLUE, 20, 100), vec![]);
            talk(&mut floor, &mut t, GREEN, 20, 100);
        }
        assert_eq!(floor.speaker(), Some(GREEN));
        // A takeover right after a move waits for the hold.
        let mut floor = Floor::new(SpeakerSettings {
            hold_ms: 3000,
            ..Default::default()
        });
        let mut t = Instant::now();
        assert_eq!(talk(&mut floor, &mut t, GREEN, 20, 500), vec![(400, GREEN)]);
        // Blue starts at 500 ms, the hold ends at 3400 ms: blue takes it at its first report
        // after that.
        assert_eq!(talk(&mut floor, &mut t, BLUE, 20, 4000), vec![(2900, BLUE)]);
    }

    #[test]
    fn settings_change_the_threshold_and_the_speech_needed() {
        let mut floor = Floor::new(SpeakerSettings {
            threshold_dbov: -20,
            min_speech_ms: 1000,
            ..Default::default()
        });
        let mut t = Instant::now();
        assert_eq!(talk(&mut floor, &mut t, RED, 30, 3000), vec![], "too quiet");
        assert_eq!(talk(&mut floor, &mut t, RED, 15, 3000), vec![(1000, RED)]);
        floor.remove(RED);
        assert_eq!(floor.speaker(), None);
        assert!(SpeakerSettings::default().validate().is_ok());
        for bad in [
            SpeakerSettings {
                threshold_dbov: 3,
                ..Default::default()
            },
            SpeakerSettings {
                min_speech_ms: 0,
                ..Default::default()
            },
            SpeakerSettings {
                hold_ms: 100_000,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
