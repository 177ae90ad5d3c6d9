//! Input branches: one per incoming track, from `{kind}-input-{codec}.pipeline` (appsrc →
//! jitter buffer → depayloader → decoder), linked to a compositor pad (video) or to a tee that
//! feeds every audio mix that should hear it (audio). [`RtpInput`] is the pushing end the peer's
//! reading task holds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use gst::prelude::*;

use super::bus::{Signals, watch_keyframe_requests};
use super::measure::watch_input_frames;
use super::mixer::Mixer;
use super::pads::Edits;
use super::pads::{block_until_idle, remove_bin};
use super::templates::Templates;
use super::tiles::{SharedFraming, frame, watch_label, watch_source_size};
use super::{MediaError, build_err};
use crate::metrics::InputClock;
use crate::rtp::packet as rtp_packet;
use crate::speaking::{Speech, VoiceGate, dbov};
use crate::types::{AudioLevel, InputCodec, MediaKind, Placement, RtpSink, SessionId};

/// Jitter buffer depth of every input, in ms: room for one retransmission on a good network.
pub(super) const JITTER_MS: u32 = 40;

/// A video or audio input branch.
pub(super) struct Input {
    pub(super) bin: gst::Bin,
    appsrc: gst_app::AppSrc,
    /// Video: the compositor's request pad. Audio: none (the tee fans out).
    pub(super) compositor_pad: Option<gst::Pad>,
    /// Audio: the tee after the bin.
    pub(super) tee: Option<gst::Element>,
    /// Packets dropped before the pipeline (shared with its [`RtpInput`]).
    pub(super) dropped: Arc<AtomicU64>,
    /// Video: where its pad goes and its picture's size (shared with its caps probe).
    pub(super) framing: SharedFraming,
    /// Video: the `crop` element of its branch (fit "cover").
    pub(super) crop: Option<gst::Element>,
    /// Video: when it last delivered a decoded frame (for `GET /metrics`).
    pub(super) clock: Option<Arc<InputClock>>,
}

/// The pushing end of an input, handed to the peer's reading task (and a recording's feeders).
#[derive(Clone)]
pub struct RtpInput {
    pub(super) appsrc: gst_app::AppSrc,
    /// Whether the appsrc caps carry the payload type yet (set on the first packet).
    caps_set: Arc<AtomicBool>,
    /// What the appsrc holds at most before it drops its oldest data.
    max_bytes: u64,
    /// Packets dropped before the pipeline: pushed into a full appsrc (it then drops its oldest
    /// data), or refused while the branch was being removed.
    pub(super) dropped: Arc<AtomicU64>,
    /// An audio input's level and gate (a room's audio inputs only).
    voice: Option<Arc<Mutex<VoiceInput>>>,
    /// Packets of near-silence held back by that gate.
    held: Arc<AtomicU64>,
    /// Packets whose level the sender stated (RFC 6464), so none was decoded for it.
    stated: Arc<AtomicU64>,
}

/// What an audio input measures of each packet before the pipeline: its level, whether its
/// sender speaks, and whether the packet goes on at all ([`VoiceGate`]). The level is the one
/// the sender states in the packet (RFC 6464, when negotiated: browsers send it), else it is
/// decoded here, on the reading task that pushes it, with no thread of its own.
struct VoiceInput {
    decoder: opus::Decoder,
    /// The id of the RFC 6464 extension, when negotiated.
    level_extension: Option<u8>,
    gate: VoiceGate,
    pcm: Vec<i16>,
    session: SessionId,
    signals: Arc<Signals>,
    /// Packets whose level was read from their header (not decoded).
    stated: Arc<AtomicU64>,
    /// Levels since the last report to the room, and how much audio they cover.
    levels: Vec<AudioLevel>,
    levels_ms: u32,
}

/// How often an audio input tells its room its levels (who has the floor), in ms of audio.
const LEVEL_REPORT_MS: u32 = 100;
/// Levels this loud or quieter (-dBov) are not worth a report: no speaker threshold a layout
/// may set reaches them (see `SpeakerSettings::validate`), and a listener's quiet microphone
/// then costs its room no wake-ups.
pub const QUIETEST_REPORTED_DBOV: u8 = 70;

impl VoiceInput {
    fn new(
        session: SessionId,
        level_extension: Option<u8>,
        signals: Arc<Signals>,
        stated: Arc<AtomicU64>,
    ) -> Result<VoiceInput, MediaError> {
        Ok(VoiceInput {
            // Mono: the level is all that is wanted of it (libopus downmixes a stereo stream).
            decoder: opus::Decoder::new(48_000, opus::Channels::Mono)
                .map_err(|e| build_err("an Opus decoder for the level", e))?,
            level_extension,
            stated,
            gate: VoiceGate::default(),
            // 120 ms, Opus's longest packet.
            pcm: vec![0; 5760],
            session,
            signals,
            levels: Vec::with_capacity(8),
            levels_ms: 0,
        })
    }

