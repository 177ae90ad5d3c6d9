//! The only module that imports `webrtc::` (webrtc-rs 0.21, pinned): one [`Peer`] per session.
//!
//! A `Peer` answers one WHIP/WHEP offer and then moves RTP between its tracks and the mix through
//! per-track tasks it owns (aborted when the `Peer` is dropped or closed):
//! - a *reading* task per incoming track pushes packets into an [`RtpSink`] (an appsrc; never
//!   blocks, because webrtc-rs's per-track queue holds only 256 packets);
//! - a *writing* task per outgoing track copies the room's broadcast output into the track,
//!   rewriting SSRC and payload type to what this connection negotiated;
//! - a *feedback* task per outgoing track turns the receiver's PLI/FIR into a keyframe request.
//!
//! Everything the webrtc-rs callbacks learn is forwarded as a [`PeerEvent`] with `try_send`; the
//! room actor decides what it means.

mod answer;
mod keyframe_interceptor;
mod offer;
mod routing;
mod stream_router;
mod trickle;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Slot;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::shared::marshal::{Marshal, Unmarshal};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceCandidateType, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, register_default_interceptors,
};

use crate::config::RtcConfig;
use crate::metrics::{self, Live};
use crate::types::{ConnectionState, InputCodec, MediaKind, RtpSink, SessionId, VideoCodec};

pub use offer::{
    Direction, MediaOffer, OfferSummary, OfferedFormat, Transport, fmtp_parameter, inspect_offer,
};
pub use trickle::{TrickleCandidate, TrickleFragment, ice_ufrag, parse_fragment};

#[cfg(test)]
mod tests {
    use super::{is_h264_keyframe_start, is_vp8_keyframe_start};

    #[test]
    fn h264_keyframes_are_recognised_alone_aggregated_and_fragmented() {
        assert!(is_h264_keyframe_start(&[0x67, 0x42]), "SPS");
        assert!(is_h264_keyframe_start(&[0x65, 0x88]), "IDR slice");
        assert!(!is_h264_keyframe_start(&[0x41, 0x9a]), "non-IDR slice");
        // STAP-A with an SPS (size 2) then a PPS (size 1).
        assert!(is_h264_keyframe_start(&[
            0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68
        ]));
        assert!(
            !is_h264_keyframe_start(&[0x78, 0, 1, 0x68]),
            "STAP-A of a PPS"
        );
        // FU-A: first fragment of an IDR, then a middle one.
        assert!(is_h264_keyframe_start(&[0x7c, 0x85, 0]));
        assert!(!is_h264_keyframe_start(&[0x7c, 0x05, 0]));
        assert!(!is_h264_keyframe_start(&[]));
    }

    #[test]
    fn vp8_keyframes_are_recognised_from_the_payload_descriptor() {
        // Extended descriptor with a 15-bit picture id, then a key frame (P bit clear).
        assert!(is_vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x10]));
        assert!(
            !is_vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x11]),
            "interframe"
        );
        assert!(
            !is_vp8_keyframe_start(&[0x80, 0x80, 0x81, 0x23, 0x10]),
            "not a partition start"
        );
        assert!(is_vp8_keyframe_start(&[0x10, 0x50]), "minimal descriptor");
        assert!(!is_vp8_keyframe_start(&[]));
    }
}

/// Payload type we prefer for VP8 (answers use the offerer's numbers).
const VP8_PT: u8 = 96;
/// Payload type we prefer for Opus.
const OPUS_PT: u8 = 111;
/// Payload type we prefer for H.264.
const H264_PT: u8 = 102;
/// The H.264 we send: constrained baseline, level 3.1, non-interleaved (RFC 6184), which every
/// WebRTC endpoint and hardware decoder takes.
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Bound of the events a peer may queue for its room before they are dropped (and logged).
pub const EVENT_QUEUE: usize = 256;
/// How many ports of a configured range to try before giving up.
const PORT_ATTEMPTS: usize = 16;

/// A failure to set up or run a peer connection.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The offer is not SDP we can use.
    #[error("malformed SDP offer: {0}")]
    BadOffer(String),
    /// webrtc-rs refused a step.
    #[error("{context}: {message}")]
    Rtc {
        /// What was being done.
        context: &'static str,
        /// webrtc-rs's words.
        message: String,
    },
}

fn rtc_err(context: &'static str) -> impl FnOnce(webrtc::error::Error) -> PeerError {
    move |e| PeerError::Rtc {
        context,
        message: e.to_string(),
    }
}

