//! The one task that owns a room: its sessions (each with its [`Peer`]), the handle to its
//! mixer, its keyframe gates, its recordings and its lifetime. It reacts to its inputs in one
//! `select!`: commands from the HTTP edge, events from peers, reports from the pipeline,
//! finished negotiations and background tasks; plus two timers (a deferred keyframe, the end of
//! an empty room). RTP never passes through here, and nothing here blocks: GStreamer work runs
//! on the mixer's thread (the actor sends it commands and awaits replies with deadlines), and
//! waits on a peer's connection (PLIs, trickled candidates, closing) run as background tasks.
//!
//! Its parts: `join.rs` (offer to session), `session.rs` (sessions and their state),
//! `adaptation.rs` (tiers and keyframes), `tiling.rs` (the layout), `recording.rs`.
//!
//! Its channels: `commands` (from [`super::RoomHandle`]) and `peer_events` (from its peers)
//! are control and bounded: their senders wait for room, nothing is dropped. The pipeline's
//! reports are state the actor re-reads ([`MixerEvents`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::api::{Canvas, RecordingError, RoomInfo, SessionError, TrickleError};
use super::context::RoomContext;
use super::events::{LeaveReason, RoomEndReason, RoomEvent};
use super::floor::Floor;
use super::handle::RoomCommand;
use super::join::Negotiated;
use super::keyframe::KeyframeGate;
use super::layout::{LayoutSpec, Tile};
use super::recording::ActiveRecording;
use super::session::{Pending, Session};
use crate::auth::{Denied, SessionRight};
use crate::media::{MixerEvent, MixerEvents, MixerHandle};
use crate::metrics::{self, Live};
use crate::peer::{self, PeerEvent};
use crate::types::{Decorations, OutputKey, SessionId};

/// PLIs to one sender at most this often: decoders ask on every lost frame.
pub(super) const PLI_INTERVAL: Duration = Duration::from_millis(300);

pub(super) struct RoomActor {
    pub(super) ctx: RoomContext,
    pub(super) mixer: MixerHandle,
    mixer_events: MixerEvents,
    commands: mpsc::Receiver<RoomCommand>,
    /// Peers hold the sending ends (one clone per peer); this actor is the only reader.
    pub(super) peer_events_tx: mpsc::Sender<PeerEvent>,
    peer_events: mpsc::Receiver<PeerEvent>,
    /// Sessions in join order (the tile order).
    pub(super) sessions: Vec<Session>,
    pub(super) pending: HashMap<SessionId, Pending>,
    pub(super) negotiations: JoinSet<Negotiated>,
    /// The room's tasks that wait on something outside it: peers closing, recordings
    /// finishing, PLIs and trickled candidates being written. Aborted and awaited at the end.
    pub(super) background: JoinSet<()>,
    /// One gate per video output: a keyframe forced for one output costs the others nothing.
    pub(super) keyframes: HashMap<OutputKey, KeyframeGate>,
    pub(super) recordings: Vec<ActiveRecording>,
    /// The room's layout (`PUT /rooms/{room}/layout`, else `--default-layout`).
    pub(super) layout: LayoutSpec,
    /// Who has the floor.
    pub(super) floor: Floor,
    /// The tiles last given to the mixer.
    pub(super) placed: Vec<Tile>,
    /// The decorations last given to the mixer.
    pub(super) decorated: Decorations,
    /// Each video output's measured bitrate: (bytes, when) of the last sample, and the rate.
    pub(super) output_rates: HashMap<OutputKey, (u64, Instant, f64)>,
    empty_since: Option<Instant>,
    /// Set when the room must end now (an administrator ended it, the server stops, its
    /// pipeline failed): why its sessions leave.
    ending: Option<LeaveReason>,
    /// Why the room ends (set with `ending`; an empty room ends as [`RoomEndReason::Empty`]).
    end_reason: RoomEndReason,
    /// Whether the server drains: an empty room ends at once instead of lingering.
    draining: bool,
    /// Whether the pipeline plays: it sleeps until a session connects and again whenever the
    /// room is empty and records nothing (see [`RoomActor::wake`]).
    awake: bool,
    /// Whether a session ever connected: only then does an empty room linger for its return.
    used: bool,
    _live: Live,
}

