//! The only module that imports `webrtc::` (webrtc-rs 0.21, pinned): one [`Peer`] per session.
//!
//! A `Peer` answers one WHIP/WHEP offer ([`PeerFactory::answer`], `factory.rs`) and then moves
//! RTP between its tracks and the mix through per-track tasks it owns (aborted when the `Peer`
//! is dropped or closed):
//! - a *reading* task per incoming track pushes packets into an [`RtpSink`] (an appsrc; never
//!   blocks, because webrtc-rs's per-track queue holds only 256 packets) (`reader.rs`);
//! - a *writing* task per outgoing track copies the room's broadcast output into the track,
//!   rewriting SSRC and payload type to what this connection negotiated (`writer.rs`);
//! - a *feedback* task per outgoing video track turns the receiver's PLI/FIR and REMB into
//!   events for the room (`feedback.rs`);
//! - an *uplink* task per incoming video track repeats the bitrate the room allows its sender
//!   (REMB, `uplink.rs`).
//!
//! What the webrtc-rs callbacks learn (`handler.rs`) is forwarded as a [`PeerEvent`]; the room
//! actor decides what it means. The channel to the room is control: senders wait for room in it
//! (backpressure) rather than drop a state change or a track.
//!
//! The rest is pure and tested on real SDP: reading offers (`offer.rs`), writing tessera's own
//! codec parameters into the answer (`answer.rs`), and placing streams the offer declared no
//! SSRC for (`routing.rs`, applied by the interceptor in `stream_router.rs`).

mod answer;
mod codecs;
mod factory;
mod feedback;
mod handler;
mod keyframe_interceptor;
mod offer;
mod reader;
mod routing;
mod stream_router;
mod uplink;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::PeerConnection;

use crate::metrics::Live;
use crate::types::{ConnectionState, InputCodec, MediaKind, SessionId, VideoCodec};

use codecs::Outgoing;

pub use codecs::{interceptors, register_audio_level_extension};
pub use factory::PeerFactory;
pub use feedback::KeyframeAsker;
pub use keyframe_interceptor::register as register_keyframe_interceptor;
pub use offer::{
    AUDIO_LEVEL_EXTENSION_URI, Direction, MediaOffer, OfferSummary, OfferedFormat, Transport,
    fmtp_parameter, for_webrtc_rs, inspect_offer,
};
pub use reader::CandidateSink;
pub use routing::{Route, RouteTable};

/// Bound of the events a peer may queue for its room; a full queue makes the sender wait.
pub const EVENT_QUEUE: usize = 256;

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
    /// A writer moved to the output it was handed ([`Peer::switch_output`]).
    Switched(MediaKind),
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
#[derive(Clone)]
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
    pub h264_level: crate::sdp::h264::Level,
}

/// One session's WebRTC connection and the media tasks it owns.
pub struct Peer {
    session: SessionId,
    pc: Arc<dyn PeerConnection>,
    outgoing: Vec<Outgoing>,
    /// The incoming video, to send PLIs for.
    remote_video: Option<VideoFeedback>,
    /// Feedback for routed streams (see [`stream_router`]), if any are routed.
    router_feedback: Option<mpsc::Sender<stream_router::RoutedFeedback>>,
    /// The bitrate its video sender may send (its tile's), repeated to it as REMB.
    uplink: watch::Sender<Option<u64>>,
    /// Packets of routed streams dropped before their reading task took them.
    routed_dropped: Option<Arc<AtomicU64>>,
    events: mpsc::Sender<PeerEvent>,
    /// The per-track tasks; aborted on drop.
    tasks: JoinSet<()>,
    /// The span its tasks log in (`session`, inside its room's): made where it was created.
    span: tracing::Span,
    /// Packets this peer's writers could not keep up with.
    lagged: Arc<AtomicU64>,
    /// Hands each writer a new output to move to (video: at its next keyframe).
    switches: std::collections::HashMap<MediaKind, mpsc::Sender<broadcast::Receiver<Bytes>>>,
    _live: Live,
}

impl Peer {
    /// Runs one of its tasks, in its span.
    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        use tracing::Instrument;
        self.tasks.spawn(task.instrument(self.span.clone()));
    }

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

    /// Which session this peer belongs to.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Packets of the room's outputs this peer dropped because it fell behind.
    pub fn lagged_packets(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Packets of its routed streams (see [`stream_router`]) dropped before the pipeline.
    pub fn routed_dropped_packets(&self) -> u64 {
        self.routed_dropped
            .as_ref()
            .map_or(0, |d| d.load(Ordering::Relaxed))
    }

    /// Closes the connection and stops every task of this peer.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        if let Err(e) = self.pc.close().await {
            tracing::debug!(session = %self.session, "closing peer: {e}");
        }
        while self.tasks.join_next().await.is_some() {}
    }
}