/// What a peer tells its room.
#[derive(Debug)]
pub struct PeerEvent {
    /// Which session.
    pub session: SessionId,
    /// What happened.
    pub kind: PeerEventKind,
}

/// The events.
#[derive(Debug)]
pub enum PeerEventKind {
    /// The connection changed state.
    State(ConnectionState),
    /// The remote side started sending a track: hand it to [`Peer::start_receiving`].
    Track(RemoteTrack),
    /// The receiver asked for a keyframe of the mixed video (PLI/FIR, or it fell behind).
    KeyframeRequested,
    /// The receiver's bandwidth estimate (REMB), in bit/s; at most one per
    /// [`ESTIMATE_INTERVAL`].
    BandwidthEstimate(u64),
}

/// Estimates are forwarded to the room at most this often (browsers send REMB every ~200 ms).
pub const ESTIMATE_INTERVAL: Duration = Duration::from_millis(500);

/// An incoming track, opaque outside this module.
pub struct RemoteTrack {
    source: TrackSource,
    /// The track's codec as negotiated.
    pub codec: InputCodec,
}

/// Where an incoming track's packets come from.
enum TrackSource {
    /// A track webrtc-rs bound itself (the offer declared its SSRC, or it was the only m-line).
    Bound(Arc<dyn TrackRemote>),
    /// A stream the [`stream_router`] placed by MID or payload type (RFC 8843 §9.2).
    Routed {
        packets: mpsc::Receiver<Bytes>,
        ssrc: u32,
    },
}

/// Where keyframe requests for the incoming video go.
enum VideoFeedback {
    /// To webrtc-rs's track, as RTCP.
    Bound(Arc<dyn TrackRemote>),
    /// Through the stream router, for this SSRC.
    Routed(u32),
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("codec", &self.codec)
            .finish()
    }
}

/// What the server sends on a new connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendPlan {
    /// Send the mixed video.
    pub video: bool,
    /// In this codec.
    pub video_codec: VideoCodec,
    /// Send mixed audio.
    pub audio: bool,
    /// The highest H.264 level the video sent may have (what the answer declares).
    pub h264_level: crate::h264::Level,
}

/// Builds peer connections with the server's transport settings.
#[derive(Debug, Clone)]
pub struct PeerFactory {
    config: RtcConfig,
    /// Whether this host can join the mDNS multicast group (resolving browsers' `.local`
    /// candidates). Where it cannot (a network namespace with only `lo`, some containers),
    /// webrtc-rs's driver would fail at start, so mDNS is off; checks find the peer anyway.
    mdns: bool,
}

/// An outgoing track and what it takes to write to it.
struct Outgoing {
    kind: MediaKind,
    /// The codec of the video it carries (meaningless for audio).
    video_codec: VideoCodec,
    track_id: String,
    mime_type: &'static str,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
}

/// One session's WebRTC connection and the media tasks it owns.
pub struct Peer {
    session: SessionId,
    pc: Arc<dyn PeerConnection>,
    outgoing: Vec<Outgoing>,
    /// The incoming video, to send PLIs for.
    remote_video: Option<VideoFeedback>,
    /// Keyframe requests for routed streams (see [`stream_router`]), if any are routed.
    router_plis: Option<mpsc::Sender<u32>>,
    /// Packets of routed streams dropped before their reading task took them.
    routed_dropped: Option<Arc<AtomicU64>>,
    events: mpsc::Sender<PeerEvent>,
    /// The per-track tasks; aborted on drop.
    tasks: JoinSet<()>,
    /// Packets this peer's writers could not keep up with.
    lagged: Arc<AtomicU64>,
    /// Hands the video writer a new output to move to at its next keyframe.
    video_switch: Option<mpsc::Sender<broadcast::Receiver<Bytes>>>,
    _live: Live,
}

struct Handler {
    session: SessionId,
    events: mpsc::Sender<PeerEvent>,
    gathered: watch::Sender<bool>,
}

