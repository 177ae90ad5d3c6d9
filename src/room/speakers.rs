//! Carrying out the voice moves (`voice.rs` decides them): when an input starts or stops
//! speaking, and when a writer reports that it moved, the room builds or closes the session's
//! own mix, links or unlinks its voice, and moves its writer, in the order the machine gives.

use super::actor::RoomActor;
use super::voice::VoiceAction;
use crate::types::{MediaKind, SessionId};

impl RoomActor {
    /// The pipeline says `session` started or stopped speaking.
    pub(super) async fn on_speaking(&mut self, session: SessionId, speaking: bool) {
        let Some(idx) = self.sessions.iter().position(|s| s.id == session) else {
            return;
        };
        let s = &mut self.sessions[idx];
        let actions = s.voice.detected(speaking, s.hears, s.sending);
        tracing::debug!(room = %self.ctx.name, %session, speaking, ?actions, "voice");
        self.carry_out(idx, actions).await;
    }

    /// `idx`'s audio writer moved to the mix it was handed.
    pub(super) async fn on_audio_switched(&mut self, idx: usize) {
        let s = &mut self.sessions[idx];
        let actions = s.voice.switched(s.hears, s.sending);
        self.carry_out(idx, actions).await;
    }

    async fn carry_out(&mut self, idx: usize, actions: Vec<VoiceAction>) {
        if actions.is_empty() {
            return;
        }
        let session = self.sessions[idx].id;
        for action in actions {
            match action {
                VoiceAction::OpenOwnMix => match self.mixer.add_mix_minus(session).await {
                    Ok(tap) => self.sessions[idx].mix_minus = Some(tap),
                    Err(e) => {
                        // Its voice then stays out of the mixes (the machine waits for a move
                        // that is not coming): it is heard by nobody, and hears everyone.
                        tracing::error!(room = %self.ctx.name, %session, "no mix of its own: {e}");
                        return;
                    }
                },
                VoiceAction::HearOwnMix => {
                    let s = &self.sessions[idx];
                    if s.sending
                        && let Some(tap) = &s.mix_minus
                    {
                        s.peer
                            .switch_output(MediaKind::Audio, tap.subscribe())
                            .await;
                    }
                }
                VoiceAction::JoinMixes | VoiceAction::LeaveMixes => {
                    let join = action == VoiceAction::JoinMixes;
                    if let Err(e) = self.mixer.set_speaker(session, join).await {
                        tracing::error!(room = %self.ctx.name, %session, "moving its voice: {e}");
                    }
                }
                VoiceAction::HearSharedMix => {
                    // The shared mix's encoder must run before the writer waits for it.
                    self.update_receivers().await;
                    let s = &self.sessions[idx];
                    if s.sending {
                        let shared = self.mixer.everyone_audio().subscribe();
                        s.peer.switch_output(MediaKind::Audio, shared).await;
                    }
                }
                VoiceAction::CloseOwnMix => {
                    self.sessions[idx].mix_minus = None;
                    self.mixer.remove_mix_minus(session).await;
                }
            }
        }
        // Whether anyone still hears the shared mix may have changed.
        self.update_receivers().await;
    }
}
