//! The client's side of the WHIP/WHEP exchange apart from joining: a raw offer POSTed for a
//! test of what the server accepts, the URL an offer goes to, and the MIDs an answer names.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use reqwest::Url;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use tokio::task::JoinSet;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{RTCIceGatheringState, RTCPeerConnectionState};

use crate::support::http::{self, RawResponse};

use super::handler::ClientHandler;
use super::peer::{build_peer_connection, create_offer, local_track, opus_codec, vp8_codec};
use super::{ClientCounters, Role};

/// POST a real offer for `role` and return the server's raw answer, without connecting or
/// sending media: for tests of what the server accepts and rejects. A 201 leaves a session on
/// the server that will never connect; `DELETE` it (`http::delete`) or let it time out.
pub async fn post_offer(base_url: &str, room: &str, role: Role, name: &str) -> Result<RawResponse> {
    let offer = make_offer(role, name).await?;
    http::post(
        &offer_url(base_url, room, role, name)?,
        "application/sdp",
        offer,
    )
    .await
}

/// A real offer for `role` (complete, candidates included) from a peer that is closed at
/// once: for requests a test sends with headers of its own.
pub async fn make_offer(role: Role, name: &str) -> Result<String> {
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
        no_decode: true,
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
        create_offer(&*pc, &mut gathering).await
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

/// The header extensions to put in each packet, per m-section of the answer that negotiated
/// them: (kind, extension id, value). The MID extension with its mid, as browsers send it, and
/// on audio the RFC 6464 level `stated_level` if there is one. The server's SDP reader reads an
/// answer's m-lines as well as an offer's.
pub(super) fn answered_extensions(
    answer: &str,
    stated_level: Option<u8>,
) -> Vec<(String, u8, bytes::Bytes)> {
    let Ok(summary) = tessera::peer::inspect_offer(answer) else {
        return Vec::new();
    };
    let mut extensions = Vec::new();
    for m in &summary.media {
        let kind = m.kind.to_string();
        if let (Some(id), Some(mid)) = (m.mid_extension, &m.mid) {
            extensions.push((kind.clone(), id, bytes::Bytes::from(mid.clone())));
        }
        if let (Some(id), Some(level)) = (m.audio_level_extension, stated_level) {
            extensions.push((kind, id, bytes::Bytes::from(vec![level & 0x7f])));
        }
    }
    extensions
}