impl Handler {
    fn forward(&self, kind: PeerEventKind) {
        if let Err(e) = self.events.try_send(PeerEvent {
            session: self.session,
            kind,
        }) {
            tracing::warn!(session = %self.session, "room event queue full, dropped: {e}");
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let state = match state {
            RTCPeerConnectionState::Connected => ConnectionState::Connected,
            RTCPeerConnectionState::Disconnected => ConnectionState::Disconnected,
            RTCPeerConnectionState::Failed => ConnectionState::Failed,
            RTCPeerConnectionState::Closed => ConnectionState::Closed,
            _ => ConnectionState::Connecting,
        };
        self.forward(PeerEventKind::State(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = match track.kind().await {
            RtpCodecKind::Audio => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
        let codec = track.codec(ssrc).await;
        let Some(codec) = codec else {
            tracing::warn!(session = %self.session, "incoming {kind} track without a codec");
            return;
        };
        let codec = InputCodec {
            kind,
            mime_type: codec.mime_type.clone(),
            clock_rate: codec.clock_rate,
        };
        self.forward(PeerEventKind::Track(RemoteTrack {
            source: TrackSource::Bound(track),
            codec,
        }));
    }
}

impl PeerFactory {
    /// A factory with the server's transport settings.
    pub fn new(config: RtcConfig) -> PeerFactory {
        let mdns = match rtc::mdns::MulticastSocket::new().into_std() {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(
                    "no multicast here ({e}): browsers' mDNS (.local) candidates will not be \
                     resolved; peer-reflexive candidates from connectivity checks still connect"
                );
                false
            }
        };
        PeerFactory { config, mdns }
    }

    /// Answers `offer` for `session`: builds the connection, adds the tracks of `plan`, gathers
    /// candidates (bounded by the configured deadline) and returns the peer with the complete
    /// answer SDP, candidates included, so clients that do not trickle can connect.
    pub async fn answer(
        &self,
        session: SessionId,
        offer: &str,
        plan: SendPlan,
        events: mpsc::Sender<PeerEvent>,
    ) -> Result<(Peer, String), PeerError> {
        let summary = inspect_offer(offer)?;
        let routes = routing::RouteTable::for_offer(&summary);
        let (peer, mut gathered) = self.new_peer(session, events, routes).await?;
        let result = async {
            let offer = offer::for_webrtc_rs(offer, &summary);
            let offer = RTCSessionDescription::offer(offer.into_owned())
                .map_err(|e| PeerError::BadOffer(e.to_string()))?;
            peer.pc
                .set_remote_description(offer)
                .await
                .map_err(|e| PeerError::BadOffer(e.to_string()))?;
            let mut outgoing = Vec::new();
            for (kind, wanted) in [
                (MediaKind::Video, plan.video),
                (MediaKind::Audio, plan.audio),
            ] {
                if wanted {
                    outgoing
                        .push(add_outgoing(&peer.pc, session, kind, plan.video_codec, None).await?);
                }
            }
            let answer = peer
                .pc
                .create_answer(None)
                .await
                .map_err(rtc_err("creating the answer"))?;
            peer.pc
                .set_local_description(answer)
                .await
                .map_err(rtc_err("setting the answer"))?;
            fix_payload_types(&peer.pc, &mut outgoing).await;
            let sdp =
                gathered_description(&peer.pc, &mut gathered, self.config.gather_timeout).await?;
            let parameters = answer::AnswerParameters {
                h264_level: plan.h264_level,
            };
            Ok::<_, PeerError>((outgoing, answer::rewrite(&sdp, &summary, parameters)))
        }
        .await;
        peer.settle(result).await
    }

    /// The offering side, for clients (the load generator): an offer that sends the kinds in
    /// `send` and receives the kinds in `receive`, with every candidate in it. Apply the
    /// server's answer with [`Peer::accept_answer`].
    pub async fn offer(
        &self,
        session: SessionId,
        send: SendPlan,
        receive: SendPlan,
        events: mpsc::Sender<PeerEvent>,
    ) -> Result<(Peer, String), PeerError> {
        let (peer, mut gathered) = self.new_peer(session, events, None).await?;
        let result = async {
            let mut outgoing = Vec::new();
            for (kind, sends, receives) in [
                (MediaKind::Video, send.video, receive.video),
                (MediaKind::Audio, send.audio, receive.audio),
            ] {
                let direction = match (sends, receives) {
                    (true, true) => RTCRtpTransceiverDirection::Sendrecv,
                    (true, false) => RTCRtpTransceiverDirection::Sendonly,
                    (false, true) => RTCRtpTransceiverDirection::Recvonly,
                    (false, false) => continue,
                };
                if sends {
                    outgoing.push(
                        add_outgoing(&peer.pc, session, kind, send.video_codec, Some(direction))
                            .await?,
                    );
                } else {
                    let codec_kind = match kind {
                        MediaKind::Video => RtpCodecKind::Video,
                        MediaKind::Audio => RtpCodecKind::Audio,
                    };
                    peer.pc
                        .add_transceiver_from_kind(
                            codec_kind,
                            Some(RTCRtpTransceiverInit {
                                direction,
                                ..Default::default()
                            }),
                        )
                        .await
                        .map_err(rtc_err("adding a receiving transceiver"))?;
                }
            }
            let offer = peer
                .pc
                .create_offer(None)
                .await
                .map_err(rtc_err("creating the offer"))?;
            peer.pc
                .set_local_description(offer)
                .await
                .map_err(rtc_err("setting the offer"))?;
            let sdp =
                gathered_description(&peer.pc, &mut gathered, self.config.gather_timeout).await?;
            Ok::<_, PeerError>((outgoing, sdp))
        }
        .await;
        peer.settle(result).await
    }

    /// A connection for `session`; `routes` places the streams the offer declared no SSRC for.
    async fn new_peer(
        &self,
        session: SessionId,
        events: mpsc::Sender<PeerEvent>,
        routes: Option<routing::RouteTable>,
    ) -> Result<(Peer, watch::Receiver<bool>), PeerError> {
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let handler = Arc::new(Handler {
            session,
            events: events.clone(),
            gathered: gathered_tx,
        });
        let (pc, router) = self.build(handler, routes).await?;
        let mut peer = Peer {
            session,
            pc: Arc::new(pc),
            outgoing: Vec::new(),
            remote_video: None,
            router_plis: None,
            routed_dropped: None,
            events,
            tasks: JoinSet::new(),
            lagged: Arc::new(AtomicU64::new(0)),
            video_switch: None,
            _live: Live::new(&metrics::PEERS),
        };
        if let Some(router) = router {
            peer.announce_routed_streams(router);
        }
        Ok((peer, gathered_rx))
    }

    async fn build(
        &self,
        handler: Arc<Handler>,
        routes: Option<routing::RouteTable>,
    ) -> Result<
        (
            impl PeerConnection + use<>,
            Option<stream_router::RouterHandle>,
        ),
        PeerError,
    > {
        let mut settings = SettingEngineBuilder::new()
            // Notice a vanished peer within seconds, not the default half minute: its tile
            // should not stay frozen on everyone's screen.
            .with_ice_timeouts(
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(8)),
                Some(Duration::from_secs(2)),
            )
            // Connectivity checks every 50 ms (RFC 8445's Ta, what browsers pace at) instead of
            // 200 ms: joining is faster by several check rounds.
            .with_ice_connection_attempts(Some(Duration::from_millis(50)), Some(25));
        if !self.mdns {
            settings = settings.with_multicast_dns_mode(MulticastDnsMode::Disabled);
        }
        let ip = self.config.rtc_ip;
        if ip.is_some_and(|ip| ip.is_loopback()) {
            // Asked for explicitly (tests, a same-host proxy): loopback is then the only address.
            settings = settings.with_include_loopback_candidate(true);
        }
        if let Some(public) = self.config.public_ip {
            settings =
                settings.with_nat_1to1_ips(vec![public.to_string()], RTCIceCandidateType::Host);
        }
        let settings = settings.build();

        let bind_ip: IpAddr = ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let ports: Vec<u16> = match self.config.udp_ports {
            None => vec![0],
            Some(range) => {
                // Start at a random port of the range so concurrent joins rarely collide.
                let span = (range.high - range.low) as usize + 1;
                let start = rand::random::<u32>() as usize % span;
                (0..span.min(PORT_ATTEMPTS))
                    .map(|i| range.low + ((start + i) % span) as u16)
                    .collect()
            }
        };
        let mut last_err = None;
        for port in ports {
            // Neither the engine nor the registry is Clone: each attempt builds its own.
            let mut media_engine = MediaEngine::default();
            register_codecs(&mut media_engine)?;
            let registry = register_default_interceptors(Registry::new(), &mut media_engine)
                .map_err(|e| PeerError::Rtc {
                    context: "registering interceptors",
                    message: e.to_string(),
                })?;
            let mut registry = keyframe_interceptor::register(registry);
            let mut router = None;
            if let Some(routes) = &routes {
                let (interceptor, handle) = stream_router::StreamRouter::new(routes.clone());
                registry = registry.with(Slot::from(stream_router::SLOT), interceptor);
                router = Some(handle);
            }
            let built = PeerConnectionBuilder::new()
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_setting_engine(settings.clone())
                .with_handler(handler.clone())
                .with_udp_addrs(vec![SocketAddr::new(bind_ip, port)])
                .build()
                .await;
            match built {
                Ok(pc) => return Ok((pc, router)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(PeerError::Rtc {
            context: "binding a media socket",
            message: last_err.map(|e| e.to_string()).unwrap_or_default(),
        })
    }
}

fn register_codecs(media_engine: &mut MediaEngine) -> Result<(), PeerError> {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    let video = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![
                fb("goog-remb", ""),
                fb("ccm", "fir"),
                fb("nack", ""),
                fb("nack", "pli"),
            ],
        },
        payload_type: VP8_PT,
    };
    let h264 = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: H264_FMTP.to_owned(),
            rtcp_feedback: vec![
                fb("goog-remb", ""),
                fb("ccm", "fir"),
                fb("nack", ""),
                fb("nack", "pli"),
            ],
        },
        payload_type: H264_PT,
    };
    let audio = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: OPUS_PT,
    };
    // The MID header extension (RFC 8843 §15.2), answered when offered: a sender that
    // declares no SSRC is then placed by the mid in its packets (see `routing`).
    let mid = || RTCRtpHeaderExtensionCapability {
        uri: offer::MID_EXTENSION_URI.to_owned(),
    };
    media_engine
        .register_codec(video, RtpCodecKind::Video)
        .and_then(|_| media_engine.register_codec(h264, RtpCodecKind::Video))
        .and_then(|_| media_engine.register_codec(audio, RtpCodecKind::Audio))
        .and_then(|_| media_engine.register_header_extension(mid(), RtpCodecKind::Video, None))
        .and_then(|_| media_engine.register_header_extension(mid(), RtpCodecKind::Audio, None))
        .map_err(|e| PeerError::Rtc {
            context: "registering codecs",
            message: e.to_string(),
        })
}

