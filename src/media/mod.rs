//! The only module that imports `gst::`: one [`Mixer`] (one GStreamer pipeline) per room.
//!
//! Shape of a room's pipeline (descriptions in `pipelines/`):
//! ```text
//! video input bin (appsrc → jitterbuffer → depay → decode) ─┐                 ┌→ vp8 high: valve → queue → scale → vp8enc → pay → appsink ⇒ broadcast
//! video input bin ...                                        ├→ compositor → tee ├→ vp8 low, h264 high, h264 low (same shape)
//! black 16x16 clock (alpha 0) ───────────────────────────────┘                 └  (each output's valve is open only while someone receives it)
//! audio input bin (appsrc → … → S16 48k) → tee ─┬→ "everyone" audio mix → opus → pay → appsink ⇒ broadcast
//!                                               └→ every other participant's mix-minus ⇒ broadcast
//! ```
//! The room actor owns the `Mixer`; nothing else holds the pipeline. Streaming-thread callbacks
//! only forward: appsinks into a `broadcast` channel per output (slow subscribers lag and drop,
//! never block), bus messages and keyframe requests into the room's bounded event channel with
//! `try_send`. Dropping the `Mixer` sets the pipeline to Null.

pub mod bench;
mod recorder;
mod templates;

pub use recorder::Recorder;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gst::prelude::*;
use tokio::sync::{broadcast, mpsc};

use crate::config::MixConfig;
use crate::metrics::{self, Live};
use crate::types::{InputCodec, MediaKind, OutputKey, Rect, RtpSink, SessionId, Tier, VideoCodec};

pub use templates::Templates;

/// Packets an output may run ahead of its slowest subscriber before that subscriber drops
/// (~1.5 s of 2 Mbit/s video at 1200-byte packets).
const OUTPUT_BACKLOG: usize = 512;
/// Jitter buffer depth of every input, in ms: room for one retransmission on a good network.
const JITTER_MS: u32 = 40;
/// How long removing a branch may wait for its pad to go idle.
const UNLINK_DEADLINE: Duration = Duration::from_secs(2);
/// Most audio a link from a speaker's input to one mix may hold while that mix is busy (see
/// [`Mixer::link_audio`]); older audio is dropped, for that mix only.
const AUDIO_LINK_QUEUE: Duration = Duration::from_millis(200);

/// A media failure, with the element or step that failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// GStreamer could not start.
    #[error("GStreamer initialisation failed: {0}")]
    Init(String),
    /// A pipeline description is missing or malformed.
    #[error("pipeline description: {0}")]
    Template(String),
    /// Building or linking part of the pipeline failed.
    #[error("{context}: {message}")]
    Build {
        /// What was being done.
        context: String,
        /// GStreamer's words.
        message: String,
    },
    /// The codec has no input description.
    #[error("no decoder for {0}")]
    UnsupportedCodec(String),
}

fn build_err(context: impl Into<String>, e: impl std::fmt::Display) -> MediaError {
    MediaError::Build {
        context: context.into(),
        message: e.to_string(),
    }
}

/// Something the pipeline reports to its room, forwarded from GStreamer threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixerEvent {
    /// The pipeline failed; the room should end. Carries the element path and debug string.
    Error(String),
    /// An element's latency changed (a branch was added): the room should call
    /// [`Mixer::recalculate_latency`] from outside the streaming threads.
    LatencyChanged,
    /// A session's video input needs a keyframe (join, loss, decode error): send it a PLI.
    KeyframeWanted(SessionId),
    /// A recording's pipeline failed (disk full, unwritable file); the room goes on.
    RecordingFailed {
        /// The recording.
        id: u64,
        /// The element and GStreamer's words.
        error: String,
    },
}

/// Process-wide media set-up: GStreamer initialised and the descriptions loaded.
#[derive(Debug, Clone)]
pub struct MediaFactory {
    templates: Arc<Templates>,
    /// Codecs whose output description builds here (its encoder plugin is installed).
    encodable: Vec<VideoCodec>,
}

impl MediaFactory {
    /// Initialises GStreamer and loads the pipeline descriptions.
    pub fn new(pipelines_dir: Option<&Path>) -> Result<MediaFactory, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        let templates = Templates::load(pipelines_dir)?;
        let mix = crate::config::Config::default().mix;
        let encodable = VideoCodec::ALL
            .into_iter()
            .filter(|&codec| {
                let key = OutputKey {
                    codec,
                    tier: Tier::High,
                };
                // Built once and dropped: a missing encoder plugin shows here, not in a room.
                match output_description(&templates, key, &mix).and_then(|d| {
                    gst::parse::bin_from_description(&d, true)
                        .map_err(|e| build_err(format!("the {key} output"), e))
                }) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!("no {} output: {e}", codec.name());
                        false
                    }
                }
            })
            .collect();
        Ok(MediaFactory {
            templates: Arc::new(templates),
            encodable,
        })
    }

    /// Whether rooms can send their mix in `codec`.
    pub fn can_encode(&self, codec: VideoCodec) -> bool {
        self.encodable.contains(&codec)
    }

    /// Whether an input of this codec can be decoded (the check behind "no codec we can decode").
    pub fn can_decode(&self, kind: MediaKind, mime_type: &str) -> bool {
        self.templates.has(&input_template(kind, mime_type))
    }

    /// Starts a room's pipeline (PLAYING) that reports to `events`.
    pub fn start_mixer(
        &self,
        room: &str,
        mix: &MixConfig,
        events: mpsc::Sender<MixerEvent>,
    ) -> Result<Mixer, MediaError> {
        Mixer::start(self.templates.clone(), &self.encodable, room, mix, events)
    }
}