impl RoomActor {
    pub(super) fn new(
        ctx: RoomContext,
        mixer: MixerHandle,
        mixer_events: MixerEvents,
        commands: mpsc::Receiver<RoomCommand>,
    ) -> RoomActor {
        let (peer_events_tx, peer_events) = mpsc::channel(peer::EVENT_QUEUE);
        let layout = ctx.config.default_layout.clone();
        RoomActor {
            floor: Floor::new(layout.speaker),
            layout,
            placed: Vec::new(),
            decorated: Decorations::default(),
            ctx,
            mixer,
            mixer_events,
            commands,
            peer_events_tx,
            peer_events,
            sessions: Vec::new(),
            pending: HashMap::new(),
            negotiations: JoinSet::new(),
            background: JoinSet::new(),
            keyframes: HashMap::new(),
            recordings: Vec::new(),
            output_rates: HashMap::new(),
            empty_since: Some(Instant::now()),
            ending: None,
            end_reason: RoomEndReason::Empty,
            draining: false,
            awake: false,
            used: false,
            _live: Live::new(&metrics::ROOMS),
        }
    }

    /// Starts the pipeline when a session connects: media may flow, someone may receive it.
    /// Until then a room (of offers that never connect, say) has no streaming thread and no
    /// clock; a recording started before records from that moment.
    pub(super) async fn wake(&mut self) {
        self.used = true;
        if !self.awake {
            self.awake = true;
            self.mixer.wake().await;
        }
    }

    /// Stops the pipeline when the room is empty and records nothing: a room lingering for
    /// its people to come back costs no CPU.
    async fn sleep_if_idle(&mut self) {
        if self.awake
            && self.sessions.is_empty()
            && self.pending.is_empty()
            && self.recordings.is_empty()
        {
            self.awake = false;
            self.mixer.sleep().await;
        }
    }

    pub(super) async fn run(mut self) {
        tracing::info!(room = %self.ctx.name, "room started");
        self.ctx.notify(crate::webhooks::WebhookBody::RoomStarted);
        if let Some(format) = self.ctx.config.auto_record
            && let Err(e) = self.start_recording(format).await
        {
            tracing::error!(room = %self.ctx.name, "automatic recording did not start: {e}");
        }
        let shutdown = self.ctx.shutdown.clone();
        let draining = self.ctx.draining.clone();
        let linger = self.ctx.config.room_linger;
        loop {
            let keyframe_due = self.keyframes.values().filter_map(KeyframeGate::due).min();
            let connect_due = self.sessions.iter().filter_map(|s| s.connect_by).min();
            // A room nobody ever connected to (offers that went nowhere) has nobody to wait
            // for: it ends as soon as it is empty; and so does every room while the server
            // drains (nobody will come back to it here).
            let linger = if self.used && !self.draining {
                linger
            } else {
                Duration::ZERO
            };
            let end_at = self.empty_since.map(|t| t + linger);
            tokio::select! {
                Some(cmd) = self.commands.recv() => {
                    self.on_command(cmd).await;
                    if self.ending.is_some() {
                        break;
                    }
                }
                Some(ev) = self.peer_events.recv() => self.on_peer_event(ev).await,
                events = self.mixer_events.next() => {
                    if !self.on_mixer_events(events).await {
                        self.ending = Some(LeaveReason::Dropped);
                        self.end_reason = RoomEndReason::Failed;
                        break;
                    }
                }
                Some(done) = self.negotiations.join_next() => match done {
                    Ok((session, result)) => self.finish_join(session, result).await,
                    Err(e) => tracing::error!(room = %self.ctx.name, "negotiation task failed: {e}"),
                },
                Some(_) = self.background.join_next() => {}
                _ = sleep_until_opt(keyframe_due) => self.force_due_keyframes().await,
                _ = sleep_until_opt(connect_due) => self.drop_unconnected().await,
                _ = sleep_until_opt(end_at) => {
                    if self.try_end() {
                        break;
                    }
                }
                _ = draining.cancelled(), if !self.draining => {
                    tracing::info!(room = %self.ctx.name, "the server drains: the room ends once empty");
                    self.draining = true;
                    self.update_empty();
                }
                _ = shutdown.cancelled() => {
                    self.ending = Some(LeaveReason::Shutdown);
                    self.end_reason = RoomEndReason::Shutdown;
                    break;
                }
            }
            self.sleep_if_idle().await;
        }
        self.end().await;
    }

