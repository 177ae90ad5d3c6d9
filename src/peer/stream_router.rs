//! The interceptor that delivers the streams webrtc-rs cannot place: packets of an SSRC the
//! offer never declared, on a session of several m-lines (see [`super::routing`] for the rules).
//!
//! webrtc-rs binds a stream before the interceptor chain sees its first packet; what it could not
//! bind reaches the chain anyway and would be dropped at its end. This interceptor sits in the
//! chain, lets every bound stream pass untouched, and hands the packets of unbound ones that the
//! [`RouteTable`] places to the [`Peer`](super::Peer): each line gets a bounded packet channel,
//! announced once through `announce` when its first stream starts.
//!
//! Channels: the packet channels are media (full: the packet is dropped and counted in
//! `dropped`); `announce` is control and never drops: unbounded, because an interceptor cannot
//! wait, yet bounded in practice (one announcement per line, and another only when a new SSRC
//! takes the line over, after 2 s of silence). Keyframe requests and bitrate limits for a routed
//! stream come back through `feedback` and leave as RTCP (PLI, REMB) from this interceptor, since
//! no webrtc-rs track exists to write them to; one that finds 16 waiting is dropped, as it asks
//! what they ask (a limit is repeated every second).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;
use rtc::shared::error::Error;
use rtc::shared::marshal::Marshal;
use tokio::sync::mpsc;

use super::routing::{RouteTable, RoutedLine};

/// The interceptor's slot: beside the keyframe-request one, above every built-in interceptor
/// (they ignore streams nobody bound, so the order among them does not matter).
pub const SLOT: usize = 13_500;

/// Packets a routed stream may queue before the reading task takes them (webrtc-rs's own
/// per-track queue is 256).
pub const PACKET_QUEUE: usize = 256;

/// A stream the router placed: what the peer needs to start receiving it.
#[derive(Debug)]
pub struct RoutedStream {
    /// The m-line it belongs to.
    pub line: RoutedLine,
    /// The payload type of its first packet.
    pub payload_type: u8,
    /// Its SSRC (the one keyframe requests name).
    pub ssrc: u32,
    /// Whether its MID header extension placed it (else its payload type did).
    pub by_mid: bool,
    /// Its packets, marshalled.
    pub packets: mpsc::Receiver<Bytes>,
}

/// RTCP about a routed stream, for its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutedFeedback {
    /// A keyframe request (PLI) for this SSRC.
    Pli(u32),
    /// The bitrate it may send (REMB).
    Remb { ssrc: u32, bps: u64 },
}

/// The peer's side of the router: streams as they start, and where to send their feedback.
pub struct RouterHandle {
    /// New streams, as they start (see the module docs on why it is unbounded).
    pub streams: mpsc::UnboundedReceiver<RoutedStream>,
    /// Feedback to send; drained by the interceptor on its next packet.
    pub feedback: mpsc::Sender<RoutedFeedback>,
    /// Routed packets dropped because their channel was full.
    pub dropped: Arc<AtomicU64>,
}

/// The interceptor (one per peer connection).
pub struct StreamRouter {
    table: RouteTable,
    /// SSRCs webrtc-rs bound: never ours.
    bound: HashSet<u32>,
    /// Per line, the packet channel of its current stream.
    channels: Vec<Option<mpsc::Sender<Bytes>>>,
    announce: mpsc::UnboundedSender<RoutedStream>,
    feedback: mpsc::Receiver<RoutedFeedback>,
    dropped: Arc<AtomicU64>,
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

impl StreamRouter {
    /// A router for `table` and the handle its peer keeps.
    pub fn new(table: RouteTable) -> (StreamRouter, RouterHandle) {
        let lines = table.lines().len();
        let (announce, streams) = mpsc::unbounded_channel();
        let (feedback_tx, feedback) = mpsc::channel(16);
        let dropped = Arc::new(AtomicU64::new(0));
        (
            StreamRouter {
                channels: vec![None; lines],
                table,
                bound: HashSet::new(),
                announce,
                feedback,
                dropped: dropped.clone(),
                inbound: VecDeque::new(),
                outbound: VecDeque::new(),
            },
            RouterHandle {
                streams,
                feedback: feedback_tx,
                dropped,
            },
        )
    }

    /// Takes one packet of an unbound stream; true when it was routed (consumed).
    fn take(&mut self, now: Instant, packet: &rtc::rtp::Packet) -> bool {
        let header = &packet.header;
        let mid = self
            .table
            .mid_extension()
            .and_then(|id| header.get_extension(id));
        let Some(route) = self
            .table
            .route(now, header.ssrc, header.payload_type, mid.as_deref())
        else {
            return false;
        };
        if route.new_stream {
            let (tx, rx) = mpsc::channel(PACKET_QUEUE);
            self.channels[route.line] = Some(tx);
            let stream = RoutedStream {
                line: self.table.lines()[route.line].clone(),
                payload_type: header.payload_type,
                ssrc: header.ssrc,
                by_mid: route.by_mid,
                packets: rx,
            };
            if self.announce.send(stream).is_err() {
                // The peer is gone: nobody would read the stream anyway.
                tracing::debug!("routed stream not announced: the peer has closed");
            }
        }
        if let Some(tx) = &self.channels[route.line]
            && let Ok(bytes) = packet.marshal()
            && tx.try_send(bytes.freeze()).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn queue_feedback(&mut self, now: Instant) {
        let mut rtcp: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::new();
        while let Ok(feedback) = self.feedback.try_recv() {
            rtcp.push(match feedback {
                RoutedFeedback::Pli(ssrc) => Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                }),
                RoutedFeedback::Remb { ssrc, bps } => Box::new(ReceiverEstimatedMaximumBitrate {
                    sender_ssrc: 0,
                    bitrate: bps as f32,
                    ssrcs: vec![ssrc],
                }),
            });
        }
        if !rtcp.is_empty() {
            self.outbound.push_back(TaggedPacket {
                now,
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtcp(rtcp)),
            });
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for StreamRouter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.queue_feedback(msg.now);
        if let Packet::Rtp(packet) = &msg.message.packet
            && !self.bound.contains(&packet.header.ssrc)
            && self.take(msg.now, packet)
        {
            return Ok(());
        }
        self.inbound.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.outbound.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.outbound.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.queue_feedback(now);
        Ok(())
    }
}

impl Interceptor for StreamRouter {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.bound.insert(info.ssrc);
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.bound.remove(&info.ssrc);
    }
}
