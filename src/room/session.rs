//! A room's sessions: what the room knows of each (its peer, its connection state, what it
//! sends and receives, its mute flags), how it leaves, and what its peer tells the room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::actor::{PLI_INTERVAL, RoomActor};
use super::api::{JoinAnswer, JoinError, SessionError, SessionInfo, TrickleError};
use super::events::{LeaveReason, RoomEvent};
use super::layout::Tile;
use super::tiers::TierPolicy;
use super::voice::{Voice, VoiceMachine};
use crate::admission::SessionSlots;
use crate::auth::{Caller, SessionRight};
use crate::media::{RtpInput, Tap};
use crate::peer::{Peer, PeerEvent, PeerEventKind, SendPlan};
use crate::sdp::TrickleFragment;
use crate::types::{
    ConnectionState, MediaKind, OutputKey, SessionId, SessionKind, SessionRef, SessionSecret, Tier,
};

/// How long a session may take from its answer to `Connected` (ICE and DTLS).
pub(super) const CONNECT_DEADLINE: Duration = Duration::from_secs(15);

/// A joined session.
pub(super) struct Session {
    pub(super) id: SessionId,
    /// The secret of its URL: whoever holds it is its owner.
    pub(super) secret: SessionSecret,
    /// The identity of the token it joined with (`None` on an open server).
    pub(super) identity: Option<String>,
    pub(super) kind: SessionKind,
    pub(super) name: Option<String>,
    pub(super) state: ConnectionState,
    /// When it must have connected by (`None` once it has): an offer that never connects
    /// holds a port, a peer and its address's pending slot this long at most.
    pub(super) connect_by: Option<Instant>,
    pub(super) peer: Peer,
    pub(super) sends_video: bool,
    /// A screen share (`?source=screen`): the layouts' `screen` selector picks it.
    pub(super) screen: bool,
    /// The session whose screen this is (`?owner=`): it ends with it.
    pub(super) owner: Option<SessionId>,
    /// Pinned by an administrator: the layouts' `pinned` selector picks it.
    pub(super) pinned: bool,
    /// Whether the mix is being sent to it (from its first `Connected` on).
    pub(super) sending: bool,
    /// The video output it receives (codec and tier), if it receives video.
    pub(super) output: Option<OutputKey>,
    /// Moves it between tiers by its bandwidth estimate (pinned if it asked for a quality).
    pub(super) tier_policy: TierPolicy,
    /// Its own mix (every speaker but itself), while it speaks (see `voice`).
    pub(super) mix_minus: Option<Tap>,
    /// Whether it speaks, and which mix it hears.
    pub(super) voice: VoiceMachine,
    /// Whether it receives audio at all.
    pub(super) hears: bool,
    /// The inputs its media goes into (for their drop counts).
    pub(super) inputs: Vec<RtpInput>,
    pub(super) last_pli: Option<Instant>,
    /// The entity tag of its ICE session (RFC 9725 §4.3.1), quoted.
    pub(super) etag: String,
    /// The ICE username fragment of its offer: a trickle fragment with another one is a restart.
    pub(super) remote_ufrag: Option<String>,
    /// What it said it stopped sending.
    pub(super) audio_muted: bool,
    pub(super) video_muted: bool,
    /// What an administrator holds muted (its own unmute does not lift these).
    pub(super) audio_held: bool,
    pub(super) video_held: bool,
    /// Its places under the admission limits, given back when it ends.
    pub(super) slots: SessionSlots,
    /// Counts it in `tessera_sessions` while it lives.
    pub(super) counted: crate::metrics::SessionCount,
}

impl Session {
    /// Whether its audio is left out of every mix, and its tile shows the placeholder.
    pub(super) fn muted(&self) -> (bool, bool) {
        (
            self.audio_muted || self.audio_held,
            self.video_muted || self.video_held,
        )
    }