/// The rendered description of one video output.
fn output_description(
    templates: &Templates,
    key: OutputKey,
    mix: &MixConfig,
) -> Result<String, MediaError> {
    let (width, height, kbps) = mix.output(key);
    templates.render(
        &format!("video-output-{}.pipeline", key.codec.name()),
        &[
            ("width", width.to_string()),
            ("height", height.to_string()),
            ("video_kbps", kbps.to_string()),
            ("video_bps", (kbps * 1000).to_string()),
        ],
    )
}

fn input_template(kind: MediaKind, mime_type: &str) -> String {
    let codec = mime_type
        .rsplit('/')
        .next()
        .unwrap_or(mime_type)
        .to_ascii_lowercase();
    format!("{kind}-input-{codec}.pipeline")
}

/// One encoded output of the mix: subscribers get every RTP packet from the moment they
/// subscribe. Counts packets dropped for want of subscribers' attention elsewhere (in `peer`).
#[derive(Debug)]
struct Output {
    tx: broadcast::Sender<Bytes>,
    packets: Arc<AtomicU64>,
    /// Bytes produced so far (what a receiver of this output must carry).
    bytes: Arc<AtomicU64>,
}

impl Output {
    fn attach(appsink: &gst_app::AppSink) -> Output {
        let (tx, _) = broadcast::channel(OUTPUT_BACKLOG);
        let packets = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (cb_tx, cb_packets, cb_bytes) = (tx.clone(), packets.clone(), bytes.clone());
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    // Forward only: copy the packet out and broadcast it. No receivers is fine.
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer()
                        && let Ok(map) = buffer.map_readable()
                    {
                        cb_packets.fetch_add(1, Ordering::Relaxed);
                        cb_bytes.fetch_add(map.len() as u64, Ordering::Relaxed);
                        let _ = cb_tx.send(Bytes::copy_from_slice(map.as_slice()));
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Output { tx, packets, bytes }
    }
}

/// An audio mix (the "everyone" mix or one participant's mix-minus): a bin from
/// `audio-mix.pipeline` whose audiomixer gets one ghost sink pad per linked input.
struct AudioMix {
    bin: gst::Bin,
    mixer: gst::Element,
    /// The valve before the encoder: closed while nobody listens.
    gate: gst::Element,
    output: Output,
}

/// One encoded video output (a codec at a tier): a bin from `video-output-{codec}.pipeline` on
/// a request pad of the canvas tee.
struct VideoOutput {
    /// Kept for the pipeline graph's lifetime (the pipeline owns it).
    _bin: gst::Bin,
    /// The valve at its head: closed while nobody receives this output.
    gate: gst::Element,
    encoder: gst::Element,
    output: Output,
}

/// A link from an input's tee into an audio mix.
struct AudioLink {
    tee_pad: gst::Pad,
    /// Decouples the source's streaming thread from this mix (see [`Mixer::link_audio`]).
    queue: gst::Element,
    ghost: gst::GhostPad,
    mixer_pad: gst::Pad,
}

/// A video or audio input branch.
struct Input {
    bin: gst::Bin,
    appsrc: gst_app::AppSrc,
    /// Video: the compositor's request pad. Audio: none (the tee fans out).
    compositor_pad: Option<gst::Pad>,
    /// Audio: the tee after the bin.
    tee: Option<gst::Element>,
}

/// The tile of a participant whose camera is off: a still picture with their name, on a
/// compositor pad above their video (`video-placeholder.pipeline`). Made on the first mute and
/// kept until the session leaves; hidden (alpha 0) while the camera is on.
struct Placeholder {
    bin: gst::Bin,
    pad: gst::Pad,
}

/// The pushing end of an input, handed to the peer's reading task.
#[derive(Clone)]
pub struct RtpInput {
    appsrc: gst_app::AppSrc,
    /// Whether the appsrc caps carry the payload type yet (set on the first packet).
    caps_set: Arc<std::sync::atomic::AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl RtpSink for RtpInput {
    fn push(&self, packet: Bytes) {
        if packet.len() < 12 {
            return;
        }
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
        // appsrc is leaky (drops its oldest data when full), so this never blocks. It fails only
        // once the branch is being removed, which is the end of the stream anyway.
        if self
            .appsrc
            .push_buffer(gst::Buffer::from_slice(packet))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Diagnostic counts of a mixer, for the room's debug info.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MixerStats {
    /// Video encoders running: one per (codec, tier) somebody receives.
    pub video_encoders: usize,
    /// Which outputs those are, e.g. `["h264/high", "vp8/low"]`.
    pub video_outputs: Vec<String>,
    /// Audio encoders running: one per mix-minus, plus the "everyone" mix while anyone hears it.
    pub audio_encoders: usize,
    /// Inputs being decoded.
    pub inputs: usize,
    /// RTP packets produced by the video outputs so far.
    pub video_packets: u64,
}

/// One room's pipeline. Owned by the room actor; Drop sets it to Null.
pub struct Mixer {
    templates: Arc<Templates>,
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    /// The ladder: every (codec, tier) this host can encode, idle until received.
    video_outputs: std::collections::BTreeMap<OutputKey, VideoOutput>,
    everyone: AudioMix,
    minus: HashMap<SessionId, AudioMix>,
    video_inputs: HashMap<SessionId, Input>,
    audio_inputs: HashMap<SessionId, Input>,
    /// (source, mix) → link; mix `None` is the "everyone" mix.
    audio_links: HashMap<(SessionId, Option<SessionId>), AudioLink>,
    /// Each video sender's tile, as last laid out.
    tiles: HashMap<SessionId, Rect>,
    placeholders: HashMap<SessionId, Placeholder>,
    /// Sessions whose camera is off.
    video_muted: std::collections::HashSet<SessionId>,
    /// Sessions whose microphone is off.
    audio_muted: std::collections::HashSet<SessionId>,
    events: mpsc::Sender<MixerEvent>,
    _live: Live,
}

impl Mixer {
    fn start(
        templates: Arc<Templates>,
        codecs: &[VideoCodec],
        room: &str,
        mix: &MixConfig,
        events: mpsc::Sender<MixerEvent>,
    ) -> Result<Mixer, MediaError> {
        let desc = templates.render(
            "video-mix.pipeline",
            &[
                ("width", mix.width.to_string()),
                ("height", mix.height.to_string()),
                ("fps", mix.fps.to_string()),
            ],
        )?;
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| build_err("parsing video-mix.pipeline", e))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| build_err("video-mix.pipeline", "is not a pipeline"))?;
        pipeline.set_property("name", format!("room-{room}"));
        let by_name = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| build_err("video-mix.pipeline", format!("has no element {name}")))
        };
        let compositor = by_name("mix")?;
        let canvas = by_name("canvas")?;
        let mut video_outputs = std::collections::BTreeMap::new();
        for &codec in codecs {
            for tier in Tier::ALL {
                let key = OutputKey { codec, tier };
                video_outputs.insert(
                    key,
                    add_video_output(&templates, &pipeline, &canvas, key, mix)?,
                );
            }
        }
        install_bus_forwarder(&pipeline, events.clone());