/// The next packet of an optional output, or never.
async fn recv_opt(
    rx: &mut Option<broadcast::Receiver<Bytes>>,
) -> Result<Bytes, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Keeps one outgoing stream's sequence numbers and timestamps continuous when its source
/// changes (another output, with its own numbering): the receiver sees one stream.
#[derive(Default)]
struct Continuity {
    seq_offset: u16,
    ts_offset: u32,
    last: Option<(u16, u32)>,
    /// The next packet starts a new source.
    restarting: bool,
}

impl Continuity {
    fn restart(&mut self) {
        self.restarting = true;
    }

    fn apply(&mut self, header: &mut rtc::rtp::header::Header) {
        if self.restarting
            && let Some((seq, ts)) = self.last
        {
            // Continue right after the last packet sent, one 30 fps frame later.
            self.seq_offset = seq.wrapping_add(1).wrapping_sub(header.sequence_number);
            self.ts_offset = ts.wrapping_add(3000).wrapping_sub(header.timestamp);
        }
        self.restarting = false;
        header.sequence_number = header.sequence_number.wrapping_add(self.seq_offset);
        header.timestamp = header.timestamp.wrapping_add(self.ts_offset);
        self.last = Some((header.sequence_number, header.timestamp));
    }
}

/// Whether an RTP payload of `codec` starts a keyframe.
fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => is_vp8_keyframe_start(payload),
        VideoCodec::H264 => is_h264_keyframe_start(payload),
    }
}

