//! The simulated participants' WebRTC side, on webrtc-rs as any client would use it: a
//! connection on loopback that offers what it sends and receives (VP8 and Opus, from the one
//! codec table in `tessera::rtp::codecs`), applies the server's answer, writes replayed RTP into
//! its tracks and hands the server's packets to a sink. Everything here is the client's side of
//! WHIP/WHEP; the server's side is `tessera::peer`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::media::dump::LEVEL_EXTENSION_ID;
use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    Registry, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::shared::marshal::{Marshal, Unmarshal};
use tessera::rtp::codecs::{self, Codec};
use tessera::rtp::keyframe::is_keyframe_start;
use tessera::types::{MediaKind, RtpSink, VideoCodec};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState,
};

/// How long gathering may take on loopback before the offer goes out with what it has.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// Which kinds a client sends, and which it receives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kinds {
    /// Video (VP8).
    pub video: bool,
    /// Audio (Opus).
    pub audio: bool,
    /// The audio sent is a quiet microphone's (Opus frames of near-silence, as a browser sends
    /// while its user listens) instead of the clicks over a hum (someone talking).
    pub quiet: bool,
}

/// What the connection reports: the client's task reads these.
pub enum ClientEvent {
    /// The server's track of this kind arrived.
    Track(MediaKind, Arc<dyn TrackRemote>),
    /// The connection's state changed.
    State(RTCPeerConnectionState),
}

/// A sending track: where replayed packets go, stamped with its SSRC and payload type.
struct Sending {
    kind: MediaKind,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
}

/// One client's connection and the tasks that move its media.
pub struct ClientPeer {
    pc: Arc<dyn PeerConnection>,
    sending: Vec<Sending>,
    /// The server's video: its track and the SSRC its packets carry, for PLIs.
    remote_video: Option<(Arc<dyn TrackRemote>, Arc<AtomicU32>)>,
    /// Whether the connection is up (DTLS done): writing before that only fails.
    connected: watch::Receiver<bool>,
    /// The id the answer gives the RFC 6464 audio level extension, if it took it.
    level_extension: Option<u8>,
    tasks: JoinSet<()>,
}

impl ClientPeer {
    /// A connection that sends `send` and receives `receive`, and its offer with every
    /// candidate in it (no trickle). Events arrive on `events`.
    pub async fn offer(
        send: Kinds,
        receive: Kinds,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<(ClientPeer, String)> {
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (connected_tx, connected) = watch::channel(false);
        let handler = Arc::new(Handler {
            events,
            gathered: gathered_tx,
            connected: connected_tx,
        });
        let pc: Arc<dyn PeerConnection> = Arc::new(build(handler).await?);
        let mut peer = ClientPeer {
            pc,
            sending: Vec::new(),
            remote_video: None,
            connected,
            level_extension: None,
            tasks: JoinSet::new(),
        };
        let offered = async {
            for (kind, table, sends, receives) in [
                (MediaKind::Video, &codecs::VP8, send.video, receive.video),
                (MediaKind::Audio, &codecs::OPUS, send.audio, receive.audio),
            ] {
                let direction = match (sends, receives) {
                    (true, true) => RTCRtpTransceiverDirection::Sendrecv,
                    (true, false) => RTCRtpTransceiverDirection::Sendonly,
                    (false, true) => RTCRtpTransceiverDirection::Recvonly,
                    (false, false) => continue,
                };
                let init = Some(RTCRtpTransceiverInit {
                    direction,
                    ..Default::default()
                });
                if sends {
                    let ssrc = rand::random::<u32>();
                    let track = Arc::new(local_track(kind, table, ssrc));
                    peer.pc
                        .add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, init)
                        .await
                        .context("adding a sending transceiver")?;
                    peer.sending.push(Sending {
                        kind,
                        track,
                        ssrc,
                        payload_type: table.payload_type,
                    });
                } else {
                    peer.pc
                        .add_transceiver_from_kind(codec_kind(kind), init)
                        .await
                        .context("adding a receiving transceiver")?;
                }
            }
            let offer = peer
                .pc
                .create_offer(None)
                .await
                .context("creating the offer")?;
            peer.pc
                .set_local_description(offer)
                .await
                .context("setting the offer")?;
            // Loopback gathers at once; past the deadline the offer goes with what it has.
            let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|done| *done)).await;
            let sdp = peer
                .pc
                .local_description()
                .await
                .ok_or_else(|| anyhow!("no local description"))?
                .sdp;
            Ok::<_, anyhow::Error>(sdp)
        }
        .await;
        match offered {
            Ok(sdp) => Ok((peer, sdp)),
            Err(e) => {
                peer.close().await;
                Err(e)
            }
        }
    }

    /// Applies the server's answer.
    pub async fn accept_answer(&mut self, sdp: &str) -> Result<()> {
        self.level_extension = tessera::peer::inspect_offer(sdp)
            .ok()
            .and_then(|s| s.first(MediaKind::Audio)?.audio_level_extension);
        let answer = RTCSessionDescription::answer(sdp.to_owned()).context("parsing the answer")?;
        self.pc
            .set_remote_description(answer)
            .await
            .context("setting the answer")
    }

    /// Starts writing `packets` (RTP of `kind`, as replayed) into the track of that kind, with
    /// the track's SSRC and payload type, once the connection is up; video starts at a
    /// keyframe, and again after a lag.
    pub fn start_sending(&mut self, kind: MediaKind, mut packets: broadcast::Receiver<Bytes>) {
        let Some(out) = self.sending.iter().find(|s| s.kind == kind) else {
            return;
        };
        let (track, ssrc, payload_type) = (out.track.clone(), out.ssrc, out.payload_type);
        let level_extension = self.level_extension;
        let mut connected = self.connected.clone();
        self.tasks.spawn(async move {
            if connected.wait_for(|up| *up).await.is_err() {
                return;
            }
            let mut await_keyframe = kind == MediaKind::Video;
            loop {
                let bytes = match packets.recv().await {
                    Ok(bytes) => bytes,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        await_keyframe = kind == MediaKind::Video;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let Ok(mut packet) = rtc::rtp::Packet::unmarshal(&mut &bytes[..]) else {
                    continue;
                };
                if await_keyframe {
                    if !is_keyframe_start(VideoCodec::Vp8, &packet.payload) {
                        continue;
                    }
                    await_keyframe = false;
                }
                packet.header.ssrc = ssrc;
                packet.header.payload_type = payload_type;
                // The replayed audio states its level as a browser does, under the id this
                // connection negotiated (or not at all if the answer did not take it).
                if let Some(level) = packet.header.get_extension(LEVEL_EXTENSION_ID) {
                    let _ = packet.header.del_extension(LEVEL_EXTENSION_ID);
                    if let Some(id) = level_extension {
                        let _ = packet.header.set_extension(id, level);
                    }
                }
                // Fails only before DTLS is up or after close; either way nothing to do.
                let _ = track.write_rtp(packet).await;
            }
        });
    }

    /// Starts moving the server's `track` of `kind` into `sink`.
    pub fn start_receiving(
        &mut self,
        kind: MediaKind,
        track: Arc<dyn TrackRemote>,
        sink: Arc<dyn RtpSink>,
    ) {
        let ssrc = Arc::new(AtomicU32::new(0));
        if kind == MediaKind::Video {
            self.remote_video = Some((track.clone(), ssrc.clone()));
        }
        self.tasks.spawn(async move {
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        ssrc.store(packet.header.ssrc, Ordering::Relaxed);
                        if let Ok(bytes) = packet.marshal() {
                            sink.push(bytes.freeze());
                        }
                    }
                    TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
                    _ => {}
                }
            }
        });
    }

    /// Asks the server for a keyframe of its video (a PLI), as a browser's decoder does after a
    /// loss. Nothing to do before the first packet (no SSRC yet) or without video.
    pub async fn ask_keyframe(&self) {
        let Some((track, ssrc)) = &self.remote_video else {
            return;
        };
        let media_ssrc = ssrc.load(Ordering::Relaxed);
        if media_ssrc != 0 {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            // A failure means the connection is going; the event loop sees that.
            let _ = track.write_rtcp(vec![Box::new(pli)]).await;
        }
    }

    /// Closes the connection and stops its tasks.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        let _ = self.pc.close().await;
        while self.tasks.join_next().await.is_some() {}
    }
}

