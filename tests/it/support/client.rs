//! A real WebRTC peer for the integration tests (webrtc-rs), talking WHIP/WHEP to the server.
//!
//! [`TestClient::join`] does what a browser does, minus the browser: it builds a peer connection
//! bound to 127.0.0.1 only (no STUN), adds tracks or receive-only transceivers for its
//! [`Role`], gathers every candidate before offering (no trickle), POSTs the offer, applies the
//! answer and returns once the connection is up. While connected it sends a solid-colour VP8
//! picture and an Opus sine tone (see [`media::RtpSource`]) and decodes what it receives into
//! RGB frames and mono samples the tests measure with [`super::analysis`].
//!
//! Ownership: the `TestClient` owns the peer connection, the GStreamer pipelines and a `JoinSet`
//! of every per-track task (the event handler adds remote-track tasks to the same set). Dropping
//! it aborts the tasks, sets the pipelines to Null and closes the connection; it does *not* send
//! the WHIP `DELETE`, so a dropped client looks to the server like a peer that vanished.
//! [`TestClient::leave`] is the polite way out.
//!
//! Keyframes: when our decoder needs one it asks upstream and we send the server an RTCP PLI;
//! when the server sends us a PLI or FIR for our video, the server's own keyframe interceptor
//! ([`tessera::peer::register_keyframe_interceptor`]) lets it through to the application and we
//! force a keyframe in our encoder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Url;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    Registry, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::shared::marshal::{Marshal, Unmarshal};
use tessera::rtp::codecs;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState,
};
use webrtc::rtp_transceiver::RtpSender;

use super::analysis::{Frame, Rgb, colours};
use super::http::{self, RawResponse};
use super::media::{
    AudioInput, AudioReceiver, AudioState, KeyframeTrigger, OPUS_PAYLOAD_TYPE, RtpInput, RtpSource,
    VP8_PAYLOAD_TYPE, VideoReceiver, VideoSourceSpec, VideoState,
};

/// Deadline for ICE gathering (one loopback host candidate: normally instant).
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for ICE + DTLS to reach `Connected` after the answer is applied.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How a client joins, beyond its role.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinOptions {
    /// Offer H.264 as the only video codec (and decode H.264).
    pub h264_only: bool,
    /// `?quality=` to ask for (`high` or `low`).
    pub quality: Option<&'static str>,
    /// Send the offer without its `a=ssrc` lines: the server must then route the streams by
    /// the MID header extension or the payload type (RFC 8843 §9.2).
    pub strip_ssrcs: bool,
}

/// What the client is to the room, which decides the endpoint and the SDP directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// WHIP, `sendrecv`: sends video + audio, receives the mix (video) and a mix-minus (audio).
    Participant,
    /// WHIP, `sendonly`: sends video + audio, receives nothing.
    Contributor,
    /// WHEP, `recvonly`: receives the mix, sends nothing.
    Viewer,
}

impl Role {
    fn sends(self) -> bool {
        matches!(self, Role::Participant | Role::Contributor)
    }

    fn receives(self) -> bool {
        matches!(self, Role::Participant | Role::Viewer)
    }
}

/// What a sending client puts on the wire.
#[derive(Clone, Copy, Debug)]
pub struct SendMedia {
    /// The solid colour of the picture.
    pub colour: Rgb,
    /// The frequency of the sine tone (volume 0.3, about -10.5 dBFS).
    pub tone_hz: f32,
    pub width: u32,
    pub height: u32,
    /// Frames between keyframes at 30 fps; a PLI from the server forces one sooner.
    pub keyframe_interval: u32,
}

impl SendMedia {
    /// `colour` and `tone_hz` at 640x360, a keyframe every second.
    pub fn new(colour: Rgb, tone_hz: f32) -> SendMedia {
        SendMedia {
            colour,
            tone_hz,
            ..SendMedia::default()
        }
    }
}

impl Default for SendMedia {
    fn default() -> SendMedia {
        SendMedia {
            colour: colours::RED,
            tone_hz: 440.0,
            width: 640,
            height: 360,
            keyframe_interval: 30,
        }
    }
}