/// Whether an RTP payload starts an H.264 keyframe (RFC 6184): an SPS or IDR NAL unit, alone,
/// inside a STAP-A, or as the first fragment of an FU-A. Our payloader sends SPS/PPS before
/// every IDR, so the SPS is where a receiver can start.
fn is_h264_keyframe_start(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    let Some(&header) = payload.first() else {
        return false;
    };
    match header & 0x1f {
        IDR | SPS => true,
        24 => {
            // STAP-A: 16-bit sizes, each followed by a NAL unit.
            let mut at = 1;
            while at + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if matches!(payload[at + 2] & 0x1f, IDR | SPS) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        // FU-A: start bit and the fragmented unit's type.
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == IDR),
        _ => false,
    }
}

/// Whether an RTP payload starts a VP8 keyframe (RFC 7741): the descriptor's S bit with
/// partition 0, and the P bit of the frame header clear.
fn is_vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    if first & 0x10 == 0 || first & 0x0f != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = payload.get(1) else {
            return false;
        };
        at = 2;
        if ext & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            at += if payload.get(at).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID / KEYIDX
        }
    }
    payload.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// The payload type each outgoing track must carry is only known once negotiated. Senders
/// come in m-line order, which is the offerer's, so they are matched by track.
async fn fix_payload_types(pc: &Arc<dyn PeerConnection>, outgoing: &mut [Outgoing]) {
    for sender in pc.get_senders().await {
        let track_id = sender.track().track_id().await;
        let Some(out) = outgoing.iter_mut().find(|o| o.track_id == track_id) else {
            continue;
        };
        if let Ok(params) = sender.get_parameters().await
            && let Some(codec) = params
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(out.mime_type))
        {
            out.payload_type = codec.payload_type;
        }
    }
}

