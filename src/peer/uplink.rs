//! Tile-sized uplinks, the peer's part: the bitrate the room allows this session's video sender
//! (its tile's, see `room::uplink`) goes to the sender as REMB, and again every second, as a
//! receiver's estimate does: libwebrtc keeps the last REMB as the ceiling of what it sends and
//! adapts its resolution to it.

use std::time::Duration;

use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use tokio::sync::mpsc;

use super::stream_router::RoutedFeedback;
use super::{Peer, VideoFeedback};

/// How often the limit is repeated (browsers send their REMB every ~200 ms to 1 s).
const REPEAT: Duration = Duration::from_secs(1);

impl Peer {
    /// Sets what this session's video sender may send in all, in bits per second. Sent at once
    /// when it changes, then every second while the incoming video lasts.
    pub fn limit_uplink(&self, bps: u64) {
        self.uplink.send_if_modified(|limit| {
            let changed = *limit != Some(bps);
            *limit = Some(bps);
            changed
        });
    }

    /// The limit set last, if any.
    pub fn uplink_limit(&self) -> Option<u64> {
        *self.uplink.borrow()
    }

    /// Starts repeating the limit to the sender of the incoming video `feedback` names. The task
    /// is the peer's, so it ends with it (or when the track's RTCP can no longer be written).
    pub(super) fn repeat_uplink_limit(&mut self, feedback: VideoFeedback) {
        let mut limit = self.uplink.subscribe();
        let router = self.router_feedback.clone();
        let session = self.session;
        self.spawn(async move {
            let mut tick = tokio::time::interval(REPEAT);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = limit.changed() => if changed.is_err() { break },
                }
                let Some(bps) = *limit.borrow_and_update() else {
                    continue;
                };
                if !send_limit(&feedback, router.as_ref(), bps).await {
                    tracing::debug!(%session, bps, "the uplink limit could not be sent");
                }
            }
        });
    }
}

/// Sends one REMB of `bps` for the incoming video; false when there is nowhere to send it yet
/// (no SSRC bound) or writing failed (the connection is going).
async fn send_limit(
    feedback: &VideoFeedback,
    router: Option<&mpsc::Sender<RoutedFeedback>>,
    bps: u64,
) -> bool {
    match feedback {
        VideoFeedback::Routed(ssrc) => router.is_some_and(|router| {
            router
                .try_send(RoutedFeedback::Remb { ssrc: *ssrc, bps })
                .is_ok()
        }),
        VideoFeedback::Bound(track) => {
            let ssrcs = track.ssrcs().await;
            if ssrcs.is_empty() {
                return false;
            }
            let remb = ReceiverEstimatedMaximumBitrate {
                sender_ssrc: 0,
                bitrate: bps as f32,
                ssrcs,
            };
            track.write_rtcp(vec![Box::new(remb)]).await.is_ok()
        }
    }
}
