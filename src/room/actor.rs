//! The one task that owns a room: its sessions (each with its [`Peer`]), its [`Mixer`], its
//! keyframe gate and its lifetime. It reacts to four inputs in one `select!`: commands from the
//! HTTP edge, events from peers, events from the pipeline, and finished negotiations; plus two
//! timers (a deferred keyframe, the end of an empty room). RTP never passes through here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::events::{LeaveReason, RoomEvent, TileInfo};
use super::keyframe::{Decision, KeyframeGate};
use super::tiers::{TierPolicy, h264_ceiling};
use super::{
    Canvas, JoinAnswer, JoinError, RecordingError, RecordingInfo, RecordingState, RoomCommand,
    RoomInfo, Rooms, SessionInfo, TrickleError, layout,
};
use crate::media::{Mixer, MixerEvent, Recorder};
use crate::metrics::{self, Live};
use crate::peer::{
    self, Direction, OfferSummary, OfferedFormat, Peer, PeerError, PeerEvent, PeerEventKind,
    SendPlan,
};
use crate::sdp::h264::{Level, ProfileLevelId};
use crate::sdp::{TrickleFragment, ice_ufrag};
use crate::types::{
    ConnectionState, MediaKind, OutputKey, RecordingFormat, Rect, RtpSink, SessionId, SessionKind,
    Tier, VideoCodec,
};

/// Bound of the pipeline's event queue (errors, latency, keyframe wishes); when full, the
/// streaming thread drops the event rather than wait.
pub const MIXER_EVENT_QUEUE: usize = 256;
/// PLIs to one sender at most this often: decoders ask on every lost frame.
const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// The codec tessera would send for one offered video format: VP8, or H.264 in packetization
/// mode 1 (the only mode its payloader writes: FU-A and STAP-A).
fn receivable_video(format: &OfferedFormat) -> Option<VideoCodec> {
    match VideoCodec::from_sdp_name(&format.name)? {
        VideoCodec::H264 if format.parameter("packetization-mode") != Some("1") => None,
        codec => Some(codec),
    }
}

/// The video codec a receiver gets: the first of its offer's formats the room can encode (the
/// offer lists them in the offerer's order of preference).
pub(super) fn choose_video_codec(
    offer: &OfferSummary,
    can: impl Fn(VideoCodec) -> bool,
) -> Option<VideoCodec> {
    offer
        .first(MediaKind::Video)?
        .formats
        .iter()
        .filter_map(receivable_video)
        .find(|&c| can(c))
}

/// The H.264 level a receiver declared for the payload type tessera will send it on. webrtc-rs
/// picks that payload type the way this does: the first whose profile bytes and packetization
/// mode match tessera's own (`42e0`, mode 1), else the first H.264 one. `None`: no level was
/// declared (no `profile-level-id`).
pub(super) fn declared_h264_level(offer: &OfferSummary) -> Option<Level> {
    let formats = &offer.first(MediaKind::Video)?.formats;
    let h264 = || {
        formats
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("H264"))
    };
    let exact = h264().find(|f| {
        f.parameter("packetization-mode") == Some("1")
            && f.parameter("profile-level-id")
                .is_some_and(|p| p.len() == 6 && p[..4].eq_ignore_ascii_case("42e0"))
    });
    let format = exact.or_else(|| h264().next())?;
    let profile: ProfileLevelId = format.parameter("profile-level-id")?.parse().ok()?;
    Some(profile.level)
}

/// Decides what kind of session an offer makes on an endpoint (pure).
pub(super) fn classify(whep: bool, offer: &OfferSummary) -> Result<SessionKind, JoinError> {
    let active: Vec<_> = offer
        .media
        .iter()
        .filter(|m| m.direction != Direction::Inactive)
        .collect();
    if active.is_empty() {
        return Err(JoinError::BadOffer(
            "every m-line of the offer is inactive".into(),
        ));
    }
    if whep {
        if active.iter().any(|m| m.direction != Direction::RecvOnly) {
            return Err(JoinError::BadOffer(
                "a WHEP offer must be recvonly; to send media, POST to the room's /whip".into(),
            ));
        }
        return Ok(SessionKind::Viewer);
    }
    if !active.iter().any(|m| m.direction.sends()) {
        return Err(JoinError::BadOffer(
            "a WHIP offer must send media; to only watch, POST to the room's /whep".into(),
        ));
    }
    Ok(if active.iter().any(|m| m.direction.receives()) {
        SessionKind::Participant
    } else {
        SessionKind::Contributor
    })
}