/// Counters the client's tasks update; read with [`TestClient::stats`].
#[derive(Default, Debug)]
pub struct ClientCounters {
    pub video_packets_sent: AtomicU64,
    pub audio_packets_sent: AtomicU64,
    /// `write_rtp` failures (e.g. the connection closed under us).
    pub send_errors: AtomicU64,
    pub video_packets_received: AtomicU64,
    pub audio_packets_received: AtomicU64,
    /// PLIs we sent the server (our decoder asked, or the test did).
    pub plis_sent: AtomicU64,
    /// PLI/FIR the server sent us about our video.
    pub keyframe_requests_received: AtomicU64,
    /// VP8 keyframes the server sent us (counted at their first packet).
    pub keyframes_received: AtomicU64,
}

/// A snapshot of [`ClientCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub video_packets_sent: u64,
    pub audio_packets_sent: u64,
    pub send_errors: u64,
    pub video_packets_received: u64,
    pub audio_packets_received: u64,
    pub plis_sent: u64,
    pub keyframe_requests_received: u64,
    pub keyframes_received: u64,
}

/// A connected WebRTC peer in a room. See the module docs for what it owns.
pub struct TestClient {
    name: String,
    role: Role,
    session_url: Url,
    pc: Arc<dyn PeerConnection>,
    connection: watch::Receiver<RTCPeerConnectionState>,
    /// Every task of this client: media senders, RTCP readers, and the remote-track pumps the
    /// handler spawns. Shared with the handler only so it can add to it; aborted on drop.
    tasks: Arc<Mutex<JoinSet<()>>>,
    /// Encoders (video, audio) for sending clients. Null on drop.
    sources: Vec<RtpSource>,
    video: Option<VideoReceiver>,
    audio: Option<AudioReceiver>,
    /// The server's video track once it arrives, for test-initiated PLIs. Filled by the handler.
    remote_video: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
    counters: Arc<ClientCounters>,
    closed: bool,
}

impl TestClient {
    /// Join `room` on the server at `base_url` as `role`, and return once connected.
    ///
    /// `send` is what to send; `None` makes a participant that negotiates its tracks but never
    /// writes to them (a camera and microphone that are off). A contributor must send; a viewer
    /// must not. `name` goes in the WHIP query (`?name=`).
    pub async fn join(
        base_url: &str,
        room: &str,
        role: Role,
        send: Option<SendMedia>,
        name: &str,
    ) -> Result<TestClient> {
        Self::join_with(base_url, room, role, send, name, JoinOptions::default()).await
    }

    /// [`join`](Self::join) with options: which video codec to offer, which quality to ask for.
    pub async fn join_with(
        base_url: &str,
        room: &str,
        role: Role,
        send: Option<SendMedia>,
        name: &str,
        options: JoinOptions,
    ) -> Result<TestClient> {
        match (role, send.is_some()) {
            (Role::Contributor, false) => bail!("a contributor must have media to send"),
            (Role::Viewer, true) => bail!("a viewer sends nothing; pass None"),
            _ => {}
        }
        let what = format!("{name} joining {room} as {role:?}");

        // Pipelines first, so a missing GStreamer plugin fails before any network traffic.
        let mut sources = Vec::new();
        if let Some(send) = send {
            sources.push(RtpSource::video(VideoSourceSpec {
                colour: send.colour,
                width: send.width,
                height: send.height,
                keyframe_interval: send.keyframe_interval,
            })?);
            sources.push(RtpSource::audio(send.tone_hz)?);
        }
        let (mut video, audio, audio_input) = if role.receives() {
            let (audio, audio_input) = AudioReceiver::new()?;
            (
                Some(VideoReceiver::with_codec(None, options.h264_only)?),
                Some(audio),
                Some(audio_input),
            )
        } else {
            (None, None, None)
        };

        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let counters = Arc::new(ClientCounters::default());
        let remote_video = Arc::new(Mutex::new(None));
        let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::default());
        let (connection_tx, connection) = watch::channel(RTCPeerConnectionState::default());
        let handler = Arc::new(ClientHandler {
            name: name.to_owned(),
            gathering: gathering_tx,
            connection: connection_tx,
            tasks: Arc::clone(&tasks),
            counters: Arc::clone(&counters),
            remote_video: Arc::clone(&remote_video),
            video_input: Mutex::new(
                video
                    .as_mut()
                    .map(|v| (v.input(), v.take_keyframe_requests())),
            ),
            audio_input: Mutex::new(audio_input),
        });
        let pc = build_peer_connection_with(handler, options.h264_only)
            .await
            .context(what.clone())?;