    /// It as `GET /rooms/{room}` shows it; `tiles` is the room's layout.
    pub(super) fn describe(&self, tiles: &[Tile]) -> SessionInfo {
        SessionInfo {
            id: self.id.to_string(),
            kind: self.kind,
            name: self.name.clone(),
            state: self.state,
            tile: tiles
                .iter()
                .find(|t| t.placement.session == self.id)
                .map(|t| t.placement.rect),
            screen: self.screen,
            pinned: self.pinned,
            audio_muted: self.muted().0,
            video_muted: self.muted().1,
            speaking: self.voice.voice() == Voice::Speaking,
            output: self.output,
            dropped_packets: self.inputs.iter().map(RtpInput::dropped).sum::<u64>()
                + self.peer.routed_dropped_packets(),
            held_packets: self.inputs.iter().map(RtpInput::held).sum(),
            stated_levels: self.inputs.iter().map(RtpInput::stated_levels).sum(),
            uplink_limit_bps: self.peer.uplink_limit(),
            lagged_packets: self.peer.lagged_packets(),
        }
    }

    /// Whether it hears the "everyone" mix (or moves from or to it).
    pub(super) fn hears_everyone(&self) -> bool {
        self.hears && self.voice.hears_shared()
    }
}

/// A session whose offer is being answered.
pub(super) struct Pending {
    pub(super) kind: SessionKind,
    pub(super) name: Option<String>,
    pub(super) secret: SessionSecret,
    pub(super) identity: Option<String>,
    pub(super) sends_video: bool,
    /// A screen share, and whose.
    pub(super) screen: bool,
    pub(super) owner: Option<SessionId>,
    pub(super) plan: SendPlan,
    pub(super) remote_ufrag: Option<String>,
    pub(super) output: Option<OutputKey>,
    /// It asked for a quality: no automatic switching.
    pub(super) pinned: bool,
    /// The best tier its decoder takes.
    pub(super) ceiling: Tier,
    /// Its places under the admission limits.
    pub(super) slots: SessionSlots,
    pub(super) reply: oneshot::Sender<Result<JoinAnswer, JoinError>>,
    /// Peer events that arrived before the negotiation finished, handled once it has.
    pub(super) early: Vec<PeerEventKind>,
}

impl RoomActor {
    pub(super) fn viewers(&self) -> usize {
        self.sessions.iter().filter(|s| !s.kind.sends()).count()
    }

    /// Sending sessions, joined or joining (what the room's size limit counts).
    pub(super) fn sending_sessions(&self) -> usize {
        self.sessions.iter().filter(|s| s.kind.sends()).count()
            + self.pending.values().filter(|p| p.kind.sends()).count()
    }

    pub(super) fn describe(&self, s: &Session) -> SessionInfo {
        s.describe(&self.tiles())
    }

    /// The session a request names, and the caller's right over it.
    pub(super) fn resolve(
        &self,
        target: SessionRef,
        caller: &Caller,
    ) -> Result<(SessionId, SessionRight), SessionError> {
        let (found, by_secret) = match target {
            SessionRef::Secret(secret) => (self.sessions.iter().find(|s| s.secret == secret), true),
            SessionRef::Public(id) => (self.sessions.iter().find(|s| s.id == id), false),
        };
        let s = found.ok_or(SessionError::Unknown)?;
        let right = caller
            .session_right(&self.ctx.name, s.identity.as_deref(), by_secret)
            .map_err(SessionError::Denied)?;
        Ok((s.id, right))
    }

    /// Tells the event streams about a session's new state.
    pub(super) fn publish_updated(&self, idx: usize) {
        let s = &self.sessions[idx];
        if s.kind.sends() {
            self.ctx.publish(RoomEvent::ParticipantUpdated {
                participant: self.describe(s),
            });
        }
    }

