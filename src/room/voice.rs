//! Where a participant's voice goes and which mix it hears: a pure state machine per session
//! (issue 13: an audio path that costs what is said, not who is present).
//!
//! A silent participant contributes nothing, so the room's shared "everyone" mix is exactly
//! what it should hear; its decoded audio is linked into no mix at all. Only a participant who
//! is speaking needs a mix of its own (everyone speaking but itself), and only then is its
//! voice linked into the mixes (the shared one and the other speakers' own ones).
//!
//! The order of the moves is what keeps anyone from hearing themselves, even for a frame:
//! - starting to speak: its own mix is built, its outgoing audio moves there (at the first
//!   packet of the new mix, with continuous sequence numbers and timestamps: no gap), and only
//!   once the writer says it moved is its voice added to the shared mix;
//! - falling silent: its voice leaves the shared mix first, then its audio moves back to the
//!   shared mix, and its own mix is closed once the writer moved.
//!
//! A session that does not receive audio (a WHIP sender) has no mix to move: its voice joins
//! and leaves the mixes at once. So does one whose writer has not started yet: it will start
//! on the right mix.

/// Where a session's voice and hearing stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Voice {
    /// Not speaking: hears the shared mix, its voice is in no mix.
    #[default]
    Quiet,
    /// Started speaking: its own mix runs and its writer is moving to it; its voice is not in
    /// the shared mix yet.
    Moving,
    /// Speaking: hears its own mix, its voice is in the shared mix and the other speakers'.
    Speaking,
    /// Fell silent: its voice left the mixes, its writer is moving back to the shared mix.
    Returning,
}

/// What the room must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceAction {
    /// Build the session's own mix (every speaker but itself).
    OpenOwnMix,
    /// Move its outgoing audio to its own mix (reported back by [`VoiceMachine::switched`]).
    HearOwnMix,
    /// Link its voice into the shared mix and the other speakers' mixes.
    JoinMixes,
    /// Unlink its voice from every mix.
    LeaveMixes,
    /// Move its outgoing audio back to the shared mix (reported back as well).
    HearSharedMix,
    /// Close its own mix.
    CloseOwnMix,
}

/// One session's voice: what the speaking detector wants and where the moves stand.
#[derive(Debug, Clone, Default)]
pub struct VoiceMachine {
    voice: Voice,
    /// What the detector said last.
    speaking: bool,
}

impl VoiceMachine {
    /// Where it stands.
    pub fn voice(&self) -> Voice {
        self.voice
    }

    /// Whether it hears the shared mix now (its writer is on it, or moving from or to it).
    pub fn hears_shared(&self) -> bool {
        self.voice != Voice::Speaking
    }

    /// The detector says it started (`true`) or stopped speaking. `hears`: it receives audio;
    /// `writer`: its outgoing audio is being sent (a move can be reported back).
    pub fn detected(&mut self, speaking: bool, hears: bool, writer: bool) -> Vec<VoiceAction> {
        self.speaking = speaking;
        self.settle(hears, writer)
    }

    /// The writer finished the move it was asked for.
    pub fn switched(&mut self, hears: bool, writer: bool) -> Vec<VoiceAction> {
        match self.voice {
            Voice::Moving if self.speaking => {
                self.voice = Voice::Speaking;
                vec![VoiceAction::JoinMixes]
            }
            // Stopped before it got there: its voice was never in a mix, so it can go back.
            Voice::Moving => {
                self.voice = Voice::Returning;
                vec![VoiceAction::HearSharedMix]
            }
            Voice::Returning => {
                self.voice = Voice::Quiet;
                let mut actions = vec![VoiceAction::CloseOwnMix];
                actions.extend(self.settle(hears, writer));
                actions
            }
            // A video move, or a stale report: nothing of the voice changes.
            Voice::Quiet | Voice::Speaking => Vec::new(),
        }
    }