        // From here on the struct owns everything, so any early return cleans up in drop.
        let mut client = TestClient {
            name: name.to_owned(),
            role,
            session_url: Url::parse(base_url).with_context(|| format!("base URL {base_url:?}"))?,
            pc,
            connection,
            tasks,
            sources,
            video,
            audio,
            remote_video,
            counters,
            closed: false,
        };

        let senders = client.add_media(role).await.context(what.clone())?;
        let mut offer = create_offer(&*client.pc, &mut gathering)
            .await
            .context(what.clone())?;
        if options.strip_ssrcs {
            offer = offer
                .split_inclusive('\n')
                .filter(|line| !line.starts_with("a=ssrc"))
                .collect();
        }
        let mut url = offer_url(base_url, room, role, name)?;
        if let Some(quality) = options.quality {
            url.query_pairs_mut().append_pair("quality", quality);
        }
        let response = http::post(&url, "application/sdp", offer)
            .await
            .context(what.clone())?;
        if response.status != 201 {
            bail!(
                "{what}: expected 201 Created, got HTTP {}: {}",
                response.status,
                response.body
            );
        }
        let location = response
            .location
            .as_deref()
            .with_context(|| format!("{what}: 201 without a Location header"))?;
        client.session_url = client
            .session_url
            .join(location)
            .with_context(|| format!("{what}: resolving Location {location:?}"))?;
        let mids = answered_mids(&response.body);
        let answer = RTCSessionDescription::answer(response.body)
            .with_context(|| format!("{what}: the answer is not SDP"))?;
        client
            .pc
            .set_remote_description(answer)
            .await
            .with_context(|| format!("{what}: applying the answer"))?;

