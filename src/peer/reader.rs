//! Receiving a session's media: a task per incoming track (a webrtc-rs track, or a stream the
//! router placed) pushes its packets into the mix's input, and routed streams are announced
//! to the room like the tracks webrtc-rs binds itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::shared::marshal::Marshal;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

use super::{
    Peer, PeerEvent, PeerEventKind, RemoteTrack, TrackSource, VideoFeedback, stream_router,
};
use crate::metrics::{self, Live};
use crate::rtp::playout::Playout;
use crate::sdp::TrickleFragment;
use crate::types::{InputCodec, MediaKind, RtpSink, SessionId};

impl Peer {
    /// Starts moving `track`'s packets into `sink`.
    pub fn start_receiving(&mut self, track: RemoteTrack, sink: Arc<dyn RtpSink>) {
        let session = self.session;
        let kind = track.codec.kind;
        let mut pacer = Pacer::new(session, &track.codec, sink);
        let feedback = match track.source {
            TrackSource::Bound(remote) => {
                let reader = remote.clone();
                self.spawn(async move {
                    let _live = Live::new(&metrics::MEDIA_TASKS);
                    loop {
                        // `poll` is a channel's receive: nothing is lost when the timer wins.
                        let due = pacer.next_due();
                        let event = tokio::select! {
                            event = reader.poll() => event,
                            () = sleep_until(due) => {
                                pacer.hand_on_due();
                                continue;
                            }
                        };
                        match event {
                            Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                                if let Ok(bytes) = packet.marshal() {
                                    metrics::families().rtp("in", kind.name(), bytes.len());
                                    pacer.arrive(bytes.freeze());
                                }
                            }
                            None | Some(TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError) => {
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                    tracing::debug!(%session, %kind, "incoming track ended");
                });
                VideoFeedback::Bound(remote)
            }
            TrackSource::Routed { mut packets, ssrc } => {
                self.spawn(async move {
                    let _live = Live::new(&metrics::MEDIA_TASKS);
                    loop {
                        let due = pacer.next_due();
                        let packet = tokio::select! {
                            packet = packets.recv() => packet,
                            () = sleep_until(due) => {
                                pacer.hand_on_due();
                                continue;
                            }
                        };
                        let Some(packet) = packet else { break };
                        metrics::families().rtp("in", kind.name(), packet.len());
                        pacer.arrive(packet);
                    }
                    tracing::debug!(%session, %kind, "routed stream ended");
                });
                VideoFeedback::Routed(ssrc)
            }
        };
        if kind == MediaKind::Video {
            self.repeat_uplink_limit(feedback.clone());
            self.remote_video = Some(feedback);
        }
    }

    /// Announces each stream the router places as a [`PeerEventKind::Track`], like the tracks
    /// webrtc-rs binds itself. The task is the peer's, so it ends with it; it waits for room in
    /// the room's queue (a track is control: never dropped).
    pub(super) fn announce_routed_streams(&mut self, router: stream_router::RouterHandle) {
        let stream_router::RouterHandle {
            mut streams,
            feedback,
            dropped,
        } = router;
        self.router_feedback = Some(feedback);
        self.routed_dropped = Some(dropped);
        let (events, session) = (self.events.clone(), self.session);
        self.spawn(async move {
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
                    level_extension: stream.line.audio_level_extension,
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

    /// What it takes to add trickled candidates to this connection, apart from the peer (the
    /// room does it in a task of its own: it waits on the connection's driver).
    pub fn candidate_sink(&self) -> CandidateSink {
        CandidateSink {
            session: self.session,
            pc: self.pc.clone(),
        }
    }
}

/// Hands a track's packets on to its sink: video at once (its decoder waits for what is
/// missing), audio through a [`Playout`] that holds packets back when the sender's link
/// jitters more than the mix's jitter buffer absorbs.
struct Pacer {
    session: SessionId,
    sink: Arc<dyn RtpSink>,
    playout: Option<Playout<Bytes>>,
    /// The playout's clock starts here.
    epoch: Instant,
    out: Vec<Bytes>,
}

impl Pacer {
    fn new(session: SessionId, codec: &InputCodec, sink: Arc<dyn RtpSink>) -> Pacer {
        Pacer {
            session,
            sink,
            playout: (codec.kind == MediaKind::Audio).then(|| Playout::new(codec.clock_rate)),
            epoch: Instant::now(),
            out: Vec::new(),
        }
    }

    /// When a held packet is next due.
    fn next_due(&self) -> Option<Instant> {
        let due = self.playout.as_ref()?.next_due()?;
        Some(self.epoch + Duration::from_secs_f64(due.max(0.0)))
    }

    fn arrive(&mut self, packet: Bytes) {
        let Some(playout) = &mut self.playout else {
            self.sink.push(packet);
            return;
        };
        let before = playout.hold();
        playout.arrive(self.epoch.elapsed().as_secs_f64(), packet, &mut self.out);
        let (hold_ms, jitter_ms) = (
            (playout.hold() * 1000.0).round(),
            (playout.jitter() * 1000.0).round(),
        );
        if playout.hold() != before {
            // Starting and ending to hold are worth a line; the steps between, debug.
            if before == 0.0 || playout.hold() == 0.0 {
                tracing::info!(session = %self.session, hold_ms, jitter_ms, "audio playout follows the sender's jitter");
            } else {
                tracing::debug!(session = %self.session, hold_ms, jitter_ms, "audio playout adjusted");
            }
        }
        self.flush();
    }

    fn hand_on_due(&mut self) {
        if let Some(playout) = &mut self.playout {
            playout.due(self.epoch.elapsed().as_secs_f64(), &mut self.out);
        }
        self.flush();
    }

    fn flush(&mut self) {
        for packet in self.out.drain(..) {
            self.sink.push(packet);
        }
    }
}

/// Sleeps until `due`; for ever when there is nothing due.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Adds trickled candidates to one connection (see [`Peer::candidate_sink`]).
pub struct CandidateSink {
    session: crate::types::SessionId,
    pc: Arc<dyn webrtc::peer_connection::PeerConnection>,
}

impl CandidateSink {
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
}
