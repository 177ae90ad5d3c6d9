//! One room's pipeline: the compositor and its encoded outputs, the audio mixes, the inputs and
//! placeholders linked into them. Only the mixer's own thread (`handle.rs`) touches it; the
//! pieces are in `input.rs`, `audio_mix.rs`, `video_output.rs` and `placeholder.rs`. Dropping it
//! sets the pipeline to Null.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use gst::prelude::*;

use super::audio_mix::{AudioLink, AudioMix, new_audio_mix};
use super::bus::{Signals, watch_bus};
use super::decor::Decor;
use super::input::Input;
use super::measure::watch_frame_interval;
use super::pads::FrameEdits;
use super::placeholder::Placeholder;
use super::video_output::{Tap, VideoOutput, add_video_output};
use super::{MediaError, Recorder, Templates, build_err};
use crate::config::MixConfig;
use crate::metrics::{self, Live, RoomMetrics};
use crate::types::{MediaKind, OutputKey, Placement, RecordingFormat, SessionId, Tier, VideoCodec};

/// Diagnostic counts of a mixer, for the room's debug info.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MixerStats {
    /// Video encoders running: one per (codec, tier) somebody receives.
    pub video_encoders: usize,
    /// Which outputs those are, e.g. `["h264/high", "vp8/low"]`.
    pub video_outputs: Vec<String>,
    /// Audio encoders running: one per speaker's mix-minus, plus the "everyone" mix while anyone
    /// hears it.
    pub audio_encoders: usize,
    /// Inputs being decoded.
    pub inputs: usize,
    /// RTP packets produced by the video outputs so far.
    pub video_packets: u64,
    /// Raw frames kept from the video encoders so far to hold their bitrate (a picture too
    /// noisy for the tier's bitrate loses frame rate; see [`crate::rate_cap`]).
    pub capped_frames: u64,
}

/// One room's pipeline and everything linked into it.
pub(super) struct Mixer {
    pub(super) templates: Arc<Templates>,
    pub(super) pipeline: gst::Pipeline,
    pub(super) compositor: gst::Element,
    /// The ladder: every (codec, tier) this host can encode, idle until received.
    pub(super) video_outputs: BTreeMap<OutputKey, VideoOutput>,
    pub(super) everyone: AudioMix,
    pub(super) minus: HashMap<SessionId, AudioMix>,
    pub(super) video_inputs: HashMap<SessionId, Input>,
    pub(super) audio_inputs: HashMap<SessionId, Input>,
    /// Sessions whose voice is linked into the mixes (see [`Mixer::set_speaker`]).
    pub(super) speakers: BTreeSet<SessionId>,
    /// (source, mix) → link; mix `None` is the "everyone" mix.
    pub(super) audio_links: HashMap<(SessionId, Option<SessionId>), AudioLink>,
    /// Each shown video sender's place, as last laid out (see `tiles.rs`).
    pub(super) placements: HashMap<SessionId, Placement>,
    pub(super) placeholders: HashMap<SessionId, Placeholder>,
    /// Sessions whose camera is off.
    pub(super) video_muted: HashSet<SessionId>,
    /// Sessions whose microphone is off.
    pub(super) audio_muted: HashSet<SessionId>,
    /// What the pipeline's threads report to the room.
    pub(super) signals: Arc<Signals>,
    /// The canvas and bitrates (each mix-minus is built with them).
    pub(super) mix: MixConfig,
    /// Labels, the speaker's border, the background.
    pub(super) decor: Decor,
    /// Pad changes waiting for the next frame boundary (see `pads::FrameEdits`).
    pub(super) frame_edits: Arc<FrameEdits>,
    /// Whether the pipeline was started ([`Mixer::wake`]).
    awake: bool,
    /// What the pipeline's probes measure, for `GET /metrics`.
    pub(super) metrics: Arc<RoomMetrics>,
    _live: Live,
}

/// The taps of a room's outputs that exist from its start (see [`Tap`]).
#[derive(Debug, Clone)]
pub struct Taps {
    /// Each video output of the ladder.
    pub video: BTreeMap<OutputKey, Tap>,
    /// The "everyone" audio mix.
    pub everyone: Tap,
}