    /// Takes a session out: its media first (the mixer removes its branches on its own thread,
    /// in order), then its connection (closed in the background); tells the streams and
    /// reflows. False if there is no such session.
    /// Removes the sessions that did not connect in time.
    pub(super) async fn drop_unconnected(&mut self) {
        let now = Instant::now();
        let late: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|s| s.connect_by.is_some_and(|t| t <= now))
            .map(|s| s.id)
            .collect();
        for session in late {
            tracing::info!(room = %self.ctx.name, %session, "did not connect within {CONNECT_DEADLINE:?}");
            self.remove_session(session, LeaveReason::Failed).await;
        }
    }

    pub(super) async fn remove_session(&mut self, session: SessionId, reason: LeaveReason) -> bool {
        let Some(idx) = self.sessions.iter().position(|s| s.id == session) else {
            return false;
        };
        let s = self.sessions.remove(idx);
        tracing::info!(room = %self.ctx.name, %session, "session {}", reason.describe());
        s.counted.left(reason.name());
        self.mixer.remove_session(session).await;
        self.background.spawn(s.peer.close());
        if s.kind.sends() {
            self.ctx.publish(RoomEvent::ParticipantLeft {
                id: s.id.to_string(),
                name: s.name.clone(),
                reason,
            });
        } else {
            self.ctx.publish(RoomEvent::ViewersChanged {
                viewers: self.viewers(),
            });
        }
        if self.leave_floor(session) {
            self.floor_moved().await;
        }
        // A screen it shared ends with it (`?owner=`).
        let shares: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|o| o.owner == Some(session))
            .map(|o| o.id)
            .collect();
        for share in shares {
            Box::pin(self.remove_session(share, LeaveReason::Left)).await;
        }
        if s.sends_video {
            self.reflow().await;
        }
        self.update_receivers().await;
        self.update_empty();
        true
    }

    /// RFC 9725 §4.3.1: adds trickled candidates; the reply is sent once they are in (in the
    /// background: adding them waits on the connection's driver).
    pub(super) fn trickle(
        &mut self,
        session: SessionId,
        if_match: Option<String>,
        fragment: TrickleFragment,
        reply: oneshot::Sender<Result<(), TrickleError>>,
    ) {
        let checked = (|| {
            let s = self
                .sessions
                .iter()
                .find(|s| s.id == session)
                .ok_or(TrickleError::UnknownSession)?;
            match if_match.as_deref().map(str::trim) {
                Some("*") => return Err(TrickleError::RestartUnsupported),
                Some(tag) if tag != s.etag => {
                    return Err(TrickleError::EtagMismatch(s.etag.clone()));
                }
                _ => {}
            }
            if fragment.ufrag.is_some()
                && s.remote_ufrag.is_some()
                && fragment.ufrag != s.remote_ufrag
            {
                return Err(TrickleError::RestartUnsupported);
            }
            Ok(s.peer.candidate_sink())
        })();
        let sink = match checked {
            Ok(sink) => sink,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let room = self.ctx.name.clone();
        self.background.spawn(async move {
            let taken = sink.add_remote_candidates(&fragment).await;
            tracing::debug!(%room, %session, taken, end = fragment.end_of_candidates, "trickled candidates");
            let _ = reply.send(Ok(()));
        });
    }

    /// Records what a session stopped (or resumed) sending (its owner), or what the server
    /// holds muted (an administrator).
    pub(super) async fn mute(
        &mut self,
        session: SessionId,
        right: SessionRight,
        audio: Option<bool>,
        video: Option<bool>,
    ) {
        let Some(idx) = self.sessions.iter().position(|s| s.id == session) else {
            return;
        };
        let s = &mut self.sessions[idx];
        let before = s.muted();
        let (own_audio, own_video) = match right {
            SessionRight::Owner => (&mut s.audio_muted, &mut s.video_muted),
            SessionRight::Admin => (&mut s.audio_held, &mut s.video_held),
        };
        *own_audio = audio.unwrap_or(*own_audio);
        *own_video = video.unwrap_or(*own_video);
        let after = s.muted();
        if after == before {
            return;
        }
        let (id, name) = (s.id, s.name.clone());
        if after.0 != before.0 {
            self.mixer.set_muted_audio(id, after.0).await;
        }
        if after.1 != before.1 {
            let name = name.unwrap_or_else(|| "Guest".to_owned());
            self.mixer.set_muted_video(id, after.1, name).await;
        }
        if before.1 && !after.1 {
            // Its camera is back: the decoder must start at a keyframe.
            self.ask_sender_for_keyframe(id);
        }
        self.publish_updated(idx);
        // Its label's muted mark.
        self.redecorate().await;
    }

    /// Sends `session`'s video sender a PLI, at most once per [`PLI_INTERVAL`] (in the
    /// background: writing RTCP waits on its connection).
    pub(super) fn ask_sender_for_keyframe(&mut self, session: SessionId) {
        let now = Instant::now();
        let Some(s) = self.sessions.iter_mut().find(|s| s.id == session) else {
            return;
        };
        if s.last_pli.is_some_and(|t| now < t + PLI_INTERVAL) {
            return;
        }
        s.last_pli = Some(now);
        let asker = s.peer.keyframe_asker();
        self.background.spawn(async move {
            asker.ask().await;
        });
    }

    pub(super) async fn on_peer_event(&mut self, ev: PeerEvent) {
        if let Some(p) = self.pending.get_mut(&ev.session) {
            p.early.push(ev.kind);
            return;
        }
        self.on_session_event(ev.session, ev.kind).await;
    }

    /// What a joined session's peer reported.
    pub(super) async fn on_session_event(&mut self, session: SessionId, kind: PeerEventKind) {
        let Some(idx) = self.sessions.iter().position(|s| s.id == session) else {
            return;
        };
        match kind {
            PeerEventKind::State(state) => self.on_state(idx, state).await,
            PeerEventKind::Track(track) => {
                let s = &self.sessions[idx];
                if !s.kind.sends() {
                    return;
                }
                let placement = self
                    .placed
                    .iter()
                    .find(|t| t.placement.session == session)
                    .map(|t| t.placement);
                let codec = track.codec.clone();
                match self
                    .mixer
                    .add_input(session, codec.clone(), placement)
                    .await
                {
                    Ok(input) => {
                        let s = &mut self.sessions[idx];
                        s.inputs.push(input.clone());
                        s.peer.start_receiving(track, Arc::new(input));
                        tracing::info!(room = %self.ctx.name, %session, codec = %codec.mime_type, "receiving");
                    }
                    Err(e) => {
                        tracing::error!(room = %self.ctx.name, %session, "cannot take its {}: {e}", codec.kind);
                        self.remove_session(session, LeaveReason::Dropped).await;
                    }
                }
            }
            PeerEventKind::KeyframeRequested => {
                if let Some(key) = self.sessions[idx].output {
                    self.request_keyframe(key, "receiver asked").await;
                }
            }
            PeerEventKind::BandwidthEstimate(bps) => self.on_estimate(idx, bps).await,
            PeerEventKind::Switched(MediaKind::Audio) => self.on_audio_switched(idx).await,
            PeerEventKind::Switched(MediaKind::Video) => {}
        }
    }

    async fn on_state(&mut self, idx: usize, state: ConnectionState) {
        let s = &mut self.sessions[idx];
        let session = s.id;
        let changed = s.state != state;
        s.state = state;
        if changed
            && matches!(
                state,
                ConnectionState::Disconnected | ConnectionState::Failed
            )
        {
            self.ctx.publish(RoomEvent::ConnectionProblem {
                id: session.to_string(),
                name: self.sessions[idx].name.clone(),
                state,
            });
        }
        if changed && !state.is_terminal() {
            self.publish_updated(idx);
        }
        if state.is_terminal() {
            let reason = if state == ConnectionState::Failed {
                LeaveReason::Failed
            } else {
                LeaveReason::Closed
            };
            self.remove_session(session, reason).await;
            return;
        }
        if state == ConnectionState::Connected {
            // Its address may start another session; the server's count keeps it until it ends.
            self.sessions[idx].slots.connected();
            self.sessions[idx].connect_by = None;
            self.wake().await;
        }
        let s = &mut self.sessions[idx];
        if state != ConnectionState::Connected || !s.kind.receives() {
            return;
        }
        if !s.sending {
            // Sending starts once DTLS is up: earlier packets could not be encrypted.
            s.sending = true;
            if let Some(video) = s.output.and_then(|k| self.mixer.subscribe_video(k)) {
                s.peer.start_sending(MediaKind::Video, video);
            }
            if s.hears {
                // Its own mix if it already speaks (its voice is in the shared one).
                let audio = s
                    .mix_minus
                    .as_ref()
                    .filter(|_| !s.voice.hears_shared())
                    .unwrap_or_else(|| self.mixer.everyone_audio())
                    .subscribe();
                s.peer.start_sending(MediaKind::Audio, audio);
            }
        }
        self.update_receivers().await;
        // A newcomer must decode a picture at once: it needs a keyframe.
        if let Some(key) = self.sessions[idx].output {
            self.request_keyframe(key, "newcomer").await;
        }
    }
}
