//! The codecs of tessera's peer connections, from the one table in [`crate::rtp::codecs`]:
//! registered with webrtc-rs, given to the outgoing tracks, and matched to the payload types
//! each connection negotiated.

use std::sync::Arc;

use rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder, Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{MediaEngine, PeerConnection};

use super::{PeerError, offer, rtc_err};
use crate::rtp::codecs::{self, Codec};
use crate::types::{MediaKind, SessionId, VideoCodec};

/// An outgoing track and what it takes to write to it.
pub(super) struct Outgoing {
    pub(super) kind: MediaKind,
    /// The codec of the video it carries (meaningless for audio).
    pub(super) video_codec: VideoCodec,
    pub(super) track_id: String,
    pub(super) mime_type: &'static str,
    pub(super) track: Arc<TrackLocalStaticRTP>,
    pub(super) ssrc: u32,
    pub(super) payload_type: u8,
}

/// The webrtc-rs form of a table entry.
fn rtp_codec(codec: &Codec, rtcp_feedback: Vec<RTCPFeedback>) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: codec.mime_type.to_owned(),
        clock_rate: codec.clock_rate,
        channels: codec.channels,
        sdp_fmtp_line: codec.fmtp.to_owned(),
        rtcp_feedback,
    }
}

/// Registers tessera's codecs (VP8, H.264, Opus; with `rtx`, their RFC 4588 retransmission
/// formats too) and the MID and audio level header extensions.
pub(super) fn register_codecs(media_engine: &mut MediaEngine, rtx: bool) -> Result<(), PeerError> {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    let video_feedback = || {
        vec![
            fb("goog-remb", ""),
            fb("ccm", "fir"),
            fb("nack", ""),
            fb("nack", "pli"),
        ]
    };
    let parameters = |codec: &Codec, feedback| RTCRtpCodecParameters {
        rtp_codec: rtp_codec(codec, feedback),
        payload_type: codec.payload_type,
    };
    // The MID header extension (RFC 8843 §15.2), answered when offered: a sender that
    // declares no SSRC is then placed by the mid in its packets (see `routing`).
    let mid = || RTCRtpHeaderExtensionCapability {
        uri: offer::MID_EXTENSION_URI.to_owned(),
    };
    media_engine
        .register_codec(
            parameters(&codecs::VP8, video_feedback()),
            RtpCodecKind::Video,
        )
        .and_then(|_| {
            media_engine.register_codec(
                parameters(&codecs::H264, video_feedback()),
                RtpCodecKind::Video,
            )
        })
        .and_then(|_| {
            media_engine.register_codec(parameters(&codecs::OPUS, vec![]), RtpCodecKind::Audio)
        })
        .and_then(|_| {
            if !rtx {
                return Ok(());
            }
            media_engine
                .register_codec(parameters(&codecs::VP8_RTX, vec![]), RtpCodecKind::Video)
                .and_then(|_| {
                    media_engine
                        .register_codec(parameters(&codecs::H264_RTX, vec![]), RtpCodecKind::Video)
                })
        })
        .and_then(|_| media_engine.register_header_extension(mid(), RtpCodecKind::Video, None))
        .and_then(|_| media_engine.register_header_extension(mid(), RtpCodecKind::Audio, None))
        .map_err(|e| PeerError::Rtc {
            context: "registering codecs",
            message: e.to_string(),
        })?;
    // RFC 6464 audio levels, answered when offered (browsers do): the speaking detector then
    // reads each packet's level instead of decoding it (`media/input.rs`).
    register_audio_level_extension(media_engine)
}

/// How many times a lost packet is asked for again (NACK) before it is given up: webrtc-rs
/// 0.21.1's generator asks every 100 ms without end by default, and it sees a packet repaired
/// through RTX before that packet is unwrapped, so it would go on asking for a packet already
/// repaired, each ask answered by one more retransmission.
pub const NACKS_PER_PACKET: u16 = 3;

/// The interceptors of a connection: webrtc-rs's defaults (NACK and PLI feedback for video,
/// transport-wide congestion control reports, sender and receiver reports), with each lost
/// packet asked for at most [`NACKS_PER_PACKET`] times.
pub fn interceptors(media_engine: &mut MediaEngine) -> Result<Registry, PeerError> {
    for parameter in ["", "pli"] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_max_nacks_per_packet(NACKS_PER_PACKET)
                .build(),
        );
    let rtc = |context| {
        move |e: rtc::shared::error::Error| PeerError::Rtc {
            context,
            message: e.to_string(),
        }
    };
    configure_simulcast_extension_headers(media_engine)
        .map_err(rtc("registering the simulcast header extensions"))?;
    let registry = configure_twcc_receiver_only(registry, media_engine)
        .map_err(rtc("registering transport-wide congestion control"))?;
    Ok(configure_rtcp_reports(registry))
}

/// Registers the RFC 6464 audio level header extension for audio: the server answers it, and
/// the bench's and the tests' clients offer it (and then state each packet's level).
pub fn register_audio_level_extension(media_engine: &mut MediaEngine) -> Result<(), PeerError> {
    let audio_level = RTCRtpHeaderExtensionCapability {
        uri: offer::AUDIO_LEVEL_EXTENSION_URI.to_owned(),
    };
    media_engine
        .register_header_extension(audio_level, RtpCodecKind::Audio, None)
        .map_err(|e| PeerError::Rtc {
            context: "registering the audio level extension",
            message: e.to_string(),
        })
}

/// The payload type each outgoing track must carry is only known once negotiated. Senders
/// come in m-line order, which is the offerer's, so they are matched by track.
pub(super) async fn fix_payload_types(pc: &Arc<dyn PeerConnection>, outgoing: &mut [Outgoing]) {
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

/// Adds an outgoing track of `kind` (video in `video_codec`) with a random SSRC: to the offer's
/// transceiver of that kind when answering (`direction` `None`), or as a new transceiver.
pub(super) async fn add_outgoing(
    pc: &Arc<dyn PeerConnection>,
    session: SessionId,
    kind: MediaKind,
    video_codec: VideoCodec,
    direction: Option<RTCRtpTransceiverDirection>,
) -> Result<Outgoing, PeerError> {
    let ssrc = rand::random::<u32>();
    let (codec_kind, table) = match (kind, video_codec) {
        (MediaKind::Video, VideoCodec::Vp8) => (RtpCodecKind::Video, &codecs::VP8),
        (MediaKind::Video, VideoCodec::H264) => (RtpCodecKind::Video, &codecs::H264),
        (MediaKind::Audio, _) => (RtpCodecKind::Audio, &codecs::OPUS),
    };
    let (codec, pt, mime_type) = (
        rtp_codec(table, vec![]),
        table.payload_type,
        table.mime_type,
    );
    // Retransmissions go on an SSRC of their own where RTX is negotiated (webrtc-rs drops it
    // where it is not, and then resends on the track's own SSRC).
    let rtx = (kind == MediaKind::Video).then(|| RTCRtpRtxParameters {
        ssrc: rand::random::<u32>(),
    });
    let track_id = format!("mix-{kind}");
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("tessera-{session}"),
        track_id.clone(),
        format!("tessera mixed {kind}"),
        codec_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                rtx,
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
