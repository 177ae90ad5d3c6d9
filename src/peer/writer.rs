//! Sending the room's mix: a task per outgoing track copies the room's broadcast output into
//! it, rewriting SSRC and payload type to this connection's, starting at a keyframe, and moving
//! to another output with continuous numbering: video (a tier switch) at that output's
//! keyframe, audio (to or from a speaker's own mix) at that output's first packet. Until then
//! the old output keeps playing, so neither the picture nor the sound breaks; once moved, the
//! writer tells the room ([`PeerEventKind::Switched`]).

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
        self.switches.insert(kind, switch_tx);
        // One packet's worth of timestamp at the move: a 30 fps frame, a 20 ms Opus frame.
        let step = match kind {
            MediaKind::Video => 3000,
            MediaKind::Audio => 960,
        };
        self.spawn(async move {
            let _live = Live::new(&metrics::MEDIA_TASKS);
            let mut current = output;
            // The output to move to, once it shows a keyframe (a tier switch).
            let mut next: Option<broadcast::Receiver<Bytes>> = None;
            // A receiver's video starts at a keyframe: packets of the frames before it could
            // not be decoded, and the decoder would only answer them with a PLI that delays the
            // next forced keyframe for everyone (they are coalesced).
            let mut await_keyframe = kind == MediaKind::Video;
            let mut rewrite = Continuity::default();
            // An audio move in progress: where it happens and what of the new mix waits for it.
            let mut splice: Option<Splice> = None;
            let out = Out {
                track,
                ssrc,
                pt,
                kind,
            };
            loop {
                let (bytes, from_next) = tokio::select! {
                    r = current.recv() => (r, false),
                    r = recv_opt(&mut next) => (r, true),
                    Some(rx) = switches.recv() => {
                        next = Some(rx);
                        splice = None;
                        continue;
                    }
                };
                match bytes {
                    Ok(bytes) => {
                        let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &bytes[..]) else {
                            continue;
                        };
                        // What to send of this packet, and whether the writer just moved.
                        let (send, moved) = if kind == MediaKind::Audio && next.is_some() {
                            let at = splice.get_or_insert_with(|| Splice::new(&packet));
                            match at.take(packet, from_next) {
                                Take::Forward(p) => (Some(p), false),
                                Take::Hold => continue,
                                Take::Move { last_old, new } => {
                                    tracing::debug!(
                                        %session,
                                        last_old = ?last_old.as_ref().map(|p| p.header.timestamp),
                                        new = ?new.first().map(|p| p.header.timestamp),
                                        "audio moved"
                                    );
                                    if let Some(p) = last_old {
                                        out.send(&mut rewrite, p).await;
                                    }
                                    current = next.take().expect("a move was under way");
                                    splice = None;
                                    rewrite.restart(step);
                                    for p in new {
                                        out.send(&mut rewrite, p).await;
                                    }
                                    (None, true)
                                }
                            }
                        } else if from_next {
                            // Video moves over at the new output's keyframe; until then the old
                            // one keeps playing, so the picture never breaks.
                            if !is_keyframe_start(codec, &packet.payload) {
                                continue;
                            }
                            current = next.take().expect("a packet came from it");
                            rewrite.restart(step);
                            await_keyframe = false;
                            (Some(packet), true)
                        } else {
                            if await_keyframe {
                                if !is_keyframe_start(codec, &packet.payload) {
                                    continue;
                                }
                                await_keyframe = false;
                            }
                            (Some(packet), false)
                        };
                        if let Some(p) = send {
                            out.send(&mut rewrite, p).await;
                        }
                        if moved {
                            // Control: the room waits for it to link a speaker's voice.
                            let _ = events
                                .send(PeerEvent {
                                    session,
                                    kind: PeerEventKind::Switched(kind),
                                })
                                .await;
                        }
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

    /// Moves this receiver's `kind` to another output: video (a tier switch) at that output's
    /// next keyframe, which the caller should force; audio at its next packet. The writer
    /// reports the move ([`PeerEventKind::Switched`]). The switch is control: the room waits
    /// for room in the one-slot channel (the writer takes a switch at once), it is never
    /// dropped. False if this peer sends no `kind` (nothing will be reported).
    pub async fn switch_output(&self, kind: MediaKind, output: broadcast::Receiver<Bytes>) -> bool {
        let Some(tx) = self.switches.get(&kind) else {
            return false;
        };
        if tx.send(output).await.is_err() {
            tracing::debug!(session = %self.session, "the {kind} writer ended before the switch");
            return false;
        }
        true
    }
}

/// Where a writer's packets go, as this connection numbers them.
struct Out {
    track: std::sync::Arc<webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    kind: MediaKind,
}

impl Out {
    async fn send(&self, rewrite: &mut Continuity, mut packet: rtc::rtp::Packet) {
        rewrite.apply(&mut packet.header);
        packet.header.ssrc = self.ssrc;
        packet.header.payload_type = self.pt;
        let len =
            rtc::shared::marshal::MarshalSize::marshal_size(&packet.header) + packet.payload.len();
        // Fails only before DTLS is up or after close; either way nothing to do.
        if self.track.write_rtp(packet).await.is_ok() {
            metrics::families().rtp("out", self.kind.name(), len);
        }
    }
}

/// 20 ms of Opus at 48 kHz, in RTP timestamp units.
const OPUS_FRAME: u32 = 960;
/// Packets of the new mix held while the old one catches up, at most (then it moves anyway:
/// the mixes' timestamps were not comparable).
const SPLICE_HOLD: usize = 10;

/// An audio move between two mixes of the room. Their RTP timestamps are the pipeline's
/// running time (`audio-mix.pipeline`), so they compare: the old mix is sent up to an instant,
/// the new one from it, and the receiver's decoder hears the same voices continue instead of
/// a jump back or forth in time. (Each mix frames its 20 ms from its own start, so the two
/// grids may be up to a frame apart; that is the most the waveform can jump.)
struct Splice {
    /// The first timestamp taken from the new mix: two frames after the first packet seen of
    /// either mix, so both have it whichever arrives first.
    at: u32,
    /// Packets of the new mix at or after `at`, waiting for the old one to get there.
    held: Vec<rtc::rtp::Packet>,
    /// The old mix has been sent up to `at`.
    old_done: bool,
}

enum Take {
    /// Send it (a packet of the old mix before the move).
    Forward(rtc::rtp::Packet),
    /// Nothing to send now.
    Hold,
    /// Move: send the old mix's last packet if given, then these of the new mix, which is
    /// current from now on.
    Move {
        last_old: Option<rtc::rtp::Packet>,
        new: Vec<rtc::rtp::Packet>,
    },
}

/// Whether timestamp `a` comes before `b` (RTP timestamps wrap).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Splice {
    fn new(first: &rtc::rtp::Packet) -> Splice {
        Splice {
            at: first.header.timestamp.wrapping_add(2 * OPUS_FRAME),
            held: Vec::new(),
            old_done: false,
        }
    }

    fn take(&mut self, packet: rtc::rtp::Packet, from_new: bool) -> Take {
        let ts = packet.header.timestamp;
        if !from_new {
            if !before(ts, self.at) {
                // The old mix reached the move: the new one takes over from here.
                return Take::Move {
                    last_old: None,
                    new: std::mem::take(&mut self.held),
                };
            }
            if ts.wrapping_add(OPUS_FRAME) == self.at {
                // Its last frame before the move: then the new mix, if it is there yet.
                self.old_done = true;
                if !self.held.is_empty() {
                    return Take::Move {
                        last_old: Some(packet),
                        new: std::mem::take(&mut self.held),
                    };
                }
            }
            return Take::Forward(packet);
        }
        if before(ts, self.at) {
            return Take::Hold; // the old mix covers it
        }
        self.held.push(packet);
        if self.old_done || self.held.len() >= SPLICE_HOLD {
            return Take::Move {
                last_old: None,
                new: std::mem::take(&mut self.held),
            };
        }
        Take::Hold
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
    /// The next packet starts a new source, this many timestamp units after the last.
    restarting: Option<u32>,
}

impl Continuity {
    fn restart(&mut self, step: u32) {
        self.restarting = Some(step);
    }

    fn apply(&mut self, header: &mut rtc::rtp::header::Header) {
        if let Some(step) = self.restarting.take()
            && let Some((seq, ts)) = self.last
        {
            // Continue right after the last packet sent, one frame later.
            self.seq_offset = seq.wrapping_add(1).wrapping_sub(header.sequence_number);
            self.ts_offset = ts.wrapping_add(step).wrapping_sub(header.timestamp);
        }
        header.sequence_number = header.sequence_number.wrapping_add(self.seq_offset);
        header.timestamp = header.timestamp.wrapping_add(self.ts_offset);
        self.last = Some((header.sequence_number, header.timestamp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ts: u32) -> rtc::rtp::Packet {
        let mut p = rtc::rtp::Packet::default();
        p.header.timestamp = ts;
        p
    }

    /// What `take` answered: "forward", "hold", or the move's (last old, new) timestamps.
    fn take(splice: &mut Splice, ts: u32, from_new: bool) -> String {
        match splice.take(packet(ts), from_new) {
            Take::Forward(_) => "forward".into(),
            Take::Hold => "hold".into(),
            Take::Move { last_old, new } => format!(
                "move {:?} {:?}",
                last_old.map(|p| p.header.timestamp),
                new.iter().map(|p| p.header.timestamp).collect::<Vec<_>>()
            ),
        }
    }

    #[test]
    fn an_audio_move_continues_at_the_instant_the_old_mix_ends() {
        // The old mix is first: it is sent up to the move, the new one's packets wait for it.
        let mut s = Splice::new(&packet(10_000));
        assert_eq!(take(&mut s, 10_000, false), "forward");
        assert_eq!(take(&mut s, 10_000, true), "hold"); // the old mix covers it
        assert_eq!(take(&mut s, 10_960, true), "hold");
        assert_eq!(take(&mut s, 11_920, true), "hold"); // the move's first
        assert_eq!(take(&mut s, 10_960, false), "move Some(10960) [11920]");
        // The new mix is first: its packets wait until the old one has sent its last frame.
        let mut s = Splice::new(&packet(50_000));
        assert_eq!(take(&mut s, 51_920, true), "hold");
        assert_eq!(take(&mut s, 52_880, true), "hold");
        assert_eq!(
            take(&mut s, 50_960, false),
            "move Some(50960) [51920, 52880]"
        );
    }

    #[test]
    fn an_audio_move_happens_even_when_the_timestamps_do_not_meet() {
        // Grids half a frame apart: the old mix's first packet at or after the move ends it.
        let mut s = Splice::new(&packet(0));
        assert_eq!(take(&mut s, 1_400, true), "hold"); // before the move: the old mix has it
        assert_eq!(take(&mut s, 2_360, true), "hold");
        assert_eq!(take(&mut s, 1_920, false), "move None [2360]");
        // Timestamps that do not compare (a mix far ahead): at most SPLICE_HOLD packets wait.
        let mut s = Splice::new(&packet(0));
        assert_eq!(take(&mut s, 0, false), "forward");
        for i in 1..SPLICE_HOLD as u32 {
            assert_eq!(take(&mut s, 5_000_000 + i * 960, true), "hold");
        }
        assert!(take(&mut s, 6_000_000, true).starts_with("move None"));
    }
}