/// Checks every active m-line offers a codec the room can decode (when it sends) and encode
/// (when it receives); names what was offered otherwise (pure but for `can_decode`).
pub(super) fn check_codecs(
    offer: &OfferSummary,
    can_decode: impl Fn(MediaKind, &str) -> bool,
    can_encode_video: impl Fn(VideoCodec) -> bool,
) -> Result<(), JoinError> {
    for m in offer
        .media
        .iter()
        .filter(|m| m.direction != Direction::Inactive)
    {
        let usable = m.formats.iter().any(|f| {
            let mime = format!("{}/{}", m.kind, f.name);
            let receivable = match m.kind {
                MediaKind::Video => receivable_video(f).is_some_and(&can_encode_video),
                MediaKind::Audio => f.name.eq_ignore_ascii_case("opus"),
            };
            (!m.direction.sends() || can_decode(m.kind, &mime))
                && (!m.direction.receives() || receivable)
        });
        if !usable {
            let wanted = match m.kind {
                MediaKind::Video if m.direction.receives() => "VP8 or H.264 (packetization-mode=1)",
                MediaKind::Video => "VP8 or H.264",
                MediaKind::Audio => "Opus",
            };
            let offered = m
                .codecs
                .iter()
                .filter(|c| {
                    !matches!(
                        c.to_ascii_lowercase().as_str(),
                        "rtx" | "red" | "ulpfec" | "flexfec-03"
                    )
                })
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            return Err(JoinError::UnsupportedCodec(format!(
                "no {} codec tessera can use was offered (offered: {}); tessera needs {wanted}",
                m.kind,
                if offered.is_empty() { "none" } else { &offered }
            )));
        }
    }
    Ok(())
}

struct Session {
    id: SessionId,
    kind: SessionKind,
    name: Option<String>,
    state: ConnectionState,
    peer: Peer,
    sends_video: bool,
    /// Whether the mix is being sent to it (from its first `Connected` on).
    sending: bool,
    /// The video output it receives (codec and tier), if it receives video.
    output: Option<OutputKey>,
    /// Moves it between tiers by its bandwidth estimate (pinned if it asked for a quality).
    tier_policy: TierPolicy,
    /// It receives the "everyone" audio mix (it has no mix-minus of its own).
    hears_everyone: bool,
    last_pli: Option<Instant>,
    /// The entity tag of its ICE session, quoted (RFC 9725 §4.3.1).
    etag: String,
    /// The ICE username fragment of its offer: a trickle fragment with another one is a restart.
    remote_ufrag: Option<String>,
    audio_muted: bool,
    video_muted: bool,
}

struct Pending {
    kind: SessionKind,
    name: Option<String>,
    sends_video: bool,
    plan: SendPlan,
    has_mix_minus: bool,
    remote_ufrag: Option<String>,
    output: Option<OutputKey>,
    /// It asked for a quality: no automatic switching.
    pinned: bool,
    /// The best tier its decoder takes.
    ceiling: Tier,
    reply: oneshot::Sender<Result<JoinAnswer, JoinError>>,
    /// Peer events that arrived before the negotiation finished.
    early: Vec<PeerEventKind>,
}

type Negotiated = (SessionId, Result<(Peer, String), PeerError>);

/// A recording in progress: its pipeline and the two tasks that feed it from the room's
/// outputs (aborted when it ends).
struct ActiveRecording {
    id: u64,
    info: RecordingInfo,
    started: Instant,
    recorder: Recorder,
    feeders: JoinSet<()>,
}