        client
            .wait_for_state(RTCPeerConnectionState::Connected, CONNECT_TIMEOUT)
            .await
            .context(what.clone())?;
        client.start_sending(senders, &mids).await.context(what)?;
        Ok(client)
    }

    /// Add this role's tracks/transceivers, video first. Returns, per source (same order as
    /// `self.sources`), the track and sender to start once connected.
    async fn add_media(
        &self,
        role: Role,
    ) -> Result<Vec<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>)>> {
        let mut senders = Vec::new();
        if role.sends() {
            for (kind, codec) in [
                (RtpCodecKind::Video, vp8_codec().rtp_codec),
                (RtpCodecKind::Audio, opus_codec().rtp_codec),
            ] {
                let track = Arc::new(local_track(&self.name, kind, codec));
                let sender = if role == Role::Participant {
                    self.pc
                        .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                        .await
                        .with_context(|| format!("adding the {kind} track"))?
                } else {
                    let transceiver = self
                        .pc
                        .add_transceiver_from_track(
                            Arc::clone(&track) as Arc<dyn TrackLocal>,
                            Some(RTCRtpTransceiverInit {
                                direction: RTCRtpTransceiverDirection::Sendonly,
                                ..Default::default()
                            }),
                        )
                        .await
                        .with_context(|| format!("adding the sendonly {kind} transceiver"))?;
                    transceiver
                        .sender()
                        .await?
                        .with_context(|| format!("the {kind} transceiver has no sender"))?
                };
                senders.push((track, sender));
            }
        } else {
            for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
                self.pc
                    .add_transceiver_from_kind(
                        kind,
                        Some(RTCRtpTransceiverInit {
                            direction: RTCRtpTransceiverDirection::Recvonly,
                            ..Default::default()
                        }),
                    )
                    .await
                    .with_context(|| format!("adding the recvonly {kind} transceiver"))?;
            }
        }
        Ok(senders)
    }

    /// Start the encoders and the tasks that write their packets, now that the tracks are bound
    /// to a connected transport (a write before that is an error, not a queue).
    async fn start_sending(
        &mut self,
        senders: Vec<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>)>,
        mids: &[(String, u8, String)],
    ) -> Result<()> {
        if self.sources.is_empty() {
            return Ok(()); // a participant with its camera and microphone off
        }
        for ((track, sender), source) in senders.into_iter().zip(self.sources.iter_mut()) {
            let kind = track.kind().await;
            let ssrc = *track
                .ssrcs()
                .await
                .first()
                .with_context(|| format!("the {kind} track has no SSRC"))?;
            let payload_type = sender
                .get_parameters()
                .await?
                .rtp_parameters
                .codecs
                .first()
                .map(|c| c.payload_type)
                .with_context(|| format!("no codec was negotiated for our {kind} track"))?;
            let packets = source
                .take_packets()
                .expect("each source's packets are taken once, here");
            let sent = match kind {
                RtpCodecKind::Video => SentCounter::Video,
                _ => SentCounter::Audio,
            };
            let mid = mids
                .iter()
                .find(|(k, _, _)| *k == kind.to_string())
                .map(|(_, id, mid)| (*id, bytes::Bytes::from(mid.clone())));
            {
                let mut tasks = self
                    .tasks
                    .lock()
                    .expect("the task set lock is never poisoned");
                tasks.spawn(send_packets(
                    packets,
                    Arc::clone(&track),
                    ssrc,
                    payload_type,
                    mid,
                    sent,
                    Arc::clone(&self.counters),
                ));
                if let Some(trigger) = source.keyframe_trigger() {
                    tasks.spawn(answer_keyframe_requests(
                        track,
                        trigger,
                        Arc::clone(&self.counters),
                    ));
                }
            }
            source.start()?;
        }
        Ok(())
    }

    /// The session resource (`{base}{Location}`), for `DELETE` and friends.
    pub fn session_url(&self) -> &Url {
        &self.session_url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.connection.borrow()
    }

    /// Wait up to `deadline` for the connection to reach `state`. Fails early if it reaches
    /// `Failed` or `Closed` instead (unless that is what was asked for).
    pub async fn wait_for_state(
        &self,
        state: RTCPeerConnectionState,
        deadline: Duration,
    ) -> Result<()> {
        let mut connection = self.connection.clone();
        let reached = tokio::time::timeout(
            deadline,
            connection.wait_for(|s| {
                *s == state
                    || matches!(
                        s,
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                    )
            }),
        )
        .await;
        match reached {
            Ok(Ok(s)) if *s == state => Ok(()),
            Ok(Ok(s)) => bail!(
                "{}: connection went {} while waiting for {state}",
                self.name,
                *s
            ),
            Ok(Err(_)) => bail!("{}: the peer connection is gone", self.name),
            Err(_) => bail!(
                "{}: connection still {} after {deadline:?} waiting for {state}",
                self.name,
                *self.connection.borrow()
            ),
        }
    }

    /// Wait up to `deadline` for the server to drop us: `Disconnected`, `Failed` or `Closed`.
    pub async fn wait_for_disconnect(&self, deadline: Duration) -> Result<RTCPeerConnectionState> {
        let mut connection = self.connection.clone();
        let gone = |s: &RTCPeerConnectionState| {
            matches!(
                s,
                RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        };
        match tokio::time::timeout(deadline, connection.wait_for(gone)).await {
            Ok(Ok(s)) => Ok(*s),
            Ok(Err(_)) => Ok(RTCPeerConnectionState::Closed),
            Err(_) => bail!(
                "{}: still {} after {deadline:?}",
                self.name,
                *self.connection.borrow()
            ),
        }
    }

    fn video(&self) -> Result<&VideoReceiver> {
        self.video
            .as_ref()
            .with_context(|| format!("{} is a {:?} and receives no video", self.name, self.role))
    }

    fn audio(&self) -> Result<&AudioReceiver> {
        self.audio
            .as_ref()
            .with_context(|| format!("{} is a {:?} and receives no audio", self.name, self.role))
    }

    /// The most recently decoded frame (None before the first, or for a contributor).
    pub fn latest_frame(&self) -> Option<Arc<Frame>> {
        self.video.as_ref()?.state().borrow().latest.clone()
    }

    /// A snapshot of the video receive state (frame count, decode instants, latest frame).
    pub fn video_state(&self) -> VideoState {
        self.video
            .as_ref()
            .map(|v| v.state().borrow().clone())
            .unwrap_or_default()
    }

    pub fn frame_count(&self) -> u64 {
        self.video.as_ref().map_or(0, |v| v.state().borrow().frames)
    }

    pub fn first_frame_at(&self) -> Option<Instant> {
        self.video.as_ref()?.state().borrow().first_frame_at
    }

    /// Frames decoded per second over the `window` ending now.
    pub fn fps_over(&self, window: Duration) -> f64 {
        self.video
            .as_ref()
            .map_or(0.0, |v| v.state().borrow().fps_over(window))
    }

    /// Wait up to `deadline` for a decoded frame that satisfies `predicate`; the latest frame
    /// counts, so one that already matches returns at once.
    pub async fn wait_for_frame(
        &self,
        deadline: Duration,
        predicate: impl FnMut(&Frame) -> bool,
    ) -> Result<Arc<Frame>> {
        self.video()?
            .wait_for_frame(deadline, predicate)
            .await
            .with_context(|| format!("{}: waiting for a frame ({:?})", self.name, self.stats()))
    }

    /// Wait up to `deadline` until `n` more frames have been decoded.
    pub async fn wait_for_new_frames(&self, n: u64, deadline: Duration) -> Result<()> {
        let mut state = self.video()?.state();
        let target = state.borrow().frames + n;
        match tokio::time::timeout(deadline, state.wait_for(|s| s.frames >= target)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("{}: the video receiver stopped", self.name),
            Err(_) => bail!(
                "{}: {n} new frames not decoded within {deadline:?} ({:?})",
                self.name,
                self.stats()
            ),
        }
    }

    /// The most recent `duration` of received audio, mono, 48 kHz.
    pub fn audio_window(&self, duration: Duration) -> Vec<f32> {
        self.audio
            .as_ref()
            .map(|a| a.window(duration))
            .unwrap_or_default()
    }

    /// Wait up to `deadline` for `duration` of audio received after this call, and return it.
    pub async fn next_audio(&self, duration: Duration, deadline: Duration) -> Result<Vec<f32>> {
        self.audio()?
            .next_window(duration, deadline)
            .await
            .with_context(|| format!("{}: waiting for audio ({:?})", self.name, self.stats()))
    }

    /// A snapshot of the audio receive state.
    pub fn audio_state(&self) -> AudioState {
        self.audio
            .as_ref()
            .map(|a| a.state().borrow().clone())
            .unwrap_or_default()
    }

    pub fn first_audio_at(&self) -> Option<Instant> {
        self.audio.as_ref()?.state().borrow().first_sample_at
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            video_packets_sent: load(&c.video_packets_sent),
            audio_packets_sent: load(&c.audio_packets_sent),
            send_errors: load(&c.send_errors),
            video_packets_received: load(&c.video_packets_received),
            audio_packets_received: load(&c.audio_packets_received),
            plis_sent: load(&c.plis_sent),
            keyframe_requests_received: load(&c.keyframe_requests_received),
            keyframes_received: load(&c.keyframes_received),
        }
    }

    /// Send the server a PLI for the video it sends us, as a test's own keyframe request.
    pub async fn send_pli(&self) -> Result<()> {
        let track = self.remote_video_track()?;
        send_pli(&*track, None, &self.counters).await
    }

    /// The video track the server sends us, once it arrived.
    fn remote_video_track(&self) -> Result<Arc<dyn TrackRemote>> {
        self.remote_video
            .lock()
            .expect("the remote video slot lock is never poisoned")
            .clone()
            .with_context(|| format!("{}: no video track from the server yet", self.name))
    }

    /// Tell the server our downlink can take `bps` bit/s (an RTCP REMB), as a browser's
    /// congestion controller does.
    pub async fn send_remb(&self, bps: u64) -> Result<()> {
        let track = self.remote_video_track()?;
        let media_ssrc = *track
            .ssrcs()
            .await
            .first()
            .context("the remote video track has no SSRC")?;
        let remb = rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 0,
            bitrate: bps as f32,
            ssrcs: vec![media_ssrc],
        };
        track
            .write_rtcp(vec![Box::new(remb)])
            .await
            .context("sending a REMB")
    }

    /// Leave politely: `DELETE` the session (which must answer 2xx), then close the connection.
    pub async fn leave(mut self) -> Result<()> {
        let response = http::delete(&self.session_url).await?;
        self.close().await;
        anyhow::ensure!(
            response.is_success(),
            "{}: DELETE {} answered HTTP {}: {}",
            self.name,
            self.session_url,
            response.status,
            response.body
        );
        Ok(())
    }

    /// Vanish without a `DELETE`: close the connection (DTLS close_notify, then silence), as a
    /// closed browser tab would.
    pub async fn disconnect(mut self) {
        self.close().await;
    }

    async fn close(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
        // Errors only mean it is already closed.
        let _ = self.pc.close().await;
        self.closed = true;
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
        if !self.closed
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Drop cannot await, and a connection left open keeps its driver task running.
            // close() is bounded (~100 ms), and the task dies with the test's runtime anyway,
            // so this is the one detached task here.
            let pc = Arc::clone(&self.pc);
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
        // The pipelines (sources, receivers) go to Null as their fields drop.
    }
}

