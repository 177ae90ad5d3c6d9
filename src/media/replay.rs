//! Replaying RTP through one input branch outside a room: the receive path's fuzz harness
//! (`fuzz/src/bin/rtp_decode.rs`) and its regression tests run what a sender's packets meet in
//! a room — the same [`RtpInput`] push (the audio level read before the pipeline included),
//! the same branch description (jitter buffer, depayloader, decoder) — into a counting sink.
//!
//! What a branch does with bad media is what a room then does with it: an error posted by an
//! element of the branch drops only that session (see `bus::watch_bus`); the decoders' own
//! `max-errors` is -1 (GStreamer 1.22's default), so an undecodable frame is a warning and a
//! keyframe request, never an error. A crash inside a decoder (a signal) cannot be contained
//! in-process: it would end the server, which is why this harness exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gst::prelude::*;

use super::bus::Signals;
use super::input::{RtpInput, input_bin};
use super::templates::Templates;
use super::{MediaError, build_err};
use crate::types::{InputCodec, RtpSink, SessionId};

/// What a branch made of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Decoded frames (video) or buffers of samples (audio) that left the branch.
    pub decoded: u64,
    /// The first error an element of the branch posted: in a room, its session is dropped.
    pub failure: Option<String>,
    /// The branch finished (end of stream or an error) within the deadline. `false` is a hang.
    pub finished: bool,
}

/// Pushes `packets` (each one RTP packet, as the peer hands them over) into a fresh input
/// branch for `codec`, ends the stream and waits up to `deadline` for the branch to finish.
/// Built-in pipeline descriptions; initialises GStreamer when needed.
pub fn replay_rtp(
    codec: &InputCodec,
    packets: &[&[u8]],
    deadline: Duration,
) -> Result<Replay, MediaError> {
    gst::init().map_err(|e| build_err("initialising GStreamer", e))?;
    // The built-in descriptions, read once: a fuzzer calls this thousands of times.
    static BUILT_IN: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
    let templates = match BUILT_IN.get() {
        Some(templates) => templates,
        None => {
            let loaded = Templates::load(None)?;
            BUILT_IN.get_or_init(|| loaded)
        }
    };
    let session = SessionId(1);
    let (bin, appsrc) = input_bin(templates, codec, session)?;
    let pipeline = gst::Pipeline::new();
    let _null = NullOnDrop(pipeline.clone());
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .map_err(|e| build_err("a sink", e))?;
    pipeline
        .add_many([bin.upcast_ref::<gst::Element>(), &sink])
        .map_err(|e| build_err("the replay pipeline", e))?;
    bin.link(&sink)
        .map_err(|e| build_err("the replay pipeline", e))?;
    let decoded = Arc::new(AtomicU64::new(0));
    if let Some(pad) = sink.static_pad("sink") {
        let decoded = decoded.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            decoded.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    let mut input = RtpInput::new(appsrc.clone());
    if codec.kind == crate::types::MediaKind::Audio {
        input = input.with_voice(session, codec.level_extension, Arc::new(Signals::default()))?;
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| build_err("starting the replay", e))?;
    for packet in packets {
        input.push(Bytes::copy_from_slice(packet));
    }
    let _ = appsrc.end_of_stream();
    let bus = pipeline
        .bus()
        .ok_or_else(|| build_err("the replay", "no bus"))?;
    let ended = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(deadline.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let failure = ended.as_ref().and_then(|msg| match msg.view() {
        gst::MessageView::Error(err) => Some(super::bus::describe_error(msg, err)),
        _ => None,
    });
    Ok(Replay {
        decoded: decoded.load(Ordering::Relaxed),
        failure,
        finished: ended.is_some(),
    })
}

/// Sets the replay's pipeline to Null however the replay ends.
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Splits a replay file into packets: each is a 2-byte big-endian length and that many bytes
/// (the format of `fuzz/seeds/rtp_decode/` and of the captures the tests keep). A length past
/// the end takes what is left.
pub fn split_packets(data: &[u8]) -> Vec<&[u8]> {
    let mut packets = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        packets.push(&rest[2..end]);
        rest = &rest[end..];
    }
    packets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_split_by_their_length_prefix() {
        let data = [0, 2, 1, 2, 0, 1, 9, 0, 5, 7];
        assert_eq!(split_packets(&data), vec![&[1, 2][..], &[9][..], &[7][..]]);
        assert!(split_packets(&[3]).is_empty());
    }
}
