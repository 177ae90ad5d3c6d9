//! Sending the room's mix: a task per outgoing track copies the room's broadcast output into
//! it, rewriting SSRC and payload type to this connection's, starting at a keyframe, and moving
//! to another output (a tier switch) at that output's keyframe with continuous numbering.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use rtc::shared::marshal::Unmarshal;
use tokio::sync::{broadcast, mpsc};
use webrtc::media_stream::track_local::TrackLocal;

use super::{Peer, PeerEvent, PeerEventKind};
use crate::metrics::{self, Live};
use crate::rtp::keyframe::is_keyframe_start;
use crate::types::MediaKind;

impl Peer {
    /// Starts copying `output` (the room's encoded RTP of `kind`) into this peer's outgoing
    /// track of that kind, if it has one.
    pub fn start_sending(&mut self, kind: MediaKind, output: broadcast::Receiver<Bytes>) {
        let Some(out) = self.outgoing.iter().find(|o| o.kind == kind) else {
            return;
        };
        let (track, ssrc, pt) = (out.track.clone(), out.ssrc, out.payload_type);
        let codec = out.video_codec;
        let (lagged, events, session) = (self.lagged.clone(), self.events.clone(), self.session);
        let (switch_tx, mut switches) = mpsc::channel::<broadcast::Receiver<Bytes>>(1);
        if kind == MediaKind::Video {
            self.video_switch = Some(switch_tx);
        }
        self.tasks.spawn(async move {
            let _live = Live::new(&metrics::MEDIA_TASKS);
            let mut current = output;
            // The output to move to, once it shows a keyframe (a tier switch).
            let mut next: Option<broadcast::Receiver<Bytes>> = None;
            // A receiver's video starts at a keyframe: packets of the frames before it could
            // not be decoded, and the decoder would only answer them with a PLI that delays the
            // next forced keyframe for everyone (they are coalesced).
            let mut await_keyframe = kind == MediaKind::Video;
            let mut rewrite = Continuity::default();
            loop {
                let (bytes, from_next) = tokio::select! {
                    r = current.recv() => (r, false),
                    r = recv_opt(&mut next) => (r, true),
                    Some(rx) = switches.recv() => {
                        next = Some(rx);
                        continue;
                    }
                };
                match bytes {
                    Ok(bytes) => {
                        let Ok(mut packet) = rtc::rtp::Packet::unmarshal(&mut &bytes[..]) else {
                            continue;
                        };
                        if from_next {
                            // Move over at the new output's keyframe; until then the old one
                            // keeps playing, so the picture never breaks.
                            if !is_keyframe_start(codec, &packet.payload) {
                                continue;
                            }
                            current = next.take().expect("a packet came from it");
                            rewrite.restart();
                            await_keyframe = false;
                        } else if await_keyframe {
                            if !is_keyframe_start(codec, &packet.payload) {
                                continue;
                            }
                            await_keyframe = false;
                        }
                        rewrite.apply(&mut packet.header);
                        packet.header.ssrc = ssrc;
                        packet.header.payload_type = pt;
                        // Fails only before DTLS is up or after close; either way nothing to do.
                        let _ = track.write_rtp(packet).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        if from_next {
                            continue;
                        }
                        // This receiver fell behind the room: its packets are gone, so its
                        // decoder needs a fresh keyframe to recover.
                        lagged.fetch_add(n, Ordering::Relaxed);
                        if kind == MediaKind::Video {
                            await_keyframe = true;
                            // Control: waits for room in the room's queue (a moment at
                            // most); the packets behind it wait in the broadcast channel.
                            let _ = events
                                .send(PeerEvent {
                                    session,
                                    kind: PeerEventKind::KeyframeRequested,
                                })
                                .await;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) if from_next => next = None,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Moves this receiver's video to another output (a tier switch) at that output's next
    /// keyframe, which the caller should force. The switch is control: the room waits for room
    /// in the one-slot channel (the writer takes a switch at once), it is never dropped.
    pub async fn switch_video(&self, output: broadcast::Receiver<Bytes>) {
        if let Some(tx) = &self.video_switch
            && tx.send(output).await.is_err()
        {
            tracing::debug!(session = %self.session, "the video writer ended before the switch");
        }
    }
}

/// The next packet of an optional output, or never.
async fn recv_opt(
    rx: &mut Option<broadcast::Receiver<Bytes>>,
) -> Result<Bytes, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Keeps one outgoing stream's sequence numbers and timestamps continuous when its source
/// changes (another output, with its own numbering): the receiver sees one stream.
#[derive(Default)]
struct Continuity {
    seq_offset: u16,
    ts_offset: u32,
    last: Option<(u16, u32)>,
    /// The next packet starts a new source.
    restarting: bool,
}

impl Continuity {
    fn restart(&mut self) {
        self.restarting = true;
    }

    fn apply(&mut self, header: &mut rtc::rtp::header::Header) {
        if self.restarting
            && let Some((seq, ts)) = self.last
        {
            // Continue right after the last packet sent, one 30 fps frame later.
            self.seq_offset = seq.wrapping_add(1).wrapping_sub(header.sequence_number);
            self.ts_offset = ts.wrapping_add(3000).wrapping_sub(header.timestamp);
        }
        self.restarting = false;
        header.sequence_number = header.sequence_number.wrapping_add(self.seq_offset);
        header.timestamp = header.timestamp.wrapping_add(self.ts_offset);
        self.last = Some((header.sequence_number, header.timestamp));
    }
}
