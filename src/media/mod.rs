//! The only module that imports `gst::`: one room pipeline per room, on a thread of its own.
//!
//! Shape of a room's pipeline (descriptions in `pipelines/`):
//! ```text
//! video input bin (appsrc → jitterbuffer → depay → decode) ─┐                 ┌→ vp8 high: valve → queue → scale → vp8enc → pay → appsink ⇒ broadcast
//! video input bin ...                                        ├→ compositor → tee ├→ vp8 low, h264 high, h264 low (same shape)
//! black 16x16 clock (alpha 0) ───────────────────────────────┘                 └  (each output's valve is open only while someone receives it)
//! audio input bin (appsrc → … → S16 48k) → level probe (speaking?) → tee ─┬→ queue → "everyone" audio mix → opus → pay → appsink ⇒ broadcast
//!                                       (linked only while it speaks)     └→ queue → every other speaker's mix-minus ⇒ broadcast
//! ```
//! The room holds a [`MixerHandle`] (`handle.rs`): the pipeline itself lives on the mixer's
//! thread, which alone changes it (`mixer.rs`, with `input.rs`, `audio_mix.rs`,
//! `video_output.rs`, `placeholder.rs`, `pads.rs`). Streaming-thread callbacks only forward:
//! appsinks into a `broadcast` channel per output ([`Tap`]: slow subscribers lag and drop, never
//! block); bus messages and keyframe requests into state the room re-reads (`bus.rs`).
//! Recordings (`recorder.rs`) are pipelines of their own, fed from the taps.

mod audio_mix;
mod border;
mod bus;
mod decor;
mod handle;
mod input;
mod measure;
mod mixer;
mod pads;
mod placeholder;
mod recorder;
mod replay;
mod templates;
mod tiles;
mod video_output;

use std::path::Path;
use std::sync::Arc;

use crate::config::MixConfig;
use crate::types::{MediaKind, OutputKey, Tier, VideoCodec};

pub use bus::{MixerEvent, MixerEvents};
pub use handle::MixerHandle;
pub use input::{QUIETEST_REPORTED_DBOV, RtpInput};
pub use mixer::MixerStats;
pub use recorder::Recorder;
pub use replay::{Replay, replay_rtp, split_packets};
pub use templates::Templates;
pub use video_output::Tap;

use input::input_template;
use video_output::output_description;

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
    /// The mixer's thread is gone or did not answer in time.
    #[error("{0}")]
    Stopped(String),
}

fn build_err(context: impl Into<String>, e: impl std::fmt::Display) -> MediaError {
    MediaError::Build {
        context: context.into(),
        message: e.to_string(),
    }
}

/// Process-wide media set-up: GStreamer initialised and the descriptions loaded.
#[derive(Debug, Clone)]
pub struct MediaFactory {
    templates: Arc<Templates>,
    /// Codecs whose output description builds here (its encoder plugin is installed).
    encodable: Vec<VideoCodec>,
    /// Rooms' pipelines built at once. Building one is tens of milliseconds of CPU on its own
    /// thread; twenty rooms starting together (a flood, 9 o'clock) would take every core from
    /// the HTTP workers and the running rooms. Half the cores build, the rest keep serving.
    builds: Arc<tokio::sync::Semaphore>,
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
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(MediaFactory {
            templates: Arc::new(templates),
            encodable,
            builds: Arc::new(tokio::sync::Semaphore::new((cores / 2).max(1))),
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

    /// Builds a room's pipeline on a thread of its own (it plays once woken); returns the
    /// handle to it and what it reports. Waits its turn among [`MediaFactory::builds`].
    pub async fn start_mixer(
        &self,
        room: &str,
        mix: &MixConfig,
        metrics: Arc<crate::metrics::RoomMetrics>,
    ) -> Result<(MixerHandle, MixerEvents), MediaError> {
        let _building = self
            .builds
            .acquire()
            .await
            .map_err(|_| MediaError::Stopped("the media factory is closed".into()))?;
        MixerHandle::start(
            self.templates.clone(),
            self.encodable.clone(),
            room.to_owned(),
            mix.clone(),
            metrics,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codecs_are_refused_before_building() {
        let factory = MediaFactory::new(None).unwrap();
        assert!(factory.can_decode(MediaKind::Video, "video/VP8"));
        assert!(factory.can_decode(MediaKind::Audio, "audio/opus"));
        assert!(!factory.can_decode(MediaKind::Video, "video/AV1"));
    }
}