/// POST a real offer for `role` and return the server's raw answer, without connecting or
/// sending media: for tests of what the server accepts and rejects. A 201 leaves a session on
/// the server that will never connect; `DELETE` it (`http::delete`) or let it time out.
pub async fn post_offer(base_url: &str, room: &str, role: Role, name: &str) -> Result<RawResponse> {
    let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::default());
    let (connection_tx, _connection) = watch::channel(RTCPeerConnectionState::default());
    let handler = Arc::new(ClientHandler {
        name: name.to_owned(),
        gathering: gathering_tx,
        connection: connection_tx,
        tasks: Arc::new(Mutex::new(JoinSet::new())),
        counters: Arc::new(ClientCounters::default()),
        remote_video: Arc::new(Mutex::new(None)),
        video_input: Mutex::new(None),
        audio_input: Mutex::new(None),
    });
    let pc = build_peer_connection(handler).await?;
    let result = async {
        if role.sends() {
            for (kind, codec) in [
                (RtpCodecKind::Video, vp8_codec().rtp_codec),
                (RtpCodecKind::Audio, opus_codec().rtp_codec),
            ] {
                let track: Arc<dyn TrackLocal> = Arc::new(local_track(name, kind, codec));
                let direction = if role == Role::Participant {
                    RTCRtpTransceiverDirection::Sendrecv
                } else {
                    RTCRtpTransceiverDirection::Sendonly
                };
                pc.add_transceiver_from_track(
                    track,
                    Some(RTCRtpTransceiverInit {
                        direction,
                        ..Default::default()
                    }),
                )
                .await?;
            }
        } else {
            for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
                pc.add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        ..Default::default()
                    }),
                )
                .await?;
            }
        }
        let offer = create_offer(&*pc, &mut gathering).await?;
        http::post(
            &offer_url(base_url, room, role, name)?,
            "application/sdp",
            offer,
        )
        .await
    }
    .await;
    let _ = pc.close().await;
    result
}