        let everyone = new_audio_mix(&templates, &pipeline, mix, "everyone")?;
        everyone
            .bin
            .sync_state_with_parent()
            .map_err(|e| build_err("starting the everyone mix", e))?;
        let mixer = Mixer {
            templates,
            pipeline,
            compositor,
            video_outputs,
            everyone,
            minus: HashMap::new(),
            video_inputs: HashMap::new(),
            audio_inputs: HashMap::new(),
            audio_links: HashMap::new(),
            tiles: HashMap::new(),
            placeholders: HashMap::new(),
            video_muted: Default::default(),
            audio_muted: Default::default(),
            events,
            _live: Live::new(&metrics::PIPELINES),
        };
        // Nobody receives anything yet: every shared encoder idles until someone does.
        mixer.set_receivers(&Default::default(), false);
        mixer
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| build_err("starting the room pipeline", e))?;
        Ok(mixer)
    }

    /// A receiver of one video output's RTP packets, if the room has that output.
    pub fn subscribe_video(&self, key: OutputKey) -> Option<broadcast::Receiver<Bytes>> {
        self.video_outputs
            .get(&key)
            .map(|o| o.output.tx.subscribe())
    }

    /// Starts a recording of this room into `path`; feed it from [`Mixer::subscribe_video`]
    /// (the format's output) and [`Mixer::subscribe_audio`] (`None`: everyone).
    pub fn start_recording(
        &self,
        id: u64,
        format: crate::types::RecordingFormat,
        path: &Path,
    ) -> Result<Recorder, MediaError> {
        Recorder::start(&self.templates, id, format, path, self.events.clone())
    }

    /// Bytes a video output has produced so far (its actual bitrate, sampled over time).
    pub fn output_bytes(&self, key: OutputKey) -> Option<u64> {
        self.video_outputs
            .get(&key)
            .map(|o| o.output.bytes.load(Ordering::Relaxed))
    }

    /// Whether the room has this output (its codec can be encoded here).
    pub fn has_output(&self, key: OutputKey) -> bool {
        self.video_outputs.contains_key(&key)
    }

    /// A receiver of the audio `session` should hear: its mix-minus if it has one, else everyone.
    pub fn subscribe_audio(&self, session: Option<SessionId>) -> broadcast::Receiver<Bytes> {
        session
            .and_then(|s| self.minus.get(&s))
            .unwrap_or(&self.everyone)
            .output
            .tx
            .subscribe()
    }

    /// Runs the video outputs in `video` and idles the others, and runs or idles the
    /// "everyone" audio encoder. Idle ones drop raw frames before scaling and encoding, so they
    /// cost (almost) nothing; an output that starts again opens with a keyframe.
    pub fn set_receivers(
        &self,
        video: &std::collections::BTreeSet<OutputKey>,
        everyone_audio: bool,
    ) {
        for (key, out) in &self.video_outputs {
            let wanted = video.contains(key);
            let was_dropping: bool = out.gate.property("drop");
            out.gate.set_property("drop", !wanted);
            if wanted && was_dropping {
                self.force_keyframe(*key);
            }
        }
        self.everyone.gate.set_property("drop", !everyone_audio);
    }

    /// Asks one output's encoder for a keyframe now (the caller coalesces).
    pub fn force_keyframe(&self, key: OutputKey) {
        let Some(out) = self.video_outputs.get(&key) else {
            return;
        };
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        if let Some(pad) = out.encoder.static_pad("src") {
            // An upstream event sent into the encoder's src pad is handled by the encoder.
            pad.send_event(event);
        }
    }

    /// Re-distributes latency after branches came or went (see [`MixerEvent::LatencyChanged`]).
    pub fn recalculate_latency(&self) {
        if let Err(e) = self.pipeline.recalculate_latency() {
            tracing::debug!("recalculating latency: {e}");
        }
    }

    /// Counts for the debug info.
    pub fn stats(&self) -> MixerStats {
        let running = |gate: &gst::Element| !gate.property::<bool>("drop");
        let video_outputs: Vec<String> = self
            .video_outputs
            .iter()
            .filter(|(_, o)| running(&o.gate))
            .map(|(k, _)| k.to_string())
            .collect();
        MixerStats {
            video_encoders: video_outputs.len(),
            video_outputs,
            audio_encoders: usize::from(running(&self.everyone.gate)) + self.minus.len(),
            inputs: self.video_inputs.len() + self.audio_inputs.len(),
            video_packets: self
                .video_outputs
                .values()
                .map(|o| o.output.packets.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Adds a decoding branch for `session`'s incoming track and returns where to push its RTP.
    /// Video gets a compositor pad at `tile`; audio is linked into every mix but its own.
    pub fn add_input(
        &mut self,
        session: SessionId,
        codec: &InputCodec,
        tile: Option<Rect>,
    ) -> Result<RtpInput, MediaError> {
        let name = input_template(codec.kind, &codec.mime_type);
        if !self.templates.has(&name) {
            return Err(MediaError::UnsupportedCodec(codec.mime_type.clone()));
        }
        self.remove_input(session, codec.kind);
        let desc = self
            .templates
            .render(&name, &[("jitter_ms", JITTER_MS.to_string())])?;
        let context = || format!("adding the {} input of session {session}", codec.kind);
        let bin =
            gst::parse::bin_from_description(&desc, true).map_err(|e| build_err(context(), e))?;
        bin.set_property("name", format!("{}-in-{session}", codec.kind));
        let appsrc = bin
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| build_err(context(), format!("{name} has no appsrc named src")))?;
        watch_keyframe_requests(&appsrc, session, self.events.clone());
        self.pipeline
            .add(&bin)
            .map_err(|e| build_err(context(), e))?;
        let src = bin
            .static_pad("src")
            .ok_or_else(|| build_err(context(), format!("{name} has no unlinked src pad")))?;

        let mut input = Input {
            bin: bin.clone(),
            appsrc: appsrc.clone(),
            compositor_pad: None,
            tee: None,
        };
        let linked = match codec.kind {
            MediaKind::Video => {
                let pad = self
                    .compositor
                    .request_pad_simple("sink_%u")
                    .ok_or_else(|| build_err(context(), "compositor gave no sink pad"))?;
                pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
                if let Some(rect) = tile {
                    set_geometry(&pad, rect);
                    self.tiles.insert(session, rect);
                }
                if self.video_muted.contains(&session) {
                    pad.set_property("alpha", 0.0f64);
                }
                input.compositor_pad = Some(pad.clone());
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
        let sink = RtpInput {
            appsrc,
            caps_set: Arc::default(),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        match codec.kind {
            MediaKind::Video => {
                self.video_inputs.insert(session, input);
            }
            MediaKind::Audio => {
                self.audio_inputs.insert(session, input);
                let muted = self.audio_muted.contains(&session);
                let mixes: Vec<Option<SessionId>> = std::iter::once(None)
                    .chain(
                        self.minus
                            .keys()
                            .filter(|&&m| m != session)
                            .map(|&m| Some(m)),
                    )
                    .collect();
                for mix in mixes {
                    self.link_audio(session, mix)?;
                }
                if muted {
                    self.set_muted_audio(session, true);
                }
            }
        }
        if codec.kind == MediaKind::Video {
            // A decoder that joins mid-stream can start only at a keyframe.
            let _ = self.events.try_send(MixerEvent::KeyframeWanted(session));
        }
        self.dump_graph(&format!("added-{}-{session}", codec.kind));
        Ok(sink)
    }

    /// Writes the pipeline graph as a .dot file when `GST_DEBUG_DUMP_DOT_DIR` is set (GStreamer
    /// does nothing otherwise), named after the room and the change that was just made.
    fn dump_graph(&self, label: &str) {
        let name = format!("{}-{label}", self.pipeline.name());
        self.pipeline
            .debug_to_dot_file_with_ts(gst::DebugGraphDetails::all(), name);
    }

    /// Moves every video input to its tile (the reflow after a join or leave). Tiles are set
    /// in one go on the compositor's pads, so the next composed frame has the new grid.
    pub fn set_tiles(&mut self, tiles: &[(SessionId, Rect)]) {
        self.tiles = tiles.iter().copied().collect();
        for (session, rect) in tiles {
            if let Some(pad) = self
                .video_inputs
                .get(session)
                .and_then(|i| i.compositor_pad.as_ref())
            {
                set_geometry(pad, *rect);
            }
            if let Some(p) = self.placeholders.get(session) {
                set_geometry(&p.pad, *rect);
            }
        }
    }

    /// Silences (or restores) `session`'s voice in every mix, whether or not it still sends.
    pub fn set_muted_audio(&mut self, session: SessionId, muted: bool) {
        if muted {
            self.audio_muted.insert(session);
        } else {
            self.audio_muted.remove(&session);
        }
        for ((source, _), link) in &self.audio_links {
            if *source == session {
                link.mixer_pad.set_property("mute", muted);
            }
        }
    }

    /// Shows `name` in `session`'s tile instead of its video (camera off), or its video again.
    /// Back on, the video replaces the placeholder at its first new frame, so nobody sees the
    /// frozen frame from before the mute.
    pub fn set_muted_video(&mut self, session: SessionId, muted: bool, name: &str) {
        if muted {
            self.video_muted.insert(session);
            if let Err(e) = self.show_placeholder(session, name) {
                tracing::warn!(%session, "showing the camera-off placeholder: {e}");
            }
            if let Some(pad) = self.video_pad(session) {
                // Hidden, so the compositor does not even convert its stale frame.
                pad.set_property("alpha", 0.0f64);
            }
            return;
        }
        self.video_muted.remove(&session);
        let placeholder = self.placeholders.get(&session).map(|p| p.pad.clone());
        let video_pad = self.video_pad(session);
        let src = self
            .video_inputs
            .get(&session)
            .and_then(|i| i.bin.static_pad("src"));
        match (video_pad, src) {
            (Some(video_pad), Some(src)) => {
                src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    video_pad.set_property("alpha", 1.0f64);
                    if let Some(p) = &placeholder {
                        p.set_property("alpha", 0.0f64);
                    }
                    gst::PadProbeReturn::Remove
                });
            }
            _ => {
                if let Some(p) = placeholder {
                    p.set_property("alpha", 0.0f64);
                }
            }
        }
    }

    fn video_pad(&self, session: SessionId) -> Option<gst::Pad> {
        self.video_inputs
            .get(&session)
            .and_then(|i| i.compositor_pad.clone())
    }

    fn show_placeholder(&mut self, session: SessionId, name: &str) -> Result<(), MediaError> {
        if let Some(p) = self.placeholders.get(&session) {
            p.pad.set_property("alpha", 1.0f64);
            return Ok(());
        }
        let context = || format!("adding the camera-off placeholder of {session}");
        let desc = self.templates.render("video-placeholder.pipeline", &[])?;
        // Only `out` is ghosted: a ghosted text pad would make textoverlay draw that stream's
        // text (none) instead of its `text` property.
        let bin =
            gst::parse::bin_from_description(&desc, false).map_err(|e| build_err(context(), e))?;
        bin.set_property("name", format!("placeholder-{session}"));
        let out = bin
            .by_name("out")
            .and_then(|e| e.static_pad("src"))
            .ok_or_else(|| build_err(context(), "the placeholder has no element named out"))?;
        let ghost = gst::GhostPad::builder_with_target(&out)
            .map_err(|e| build_err(context(), e))?
            .name("src")
            .build();
        bin.add_pad(&ghost).map_err(|e| build_err(context(), e))?;
        if let Some(label) = bin.by_name("label") {
            label.set_property("text", name);
        }
        self.pipeline
            .add(&bin)
            .map_err(|e| build_err(context(), e))?;
        let pad = self
            .compositor
            .request_pad_simple("sink_%u")
            .ok_or_else(|| build_err(context(), "compositor gave no sink pad"))?;
        // Above the session's video, filling its tile exactly.
        pad.set_property("zorder", 10_000u32);
        if let Some(rect) = self.tiles.get(&session) {
            set_geometry(&pad, *rect);
        }
        let placeholder = Placeholder {
            bin: bin.clone(),
            pad: pad.clone(),
        };
        let linked = bin
            .static_pad("src")
            .ok_or_else(|| build_err(context(), "the placeholder has no src pad"))
            .and_then(|src| {
                src.link(&pad)
                    .map(|_| ())
                    .map_err(|e| build_err(context(), e))
            })
            .and_then(|_| {
                bin.sync_state_with_parent()
                    .map_err(|e| build_err(context(), e))
            });
        match linked {
            Ok(()) => {
                self.placeholders.insert(session, placeholder);
                self.dump_graph(&format!("placeholder-{session}"));
                Ok(())
            }
            Err(e) => {
                self.remove_placeholder(placeholder);
                Err(e)
            }
        }
    }

    fn remove_placeholder(&self, p: Placeholder) {
        if let Some(src) = p.bin.static_pad("src") {
            block_until_idle(&src);
            if let Some(peer) = src.peer() {
                let _ = src.unlink(&peer);
            }
        }
        self.compositor.release_request_pad(&p.pad);
        remove_bin(&self.pipeline, &p.bin);
    }

    /// Gives `session` its own mix-minus (everyone's audio but its own).
    pub fn add_mix_minus(&mut self, session: SessionId, mix: &MixConfig) -> Result<(), MediaError> {
        if self.minus.contains_key(&session) {
            return Ok(());
        }
        let audio = new_audio_mix(
            &self.templates,
            &self.pipeline,
            mix,
            &format!("minus-{session}"),
        )?;
        // Started before anything is linked into it: its audiomixer is running by the time
        // the others' audio arrives, so none of it waits (and goes stale) in the links' queues.
        let started = audio
            .bin
            .sync_state_with_parent()
            .map(|_| ())
            .map_err(|e| build_err(format!("starting the mix-minus of {session}"), e));
        self.minus.insert(session, audio);
        let sources: Vec<SessionId> = self
            .audio_inputs
            .keys()
            .copied()
            .filter(|&s| s != session)
            .collect();
        let started = started.and_then(|()| {
            sources
                .into_iter()
                .try_for_each(|source| self.link_audio(source, Some(session)))
        });
        if let Err(e) = started {
            self.remove_mix_minus(session);
            return Err(e);
        }
        // Linking into a running pipeline posts no latency message: ask for the pipeline's
        // latency again, so every mix's budget covers the paths that now feed it.
        self.recalculate_latency();
        Ok(())
    }

    /// Removes `session`'s mix-minus and every link into it.
    fn remove_mix_minus(&mut self, session: SessionId) {
        let links: Vec<_> = self
            .audio_links
            .keys()
            .copied()
            .filter(|&(_, mix)| mix == Some(session))
            .collect();
        for key in links {
            self.unlink_audio(key);
        }
        if let Some(mix) = self.minus.remove(&session) {
            remove_bin(&self.pipeline, &mix.bin);
        }
    }

    /// Removes everything of `session`: its inputs, its mix-minus, its links into other mixes.
    pub fn remove_session(&mut self, session: SessionId) {
        self.remove_input(session, MediaKind::Video);
        self.remove_input(session, MediaKind::Audio);
        self.remove_mix_minus(session);
        if let Some(p) = self.placeholders.remove(&session) {
            self.remove_placeholder(p);
        }
        self.tiles.remove(&session);
        self.video_muted.remove(&session);
        self.audio_muted.remove(&session);
        self.dump_graph(&format!("removed-{session}"));
    }

    fn remove_input(&mut self, session: SessionId, kind: MediaKind) {
        let input = match kind {
            MediaKind::Video => self.video_inputs.remove(&session),
            MediaKind::Audio => self.audio_inputs.remove(&session),
        };
        let Some(input) = input else { return };
        if kind == MediaKind::Audio {
            let links: Vec<_> = self
                .audio_links
                .keys()
                .copied()
                .filter(|&(src, _)| src == session)
                .collect();
            for key in links {
                self.unlink_audio(key);
            }
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

    fn link_audio(&mut self, source: SessionId, mix: Option<SessionId>) -> Result<(), MediaError> {
        let context = || format!("linking the audio of {source} into mix {mix:?}");
        let tee = self
            .audio_inputs
            .get(&source)
            .and_then(|i| i.tee.clone())
            .ok_or_else(|| build_err(context(), "no such audio input"))?;
        let target = match mix {
            None => &self.everyone,
            Some(m) => self
                .minus
                .get(&m)
                .ok_or_else(|| build_err(context(), "no such mix"))?,
        };
        let mixer_pad = target
            .mixer
            .request_pad_simple("sink_%u")
            .ok_or_else(|| build_err(context(), "audiomixer gave no sink pad"))?;
        let ghost = gst::GhostPad::builder_with_target(&mixer_pad)
            .map_err(|e| build_err(context(), e))?
            .name(format!("in-{source}"))
            .build();
        ghost
            .set_active(true)
            .map_err(|e| build_err(context(), e))?;
        target
            .bin
            .add_pad(&ghost)
            .map_err(|e| build_err(context(), e))?;
        // A queue per branch: an audiomixer's sink pad blocks whoever pushes into it until it
        // has mixed that buffer, so without a queue one mix that is slow or still starting would
        // hold the source's streaming thread, and with it the source's audio in every other mix
        // (issue 9: a new mix-minus stalled a speaker's input for ~400 ms, after which every mix
        // dropped that speaker's late audio until the aggregator resynced). Leaky: a mix that
        // stalls for longer loses its own oldest audio, nobody else's.
        let queue = gst::ElementFactory::make("queue")
            .property("max-size-buffers", 0u32)
            .property("max-size-bytes", 0u32)
            .property("max-size-time", AUDIO_LINK_QUEUE.as_nanos() as u64)
            .property_from_str("leaky", "downstream")
            .property("silent", true)
            .build()
            .map_err(|e| build_err(context(), e))?;
        self.pipeline
            .add(&queue)
            .map_err(|e| build_err(context(), e))?;
        let queue_src = queue
            .static_pad("src")
            .ok_or_else(|| build_err(context(), "queue has no src pad"))?;
        let queue_sink = queue
            .static_pad("sink")
            .ok_or_else(|| build_err(context(), "queue has no sink pad"))?;
        queue_src
            .link(&ghost)
            .map_err(|e| build_err(context(), e))?;
        queue
            .sync_state_with_parent()
            .map_err(|e| build_err(context(), e))?;
        let tee_pad = tee
            .request_pad_simple("src_%u")
            .ok_or_else(|| build_err(context(), "tee gave no src pad"))?;
        tee_pad
            .link(&queue_sink)
            .map_err(|e| build_err(context(), e))?;
        self.audio_links.insert(
            (source, mix),
            AudioLink {
                tee_pad,
                queue,
                ghost,
                mixer_pad,
            },
        );
        Ok(())
    }

    fn unlink_audio(&mut self, key: (SessionId, Option<SessionId>)) {
        let Some(link) = self.audio_links.remove(&key) else {
            return;
        };
        block_until_idle(&link.tee_pad);
        if let Some(queue_sink) = link.queue.static_pad("sink") {
            let _ = link.tee_pad.unlink(&queue_sink);
        }
        if let Some(tee) = link.tee_pad.parent_element() {
            tee.release_request_pad(&link.tee_pad);
        }
        // Nothing feeds the queue any more: it can stop without waiting for data to drain.
        let _ = link.queue.set_state(gst::State::Null);
        let _ = self.pipeline.remove(&link.queue);
        let target = match key.1 {
            None => Some(&self.everyone),
            Some(m) => self.minus.get(&m),
        };
        if let Some(target) = target {
            let _ = target.bin.remove_pad(&link.ghost);
            target.mixer.release_request_pad(&link.mixer_pad);
        }
    }
}

impl Drop for Mixer {
    fn drop(&mut self) {
        // The one place a room's pipeline ends: every element goes to Null with it.
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(bus) = self.pipeline.bus() {
            bus.unset_sync_handler();
        }
    }
}

/// Builds one video output bin and links it to a request pad of the canvas tee (not yet
/// playing: the pipeline starts it).
fn add_video_output(
    templates: &Templates,
    pipeline: &gst::Pipeline,
    canvas: &gst::Element,
    key: OutputKey,
    mix: &MixConfig,
) -> Result<VideoOutput, MediaError> {
    let context = || format!("adding the {key} video output");
    let desc = output_description(templates, key, mix)?;
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| build_err(context(), e))?;
    bin.set_property(
        "name",
        format!("video-{}-{}", key.codec.name(), key.tier.name()),
    );
    let by_name = |name: &str| {
        bin.by_name(name)
            .ok_or_else(|| build_err(context(), format!("no element named {name}")))
    };
    let gate = by_name("gate")?;
    let encoder = by_name("enc")?;
    let sink = by_name("out")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| build_err(context(), "out is not an appsink"))?;
    let output = Output::attach(&sink);
    pipeline.add(&bin).map_err(|e| build_err(context(), e))?;
    let tee_pad = canvas
        .request_pad_simple("src_%u")
        .ok_or_else(|| build_err(context(), "the canvas tee gave no pad"))?;
    let sink_pad = bin
        .static_pad("sink")
        .ok_or_else(|| build_err(context(), "the output has no sink pad"))?;
    tee_pad
        .link(&sink_pad)
        .map_err(|e| build_err(context(), e))?;
    Ok(VideoOutput {
        _bin: bin,
        gate,
        encoder,
        output,
    })
}

fn new_audio_mix(
    templates: &Templates,
    pipeline: &gst::Pipeline,
    mix: &MixConfig,
    name: &str,
) -> Result<AudioMix, MediaError> {
    let context = || format!("adding the audio mix {name}");
    let desc = templates.render(
        "audio-mix.pipeline",
        &[("audio_bps", (mix.audio_kbps * 1000).to_string())],
    )?;
    let bin =
        gst::parse::bin_from_description(&desc, false).map_err(|e| build_err(context(), e))?;
    bin.set_property("name", format!("audio-{name}"));
    let mixer = bin
        .by_name("mix")
        .ok_or_else(|| build_err(context(), "audio-mix.pipeline has no element named mix"))?;
    let sink = bin
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| build_err(context(), "audio-mix.pipeline has no appsink named out"))?;
    let output = Output::attach(&sink);
    let gate = bin
        .by_name("gate")
        .ok_or_else(|| build_err(context(), "audio-mix.pipeline has no valve named gate"))?;
    pipeline.add(&bin).map_err(|e| build_err(context(), e))?;
    Ok(AudioMix {
        bin,
        mixer,
        gate,
        output,
    })
}

fn remove_bin(pipeline: &gst::Pipeline, bin: &gst::Bin) {
    let _ = bin.set_state(gst::State::Null);
    let _ = pipeline.remove(bin);
}

fn set_geometry(pad: &gst::Pad, rect: Rect) {
    pad.set_property("xpos", rect.x);
    pad.set_property("ypos", rect.y);
    pad.set_property("width", rect.width);
    pad.set_property("height", rect.height);
}

/// Waits until no data is flowing through `pad` (an IDLE probe: it fires at once if the pad is
/// idle, else between two buffers), with a deadline so a wedged branch cannot hang its room.
fn block_until_idle(pad: &gst::Pad) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let probe = pad.add_probe(gst::PadProbeType::IDLE, move |_, _| {
        let _ = tx.try_send(());
        gst::PadProbeReturn::Remove
    });
    if rx.recv_timeout(UNLINK_DEADLINE).is_err() {
        tracing::warn!(pad = %pad.name(), "pad did not go idle in time; unlinking anyway");
        if let Some(id) = probe {
            pad.remove_probe(id);
        }
    }
}