/// Waits (bounded) for ICE gathering, then returns the local description with its candidates.
async fn gathered_description(
    pc: &Arc<dyn PeerConnection>,
    gathered: &mut watch::Receiver<bool>,
    deadline: Duration,
) -> Result<String, PeerError> {
    if tokio::time::timeout(deadline, gathered.wait_for(|done| *done))
        .await
        .is_err()
    {
        tracing::warn!("ICE gathering took over {deadline:?}; going on with what we have");
    }
    Ok(pc
        .local_description()
        .await
        .ok_or(PeerError::Rtc {
            context: "reading the local description",
            message: "none".into(),
        })?
        .sdp)
}

async fn add_outgoing(
    pc: &Arc<dyn PeerConnection>,
    session: SessionId,
    kind: MediaKind,
    video_codec: VideoCodec,
    direction: Option<RTCRtpTransceiverDirection>,
) -> Result<Outgoing, PeerError> {
    let ssrc = rand::random::<u32>();
    let (codec_kind, codec, pt, mime_type) = match (kind, video_codec) {
        (MediaKind::Video, VideoCodec::Vp8) => (
            RtpCodecKind::Video,
            RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90000,
                ..Default::default()
            },
            VP8_PT,
            MIME_TYPE_VP8,
        ),
        (MediaKind::Video, VideoCodec::H264) => (
            RtpCodecKind::Video,
            RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90000,
                sdp_fmtp_line: H264_FMTP.to_owned(),
                ..Default::default()
            },
            H264_PT,
            MIME_TYPE_H264,
        ),
        (MediaKind::Audio, _) => (
            RtpCodecKind::Audio,
            RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48000,
                channels: 2,
                ..Default::default()
            },
            OPUS_PT,
            MIME_TYPE_OPUS,
        ),
    };
    let track_id = format!("mix-{kind}");
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("tessera-{session}"),
        track_id.clone(),
        format!("tessera mixed {kind}"),
        codec_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )));
    match direction {
        // Answering: the offer's transceiver of this kind takes the track.
        None => {
            pc.add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(rtc_err("adding an outgoing track"))?;
        }
        Some(direction) => {
            pc.add_transceiver_from_track(
                track.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction,
                    ..Default::default()
                }),
            )
            .await
            .map_err(rtc_err("adding an outgoing transceiver"))?;
        }
    }
    Ok(Outgoing {
        kind,
        video_codec,
        track_id,
        mime_type,
        track,
        ssrc,
        payload_type: pt,
    })
}

impl Peer {
    /// Ends a negotiation: keeps the outgoing tracks and returns the SDP, or closes the
    /// connection on failure so nothing of it outlives the error.
    async fn settle(
        mut self,
        result: Result<(Vec<Outgoing>, String), PeerError>,
    ) -> Result<(Peer, String), PeerError> {
        match result {
            Ok((outgoing, sdp)) => {
                for out in outgoing {
                    self.watch_feedback(&out);
                    self.outgoing.push(out);
                }
                Ok((self, sdp))
            }
            Err(e) => {
                self.close().await;
                Err(e)
            }
        }
    }

