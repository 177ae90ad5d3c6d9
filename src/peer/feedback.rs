//! Feedback about video, both ways: the receiver's keyframe requests and bandwidth estimates
//! (RTCP from its decoder) become events for the room, and the room's keyframe requests go to
//! the sender as a PLI.

use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use tokio::sync::mpsc;

use super::codecs::Outgoing;
use super::stream_router::RoutedFeedback;
use super::{ESTIMATE_INTERVAL, Peer, PeerEvent, PeerEventKind, VideoFeedback};
use crate::types::{MediaKind, SessionId};

/// Asks one session's video sender for a keyframe (see [`Peer::keyframe_asker`]).
pub struct KeyframeAsker {
    session: SessionId,
    feedback: Option<VideoFeedback>,
    router: Option<mpsc::Sender<RoutedFeedback>>,
}

impl KeyframeAsker {
    /// Sends the sender a PLI; false if there is no incoming video to ask for or it failed.
    pub async fn ask(self) -> bool {
        let track = match self.feedback {
            None => {
                tracing::debug!(session = %self.session, "no incoming video to send a PLI to");
                return false;
            }
            Some(VideoFeedback::Routed(ssrc)) => {
                tracing::debug!(session = %self.session, media_ssrc = ssrc, "sending PLI (routed)");
                return self
                    .router
                    .as_ref()
                    .is_some_and(|router| router.try_send(RoutedFeedback::Pli(ssrc)).is_ok());
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
            Ok(()) => {
                let sent = crate::metrics::DirectionLabel { direction: "sent" };
                crate::metrics::families().plis.get_or_create(&sent).inc();
                true
            }
            Err(e) => {
                tracing::debug!(session = %self.session, "sending PLI: {e}");
                false
            }
        }
    }
}

impl Peer {
    /// What it takes to ask this session's video sender for a keyframe, apart from the peer:
    /// writing RTCP waits on the connection's driver, so the room does it in a task of its own
    /// rather than in its loop.
    pub fn keyframe_asker(&self) -> KeyframeAsker {
        KeyframeAsker {
            session: self.session,
            feedback: self.remote_video.clone(),
            router: self.router_feedback.clone(),
        }
    }

    /// Watches a video track's RTCP from the receiver: PLI/FIR become keyframe requests,
    /// REMB a bandwidth estimate (at most one per [`ESTIMATE_INTERVAL`]).
    pub(super) fn watch_feedback(&mut self, out: &Outgoing) {
        if out.kind != MediaKind::Video {
            return;
        }
        let (track, events, session) = (out.track.clone(), self.events.clone(), self.session);
        self.spawn(async move {
            let mut last_estimate: Option<std::time::Instant> = None;
            while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = track.poll().await {
                let families = crate::metrics::families();
                for p in &packets {
                    let any = p.as_any();
                    let received = crate::metrics::DirectionLabel {
                        direction: "received",
                    };
                    if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                        families.plis.get_or_create(&received).inc();
                    } else if any.is::<TransportLayerNack>() {
                        families.nacks.get_or_create(&received).inc();
                    }
                }
                let wants_keyframe = packets.iter().any(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                });
                // Control: waits for room in the room's queue; RTCP behind it waits in the
                // track's own queue meanwhile.
                if wants_keyframe {
                    let event = PeerEvent {
                        session,
                        kind: PeerEventKind::KeyframeRequested,
                    };
                    if events.send(event).await.is_err() {
                        break;
                    }
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
                    let event = PeerEvent {
                        session,
                        kind: PeerEventKind::BandwidthEstimate(bps),
                    };
                    if events.send(event).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
}