impl Mixer {
    pub(super) fn start(
        templates: Arc<Templates>,
        codecs: &[VideoCodec],
        room: &str,
        mix: &MixConfig,
        signals: Arc<Signals>,
        metrics: Arc<RoomMetrics>,
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
                    add_video_output(&templates, &pipeline, &canvas, key, mix, &metrics)?,
                );
            }
        }
        watch_bus(&pipeline, signals.clone());
        let frame_edits = Arc::new(FrameEdits::default());
        frame_edits.watch(&compositor);
        let decor = Decor::default();
        // An overridden description without the overlay draws no border.
        if let Some(overlay) = pipeline.by_name("border") {
            decor.border.attach(&overlay);
        }
        watch_frame_interval(&compositor, metrics.frame_interval.clone());

        let everyone = new_audio_mix(&templates, &pipeline, mix, "everyone", false)?;
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
            speakers: BTreeSet::new(),
            audio_links: HashMap::new(),
            placements: HashMap::new(),
            placeholders: HashMap::new(),
            video_muted: Default::default(),
            audio_muted: Default::default(),
            signals,
            mix: mix.clone(),
            decor,
            frame_edits,
            awake: false,
            metrics,
            _live: Live::new(&metrics::PIPELINES),
        };
        // Nobody receives anything yet: every shared encoder idles until someone does.
        mixer.set_receivers(&Default::default(), false);
        // The pipeline stays in Null, with no streaming thread and no clock ticking, until the
        // room has a connected session ([`Mixer::wake`]): a room full of offers that never
        // connect (a flood, a forgotten tab) costs memory only.
        Ok(mixer)
    }

    /// Stops the pipeline (Null: no streaming thread, no clock) while the room is empty; the
    /// next [`Mixer::wake`] starts it again from a fresh running time.
    pub(super) fn sleep(&mut self) {
        if self.awake {
            self.awake = false;
            let _ = self.pipeline.set_state(gst::State::Null);
        }
    }

    /// Starts the pipeline: a session of the room is connected, so media may flow and someone
    /// may receive it. Branches added before are started with it. Does nothing if it plays.
    pub(super) fn wake(&mut self) -> Result<(), MediaError> {
        if self.awake {
            return Ok(());
        }
        self.awake = true;
        self.set_base_time_everywhere();
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| build_err("starting the room pipeline", e))?;
        Ok(())
    }

    /// Gives every element the running time's origin before the pipeline starts, so none sees
    /// the clock without it. Left to GStreamer, a pipeline going to Playing hands its clock to
    /// every element first and each one's base time only as that element changes state; an
    /// audiomixer that woke in between (`force-live`, its src task already running) computed
    /// running time from a base time of 0, took hours of clock as elapsed, and mixed ~10-20 s
    /// of silence in a few milliseconds: the room then sent no audio until real time caught up
    /// (1 room in 3 started mute for ~10 s here; `interop::issue9_a_new_participant_...`).
    /// Starting from a base time chosen here (start time `NONE` tells the pipeline to keep it)
    /// closes that window.
    fn set_base_time_everywhere(&self) {
        let clock = gst::SystemClock::obtain();
        let base = clock.time();
        self.pipeline.use_clock(Some(&clock));
        self.pipeline.set_start_time(gst::ClockTime::NONE);
        self.pipeline.set_base_time(base);
        for element in self.pipeline.iterate_recurse().into_iter().flatten() {
            element.set_base_time(base);
        }
    }

    /// Whether the pipeline plays (composes frames).
    pub(super) fn is_awake(&self) -> bool {
        self.awake
    }

    /// The taps of the outputs that exist from the start.
    pub(super) fn taps(&self) -> Taps {
        Taps {
            video: self
                .video_outputs
                .iter()
                .map(|(k, o)| (*k, o.tap.clone()))
                .collect(),
            everyone: self.everyone.tap.clone(),
        }
    }

    /// Starts a recording of this room into `path` (its directory is created); the room feeds
    /// it from the taps (the format's video output and the "everyone" audio).
    pub(super) fn start_recording(
        &self,
        id: u64,
        format: RecordingFormat,
        path: &Path,
    ) -> Result<Recorder, MediaError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| build_err(format!("creating {}", dir.display()), e))?;
        }
        Recorder::start(&self.templates, id, format, path, self.signals.clone())
    }

    /// Runs the video outputs in `video` and idles the others, and runs or idles the
    /// "everyone" audio encoder. Idle ones drop raw frames before scaling and encoding, so they
    /// cost (almost) nothing; an output that starts again opens with a keyframe.
    pub(super) fn set_receivers(&self, video: &BTreeSet<OutputKey>, everyone_audio: bool) {
        for (key, out) in &self.video_outputs {
            let wanted = video.contains(key);
            let was_dropping: bool = out.gate.property("drop");
            out.gate.set_property("drop", !wanted);
            if wanted && was_dropping {
                out.force_keyframe();
            }
        }
        self.everyone.gate.set_property("drop", !everyone_audio);
    }

    /// Asks one output's encoder for a keyframe now (the room coalesces requests).
    pub(super) fn force_keyframe(&self, key: OutputKey) {
        if let Some(out) = self.video_outputs.get(&key) {
            out.force_keyframe();
        }
    }

    /// Re-distributes latency after branches came or went (see [`super::MixerEvent::LatencyChanged`]).
    pub(super) fn recalculate_latency(&self) {
        if let Err(e) = self.pipeline.recalculate_latency() {
            tracing::debug!("recalculating latency: {e}");
        }
        self.measure_latency();
    }

    /// Records what the mixers now wait for their live inputs (each aggregator answers a
    /// latency query with its inputs' jitter buffers and decoders plus its own latency); the
    /// appsinks, which do not sync, would say 0.
    pub(super) fn measure_latency(&self) {
        let latency = [&self.compositor, &self.everyone.mixer]
            .into_iter()
            .filter_map(|element| {
                let mut query = gst::query::Latency::new();
                element.query(&mut query).then(|| query.result().1)
            })
            .max();
        if let Some(latency) = latency {
            self.metrics.set_pipeline_latency(latency.into());
        }
    }

    /// Counts for the debug info.
    pub(super) fn stats(&self) -> MixerStats {
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
            video_packets: self.video_outputs.values().map(|o| o.tap.packets()).sum(),
            capped_frames: self.video_outputs.values().map(|o| o.capped_frames()).sum(),
        }
    }

    /// Writes the pipeline graph as a .dot file when `GST_DEBUG_DUMP_DOT_DIR` is set (GStreamer
    /// does nothing otherwise), named after the room and the change that was just made.
    pub(super) fn dump_graph(&self, label: &str) {
        let name = format!("{}-{label}", self.pipeline.name());
        self.pipeline
            .debug_to_dot_file_with_ts(gst::DebugGraphDetails::all(), name);
    }

    /// Removes everything of `session`: its inputs, its mix-minus, its links into other mixes.
    pub(super) fn remove_session(&mut self, session: SessionId) {
        self.speakers.remove(&session);
        self.remove_input(session, MediaKind::Video);
        self.remove_input(session, MediaKind::Audio);
        self.remove_mix_minus(session);
        if let Some(p) = self.placeholders.remove(&session) {
            self.remove_pad_source(p);
        }
        self.placements.remove(&session);
        self.video_muted.remove(&session);
        self.audio_muted.remove(&session);
        self.dump_graph(&format!("removed-{session}"));
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::config::Config;
    use crate::media::MediaFactory;
    use crate::types::InputCodec;

    fn codec(kind: MediaKind, mime: &str, rate: u32) -> InputCodec {
        InputCodec {
            kind,
            mime_type: mime.into(),
            clock_rate: rate,
            level_extension: None,
        }
    }

    /// Real GStreamer: a room pipeline starts, takes and drops inputs and mixes-minus, and
    /// ends without leaking its pipeline count.
    #[test]
    fn branches_come_and_go_in_a_playing_pipeline() {
        let factory = MediaFactory::new(None).expect("GStreamer initialises");
        let mix = Config::default().mix;
        // The only test of this crate that builds pipelines, so the process-wide count moves
        // only with it.
        let pipelines_before = metrics::PIPELINES.load(Ordering::Relaxed);
        let mut mixer = Mixer::start(
            factory.templates.clone(),
            &factory.encodable,
            "unit",
            &mix,
            Arc::default(),
            RoomMetrics::start("unit"),
        )
        .expect("mixer starts");
        assert_eq!(
            metrics::PIPELINES.load(Ordering::Relaxed),
            pipelines_before + 1
        );
        let a = SessionId(1);
        let b = SessionId(2);
        for s in [a, b] {
            mixer.add_mix_minus(s).expect("mix-minus");
            mixer
                .add_input(s, &codec(MediaKind::Audio, "audio/opus", 48000), None)
                .expect("audio input");
            let placement = Placement {
                session: s,
                rect: crate::types::Rect {
                    x: 0,
                    y: 0,
                    width: 640,
                    height: 360,
                },
                z: 0,
                fit: Default::default(),
                upscale: true,
            };
            mixer
                .add_input(
                    s,
                    &codec(MediaKind::Video, "video/VP8", 90000),
                    Some(placement),
                )
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
        // Silent inputs are mixed nowhere; speakers are in the "everyone" mix and in the
        // other's mix-minus, not their own.
        assert_eq!(mixer.audio_links.len(), 0);
        mixer.set_speaker(a, true);
        assert_eq!(mixer.audio_links.len(), 2);
        mixer.set_speaker(b, true);
        assert_eq!(mixer.audio_links.len(), 4);
        assert!(!mixer.audio_links.contains_key(&(a, Some(a))));
        mixer.remove_session(a);
        assert_eq!(mixer.audio_links.len(), 1);
        assert_eq!(mixer.stats().inputs, 2);
        drop(mixer);
        assert_eq!(
            metrics::PIPELINES.load(Ordering::Relaxed),
            pipelines_before,
            "the pipeline was leaked"
        );
    }
}