/// Forwards keyframe requests that reach the appsrc from the depayloader or decoder.
fn watch_keyframe_requests(
    appsrc: &gst_app::AppSrc,
    session: SessionId,
    events: mpsc::Sender<MixerEvent>,
) {
    let Some(pad) = appsrc.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(event)) = &info.data
            && gst_video::ForceKeyUnitEvent::is(event)
        {
            let _ = events.try_send(MixerEvent::KeyframeWanted(session));
        }
        gst::PadProbeReturn::Ok
    });
}

/// Turns bus messages into [`MixerEvent`]s, on the posting thread, without blocking.
fn install_bus_forwarder(pipeline: &gst::Pipeline, events: mpsc::Sender<MixerEvent>) {
    let Some(bus) = pipeline.bus() else { return };
    bus.set_sync_handler(move |_, msg| {
        use gst::MessageView;
        match msg.view() {
            MessageView::Error(err) => {
                let path = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let text = format!(
                    "{path}: {} ({})",
                    err.error(),
                    err.debug().map(|d| d.to_string()).unwrap_or_default()
                );
                tracing::error!("pipeline error: {text}");
                let _ = events.try_send(MixerEvent::Error(text));
            }
            MessageView::Warning(w) => {
                let path = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                tracing::warn!("pipeline warning: {path}: {}", w.error());
            }
            MessageView::Latency(_) => {
                let _ = events.try_send(MixerEvent::LatencyChanged);
            }
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn codec(kind: MediaKind, mime: &str, rate: u32) -> InputCodec {
        InputCodec {
            kind,
            mime_type: mime.into(),
            clock_rate: rate,
        }
    }

    /// Real GStreamer: a room pipeline starts, takes and drops inputs and mixes-minus, and
    /// ends without leaking its pipeline count.
    #[test]
    fn branches_come_and_go_in_a_playing_pipeline() {
        let factory = MediaFactory::new(None).expect("GStreamer initialises");
        let (tx, _rx) = mpsc::channel(64);
        let mix = Config::default().mix;
        let mut mixer = factory.start_mixer("unit", &mix, tx).expect("mixer starts");
        let a = SessionId(1);
        let b = SessionId(2);
        for s in [a, b] {
            mixer.add_mix_minus(s, &mix).expect("mix-minus");
            mixer
                .add_input(s, &codec(MediaKind::Audio, "audio/opus", 48000), None)
                .expect("audio input");
            let rect = Rect {
                x: 0,
                y: 0,
                width: 640,
                height: 360,
            };
            mixer
                .add_input(s, &codec(MediaKind::Video, "video/VP8", 90000), Some(rect))
                .expect("video input");
        }
        // Nobody receives yet: only the two mix-minus encoders run, no video encoder.
        let stats = mixer.stats();
        assert_eq!(
            (stats.inputs, stats.audio_encoders, stats.video_encoders),
            (4, 2, 0)
        );
        let vp8_low = OutputKey {
            codec: VideoCodec::Vp8,
            tier: Tier::Low,
        };
        mixer.set_receivers(&[vp8_low].into(), true);
        let stats = mixer.stats();
        assert_eq!((stats.audio_encoders, stats.video_encoders), (3, 1));
        assert_eq!(stats.video_outputs, ["vp8/low"]);
        // Each source is in the "everyone" mix and in the other's mix-minus, not its own.
        assert_eq!(mixer.audio_links.len(), 4);
        assert!(!mixer.audio_links.contains_key(&(a, Some(a))));
        mixer.remove_session(a);
        assert_eq!(mixer.audio_links.len(), 1);
        assert_eq!(mixer.stats().inputs, 2);
        assert!(
            factory
                .start_mixer("unit2", &mix, mpsc::channel(1).0)
                .is_ok()
        );
        drop(mixer);
    }

    #[test]
    fn unknown_codecs_are_refused_before_building() {
        let factory = MediaFactory::new(None).unwrap();
        assert!(factory.can_decode(MediaKind::Video, "video/VP8"));
        assert!(factory.can_decode(MediaKind::Audio, "audio/opus"));
        assert!(!factory.can_decode(MediaKind::Video, "video/AV1"));
    }
}