    /// The packet's new sequence number if it goes on into the pipeline.
    fn take(&mut self, packet: &[u8]) -> Option<u16> {
        let sequence = rtp_packet::sequence(packet)?;
        // A negotiated extension may still be missing from a packet: then it is decoded.
        let stated = self
            .level_extension
            .and_then(|id| rtp_packet::audio_level(packet, id));
        let level = match stated {
            Some(level) => {
                self.stated.fetch_add(1, Ordering::Relaxed);
                level
            }
            None => rtp_packet::payload(packet)
                .and_then(|p| self.decoder.decode(p, &mut self.pcm, false).ok())
                .map_or(127, |n| dbov(&self.pcm[..n])),
        };
        self.report(level, packet);
        let gated = self.gate.packet(Instant::now(), level, sequence);
        if let Some(change) = gated.change {
            self.signals
                .speaking(self.session, change == Speech::Started);
        }
        gated.sequence
    }
}

impl RtpInput {
    pub(super) fn new(appsrc: gst_app::AppSrc) -> RtpInput {
        RtpInput {
            max_bytes: appsrc.max_bytes(),
            appsrc,
            caps_set: Arc::default(),
            dropped: Arc::default(),
            voice: None,
            held: Arc::default(),
            stated: Arc::default(),
        }
    }

    /// An audio input: each packet's level is read (or decoded) before the pipeline and
    /// reported to `signals`, and a listener's near-silence is held back ([`VoiceInput`]).
    pub(super) fn with_voice(
        mut self,
        session: SessionId,
        level_extension: Option<u8>,
        signals: Arc<Signals>,
    ) -> Result<RtpInput, MediaError> {
        let voice = VoiceInput::new(session, level_extension, signals, self.stated.clone())?;
        self.voice = Some(Arc::new(Mutex::new(voice)));
        Ok(self)
    }

    /// Packets dropped before the pipeline so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Packets of a quiet microphone held back before the pipeline so far (not decoded).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Packets so far whose level was read from their RFC 6464 header extension.
    pub fn stated_levels(&self) -> u64 {
        self.stated.load(Ordering::Relaxed)
    }
}

impl VoiceInput {
    /// Adds a packet's level to the next report, and sends the report every
    /// [`LEVEL_REPORT_MS`] of audio if any of it was louder than near-silence.
    fn report(&mut self, level: u8, packet: &[u8]) {
        // Opus says how long a packet is (RFC 6716 §3.1); 20 ms if it cannot be read.
        let ms = rtp_packet::payload(packet)
            .and_then(|p| opus::packet::get_nb_samples(p, 48_000).ok())
            .map_or(20, |n| (n / 48).clamp(1, 120) as u16);
        self.levels.push(AudioLevel { dbov: level, ms });
        self.levels_ms += u32::from(ms);
        if self.levels_ms >= LEVEL_REPORT_MS {
            if self.levels.iter().any(|l| l.dbov <= QUIETEST_REPORTED_DBOV) {
                self.signals.levels(self.session, &self.levels);
            }
            self.levels.clear();
            self.levels_ms = 0;
        }
    }
}