fn codec_kind(kind: MediaKind) -> RtpCodecKind {
    match kind {
        MediaKind::Video => RtpCodecKind::Video,
        MediaKind::Audio => RtpCodecKind::Audio,
    }
}

fn rtp_codec(codec: &Codec) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: codec.mime_type.to_owned(),
        clock_rate: codec.clock_rate,
        channels: codec.channels,
        sdp_fmtp_line: codec.fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A track with a fixed SSRC: webrtc-rs drops written packets that carry another.
fn local_track(kind: MediaKind, codec: &Codec, ssrc: u32) -> TrackLocalStaticRTP {
    TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "bench".to_owned(),
        format!("bench-{kind}"),
        format!("bench {kind}"),
        codec_kind(kind),
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec: rtp_codec(codec),
            ..Default::default()
        }],
    ))
}

/// A connection on 127.0.0.1 only, VP8 + Opus, webrtc-rs's default interceptors (NACK,
/// reports, TWCC), no ICE servers: the benchmark never leaves the machine.
async fn build(handler: Arc<Handler>) -> Result<impl PeerConnection + use<>> {
    let mut media_engine = MediaEngine::default();
    for (codec, kind) in [
        (&codecs::VP8, RtpCodecKind::Video),
        (&codecs::OPUS, RtpCodecKind::Audio),
    ] {
        let parameters = RTCRtpCodecParameters {
            rtp_codec: rtp_codec(codec),
            payload_type: codec.payload_type,
        };
        media_engine
            .register_codec(parameters, kind)
            .with_context(|| format!("registering {}", codec.mime_type))?;
    }
    tessera::peer::register_audio_level_extension(&mut media_engine)?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .context("registering the default interceptors")?;
    PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(vec![])
                .build(),
        )
        .with_media_engine(media_engine)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                // Checks every 50 ms, as browsers pace them (and as the server does): join
                // times are measured with a client that behaves like a browser.
                .with_ice_connection_attempts(Some(Duration::from_millis(50)), Some(25))
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .build(),
        )
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .context("building the peer connection")
}

/// Forwards what webrtc-rs reports to the client's task; waits for room rather than drop a
/// state change or a track (control).
struct Handler {
    events: mpsc::Sender<ClientEvent>,
    gathered: watch::Sender<bool>,
    connected: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.connected
            .send_replace(state == RTCPeerConnectionState::Connected);
        let _ = self.events.send(ClientEvent::State(state)).await;
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = match track.kind().await {
            RtpCodecKind::Audio => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        let _ = self.events.send(ClientEvent::Track(kind, track)).await;
    }
}
