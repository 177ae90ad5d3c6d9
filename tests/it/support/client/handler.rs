//! The client connection's callbacks: they only record or forward.

use std::sync::{Arc, Mutex};

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

use crate::support::media::{AudioInput, RtpInput};

use super::ClientCounters;
use super::pumps::{drain_remote, pump_remote_audio, pump_remote_video};

/// The peer connection's event handler. Every callback only records or forwards: states go
/// into watch channels, remote tracks get a pump task in the client's `JoinSet`.
pub(super) struct ClientHandler {
    pub(super) name: String,
    pub(super) gathering: watch::Sender<RTCIceGatheringState>,
    pub(super) connection: watch::Sender<RTCPeerConnectionState>,
    pub(super) tasks: Arc<Mutex<JoinSet<()>>>,
    pub(super) counters: Arc<ClientCounters>,
    pub(super) remote_video: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
    /// Where the server's video goes (and the decoder's keyframe requests come from); taken
    /// by the first video track.
    pub(super) video_input: Mutex<Option<(RtpInput, Option<mpsc::Receiver<()>>)>>,
    /// Where the server's audio goes; taken by the first audio track.
    pub(super) audio_input: Mutex<Option<AudioInput>>,
    /// Tracks are read but not decoded ([`super::JoinOptions::no_decode`]).
    pub(super) no_decode: bool,
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
        if self.no_decode {
            tasks.spawn(drain_remote(track, counters));
            return;
        }
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