    fn settle(&mut self, hears: bool, writer: bool) -> Vec<VoiceAction> {
        use VoiceAction::*;
        match (self.voice, self.speaking) {
            (Voice::Quiet, true) if !hears => {
                self.voice = Voice::Speaking;
                vec![JoinMixes]
            }
            (Voice::Quiet, true) if !writer => {
                self.voice = Voice::Speaking;
                vec![OpenOwnMix, HearOwnMix, JoinMixes]
            }
            (Voice::Quiet, true) => {
                self.voice = Voice::Moving;
                vec![OpenOwnMix, HearOwnMix]
            }
            (Voice::Speaking, false) if !hears => {
                self.voice = Voice::Quiet;
                vec![LeaveMixes]
            }
            (Voice::Speaking, false) if !writer => {
                self.voice = Voice::Quiet;
                vec![LeaveMixes, HearSharedMix, CloseOwnMix]
            }
            (Voice::Speaking, false) => {
                self.voice = Voice::Returning;
                vec![LeaveMixes, HearSharedMix]
            }
            // Moving and Returning wait for the writer; the rest is where it should be.
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::VoiceAction::*;
    use super::*;

    #[test]
    fn a_listener_moves_to_its_own_mix_before_its_voice_joins_the_shared_one() {
        let mut m = VoiceMachine::default();
        assert!(m.hears_shared() && m.voice() == Voice::Quiet);
        assert_eq!(m.detected(true, true, true), [OpenOwnMix, HearOwnMix]);
        assert_eq!(m.voice(), Voice::Moving);
        // Its voice is in no mix until the writer has moved: it cannot hear itself.
        assert!(m.hears_shared());
        assert_eq!(m.switched(true, true), [JoinMixes]);
        assert_eq!(m.voice(), Voice::Speaking);
        assert!(!m.hears_shared());
        // Falling silent: the voice leaves first, then the writer moves, then the mix closes.
        assert_eq!(m.detected(false, true, true), [LeaveMixes, HearSharedMix]);
        assert_eq!(m.voice(), Voice::Returning);
        assert!(m.hears_shared());
        assert_eq!(m.switched(true, true), [CloseOwnMix]);
        assert_eq!(m.voice(), Voice::Quiet);
    }

    #[test]
    fn changes_during_a_move_wait_for_it() {
        let mut m = VoiceMachine::default();
        m.detected(true, true, true);
        // Stopped while moving: no voice joins; the writer goes back once it got there.
        assert_eq!(m.detected(false, true, true), []);
        assert_eq!(m.switched(true, true), [HearSharedMix]);
        assert_eq!(m.switched(true, true), [CloseOwnMix]);
        assert_eq!(m.voice(), Voice::Quiet);
        // Started again while returning: the mix closes, and a new move starts at once.
        m.detected(true, true, true);
        m.switched(true, true);
        m.detected(false, true, true);
        assert_eq!(m.detected(true, true, true), []);
        assert_eq!(
            m.switched(true, true),
            [CloseOwnMix, OpenOwnMix, HearOwnMix]
        );
        assert_eq!(m.voice(), Voice::Moving);
        // The same word twice changes nothing.
        assert_eq!(m.detected(true, true, true), []);
    }

    #[test]
    fn senders_and_sessions_without_a_writer_move_at_once() {
        let mut sender = VoiceMachine::default();
        assert_eq!(sender.detected(true, false, false), [JoinMixes]);
        assert_eq!(sender.detected(false, false, false), [LeaveMixes]);
        let mut early = VoiceMachine::default();
        assert_eq!(
            early.detected(true, true, false),
            [OpenOwnMix, HearOwnMix, JoinMixes]
        );
        assert_eq!(
            early.detected(false, true, false),
            [LeaveMixes, HearSharedMix, CloseOwnMix]
        );
        // A report that belongs to no move (a video tier switch) changes nothing.
        assert_eq!(early.switched(true, true), []);
    }
}