/// Copies one output's packets into a recording until the output closes. A lagging recorder
/// loses packets; its depayloader then waits for the next keyframe.
async fn feed(mut output: tokio::sync::broadcast::Receiver<bytes::Bytes>, sink: impl RtpSink) {
    loop {
        match output.recv().await {
            Ok(p) => sink.push(p),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(super) struct RoomActor {
    /// The room's name (shared with every event it publishes).
    name: Arc<str>,
    instance: u64,
    rooms: Rooms,
    mixer: Mixer,
    mixer_events: mpsc::Receiver<MixerEvent>,
    commands: mpsc::Receiver<RoomCommand>,
    /// Peers hold the sending ends (one clone per peer); this actor is the only reader.
    peer_events_tx: mpsc::Sender<PeerEvent>,
    peer_events: mpsc::Receiver<PeerEvent>,
    /// Sessions in join order (the tile order).
    sessions: Vec<Session>,
    pending: HashMap<SessionId, Pending>,
    negotiations: JoinSet<Negotiated>,
    /// Peers being closed; awaited before the room ends.
    closing: JoinSet<()>,
    /// One gate per video output: a keyframe forced for one output costs the others nothing.
    keyframes: HashMap<OutputKey, KeyframeGate>,
    recordings: Vec<ActiveRecording>,
    /// Each video output's measured bitrate: (bytes, when) of the last sample, and the rate.
    output_rates: HashMap<OutputKey, (u64, Instant, f64)>,
    empty_since: Option<Instant>,
    _live: Live,
}

impl RoomActor {
    pub(super) fn new(
        name: String,
        instance: u64,
        rooms: Rooms,
        mixer: Mixer,
        mixer_events: mpsc::Receiver<MixerEvent>,
        commands: mpsc::Receiver<RoomCommand>,
    ) -> RoomActor {
        let (peer_events_tx, peer_events) = mpsc::channel(peer::EVENT_QUEUE);
        RoomActor {
            name: name.into(),
            instance,
            rooms,
            mixer,
            mixer_events,
            commands,
            peer_events_tx,
            peer_events,
            sessions: Vec::new(),
            pending: HashMap::new(),
            negotiations: JoinSet::new(),
            closing: JoinSet::new(),
            keyframes: HashMap::new(),
            recordings: Vec::new(),
            output_rates: HashMap::new(),
            empty_since: Some(Instant::now()),
            _live: Live::new(&metrics::ROOMS),
        }
    }

    pub(super) async fn run(mut self) {
        tracing::info!(room = %self.name, "room started");
        if let Some(format) = self.rooms.inner.config.auto_record
            && let Err(e) = self.start_recording(format)
        {
            tracing::error!(room = %self.name, "automatic recording did not start: {e}");
        }
        let shutdown = self.rooms.inner.shutdown.clone();
        let linger = self.rooms.inner.config.room_linger;
        loop {
            let keyframe_due = self.keyframes.values().filter_map(KeyframeGate::due).min();
            let end_at = self.empty_since.map(|t| t + linger);
            tokio::select! {
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                Some(ev) = self.peer_events.recv() => self.on_peer_event(ev).await,
                Some(ev) = self.mixer_events.recv() => {
                    if !self.on_mixer_event(ev).await {
                        break;
                    }
                }
                Some(done) = self.negotiations.join_next() => match done {
                    Ok((session, result)) => self.finish_join(session, result),
                    Err(e) => tracing::error!(room = %self.name, "negotiation task failed: {e}"),
                },
                Some(_) = self.closing.join_next() => {}
                _ = sleep_until_opt(keyframe_due) => {
                    let now = Instant::now();
                    for (key, gate) in &mut self.keyframes {
                        if gate.poll(now) {
                            self.mixer.force_keyframe(*key);
                        }
                    }
                }
                _ = sleep_until_opt(end_at) => {
                    if self.try_end() {
                        break;
                    }
                }
                _ = shutdown.cancelled() => break,
            }
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
        self.rooms.forget(&self.name, self.instance);
        self.commands.close();
        for s in std::mem::take(&mut self.sessions) {
            self.mixer.remove_session(s.id);
            if s.kind.sends() {
                self.publish(RoomEvent::ParticipantLeft {
                    id: s.id.to_string(),
                    name: s.name.clone(),
                    reason: LeaveReason::Closed,
                });
            }
            self.closing.spawn(s.peer.close());
        }
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(JoinError::ShuttingDown));
        }
        // Recordings end with their room, cleanly: their files are complete.
        for r in std::mem::take(&mut self.recordings) {
            self.finish_recording(r, None);
        }
        self.negotiations.abort_all();
        while let Some(done) = self.negotiations.join_next().await {
            if let Ok((_, Ok((peer, _)))) = done {
                self.closing.spawn(peer.close());
            }
        }
        while self.closing.join_next().await.is_some() {}
        self.publish(RoomEvent::RoomEnded);
        tracing::info!(room = %self.name, "room ended");
        // Dropping self drops the Mixer: the pipeline goes to Null here.
    }

    fn update_empty(&mut self) {
        if self.sessions.is_empty() && self.pending.is_empty() {
            self.empty_since.get_or_insert_with(Instant::now);
        } else {
            self.empty_since = None;
        }
    }

    fn publish(&self, event: RoomEvent) {
        self.rooms.inner.events.publish(&self.name, event);
    }

    fn viewers(&self) -> usize {
        self.sessions.iter().filter(|s| !s.kind.sends()).count()
    }

    fn describe(&self, s: &Session) -> SessionInfo {
        SessionInfo {
            id: s.id.to_string(),
            kind: s.kind,
            name: s.name.clone(),
            state: s.state,
            tile: self
                .tiles()
                .into_iter()
                .find(|(id, _)| *id == s.id)
                .map(|(_, r)| r),
            audio_muted: s.audio_muted,
            video_muted: s.video_muted,
            output: s.output,
        }
    }

    /// Tells the event streams about a session's new state.
    fn publish_updated(&self, idx: usize) {
        let s = &self.sessions[idx];
        if s.kind.sends() {
            self.publish(RoomEvent::ParticipantUpdated {
                participant: self.describe(s),
            });
        }
    }

    async fn on_command(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Join {
                whep,
                offer,
                name,
                quality,
                reply,
            } => self.begin_join(whep, offer, name, quality, reply),
            RoomCommand::Leave { session, reply } => {
                let found = self.remove_session(session, LeaveReason::Left);
                let _ = reply.send(found);
            }
            RoomCommand::Info { reply } => {
                let _ = reply.send(self.info());
            }
            RoomCommand::Trickle {
                session,
                if_match,
                fragment,
                reply,
            } => {
                let result = self.trickle(session, if_match, fragment).await;
                let _ = reply.send(result);
            }
            RoomCommand::Mute {
                session,
                audio,
                video,
                reply,
            } => {
                let _ = reply.send(self.mute(session, audio, video).await);
            }
            RoomCommand::StartRecording { format, reply } => {
                let _ = reply.send(self.start_recording(format));
            }
            RoomCommand::StopRecording { id, reply } => {
                match self.recordings.iter().position(|r| r.id == id) {
                    Some(idx) => {
                        let r = self.recordings.remove(idx);
                        self.update_receivers();
                        self.finish_recording(r, Some(reply));
                    }
                    None => {
                        let _ = reply.send(self.rooms.recording(&self.name, id).ok_or_else(|| {
                            RecordingError::NotFound(format!("no recording {id:x}"))
                        }));
                    }
                }
            }
        }
    }

    fn start_recording(
        &mut self,
        format: RecordingFormat,
    ) -> Result<RecordingInfo, RecordingError> {
        let key = format.output();
        let Some(video) = self.mixer.subscribe_video(key) else {
            return Err(RecordingError::Unsupported(format!(
                "this server cannot encode {} for a {} recording",
                key.codec.name(),
                format.name()
            )));
        };
        let audio = self.mixer.subscribe_audio(None);
        let id = rand::random::<u64>() >> 12;
        let hex = format!("{id:x}");
        let path = self.rooms.recording_path(&self.name, format, &hex);
        let mut info = RecordingInfo {
            id: hex.clone(),
            room: self.name.to_string(),
            format,
            state: RecordingState::Recording,
            error: None,
            started_at: unix_now(),
            duration_secs: 0.0,
            bytes: 0,
            file: format!("/rooms/{}/recordings/{hex}/file", self.name),
        };
        let started = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| format!("creating {}: {e}", path.display()))
            .and_then(|_| {
                self.mixer
                    .start_recording(id, format, &path)
                    .map_err(|e| e.to_string())
            });
        let recorder = match started {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(room = %self.name, "recording {hex} failed to start: {e}");
                info.state = RecordingState::Failed;
                info.error = Some(e.clone());
                self.rooms.put_recording(&info);
                self.publish(RoomEvent::RecordingFailed { recording: info });
                return Err(RecordingError::Storage(e));
            }
        };
        let mut feeders = JoinSet::new();
        feeders.spawn(feed(video, recorder.video.clone()));
        feeders.spawn(feed(audio, recorder.audio.clone()));
        tracing::info!(room = %self.name, recording = %hex, path = %path.display(), "recording started");
        self.recordings.push(ActiveRecording {
            id,
            info: info.clone(),
            started: Instant::now(),
            recorder,
            feeders,
        });
        self.update_receivers();
        // The file must start at a keyframe, now rather than at the next periodic one.
        self.request_keyframe(key);
        self.rooms.put_recording(&info);
        self.publish(RoomEvent::RecordingStarted {
            recording: info.clone(),
        });
        Ok(info)
    }

    /// Drains a recording off the actor's thread (its muxer writes the index), then records
    /// and announces how it ended, and answers `reply` if someone waits.
    fn finish_recording(
        &mut self,
        mut r: ActiveRecording,
        reply: Option<oneshot::Sender<Result<RecordingInfo, RecordingError>>>,
    ) {
        r.feeders.abort_all();
        let rooms = self.rooms.clone();
        let room = self.name.clone();
        let recorder = r.recorder;
        let mut info = r.info;
        info.duration_secs = r.started.elapsed().as_secs_f64();
        self.closing.spawn(async move {
            let result = tokio::task::spawn_blocking(move || recorder.finish())
                .await
                .unwrap_or_else(|e| Err(format!("finishing the recording panicked: {e}")));
            let event = match result {
                Ok(()) => {
                    info.state = RecordingState::Stopped;
                    tracing::info!(%room, recording = %info.id, "recording stopped");
                    RoomEvent::RecordingStopped {
                        recording: info.clone(),
                    }
                }
                Err(e) => {
                    tracing::error!(%room, recording = %info.id, "recording ended badly: {e}");
                    info.state = RecordingState::Failed;
                    info.error = Some(e);
                    RoomEvent::RecordingFailed {
                        recording: info.clone(),
                    }
                }
            };
            rooms.put_recording(&info);
            rooms.inner.events.publish(&room, event);
            if let Some(reply) = reply {
                let _ = reply.send(Ok(rooms.recording(&room, r.id).unwrap_or(info)));
            }
        });
    }

    async fn trickle(
        &mut self,
        session: SessionId,
        if_match: Option<String>,
        fragment: TrickleFragment,
    ) -> Result<(), TrickleError> {
        let s = self
            .sessions
            .iter()
            .find(|s| s.id == session)
            .ok_or(TrickleError::UnknownSession)?;
        match if_match.as_deref().map(str::trim) {
            Some("*") => return Err(TrickleError::RestartUnsupported),
            Some(tag) if tag != s.etag => return Err(TrickleError::EtagMismatch(s.etag.clone())),
            _ => {}
        }
        if fragment.ufrag.is_some() && s.remote_ufrag.is_some() && fragment.ufrag != s.remote_ufrag
        {
            return Err(TrickleError::RestartUnsupported);
        }
        let taken = s.peer.add_remote_candidates(&fragment).await;
        tracing::debug!(room = %self.name, %session, taken, end = fragment.end_of_candidates, "trickled candidates");
        Ok(())
    }

    async fn mute(&mut self, session: SessionId, audio: Option<bool>, video: Option<bool>) -> bool {
        let Some(idx) = self.sessions.iter().position(|s| s.id == session) else {
            return false;
        };
        let s = &mut self.sessions[idx];
        let before = (s.audio_muted, s.video_muted);
        s.audio_muted = audio.unwrap_or(s.audio_muted);
        s.video_muted = video.unwrap_or(s.video_muted);
        let after = (s.audio_muted, s.video_muted);
        if after != before {
            let (id, name) = (s.id, s.name.clone());
            if after.0 != before.0 {
                self.mixer.set_muted_audio(id, after.0);
            }
            if after.1 != before.1 {
                self.mixer
                    .set_muted_video(id, after.1, name.as_deref().unwrap_or("Guest"));
            }
            if before.1 && !after.1 {
                // Its camera is back: the decoder must start at a keyframe.
                self.sessions[idx].peer.request_keyframe().await;
            }
            self.publish_updated(idx);
        }
        true
    }

    fn sending_sessions(&self) -> usize {
        self.sessions.iter().filter(|s| s.kind.sends()).count()
            + self.pending.values().filter(|p| p.kind.sends()).count()
    }

    fn begin_join(
        &mut self,
        whep: bool,
        offer: String,
        name: Option<String>,
        quality: Option<Tier>,
        reply: oneshot::Sender<Result<JoinAnswer, JoinError>>,
    ) {
        let prepared = (|| {
            let summary =
                peer::inspect_offer(&offer).map_err(|e| JoinError::BadOffer(e.to_string()))?;
            let kind = classify(whep, &summary)?;
            let media = &self.rooms.inner.media;
            check_codecs(
                &summary,
                |k, mime| media.can_decode(k, mime),
                |c| media.can_encode(c),
            )?;
            let max = self.rooms.inner.config.max_participants;
            if kind.sends() && self.sending_sessions() >= max {
                return Err(JoinError::RoomFull(max));
            }
            Ok((summary, kind))
        })();
        let (summary, kind) = match prepared {
            Ok(ok) => ok,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let m = |k: MediaKind| summary.first(k).map(|m| m.direction);
        let receives = |k| kind.receives() && m(k).is_some_and(Direction::receives);
        let media = &self.rooms.inner.media;
        let video_codec = choose_video_codec(&summary, |c| media.can_encode(c)).unwrap_or_default();
        // An H.264 decoder declares the most it takes: the receiver's tiers stop there.
        let mix = &self.rooms.inner.config.mix;
        let (ceiling, h264_level) = h264_ceiling(declared_h264_level(&summary), |tier| {
            let (width, height, _) = mix.output(OutputKey {
                codec: VideoCodec::H264,
                tier,
            });
            Level::for_video(width, height, mix.fps).unwrap_or(Level(52))
        });
        let ceiling = if video_codec == VideoCodec::H264 {
            ceiling
        } else {
            Tier::High
        };
        let plan = SendPlan {
            video: receives(MediaKind::Video),
            video_codec,
            audio: receives(MediaKind::Audio),
            h264_level,
        };
        let output = plan.video.then(|| OutputKey {
            codec: plan.video_codec,
            tier: quality.unwrap_or(Tier::High).max(ceiling),
        });
        let sends_audio = m(MediaKind::Audio).is_some_and(Direction::sends);
        let sends_video = m(MediaKind::Video).is_some_and(Direction::sends);
        let session = SessionId::random();
        let has_mix_minus = plan.audio && sends_audio;
        let remote_ufrag = ice_ufrag(&offer);
        if has_mix_minus {
            // Everyone but themselves: a mix of its own, made before the peer subscribes to it.
            if let Err(e) = self
                .mixer
                .add_mix_minus(session, &self.rooms.inner.config.mix)
            {
                let _ = reply.send(Err(JoinError::Internal(e.to_string())));
                return;
            }
        }
        let peers = self.rooms.inner.peers.clone();
        let events = self.peer_events_tx.clone();
        self.negotiations.spawn(async move {
            let result = peers.answer(session, &offer, plan, events).await;
            (session, result)
        });
        self.pending.insert(
            session,
            Pending {
                kind,
                name,
                sends_video,
                plan,
                has_mix_minus,
                remote_ufrag,
                output,
                pinned: quality.is_some(),
                ceiling,
                reply,
                early: Vec::new(),
            },
        );
        self.update_empty();
    }

    fn finish_join(&mut self, session: SessionId, result: Result<(Peer, String), PeerError>) {
        let Some(pending) = self.pending.remove(&session) else {
            if let Ok((peer, _)) = result {
                self.closing.spawn(peer.close());
            }
            return;
        };
        let (peer, sdp) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.mixer.remove_session(session);
                let err = match e {
                    PeerError::BadOffer(m) => {
                        JoinError::BadOffer(format!("malformed SDP offer: {m}"))
                    }
                    other => JoinError::Internal(other.to_string()),
                };
                let _ = pending.reply.send(Err(err));
                self.update_empty();
                return;
            }
        };
        if pending.reply.is_closed() {
            // The client gave up waiting: nobody will ever use this answer.
            self.mixer.remove_session(session);
            self.closing.spawn(peer.close());
            self.update_empty();
            return;
        }
        let etag = format!("\"{:016x}\"", rand::random::<u64>());
        self.sessions.push(Session {
            id: session,
            kind: pending.kind,
            name: pending.name.clone(),
            state: ConnectionState::Connecting,
            peer,
            sends_video: pending.sends_video,
            sending: false,
            output: pending.output,
            tier_policy: TierPolicy::new(
                pending.output.map_or(Tier::High, |o| o.tier),
                pending.pinned,
            )
            .with_ceiling(pending.ceiling),
            hears_everyone: pending.plan.audio && !pending.has_mix_minus,
            last_pli: None,
            etag: etag.clone(),
            remote_ufrag: pending.remote_ufrag,
            audio_muted: false,
            video_muted: false,
        });
        tracing::info!(room = %self.name, %session, kind = ?pending.kind, name = ?pending.name, "session joined");
        // Who joined first, then where the tiles went.
        if pending.kind.sends() {
            let joined = self.sessions.last().expect("pushed above");
            self.publish(RoomEvent::ParticipantJoined {
                participant: self.describe(joined),
            });
        } else {
            self.publish(RoomEvent::ViewersChanged {
                viewers: self.viewers(),
            });
        }
        if pending.sends_video {
            self.reflow();
        }
        let _ = pending.reply.send(Ok(JoinAnswer {
            session,
            sdp,
            kind: pending.kind,
            etag,
        }));
        // Events that came before the answer are replayed through the mailbox they came by.
        for kind in pending.early {
            let _ = self.peer_events_tx.try_send(PeerEvent { session, kind });
        }
        self.update_empty();
    }

    /// The tiles of the video-sending sessions, in join order.
    fn tiles(&self) -> Vec<(SessionId, Rect)> {
        let senders: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|s| s.sends_video)
            .map(|s| s.id)
            .collect();
        let mix = &self.rooms.inner.config.mix;
        senders
            .iter()
            .copied()
            .zip(layout::tiles(senders.len(), mix.width, mix.height))
            .collect()
    }

    /// Moves the tiles to the current layout and tells the event streams.
    fn reflow(&mut self) {
        let tiles = self.tiles();
        self.mixer.set_tiles(&tiles);
        let mix = &self.rooms.inner.config.mix;
        self.publish(RoomEvent::LayoutChanged {
            canvas: Canvas {
                width: mix.width,
                height: mix.height,
                fps: mix.fps,
            },
            tiles: tiles
                .iter()
                .map(|(id, rect)| TileInfo {
                    id: id.to_string(),
                    rect: *rect,
                })
                .collect(),
        });
    }

    fn remove_session(&mut self, session: SessionId, reason: LeaveReason) -> bool {
        let Some(idx) = self.sessions.iter().position(|s| s.id == session) else {
            return false;
        };
        let s = self.sessions.remove(idx);
        tracing::info!(room = %self.name, %session, "session {}", reason.describe());
        // Media first (its appsrc stops taking packets), then the connection.
        let took = Instant::now();
        self.mixer.remove_session(session);
        tracing::debug!(room = %self.name, %session, "its branches came out in {:?}", took.elapsed());
        self.closing.spawn(s.peer.close());
        if s.kind.sends() {
            self.publish(RoomEvent::ParticipantLeft {
                id: s.id.to_string(),
                name: s.name.clone(),
                reason,
            });
        } else {
            self.publish(RoomEvent::ViewersChanged {
                viewers: self.viewers(),
            });
        }
        if s.sends_video {
            self.reflow();
        }
        self.update_receivers();
        self.update_empty();
        true
    }

    /// Idles the encoders nobody receives (see [`Mixer::set_receivers`]).
    fn update_receivers(&self) {
        let live = || self.sessions.iter().filter(|s| s.sending);
        let mut outputs: std::collections::BTreeSet<OutputKey> =
            live().filter_map(|s| s.output).collect();
        outputs.extend(self.recordings.iter().map(|r| r.info.format.output()));
        self.mixer.set_receivers(
            &outputs,
            live().any(|s| s.hears_everyone) || !self.recordings.is_empty(),
        );
    }

    async fn on_peer_event(&mut self, ev: PeerEvent) {
        if let Some(p) = self.pending.get_mut(&ev.session) {
            p.early.push(ev.kind);
            return;
        }
        let Some(idx) = self.sessions.iter().position(|s| s.id == ev.session) else {
            return;
        };
        match ev.kind {
            PeerEventKind::State(state) => {
                let s = &mut self.sessions[idx];
                let changed = s.state != state;
                s.state = state;
                if changed
                    && matches!(
                        state,
                        ConnectionState::Disconnected | ConnectionState::Failed
                    )
                {
                    self.publish(RoomEvent::ConnectionProblem {
                        id: ev.session.to_string(),
                        name: self.sessions[idx].name.clone(),
                        state,
                    });
                }
                if changed && !state.is_terminal() {
                    self.publish_updated(idx);
                }
                let s = &mut self.sessions[idx];
                if state.is_terminal() {
                    let reason = if state == ConnectionState::Failed {
                        LeaveReason::Failed
                    } else {
                        LeaveReason::Closed
                    };
                    self.remove_session(ev.session, reason);
                } else if state == ConnectionState::Connected && s.kind.receives() {
                    if !s.sending {
                        // Sending starts once DTLS is up: earlier packets could not be encrypted.
                        s.sending = true;
                        if let Some(video) = s.output.and_then(|k| self.mixer.subscribe_video(k)) {
                            s.peer.start_sending(MediaKind::Video, video);
                        }
                        s.peer.start_sending(
                            MediaKind::Audio,
                            self.mixer.subscribe_audio(Some(ev.session)),
                        );
                    }
                    self.update_receivers();
                    // A newcomer must decode a picture at once: it needs a keyframe.
                    if let Some(key) = self.sessions[idx].output {
                        self.request_keyframe(key);
                    }
                }
            }
            PeerEventKind::Track(track) => {
                let s = &self.sessions[idx];
                if !s.kind.sends() {
                    return;
                }
                let tile = self
                    .tiles()
                    .into_iter()
                    .find(|(id, _)| *id == ev.session)
                    .map(|(_, r)| r);
                let codec = track.codec.clone();
                match self.mixer.add_input(ev.session, &codec, tile) {
                    Ok(input) => {
                        let s = &mut self.sessions[idx];
                        s.peer.start_receiving(track, Arc::new(input));
                        tracing::info!(room = %self.name, session = %ev.session, codec = %codec.mime_type, "receiving");
                    }
                    Err(e) => {
                        tracing::error!(room = %self.name, session = %ev.session, "cannot take its {}: {e}", codec.kind);
                        self.remove_session(ev.session, LeaveReason::Dropped);
                    }
                }
            }
            PeerEventKind::KeyframeRequested => {
                if let Some(key) = self.sessions[idx].output {
                    self.request_keyframe(key);
                }
            }
            PeerEventKind::BandwidthEstimate(bps) => self.on_estimate(idx, bps),
        }
    }

    /// Moves a receiver to another tier when its estimate says so: the new output starts (if it
    /// was idle), gets a keyframe, and the receiver's writer moves over at that keyframe.
    fn on_estimate(&mut self, idx: usize, bps: u64) {
        let Some(current) = self.sessions[idx].output else {
            return;
        };
        let actual = self.output_rate(current);
        let mix = &self.rooms.inner.config.mix;
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
        tracing::info!(room = %self.name, session = %s.id, estimate_bps = bps, actual_bps = actual.unwrap_or(0.0) as u64, "moving from {current} to {next}");
        s.output = Some(next);
        s.peer.switch_video(rx);
        self.update_receivers();
        self.request_keyframe(next);
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

    fn request_keyframe(&mut self, key: OutputKey) {
        if self
            .keyframes
            .entry(key)
            .or_default()
            .request(Instant::now())
            == Decision::ForceNow
        {
            self.mixer.force_keyframe(key);
        }
    }

    /// Handles a pipeline event; false when the room must end.
    async fn on_mixer_event(&mut self, ev: MixerEvent) -> bool {
        match ev {
            MixerEvent::Error(e) => {
                tracing::error!(room = %self.name, "ending the room after a pipeline error: {e}");
                return false;
            }
            MixerEvent::LatencyChanged => self.mixer.recalculate_latency(),
            MixerEvent::RecordingFailed { id, error } => {
                // Only the recording ends; the room and everyone in it go on.
                if let Some(idx) = self.recordings.iter().position(|r| r.id == id) {
                    let mut r = self.recordings.remove(idx);
                    r.feeders.abort_all();
                    let mut info = r.info.clone();
                    info.state = RecordingState::Failed;
                    info.error = Some(error);
                    info.duration_secs = r.started.elapsed().as_secs_f64();
                    self.rooms.put_recording(&info);
                    self.publish(RoomEvent::RecordingFailed { recording: info });
                    self.update_receivers();
                    // Dropping the recorder sets its pipeline to Null.
                }
            }
            MixerEvent::KeyframeWanted(session) => {
                let now = Instant::now();
                if let Some(s) = self.sessions.iter_mut().find(|s| s.id == session)
                    && s.last_pli.is_none_or(|t| now >= t + PLI_INTERVAL)
                    && s.peer.request_keyframe().await
                {
                    s.last_pli = Some(now);
                }
            }
        }
        true
    }

    fn info(&self) -> RoomInfo {
        let mix = &self.rooms.inner.config.mix;
        let describe = |s: &Session| self.describe(s);
        RoomInfo {
            name: self.name.to_string(),
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
            mixer: self.mixer.stats(),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{MediaOffer, OfferedFormat, Transport};

    fn offer(lines: &[(MediaKind, Direction, &[&str])]) -> OfferSummary {
        OfferSummary {
            media: lines
                .iter()
                .enumerate()
                .map(|(i, (kind, direction, codecs))| MediaOffer {
                    kind: *kind,
                    mid: Some(i.to_string()),
                    direction: *direction,
                    codecs: codecs.iter().map(|c| c.to_string()).collect(),
                    formats: codecs
                        .iter()
                        .zip(96u8..)
                        .map(|(c, payload_type)| OfferedFormat {
                            payload_type,
                            name: c.to_string(),
                            clock_rate: 90000,
                            fmtp: if c.eq_ignore_ascii_case("H264") {
                                "packetization-mode=1".into()
                            } else {
                                String::new()
                            },
                        })
                        .collect(),
                    transport: Transport::Bundled { bundle_only: false },
                    ssrcs: vec![1],
                    rids: false,
                    mid_extension: None,
                })
                .collect(),
            bundle_groups: vec![],
        }
    }

    #[test]
    fn whip_sendrecv_is_a_participant_and_sendonly_a_contributor() {
        let o = offer(&[
            (MediaKind::Audio, Direction::SendRecv, &["opus"]),
            (MediaKind::Video, Direction::SendRecv, &["VP8"]),
        ]);
        assert_eq!(classify(false, &o).unwrap(), SessionKind::Participant);
        let o = offer(&[(MediaKind::Video, Direction::SendOnly, &["VP8"])]);
        assert_eq!(classify(false, &o).unwrap(), SessionKind::Contributor);
    }

    #[test]
    fn whep_must_be_recvonly_and_whip_must_send() {
        let recv = offer(&[(MediaKind::Video, Direction::RecvOnly, &["VP8"])]);
        assert_eq!(classify(true, &recv).unwrap(), SessionKind::Viewer);
        assert!(classify(false, &recv).is_err());
        let send = offer(&[(MediaKind::Video, Direction::SendRecv, &["VP8"])]);
        assert!(classify(true, &send).is_err());
    }

    #[test]
    fn codec_check_names_what_was_offered() {
        let o = offer(&[(
            MediaKind::Video,
            Direction::SendOnly,
            &["H264", "rtx", "AV1"],
        )]);
        let err =
            check_codecs(&o, |_, m| m.eq_ignore_ascii_case("video/VP8"), |_| true).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("H264, AV1"), "{text}");
        assert!(!text.contains("rtx"), "{text}");
        let ok = offer(&[(MediaKind::Video, Direction::SendRecv, &["H264", "VP8"])]);
        assert!(check_codecs(&ok, |_, m| m.eq_ignore_ascii_case("video/VP8"), |_| true).is_ok());
    }

    #[test]
    fn issue9_h264_needs_packetization_mode_1_and_its_declared_level_is_read() {
        let path = format!(
            "{}/tests/offers/webrtcbin-max-bundle-h264-participant.sdp",
            env!("CARGO_MANIFEST_DIR")
        );
        let sdp = std::fs::read_to_string(path).expect("captured offer");
        let offer = peer::inspect_offer(&sdp).unwrap();
        assert_eq!(choose_video_codec(&offer, |_| true), Some(VideoCodec::H264));
        assert_eq!(declared_h264_level(&offer), Some(Level(30)), "42c01e");
        // The same offer in packetization mode 0: tessera cannot send that.
        let mode0 =
            peer::inspect_offer(&sdp.replace("packetization-mode=1", "packetization-mode=0"))
                .unwrap();
        assert_eq!(choose_video_codec(&mode0, |_| true), None);
        let err = check_codecs(&mode0, |_, _| true, |_| true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("packetization-mode=1"), "{err}");
        // No profile-level-id: no declared level.
        let bare = sdp.replace("profile-level-id=42c01e;", "");
        assert_eq!(
            declared_h264_level(&peer::inspect_offer(&bare).unwrap()),
            None
        );
    }

    #[test]
    fn a_receiver_gets_the_first_codec_of_its_offer_the_room_encodes() {
        let o = offer(&[(MediaKind::Video, Direction::RecvOnly, &["H264", "VP8"])]);
        assert_eq!(choose_video_codec(&o, |_| true), Some(VideoCodec::H264));
        assert_eq!(
            choose_video_codec(&o, |c| c == VideoCodec::Vp8),
            Some(VideoCodec::Vp8)
        );
        let only = offer(&[(MediaKind::Video, Direction::RecvOnly, &["AV1", "H264"])]);
        assert_eq!(choose_video_codec(&only, |_| true), Some(VideoCodec::H264));
        assert_eq!(choose_video_codec(&only, |c| c == VideoCodec::Vp8), None);
        // A receive-only H.264 offer is refused where H.264 cannot be encoded.
        assert!(check_codecs(&only, |_, _| false, |c| c == VideoCodec::Vp8).is_err());
        assert!(check_codecs(&only, |_, _| false, |_| true).is_ok());
    }
}