/// The URL a client of `role` POSTs its offer to: `{base}/rooms/{room}/whip?name=NAME` or
/// `{base}/rooms/{room}/whep?name=NAME`.
pub fn offer_url(base_url: &str, room: &str, role: Role, name: &str) -> Result<Url> {
    let endpoint = if role == Role::Viewer { "whep" } else { "whip" };
    let mut url = http::endpoint(base_url, &["rooms", room, endpoint])?;
    url.query_pairs_mut().append_pair("name", name);
    Ok(url)
}

/// H.264 as a kiosk offers it.
fn h264_codec() -> RTCRtpCodecParameters {
    let mut codec = vp8_codec();
    codec.rtp_codec.mime_type = codecs::H264.mime_type.to_owned();
    codec.rtp_codec.sdp_fmtp_line = codecs::H264.fmtp.to_owned();
    codec.payload_type = codecs::H264.payload_type;
    codec
}

pub(super) fn vp8_codec() -> RTCRtpCodecParameters {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: codecs::VP8.mime_type.to_owned(),
            clock_rate: codecs::VP8.clock_rate,
            channels: 0,
            sdp_fmtp_line: String::new(),
            // "nack" and "nack pli" are added by register_default_interceptors; FIR is ours.
            rtcp_feedback: vec![feedback("ccm", "fir")],
        },
        payload_type: VP8_PAYLOAD_TYPE,
    }
}

pub(super) fn opus_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: codecs::OPUS.mime_type.to_owned(),
            clock_rate: codecs::OPUS.clock_rate,
            channels: codecs::OPUS.channels,
            sdp_fmtp_line: codecs::OPUS.fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: OPUS_PAYLOAD_TYPE,
    }
}

/// A local track with a fixed random SSRC: `write_rtp` drops packets whose SSRC is not the
/// track's, so the sender stamps this one on every packet.
pub(super) fn local_track(
    name: &str,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
) -> TrackLocalStaticRTP {
    let ssrc = rand::random::<u32>();
    // Stream and track ids go into `a=msid`, where a space would split the id in two.
    let id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("{id}-stream"),
        format!("{id}-{kind}"),
        format!("{name} {kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec,
            ..Default::default()
        }],
    ))
}