    /// Ends the room if it is still empty and nothing is waiting in the mailbox.
    fn try_end(&mut self) -> bool {
        if !self.sessions.is_empty() || !self.pending.is_empty() || !self.commands.is_empty() {
            self.empty_since = None;
            self.update_empty();
            return false;
        }
        true
    }

    async fn end(mut self) {
        // From here on the name belongs to whoever joins next; commands already queued are
        // dropped unanswered, which their senders take as "room gone" and retry on a new room.
        self.ctx.registration.forget(&self.ctx.name);
        self.commands.close();
        let reason = self.ending.unwrap_or(LeaveReason::Closed);
        for s in std::mem::take(&mut self.sessions) {
            s.counted.left(reason.name());
            self.mixer.remove_session(s.id).await;
            if s.kind.sends() {
                self.ctx.publish(RoomEvent::ParticipantLeft {
                    id: s.id.to_string(),
                    name: s.name.clone(),
                    reason,
                });
            }
            self.background.spawn(s.peer.close());
        }
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(super::JoinError::ShuttingDown));
        }
        // Recordings end with their room, cleanly: their files are complete.
        for r in std::mem::take(&mut self.recordings) {
            self.finish_recording(r, None);
        }
        self.negotiations.abort_all();
        while let Some(done) = self.negotiations.join_next().await {
            if let Ok((_, Ok((peer, _)))) = done {
                self.background.spawn(peer.close());
            }
        }
        while self.background.join_next().await.is_some() {}
        self.ctx.publish(RoomEvent::RoomEnded {
            reason: self.end_reason,
        });
        // The pipeline goes to Null on the mixer's thread; wait for it, so a room that ended
        // leaves no pipeline behind.
        self.mixer.shutdown().await;
        tracing::info!(room = %self.ctx.name, reason = ?self.end_reason, "room ended");
    }

    pub(super) fn update_empty(&mut self) {
        if self.sessions.is_empty() && self.pending.is_empty() {
            self.empty_since.get_or_insert_with(Instant::now);
        } else {
            self.empty_since = None;
        }
    }

    async fn on_command(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Join { request, reply } => self.begin_join(request, reply).await,
            RoomCommand::Leave {
                target,
                caller,
                reply,
            } => {
                let result = match self.resolve(target, &caller) {
                    Ok((session, right)) => {
                        let reason = match right {
                            SessionRight::Owner => LeaveReason::Left,
                            SessionRight::Admin => LeaveReason::Kicked,
                        };
                        self.remove_session(session, reason).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            RoomCommand::End { reply } => {
                tracing::info!(room = %self.ctx.name, "ended by an administrator");
                self.ending = Some(LeaveReason::RoomEnded);
                self.end_reason = RoomEndReason::Ended;
                let _ = reply.send(());
            }
            RoomCommand::Info { reply } => {
                let _ = reply.send(self.info().await);
            }
            RoomCommand::Trickle {
                target,
                caller,
                if_match,
                fragment,
                reply,
            } => match self.resolve(target, &caller) {
                Ok((session, SessionRight::Owner)) => {
                    self.trickle(session, if_match, fragment, reply)
                }
                Ok((_, SessionRight::Admin)) => {
                    let denied = Denied("only the session's own client adds its candidates".into());
                    let _ = reply.send(Err(TrickleError::Denied(denied)));
                }
                Err(SessionError::Unknown) => {
                    let _ = reply.send(Err(TrickleError::UnknownSession));
                }
                Err(SessionError::Denied(d)) => {
                    let _ = reply.send(Err(TrickleError::Denied(d)));
                }
            },
            RoomCommand::Mute {
                target,
                caller,
                audio,
                video,
                reply,
            } => {
                let result = match self.resolve(target, &caller) {
                    Ok((session, right)) => {
                        self.mute(session, right, audio, video).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            RoomCommand::Layout { reply } => {
                let _ = reply.send(self.layout_view(&self.layout));
            }
            RoomCommand::SetLayout { spec, apply, reply } => {
                if apply {
                    self.set_layout(spec).await;
                    let _ = reply.send(self.layout_view(&self.layout));
                } else {
                    let _ = reply.send(self.layout_view(&spec));
                }
            }
            RoomCommand::Pin {
                target,
                caller,
                pinned,
                reply,
            } => {
                let result = match self.resolve(target, &caller) {
                    Ok((session, SessionRight::Admin)) => {
                        self.pin(session, pinned).await;
                        Ok(())
                    }
                    Ok((_, SessionRight::Owner)) => Err(SessionError::Denied(Denied(
                        "pinning is for the room's administrators (by the session's public id)"
                            .into(),
                    ))),
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            RoomCommand::StartRecording { format, reply } => {
                let _ = reply.send(self.start_recording(format).await);
            }
            RoomCommand::StopRecording { id, reply } => {
                match self.recordings.iter().position(|r| r.id == id) {
                    Some(idx) => {
                        let r = self.recordings.remove(idx);
                        self.update_receivers().await;
                        self.finish_recording(r, Some(reply));
                    }
                    None => {
                        let found = self.ctx.recordings.get(&self.ctx.name, id);
                        let _ = reply.send(found.ok_or_else(|| {
                            RecordingError::NotFound(format!("no recording {id:x}"))
                        }));
                    }
                }
            }
        }
    }

    /// Handles what the pipeline reported; false when the room must end.
    async fn on_mixer_events(&mut self, events: Vec<MixerEvent>) -> bool {
        for ev in events {
            match ev {
                MixerEvent::Error(e) => {
                    tracing::error!(room = %self.ctx.name, "ending the room after a pipeline error: {e}");
                    return false;
                }
                MixerEvent::InputFailed { session, error } => {
                    tracing::warn!(room = %self.ctx.name, %session, "dropping a session whose media failed: {error}");
                    self.remove_session(session, LeaveReason::Dropped).await;
                }
                MixerEvent::LatencyChanged => self.mixer.recalculate_latency().await,
                MixerEvent::RecordingFailed { id, error } => self.recording_failed(id, error).await,
                MixerEvent::KeyframeWanted(session) => self.ask_sender_for_keyframe(session),
                MixerEvent::Speaking { session, speaking } => {
                    self.on_speaking(session, speaking).await
                }
                MixerEvent::Levels { session, levels } => self.on_levels(session, &levels).await,
            }
        }
        true
    }

    /// The room's state, as `GET /rooms/{room}` shows it.
    async fn info(&self) -> RoomInfo {
        let mix = &self.ctx.config.mix;
        let tiles = self.tiles();
        let describe = |s: &Session| s.describe(&tiles);
        let mixer = self.mixer.stats().await.unwrap_or_else(|e| {
            tracing::warn!(room = %self.ctx.name, "no mixer stats: {e}");
            Default::default()
        });
        RoomInfo {
            name: self.ctx.name.to_string(),
            canvas: Canvas {
                width: mix.width,
                height: mix.height,
                fps: mix.fps,
            },
            participants: self
                .sessions
                .iter()
                .filter(|s| s.kind.sends())
                .map(describe)
                .collect(),
            viewers: self
                .sessions
                .iter()
                .filter(|s| !s.kind.sends())
                .map(describe)
                .collect(),
            active_speaker: self.floor.speaker().map(|id| id.to_string()),
            mixer,
        }
    }
}

pub(super) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