impl RtpSink for RtpInput {
    fn push(&self, packet: Bytes) {
        if packet.len() < 12 {
            return;
        }
        let packet = match &self.voice {
            None => packet,
            Some(voice) => {
                let taken = voice
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(&packet);
                let Some(sequence) = taken else {
                    // Near-silence of a listener: nothing to decode or mix.
                    self.held.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut renumbered = packet.to_vec();
                rtp_packet::set_sequence(&mut renumbered, sequence);
                Bytes::from(renumbered)
            }
        };
        if !self.caps_set.load(Ordering::Acquire) {
            // Depayloaders require the payload type in their caps, and it is only certain once
            // the first packet shows it (the offerer numbers its codecs).
            let pt = i32::from(packet[1] & 0x7f);
            if let Some(caps) = self.appsrc.caps() {
                let mut caps = caps.copy();
                if let Some(s) = caps.make_mut().structure_mut(0) {
                    s.set("payload", pt);
                }
                self.appsrc.set_caps(Some(&caps));
            }
            self.caps_set.store(true, Ordering::Release);
        }
        // appsrc is leaky (drops its oldest data when full), so this never blocks; a push into
        // a full one costs an older packet, counted here. A push fails only once the branch is
        // being removed, which is the end of the stream anyway.
        let full = self.appsrc.current_level_bytes() + packet.len() as u64 > self.max_bytes;
        let refused = self
            .appsrc
            .push_buffer(gst::Buffer::from_slice(packet))
            .is_err();
        if full || refused {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The name of `session`'s input bin of `kind`; the bus knows an input's messages by it.
pub(super) fn input_bin_name(kind: MediaKind, session: SessionId) -> String {
    format!("{kind}-in-{session}")
}

/// The session whose input bin is named `name` ([`input_bin_name`]), if it is one.
pub(super) fn session_of_input_bin(name: &str) -> Option<SessionId> {
    let hex = name
        .strip_prefix("video-in-")
        .or_else(|| name.strip_prefix("audio-in-"))?;
    u64::from_str_radix(hex, 16).ok().map(SessionId)
}

/// The description of a codec's input branch (`video-input-vp8.pipeline`, ...).
pub(super) fn input_template(kind: MediaKind, mime_type: &str) -> String {
    let codec = mime_type
        .rsplit('/')
        .next()
        .unwrap_or(mime_type)
        .to_ascii_lowercase();
    format!("{kind}-input-{codec}.pipeline")
}

/// `session`'s input branch for `codec`, from its description (not yet in a pipeline), and
/// its appsrc.
pub(super) fn input_bin(
    templates: &Templates,
    codec: &InputCodec,
    session: SessionId,
) -> Result<(gst::Bin, gst_app::AppSrc), MediaError> {
    let name = input_template(codec.kind, &codec.mime_type);
    if !templates.has(&name) {
        return Err(MediaError::UnsupportedCodec(codec.mime_type.clone()));
    }
    let desc = templates.render(&name, &[("jitter_ms", JITTER_MS.to_string())])?;
    let context = || format!("the {} input of session {session}", codec.kind);
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| build_err(context(), e))?;
    // The only unlinked pad to ghost is the output: a label overlay's text pad, ghosted,
    // would count as linked and draw that (empty) stream instead of its `text`.
    for pad in bin.sink_pads() {
        let _ = bin.remove_pad(&pad);
    }
    bin.set_property("name", input_bin_name(codec.kind, session));
    let appsrc = bin
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| build_err(context(), format!("{name} has no appsrc named src")))?;
    Ok((bin, appsrc))
}

impl Mixer {
    /// Adds a decoding branch for `session`'s incoming track and returns where to push its RTP.
    /// Video gets a compositor pad at `placement` (hidden without one, until the layout places
    /// it); audio gets a tee, linked into the mixes while the session speaks
    /// ([`Mixer::set_speaker`]).
    pub(super) fn add_input(
        &mut self,
        session: SessionId,
        codec: &InputCodec,
        placement: Option<Placement>,
    ) -> Result<RtpInput, MediaError> {
        self.remove_input(session, codec.kind);
        let context = || format!("adding the {} input of session {session}", codec.kind);
        let (bin, appsrc) = input_bin(&self.templates, codec, session)?;
        watch_keyframe_requests(&appsrc, session, self.signals.clone());
        self.pipeline
            .add(&bin)
            .map_err(|e| build_err(context(), e))?;
        let src = bin
            .static_pad("src")
            .ok_or_else(|| build_err(context(), "the input has no unlinked src pad"))?;

        let mut input = Input {
            bin: bin.clone(),
            appsrc: appsrc.clone(),
            compositor_pad: None,
            tee: None,
            dropped: Arc::default(),
            framing: SharedFraming::default(),
            crop: bin.by_name("crop"),
            clock: None,
        };
        let linked = match codec.kind {
            MediaKind::Video => {
                let pad = self
                    .compositor
                    .request_pad_simple("sink_%u")
                    .ok_or_else(|| build_err(context(), "compositor gave no sink pad"))?;
                if let Some(placement) = placement {
                    self.placements.insert(session, placement);
                }
                let placement = self.placements.get(&session).copied();
                // Hidden until its place is applied, at a frame boundary (long before its
                // decoder's first keyframe).
                pad.set_property("alpha", 0.0f64);
                // Bilinear scaling: a tile scaled up or down is a camera picture, where
                // libgstvideo's default (cubic) costs more and shows nothing more; measured:
                // `speaker`, which scales every input, cost 12% more than the unscaled grid.
                let mut config = gst_video::VideoConverterConfig::new();
                config.set_resampler_method(gst_video::VideoResamplerMethod::Linear);
                config.set_chroma_resampler_method(gst_video::VideoResamplerMethod::Linear);
                pad.set_property("converter-config", gst::Structure::from(config));
                let mut edits = Edits::default();
                {
                    let mut framing = input.framing.lock().unwrap_or_else(|p| p.into_inner());
                    framing.placement = placement;
                    framing.label = self.decor.label(session);
                    frame(&mut edits, &mut framing, &pad, input.crop.as_ref());
                }
                let shown = placement.is_some() && !self.video_muted.contains(&session);
                edits.set(&pad, "alpha", if shown { 1.0f64 } else { 0.0 });
                self.commit(edits);
                // The decoder's picture size, read before the crop cuts it.
                let watched = input
                    .crop
                    .as_ref()
                    .and_then(|c| c.static_pad("sink"))
                    .unwrap_or_else(|| src.clone());
                watch_source_size(
                    &watched,
                    input.framing.clone(),
                    pad.clone(),
                    input.crop.clone(),
                    self.frame_edits.clone(),
                );
                // The `label` overlay of its branch: its name on the picture.
                if let Some(overlay) = bin.by_name("label") {
                    watch_label(&overlay, input.framing.clone());
                }
                input.compositor_pad = Some(pad.clone());
                let clock = self.metrics.watch_input(session);
                watch_input_frames(&src, clock.clone());
                if self.video_muted.contains(&session) {
                    self.metrics.forget_input(session);
                }
                input.clock = Some(clock);
                src.link(&pad)
                    .map(|_| ())
                    .map_err(|e| build_err(context(), e))
            }
            MediaKind::Audio => {
                let tee = gst::ElementFactory::make("tee")
                    .name(format!("audio-tee-{session}"))
                    .property("allow-not-linked", true)
                    .build()
                    .map_err(|e| build_err(context(), e))?;
                self.pipeline
                    .add(&tee)
                    .map_err(|e| build_err(context(), e))?;
                input.tee = Some(tee.clone());
                bin.link(&tee).map_err(|e| build_err(context(), e))
            }
        };
        if let Err(e) = linked.and_then(|_| {
            if let Some(tee) = &input.tee {
                tee.sync_state_with_parent()
                    .map_err(|e| build_err(context(), e))?;
            }
            bin.sync_state_with_parent()
                .map_err(|e| build_err(context(), e))
        }) {
            self.teardown_input(input);
            return Err(e);
        }
        let mut sink = RtpInput::new(appsrc);
        if codec.kind == MediaKind::Audio {
            sink = sink.with_voice(session, codec.level_extension, self.signals.clone())?;
        }
        input.dropped = sink.dropped.clone();
        match codec.kind {
            MediaKind::Video => {
                self.video_inputs.insert(session, input);
            }
            MediaKind::Audio => {
                self.audio_inputs.insert(session, input);
                // A silent input is mixed nowhere; a speaker's (a replaced track) at once.
                if self.speakers.contains(&session) {
                    self.link_speaker(session)?;
                }
            }
        }
        if codec.kind == MediaKind::Video {
            // A decoder that joins mid-stream can start only at a keyframe.
            self.signals.keyframe_wanted(session);
        }
        self.measure_latency();
        self.dump_graph(&format!("added-{}-{session}", codec.kind));
        Ok(sink)
    }

    pub(super) fn remove_input(&mut self, session: SessionId, kind: MediaKind) {
        let input = match kind {
            MediaKind::Video => self.video_inputs.remove(&session),
            MediaKind::Audio => self.audio_inputs.remove(&session),
        };
        let Some(input) = input else { return };
        if kind == MediaKind::Video {
            self.metrics.forget_input(session);
        }
        if kind == MediaKind::Audio {
            self.unlink_source(session);
        }
        self.teardown_input(input);
    }

    /// Takes an input branch out of the running pipeline: stop its source, wait (bounded) for
    /// its output pad to go idle, unlink, release the request pad, set it to Null, remove it.
    fn teardown_input(&self, input: Input) {
        let _ = input.appsrc.end_of_stream();
        if let Some(src) = input.bin.static_pad("src") {
            block_until_idle(&src);
            if let Some(peer) = src.peer() {
                let _ = src.unlink(&peer);
            }
        }
        if let Some(pad) = &input.compositor_pad {
            self.compositor.release_request_pad(pad);
        }
        remove_bin(&self.pipeline, &input.bin);
        if let Some(tee) = input.tee {
            let _ = tee.set_state(gst::State::Null);
            let _ = self.pipeline.remove(&tee);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_bin_is_known_by_its_name() {
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let session = SessionId(0x1f_ffff_ffff_ffff);
            assert_eq!(
                session_of_input_bin(&input_bin_name(kind, session)),
                Some(session)
            );
        }
        assert_eq!(session_of_input_bin("audio-tee-12"), None);
        assert_eq!(session_of_input_bin("video-in-"), None);
        assert_eq!(session_of_input_bin("video-in-xyz"), None);
        assert_eq!(session_of_input_bin("compositor"), None);
    }
}