    /// Applies the answer to an offer made with [`PeerFactory::offer`].
    pub async fn accept_answer(&mut self, sdp: &str) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| PeerError::BadOffer(e.to_string()))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(rtc_err("setting the answer"))?;
        fix_payload_types(&self.pc, &mut self.outgoing).await;
        Ok(())
    }

    /// Which session this peer belongs to.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Packets of the room's outputs this peer dropped because it fell behind.
    pub fn lagged_packets(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Starts copying `output` (the room's encoded RTP of `kind`) into this peer's outgoing
    /// track of that kind, if it has one.
    pub fn start_sending(&mut self, kind: MediaKind, output: broadcast::Receiver<Bytes>) {
        let Some(out) = self.outgoing.iter().find(|o| o.kind == kind) else {
            return;
        };
        let (track, ssrc, pt) = (out.track.clone(), out.ssrc, out.payload_type);
        let codec = out.video_codec;
        let (lagged, events, session) = (self.lagged.clone(), self.events.clone(), self.session);
        let (switch_tx, mut switches) = mpsc::channel::<broadcast::Receiver<Bytes>>(1);
        if kind == MediaKind::Video {
            self.video_switch = Some(switch_tx);
        }
        self.tasks.spawn(async move {
            let _live = Live::new(&metrics::MEDIA_TASKS);
            let mut current = output;
            // The output to move to, once it shows a keyframe (a tier switch).
            let mut next: Option<broadcast::Receiver<Bytes>> = None;
            // A receiver's video starts at a keyframe: packets of the frames before it could
            // not be decoded, and the decoder would only answer them with a PLI that delays the
            // next forced keyframe for everyone (they are coalesced).
            let mut await_keyframe = kind == MediaKind::Video;
            let mut rewrite = Continuity::default();
            loop {
                let (bytes, from_next) = tokio::select! {
                    r = current.recv() => (r, false),
                    r = recv_opt(&mut next) => (r, true),
                    Some(rx) = switches.recv() => {
                        next = Some(rx);
                        continue;
                    }
                };
                match bytes {
                    Ok(bytes) => {
                        let Ok(mut packet) = rtc::rtp::Packet::unmarshal(&mut &bytes[..]) else {
                            continue;
                        };
                        if from_next {
                            // Move over at the new output's keyframe; until then the old one
                            // keeps playing, so the picture never breaks.
                            if !is_keyframe_start(codec, &packet.payload) {
                                continue;
                            }
                            current = next.take().expect("a packet came from it");
                            rewrite.restart();
                            await_keyframe = false;
                        } else if await_keyframe {
                            if !is_keyframe_start(codec, &packet.payload) {
                                continue;
                            }
                            await_keyframe = false;
                        }
                        rewrite.apply(&mut packet.header);
                        packet.header.ssrc = ssrc;
                        packet.header.payload_type = pt;
                        // Fails only before DTLS is up or after close; either way nothing to do.
                        let _ = track.write_rtp(packet).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        if from_next {
                            continue;
                        }
                        // This receiver fell behind the room: its packets are gone, so its
                        // decoder needs a fresh keyframe to recover.
                        lagged.fetch_add(n, Ordering::Relaxed);
                        if kind == MediaKind::Video {
                            await_keyframe = true;
                            let _ = events.try_send(PeerEvent {
                                session,
                                kind: PeerEventKind::KeyframeRequested,
                            });
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) if from_next => next = None,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Moves this receiver's video to another output (a tier switch) at that output's next
    /// keyframe, which the caller should force.
    pub fn switch_video(&self, output: broadcast::Receiver<Bytes>) {
        if let Some(tx) = &self.video_switch {
            // Capacity 1 and never full in practice: the room switches a receiver at most every
            // few seconds and the writer takes a switch at once. If it were full, this switch
            // would be dropped and the receiver would stay on its old output while the room
            // counts it on the new one (not guarded: it cannot happen at that pace).
            let _ = tx.try_send(output);
        }
    }

    /// Starts moving `track`'s packets into `sink`.
    pub fn start_receiving(&mut self, track: RemoteTrack, sink: Arc<dyn RtpSink>) {
        let session = self.session;
        let kind = track.codec.kind;
        let feedback = match track.source {
            TrackSource::Bound(remote) => {
                let reader = remote.clone();
                self.tasks.spawn(async move {
                    let _live = Live::new(&metrics::MEDIA_TASKS);
                    while let Some(event) = reader.poll().await {
                        match event {
                            TrackRemoteEvent::OnRtpPacket(packet) => {
                                if let Ok(bytes) = packet.marshal() {
                                    sink.push(bytes.freeze());
                                }
                            }
                            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
                            _ => {}
                        }
                    }
                    tracing::debug!(%session, %kind, "incoming track ended");
                });
                VideoFeedback::Bound(remote)
            }
            TrackSource::Routed { mut packets, ssrc } => {
                self.tasks.spawn(async move {
                    let _live = Live::new(&metrics::MEDIA_TASKS);
                    while let Some(packet) = packets.recv().await {
                        sink.push(packet);
                    }
                    tracing::debug!(%session, %kind, "routed stream ended");
                });
                VideoFeedback::Routed(ssrc)
            }
        };
        if kind == MediaKind::Video {
            self.remote_video = Some(feedback);
        }
    }

    /// Announces each stream the router places as a [`PeerEventKind::Track`], like the tracks
    /// webrtc-rs binds itself. The task is the peer's, so it ends with it; it waits for room in
    /// the room's queue (a track is control: never dropped).
    fn announce_routed_streams(&mut self, router: stream_router::RouterHandle) {
        let stream_router::RouterHandle {
            mut streams,
            plis,
            dropped,
        } = router;
        self.router_plis = Some(plis);
        self.routed_dropped = Some(dropped);
        let (events, session) = (self.events.clone(), self.session);
        self.tasks.spawn(async move {
            while let Some(stream) = streams.recv().await {
                let kind = stream.line.kind;
                let Some(format) = stream
                    .line
                    .formats
                    .iter()
                    .find(|f| f.payload_type == stream.payload_type)
                else {
                    continue;
                };
                tracing::info!(
                    %session, %kind, mid = %stream.line.mid, ssrc = stream.ssrc,
                    by = if stream.by_mid { "mid" } else { "payload type" },
                    "receiving a stream the offer declared no SSRC for (RFC 8843 §9.2)"
                );
                let codec = InputCodec {
                    kind,
                    mime_type: format!("{kind}/{}", format.name),
                    clock_rate: format.clock_rate,
                };
                let track = RemoteTrack {
                    source: TrackSource::Routed {
                        packets: stream.packets,
                        ssrc: stream.ssrc,
                    },
                    codec,
                };
                let event = PeerEvent {
                    session,
                    kind: PeerEventKind::Track(track),
                };
                if events.send(event).await.is_err() {
                    break;
                }
            }
        });
    }

    /// Adds the candidates of a trickle fragment (same ICE session). Returns how many were
    /// taken: a candidate the agent cannot use (an unresolvable mDNS name, an unknown
    /// transport) is skipped, as a browser would; connectivity checks find the way anyway.
    pub async fn add_remote_candidates(&self, fragment: &TrickleFragment) -> usize {
        let mut taken = 0;
        for c in &fragment.candidates {
            let init = webrtc::peer_connection::RTCIceCandidateInit {
                candidate: c.candidate.clone(),
                sdp_mid: c.mid.clone(),
                sdp_mline_index: Some(c.mline_index),
                username_fragment: fragment.ufrag.clone(),
                ..Default::default()
            };
            match self.pc.add_ice_candidate(init).await {
                Ok(()) => taken += 1,
                Err(e) => {
                    tracing::debug!(session = %self.session, candidate = %c.candidate, "trickled candidate skipped: {e}")
                }
            }
        }
        taken
    }

    /// Sends the remote video sender a PLI (it should send a keyframe); false if there was no
    /// incoming video to send it for or the send failed.
    pub async fn request_keyframe(&self) -> bool {
        let track = match &self.remote_video {
            None => {
                tracing::debug!(session = %self.session, "no incoming video to send a PLI to");
                return false;
            }
            Some(VideoFeedback::Routed(ssrc)) => {
                tracing::debug!(session = %self.session, media_ssrc = ssrc, "sending PLI (routed)");
                return self
                    .router_plis
                    .as_ref()
                    .is_some_and(|plis| plis.try_send(*ssrc).is_ok());
            }
            Some(VideoFeedback::Bound(track)) => track,
        };
        let Some(media_ssrc) = track.ssrcs().await.first().copied() else {
            tracing::debug!(session = %self.session, "no SSRC to send a PLI for yet");
            return false;
        };
        tracing::debug!(session = %self.session, media_ssrc, "sending PLI");
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        match track.write_rtcp(vec![Box::new(pli)]).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(session = %self.session, "sending PLI: {e}");
                false
            }
        }
    }

    /// Closes the connection and stops every task of this peer.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        if let Err(e) = self.pc.close().await {
            tracing::debug!(session = %self.session, "closing peer: {e}");
        }
        while self.tasks.join_next().await.is_some() {}
    }

    fn watch_feedback(&mut self, out: &Outgoing) {
        if out.kind != MediaKind::Video {
            return;
        }
        let (track, events, session) = (out.track.clone(), self.events.clone(), self.session);
        self.tasks.spawn(async move {
            let mut last_estimate: Option<std::time::Instant> = None;
            while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = track.poll().await {
                let wants_keyframe = packets.iter().any(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                });
                if wants_keyframe {
                    let _ = events.try_send(PeerEvent {
                        session,
                        kind: PeerEventKind::KeyframeRequested,
                    });
                }
                let estimate = packets.iter().find_map(|p| {
                    p.as_any()
                        .downcast_ref::<ReceiverEstimatedMaximumBitrate>()
                        .map(|r| r.bitrate.max(0.0) as u64)
                });
                let now = std::time::Instant::now();
                if let Some(bps) = estimate
                    && last_estimate.is_none_or(|t| now >= t + ESTIMATE_INTERVAL)
                {
                    last_estimate = Some(now);
                    let _ = events.try_send(PeerEvent {
                        session,
                        kind: PeerEventKind::BandwidthEstimate(bps),
                    });
                }
            }
        });
    }
}
