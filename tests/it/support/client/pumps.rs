//! The client's media tasks: encoders' packets onto the tracks, the server's keyframe requests
//! to the encoder, the server's tracks into the decoders, and the PLIs a decoder asks for.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::shared::marshal::{Marshal, Unmarshal};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use crate::support::media::{AudioInput, KeyframeTrigger, RtpInput};

use super::ClientCounters;

#[derive(Clone, Copy)]
pub(super) enum SentCounter {
    Video,
    Audio,
}

/// Move one encoder's packets onto its track: parse, stamp the track's SSRC and the negotiated
/// payload type (anything else is silently dropped by webrtc-rs), write.
pub(super) async fn send_packets(
    mut packets: mpsc::Receiver<bytes::Bytes>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    extensions: Vec<(u8, bytes::Bytes)>,
    sent: SentCounter,
    counters: Arc<ClientCounters>,
) {
    let sent = match sent {
        SentCounter::Video => &counters.video_packets_sent,
        SentCounter::Audio => &counters.audio_packets_sent,
    };
    while let Some(bytes) = packets.recv().await {
        let mut buf = &bytes[..];
        let Ok(mut packet) = rtc::rtp::Packet::unmarshal(&mut buf) else {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        packet.header.ssrc = ssrc;
        packet.header.payload_type = payload_type;
        // As browsers do: every packet names its m-line (RFC 8843 §15.2) when the answer
        // negotiated the MID extension, and states its audio level (RFC 6464) when asked to;
        // webrtc-rs adds neither by itself.
        for (id, value) in &extensions {
            let _ = packet.header.set_extension(*id, value.clone());
        }
        match track.write_rtp(packet).await {
            Ok(()) => sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.send_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Packets a mangling task holds at most for its sender.
pub(super) const MANGLED_QUEUE: usize = 256;

/// A hostile sender's packets: a share of them (`mangle.rate`) has its payload damaged, in
/// one of the ways a broken or malicious encoder would: random bytes flipped, the payload cut
/// short, or all of it replaced by noise. The 12-byte header stays as it was.
pub(super) async fn mangle_packets(
    mut packets: mpsc::Receiver<bytes::Bytes>,
    out: mpsc::Sender<bytes::Bytes>,
    mangle: super::Mangle,
) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(mangle.seed);
    while let Some(packet) = packets.recv().await {
        let mut packet = packet.to_vec();
        if packet.len() > 13 && rng.random_bool(mangle.rate) {
            let payload = 12..packet.len();
            match rng.random_range(0..3) {
                0 => {
                    for _ in 0..rng.random_range(1..=8) {
                        let i = rng.random_range(payload.clone());
                        packet[i] ^= 1 << rng.random_range(0..8);
                    }
                }
                1 => packet.truncate(rng.random_range(13..packet.len())),
                _ => rng.fill(&mut packet[payload]),
            }
        }
        if out.send(bytes::Bytes::from(packet)).await.is_err() {
            return;
        }
    }
}

/// Answer the server's PLI/FIR for our video by forcing a keyframe in our encoder.
pub(super) async fn answer_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    trigger: KeyframeTrigger,
    counters: Arc<ClientCounters>,
) {
    while let Some(event) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = event
            && packets.iter().any(|p| is_keyframe_request(p.as_ref()))
        {
            counters
                .keyframe_requests_received
                .fetch_add(1, Ordering::Relaxed);
            trigger.request();
        }
    }
}

pub(in crate::support) fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

pub(super) async fn send_pli(
    track: &dyn TrackRemote,
    known_ssrc: Option<u32>,
    counters: &ClientCounters,
) -> Result<()> {
    let media_ssrc = match known_ssrc {
        Some(ssrc) => ssrc,
        None => *track
            .ssrcs()
            .await
            .first()
            .context("the remote video track has no SSRC")?,
    };
    track
        .write_rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        })])
        .await
        .context("sending a PLI")?;
    counters.plis_sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Read the server's video track into the decode pipeline, and answer the pipeline's keyframe
/// requests with PLIs. Never blocks on the pipeline (`RtpInput::push` drops when behind), so
/// the track's own queue never overflows because of us.
pub(super) async fn pump_remote_video(
    track: Arc<dyn TrackRemote>,
    input: RtpInput,
    mut keyframe_requests: Option<mpsc::Receiver<()>>,
    counters: Arc<ClientCounters>,
) {
    let mut media_ssrc: Option<u32> = None;
    loop {
        tokio::select! {
            event = track.poll() => match event {
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                    media_ssrc = Some(packet.header.ssrc);
                    counters.video_packets_received.fetch_add(1, Ordering::Relaxed);
                    if packet.header.marker {
                        counters.video_frames_received.fetch_add(1, Ordering::Relaxed);
                    }
                    if tessera::rtp::keyframe::is_vp8_keyframe_start(&packet.payload) {
                        counters.keyframes_received.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(bytes) = packet.marshal() {
                        counters
                            .video_bytes_received
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        input.push(&bytes);
                    }
                }
                Some(TrackRemoteEvent::OnEnded) | None => break,
                Some(_) => {}
            },
            Some(()) = next_request(&mut keyframe_requests) => {
                // A failed PLI means the connection is going; the poll above will end the loop.
                let _ = send_pli(&*track, media_ssrc, &counters).await;
            }
        }
    }
}

/// The next keyframe request, or never if there is no request channel (or it closed).
async fn next_request(requests: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match requests {
        Some(rx) => match rx.recv().await {
            Some(()) => Some(()),
            None => {
                *requests = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Decode the server's audio track into the audio ring.
pub(super) async fn pump_remote_audio(
    track: Arc<dyn TrackRemote>,
    mut input: AudioInput,
    counters: Arc<ClientCounters>,
) {
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                counters
                    .audio_packets_received
                    .fetch_add(1, Ordering::Relaxed);
                input.push(packet.header.sequence_number, &packet.payload);
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// Reads a track the client does not decode ([`super::JoinOptions::no_decode`]), counting its
/// packets, so that nothing piles up unread.
pub(super) async fn drain_remote(track: Arc<dyn TrackRemote>, counters: Arc<ClientCounters>) {
    let video = track.kind().await == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video;
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(_) if video => {
                counters
                    .video_packets_received
                    .fetch_add(1, Ordering::Relaxed);
            }
            TrackRemoteEvent::OnRtpPacket(_) => {
                counters
                    .audio_packets_received
                    .fetch_add(1, Ordering::Relaxed);
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}