/// A peer connection on 127.0.0.1 only, VP8 + Opus, default interceptors plus the keyframe
/// request forwarder.
pub(super) async fn build_peer_connection(
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>> {
    build_peer_connection_with(handler, false).await
}

/// The same, offering H.264 (constrained baseline, packetization-mode 1) as its only video
/// codec when `h264_only`: a kiosk with a hardware decoder.
async fn build_peer_connection_with(
    handler: Arc<dyn PeerConnectionEventHandler>,
    h264_only: bool,
) -> Result<Arc<dyn PeerConnection>> {
    let mut media_engine = MediaEngine::default();
    let video = if h264_only { h264_codec() } else { vp8_codec() };
    media_engine
        .register_codec(video, RtpCodecKind::Video)
        .context("registering the video codec")?;
    media_engine
        .register_codec(opus_codec(), RtpCodecKind::Audio)
        .context("registering Opus")?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .context("registering the default interceptors")?;
    // The server's own interceptor: last in the chain, it lets keyframe requests (and REMB)
    // reach the application, which by default sees no inbound RTCP.
    let registry = tessera::peer::register_keyframe_interceptor(registry);

    let pc = PeerConnectionBuilder::new()
        // No ICE servers: everything is on loopback, and tests must not touch the internet.
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(vec![])
                .build(),
        )
        .with_media_engine(media_engine)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                // Loopback only: nothing to resolve, and inside a network namespace with only
                // `lo` the mDNS multicast socket cannot even be opened.
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .build(),
        )
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .context("building the peer connection")?;
    Ok(Arc::new(pc))
}

/// Create the offer, wait (up to [`GATHER_TIMEOUT`]) for every candidate, and return the SDP.
async fn create_offer(
    pc: &dyn PeerConnection,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
) -> Result<String> {
    let offer = pc.create_offer(None).await.context("creating the offer")?;
    set_local_and_gather(pc, offer, gathering).await
}

/// Apply our offer or answer, wait (up to [`GATHER_TIMEOUT`]) for every candidate, and return
/// the SDP with the candidates in it (non-trickle).
pub(super) async fn set_local_and_gather(
    pc: &dyn PeerConnection,
    description: RTCSessionDescription,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
) -> Result<String> {
    pc.set_local_description(description)
        .await
        .context("setting the local description")?;
    tokio::time::timeout(
        GATHER_TIMEOUT,
        gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await
    .map_err(|_| anyhow!("ICE gathering did not complete within {GATHER_TIMEOUT:?}"))?
    .map_err(|_| anyhow!("the peer connection went away while gathering"))?;
    let description = pc
        .local_description()
        .await
        .context("no local description after gathering")?;
    Ok(description.sdp)
}

#[derive(Clone, Copy)]
enum SentCounter {
    Video,
    Audio,
}

/// Move one encoder's packets onto its track: parse, stamp the track's SSRC and the negotiated
/// payload type (anything else is silently dropped by webrtc-rs), write.
async fn send_packets(
    mut packets: mpsc::Receiver<bytes::Bytes>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    mid: Option<(u8, bytes::Bytes)>,
    sent: SentCounter,
    counters: Arc<ClientCounters>,
) {
    let sent = match sent {
        SentCounter::Video => &counters.video_packets_sent,
        SentCounter::Audio => &counters.audio_packets_sent,
    };
    while let Some(bytes) = packets.recv().await {
        let mut buf = &bytes[..];
        let Ok(mut packet) = rtc::rtp::Packet::unmarshal(&mut buf) else {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        packet.header.ssrc = ssrc;
        packet.header.payload_type = payload_type;
        // As browsers do: every packet names its m-line (RFC 8843 §15.2) when the answer
        // negotiated the MID extension; webrtc-rs does not add it by itself.
        if let Some((id, mid)) = &mid {
            let _ = packet.header.set_extension(*id, mid.clone());
        }
        match track.write_rtp(packet).await {
            Ok(()) => sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.send_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Per m-section of an answer that negotiates the MID header extension: (kind, extension id,
/// mid).
fn answered_mids(answer: &str) -> Vec<(String, u8, String)> {
    let mut out = Vec::new();
    for section in answer.split("\nm=").skip(1) {
        let kind = section
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let id = section.lines().find_map(|l| {
            let rest = l.trim_end().strip_prefix("a=extmap:")?;
            let (id, uri) = rest.split_once(' ')?;
            (uri.trim() == "urn:ietf:params:rtp-hdrext:sdes:mid")
                .then(|| id.split('/').next()?.parse().ok())?
        });
        let mid = section
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_owned));
        if let (Some(id), Some(mid)) = (id, mid) {
            out.push((kind, id, mid));
        }
    }
    out
}

/// Answer the server's PLI/FIR for our video by forcing a keyframe in our encoder.
async fn answer_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    trigger: KeyframeTrigger,
    counters: Arc<ClientCounters>,
) {
    while let Some(event) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = event
            && packets.iter().any(|p| is_keyframe_request(p.as_ref()))
        {
            counters
                .keyframe_requests_received
                .fetch_add(1, Ordering::Relaxed);
            trigger.request();
        }
    }
}

pub(super) fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

async fn send_pli(
    track: &dyn TrackRemote,
    known_ssrc: Option<u32>,
    counters: &ClientCounters,
) -> Result<()> {
    let media_ssrc = match known_ssrc {
        Some(ssrc) => ssrc,
        None => *track
            .ssrcs()
            .await
            .first()
            .context("the remote video track has no SSRC")?,
    };
    track
        .write_rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        })])
        .await
        .context("sending a PLI")?;
    counters.plis_sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Read the server's video track into the decode pipeline, and answer the pipeline's keyframe
