//! What webrtc-rs tells a peer connection (state changes, new tracks, ICE gathering), turned
//! into [`PeerEvent`]s for the room. The channel is control: a callback waits for room in it
//! rather than drop a state change or a track (webrtc-rs awaits its handler, so a full queue
//! slows that one connection's driver, nothing else).

use std::sync::Arc;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

use super::{PeerEvent, PeerEventKind, RemoteTrack, TrackSource};
use crate::types::{ConnectionState, InputCodec, MediaKind, SessionId};

pub(super) struct Handler {
    pub(super) session: SessionId,
    /// The room actor reads the other end.
    pub(super) events: mpsc::Sender<PeerEvent>,
    /// Set once ICE gathering completes; the factory waits on it for a non-trickle answer.
    pub(super) gathered: watch::Sender<bool>,
    /// The offer's id for the RFC 6464 audio level extension (its first audio m-line's).
    pub(super) audio_level_extension: Option<u8>,
}

impl Handler {
    async fn forward(&self, kind: PeerEventKind) {
        let event = PeerEvent {
            session: self.session,
            kind,
        };
        if self.events.send(event).await.is_err() {
            tracing::debug!(session = %self.session, "the room is gone; event not delivered");
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
        self.forward(PeerEventKind::State(state)).await;
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
            level_extension: match kind {
                MediaKind::Audio => self.audio_level_extension,
                MediaKind::Video => None,
            },
        };
        self.forward(PeerEventKind::Track(RemoteTrack {
            source: TrackSource::Bound(track),
            codec,
        }))
        .await;
    }
}
