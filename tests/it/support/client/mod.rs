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
//!
//! Files: this one joins (the WHIP/WHEP exchange as a client makes it); `peer.rs` builds the
//! connection, its codecs and tracks; `signalling.rs` holds the raw offer and the answer's
//! MIDs; `pumps.rs` the tasks that move media and RTCP; `handler.rs` the callbacks;
//! `connected.rs` what a connected client shows the tests and how it leaves.

mod connected;
mod handler;
mod peer;
mod pumps;
mod signalling;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Url;
use rtc::peer_connection::configuration::RTCIceServer;
use rtc::peer_connection::sdp::RTCSessionDescription;
use tokio::sync::watch;
use tokio::task::JoinSet;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{PeerConnection, RTCIceGatheringState, RTCPeerConnectionState};

use crate::support::analysis::{Rgb, colours};
use crate::support::http::{self};
use crate::support::media::{AudioReceiver, RtpSource, VideoReceiver, VideoSourceSpec};

use handler::ClientHandler;
pub(in crate::support) use peer::{
    build_peer_connection, local_track, opus_codec, set_local_and_gather, vp8_codec,
};
use peer::{build_peer_connection_with, create_offer};
pub(in crate::support) use pumps::is_keyframe_request;
use signalling::answered_extensions;
pub use signalling::{make_offer, offer_url, post_offer};

/// Deadline for ICE gathering (one loopback host candidate: normally instant).
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for ICE + DTLS to reach `Connected` after the answer is applied.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How a client joins, beyond its role.
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    /// Offer H.264 as the only video codec (and decode H.264).
    pub h264_only: bool,
    /// `?quality=` to ask for (`high` or `low`).
    pub quality: Option<&'static str>,
    /// Send the offer without its `a=ssrc` lines: the server must then route the streams by
    /// the MID header extension or the payload type (RFC 8843 §9.2).
    pub strip_ssrcs: bool,
    /// An access token, sent as `Authorization: Bearer` with the offer and the `DELETE`.
    pub token: Option<String>,
    /// Where its media sockets bind (default 127.0.0.1:0): a client in a test network's
    /// namespace binds its own address there.
    pub bind: Option<String>,
    /// STUN and TURN servers (default none: everything is on loopback).
    pub ice_servers: Vec<RTCIceServer>,
    /// Offer the RFC 6464 audio level extension and state this level (-dBov, 0..=127) in every
    /// audio packet, whatever the audio says: the server must take the sender's word for it.
    pub stated_level: Option<u8>,
    /// More query parameters for the offer's URL (`source=screen`, `owner=...`).
    pub query: Vec<(&'static str, String)>,
    /// Receive the server's tracks without decoding them (no decoders in the test process):
    /// for tests about sessions coming and going, where hundreds of decoders would only load
    /// the machine the server runs on.
    pub no_decode: bool,
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
    /// Send noise (videotestsrc snow) instead of the colour.
    pub snow: bool,
    /// The frequency of the sine tone.
    pub tone_hz: f32,
    /// Its volume: 0.3 (about -10.5 dBFS) is a speaker; 0 a silent microphone, which still
    /// sends Opus packets (of silence), as a browser does. See [`TestClient::set_tone_volume`].
    pub tone_volume: f64,
    pub width: u32,
    pub height: u32,
    /// Frames between keyframes at 30 fps; a PLI from the server forces one sooner.
    pub keyframe_interval: u32,
    /// A hostile sender: this share of its packets has its payload damaged (see [`Mangle`]).
    pub mangle: Option<Mangle>,
}

/// How a hostile sender damages its packets' payloads (headers stay valid, so the packets
/// reach the server's depayloaders and decoders through SRTP like any others).
#[derive(Clone, Copy, Debug)]
pub struct Mangle {
    /// The random generator's seed: the same seed damages the same way.
    pub seed: u64,
    /// The share of packets damaged, 0 to 1.
    pub rate: f64,
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
            snow: false,
            tone_hz: 440.0,
            tone_volume: 0.3,
            width: 640,
            height: 360,
            keyframe_interval: 30,
            mangle: None,
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
    /// Their bytes, RTP headers included: what the receiver's link carries.
    pub video_bytes_received: AtomicU64,
    /// Video frames the server sent us (packets with the marker bit: a frame's last).
    pub video_frames_received: AtomicU64,
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
    pub video_bytes_received: u64,
    pub video_frames_received: u64,
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
    /// The access token it joined with, for its `DELETE`.
    token: Option<String>,
    /// Damages what it sends (a hostile client).
    mangle: Option<Mangle>,
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
        let mangle = send.and_then(|s| s.mangle);
        if let Some(send) = send {
            sources.push(RtpSource::video(VideoSourceSpec {
                snow: send.snow,
                colour: send.colour,
                width: send.width,
                height: send.height,
                keyframe_interval: send.keyframe_interval,
            })?);
            let audio = RtpSource::audio(send.tone_hz)?;
            audio.set_volume(send.tone_volume)?;
            sources.push(audio);
        }
        let (mut video, audio, audio_input) = if role.receives() && !options.no_decode {
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
            no_decode: options.no_decode,
        });
        let pc = build_peer_connection_with(handler, &options)
            .await
            .context(what.clone())?;
        let options_level = options.stated_level;

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
            token: options.token.clone(),
            mangle,
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
        for (key, value) in &options.query {
            url.query_pairs_mut().append_pair(key, value);
        }
        let response = http::send(
            reqwest::Method::POST,
            &url,
            client.token.as_deref(),
            Some(("application/sdp", offer)),
        )
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
        let extensions = answered_extensions(&response.body, options_level);
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
        client
            .start_sending(senders, &extensions)
            .await
            .context(what)?;
        Ok(client)
    }
}
