//! The client's connection: its codecs (from `tessera::rtp::codecs`), tracks with fixed SSRCs,
//! a peer connection on loopback only, the offer with every candidate gathered, and the
//! tracks each role adds and starts once connected.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tessera::rtp::codecs;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::support::media::{OPUS_PAYLOAD_TYPE, VP8_PAYLOAD_TYPE};

use super::pumps::{
    MANGLED_QUEUE, SentCounter, answer_keyframe_requests, mangle_packets, send_packets,
};
use super::{GATHER_TIMEOUT, JoinOptions, Role, TestClient};

impl TestClient {
    /// Add this role's tracks/transceivers, video first. Returns, per source (same order as
    /// `self.sources`), the track and sender to start once connected.
    pub(super) async fn add_media(
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
    pub(super) async fn start_sending(
        &mut self,
        senders: Vec<(Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>)>,
        extensions: &[(String, u8, bytes::Bytes)],
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
            let mut packets = source
                .take_packets()
                .expect("each source's packets are taken once, here");
            let sent = match kind {
                RtpCodecKind::Video => SentCounter::Video,
                _ => SentCounter::Audio,
            };
            let extensions: Vec<(u8, bytes::Bytes)> = extensions
                .iter()
                .filter(|(k, _, _)| *k == kind.to_string())
                .map(|(_, id, value)| (*id, value.clone()))
                .collect();
            {
                let mut tasks = self
                    .tasks
                    .lock()
                    .expect("the task set lock is never poisoned");
                if let Some(mangle) = self.mangle {
                    let (tx, rx) = mpsc::channel(MANGLED_QUEUE);
                    tasks.spawn(mangle_packets(packets, tx, mangle));
                    packets = rx;
                }
                tasks.spawn(send_packets(
                    packets,
                    Arc::clone(&track),
                    ssrc,
                    payload_type,
                    extensions,
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
}

/// H.264 as a kiosk offers it.
fn h264_codec() -> RTCRtpCodecParameters {
    let mut codec = vp8_codec();
    codec.rtp_codec.mime_type = codecs::H264.mime_type.to_owned();
    codec.rtp_codec.sdp_fmtp_line = codecs::H264.fmtp.to_owned();
    codec.payload_type = codecs::H264.payload_type;
    codec
}

pub(in crate::support) fn vp8_codec() -> RTCRtpCodecParameters {
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
            // "nack" and "nack pli" are added by tessera's interceptors; FIR is ours.
            rtcp_feedback: vec![feedback("ccm", "fir")],
        },
        payload_type: VP8_PAYLOAD_TYPE,
    }
}

pub(in crate::support) fn opus_codec() -> RTCRtpCodecParameters {
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
pub(in crate::support) fn local_track(
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
                // Its retransmissions' own SSRC, where RTX is negotiated.
                rtx: (kind == RtpCodecKind::Video).then(|| RTCRtpRtxParameters {
                    ssrc: rand::random::<u32>(),
                }),
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
pub(in crate::support) async fn build_peer_connection(
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>> {
    build_peer_connection_with(handler, &JoinOptions::default()).await
}

/// The same as `options` say: offering H.264 (constrained baseline, packetization-mode 1) as
/// its only video codec when `h264_only` (a kiosk with a hardware decoder); bound elsewhere
/// and with ICE servers (a client in a test network).
pub(super) async fn build_peer_connection_with(
    handler: Arc<dyn PeerConnectionEventHandler>,
    options: &JoinOptions,
) -> Result<Arc<dyn PeerConnection>> {
    let mut media_engine = MediaEngine::default();
    let video = if options.h264_only {
        h264_codec()
    } else {
        vp8_codec()
    };
    // RTX (RFC 4588), as browsers offer it: retransmissions on a stream of their own.
    let rtx = if options.h264_only {
        codecs::H264_RTX
    } else {
        codecs::VP8_RTX
    };
    media_engine
        .register_codec(video, RtpCodecKind::Video)
        .context("registering the video codec")?;
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: rtx.mime_type.to_owned(),
                    clock_rate: rtx.clock_rate,
                    channels: 0,
                    sdp_fmtp_line: rtx.fmtp.to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: rtx.payload_type,
            },
            RtpCodecKind::Video,
        )
        .context("registering RTX")?;
    media_engine
        .register_codec(opus_codec(), RtpCodecKind::Audio)
        .context("registering Opus")?;
    if options.stated_level.is_some() {
        tessera::peer::register_audio_level_extension(&mut media_engine)?;
    }
    // The server's interceptors: webrtc-rs's defaults, each lost packet asked for a few times.
    let registry = tessera::peer::interceptors(&mut media_engine)?;
    // The server's own interceptor: last in the chain, it lets keyframe requests (and REMB)
    // reach the application, which by default sees no inbound RTCP.
    let registry = tessera::peer::register_keyframe_interceptor(registry);

    let pc = PeerConnectionBuilder::new()
        // No ICE servers unless a test network provides its own relay: tests must not touch
        // the internet.
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(options.ice_servers.clone())
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
        .with_udp_addrs(vec![
            options
                .bind
                .clone()
                .unwrap_or_else(|| "127.0.0.1:0".to_owned()),
        ])
        .build()
        .await
        .context("building the peer connection")?;
    Ok(Arc::new(pc))
}

/// Create the offer, wait (up to [`GATHER_TIMEOUT`]) for every candidate, and return the SDP.
pub(super) async fn create_offer(
    pc: &dyn PeerConnection,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
) -> Result<String> {
    let offer = pc.create_offer(None).await.context("creating the offer")?;
    set_local_and_gather(pc, offer, gathering).await
}

/// Apply our offer or answer, wait (up to [`GATHER_TIMEOUT`]) for every candidate, and return
/// the SDP with the candidates in it (non-trickle).
pub(in crate::support) async fn set_local_and_gather(
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