/// requests with PLIs. Never blocks on the pipeline (`RtpInput::push` drops when behind), so
/// the track's own queue never overflows because of us.
async fn pump_remote_video(
    track: Arc<dyn TrackRemote>,
    input: RtpInput,
    mut keyframe_requests: Option<mpsc::Receiver<()>>,
    counters: Arc<ClientCounters>,
) {
    let mut media_ssrc: Option<u32> = None;
    loop {
        tokio::select! {
            event = track.poll() => match event {
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                    media_ssrc = Some(packet.header.ssrc);
                    counters.video_packets_received.fetch_add(1, Ordering::Relaxed);
                    if tessera::rtp::keyframe::is_vp8_keyframe_start(&packet.payload) {
                        counters.keyframes_received.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(bytes) = packet.marshal() {
                        input.push(&bytes);
                    }
                }
                Some(TrackRemoteEvent::OnEnded) | None => break,
                Some(_) => {}
            },
            Some(()) = next_request(&mut keyframe_requests) => {
                // A failed PLI means the connection is going; the poll above will end the loop.
                let _ = send_pli(&*track, media_ssrc, &counters).await;
            }
        }
    }
}

/// The next keyframe request, or never if there is no request channel (or it closed).
async fn next_request(requests: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match requests {
        Some(rx) => match rx.recv().await {
            Some(()) => Some(()),
            None => {
                *requests = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Decode the server's audio track into the audio ring.
async fn pump_remote_audio(
    track: Arc<dyn TrackRemote>,
    mut input: AudioInput,
    counters: Arc<ClientCounters>,
) {
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                counters
                    .audio_packets_received
                    .fetch_add(1, Ordering::Relaxed);
                input.push(packet.header.sequence_number, &packet.payload);
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// The peer connection's event handler. Every callback only records or forwards: states go
/// into watch channels, remote tracks get a pump task in the client's `JoinSet`.
struct ClientHandler {
    name: String,
    gathering: watch::Sender<RTCIceGatheringState>,
    connection: watch::Sender<RTCPeerConnectionState>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    counters: Arc<ClientCounters>,
    remote_video: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
    /// Where the server's video goes (and the decoder's keyframe requests come from); taken
    /// by the first video track.
    video_input: Mutex<Option<(RtpInput, Option<mpsc::Receiver<()>>)>>,
    /// Where the server's audio goes; taken by the first audio track.
    audio_input: Mutex<Option<AudioInput>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.connection.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = track.kind().await;
        let counters = Arc::clone(&self.counters);
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        match kind {
            RtpCodecKind::Video => {
                let Some((input, requests)) = self
                    .video_input
                    .lock()
                    .ok()
                    .and_then(|mut slot| slot.take())
                else {
                    eprintln!("[{}] ignoring an unexpected video track", self.name);
                    return;
                };
                if let Ok(mut slot) = self.remote_video.lock() {
                    *slot = Some(Arc::clone(&track));
                }
                tasks.spawn(pump_remote_video(track, input, requests, counters));
            }
            RtpCodecKind::Audio => {
                let Some(input) = self.audio_input.lock().ok().and_then(|mut a| a.take()) else {
                    eprintln!("[{}] ignoring an unexpected audio track", self.name);
                    return;
                };
                tasks.spawn(pump_remote_audio(track, input, counters));
            }
            _ => {}
        }
    }
}
