//! A recording of a room's mix: its own small pipeline (`recording-{webm,mp4}.pipeline`) that
//! muxes the room's already-encoded RTP outputs into a file. The room actor owns each
//! [`Recorder`] and feeds its two [`RtpInput`]s from the outputs' broadcast channels; a failure
//! (disk full, unwritable file) is reported as [`super::MixerEvent::RecordingFailed`] and ends only
//! the recording. Dropping a `Recorder` sets its pipeline to Null; [`Recorder::finish`] first
//! drains it so the file is complete.

use std::path::Path;
use std::time::Duration;

use super::bus::{Signals, describe_error};
use super::{MediaError, RtpInput, Templates, build_err};
use crate::types::RecordingFormat;
use gst::prelude::*;

/// How long a stopping recording may take to write its last data and index.
const FINISH_DEADLINE: Duration = Duration::from_secs(5);

/// How a recording pipeline ended, from its bus.
enum Ending {
    Eos,
    Error(String),
}

/// One recording in progress.
pub struct Recorder {
    pipeline: gst::Pipeline,
    /// Where the room's video output goes.
    pub video: RtpInput,
    /// Where the room's "everyone" audio goes.
    pub audio: RtpInput,
    /// How its pipeline ended (from its bus). A std Mutex only to make the recorder `Sync`
    /// (the room holds it across awaits); only [`Recorder::finish`] and a failed start read it.
    ending: std::sync::Mutex<std::sync::mpsc::Receiver<Ending>>,
}

impl Recorder {
    /// Starts recording into `path` (created or truncated). `id` names the recording in the
    /// failure it reports to the room through `signals`.
    pub(super) fn start(
        templates: &Templates,
        id: u64,
        format: RecordingFormat,
        path: &Path,
        signals: std::sync::Arc<Signals>,
    ) -> Result<Recorder, MediaError> {
        let name = format!("recording-{}.pipeline", format.name());
        let context = || format!("starting the recording {id:x}");
        let desc = templates.render(&name, &[])?;
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| build_err(context(), e))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| build_err(context(), format!("{name} is not a pipeline")))?;
        pipeline.set_property("name", format!("recording-{id:x}"));
        let by_name = |n: &str| {
            pipeline
                .by_name(n)
                .ok_or_else(|| build_err(context(), format!("{name} has no element {n}")))
        };
        by_name("file")?.set_property("location", path.to_string_lossy().as_ref());
        // The MP4 muxer fails the whole file on a buffer without a timestamp (a depayloader
        // or parser can flush one at the end of stream); such a buffer cannot be placed in
        // time anyway, so it is dropped before the muxer (Handled: the probe disposes of it;
        // Drop would have GStreamer 1.22 unref the NULL gstreamer-rs leaves, a CRITICAL).
        for pad in by_name("mux")?.sink_pads() {
            pad.add_probe(gst::PadProbeType::BUFFER, |_, info| match info.buffer() {
                Some(b) if b.pts().is_none() => gst::PadProbeReturn::Handled,
                _ => gst::PadProbeReturn::Ok,
            });
        }
        let appsrc = |n: &str| {
            by_name(n)?
                .downcast::<gst_app::AppSrc>()
                .map_err(|_| build_err(context(), format!("{n} is not an appsrc")))
        };
        let input = RtpInput::new;
        let (video, audio) = (input(appsrc("video")?), input(appsrc("audio")?));

        let (ending_tx, ending) = std::sync::mpsc::sync_channel(2);
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(move |_, msg| {
                use gst::MessageView;
                match msg.view() {
                    MessageView::Eos(_) => {
                        let _ = ending_tx.try_send(Ending::Eos);
                    }
                    MessageView::Error(err) => {
                        let text = describe_error(msg, err);
                        tracing::warn!("recording {id:x} failed: {text}");
                        // At most two endings fit (an EOS, an error); later ones add nothing.
                        let _ = ending_tx.try_send(Ending::Error(text.clone()));
                        signals.recording_failed(id, text);
                    }
                    _ => {}
                }
                gst::BusSyncReply::Drop
            });
        }
        let recorder = Recorder {
            pipeline,
            video,
            audio,
            ending: std::sync::Mutex::new(ending),
        };
        recorder
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| {
                // The bus says why (e.g. the file cannot be opened).
                let ending = recorder.ending.lock().unwrap_or_else(|p| p.into_inner());
                let why = match ending.try_recv() {
                    Ok(Ending::Error(e)) => e,
                    _ => "the pipeline did not start".to_owned(),
                };
                build_err(context(), why)
            })?;
        Ok(recorder)
    }

    /// Ends the recording cleanly: end of stream into both inputs, then waits (bounded, so
    /// call it off the async threads) until the muxer wrote its last data and index.
    pub fn finish(self) -> Result<(), String> {
        let _ = self.video.appsrc.end_of_stream();
        let _ = self.audio.appsrc.end_of_stream();
        let ending = self.ending.lock().unwrap_or_else(|p| p.into_inner());
        let result = match ending.recv_timeout(FINISH_DEADLINE) {
            Ok(Ending::Eos) => Ok(()),
            Ok(Ending::Error(e)) => Err(e),
            Err(_) => Err(format!(
                "the recording did not finish within {FINISH_DEADLINE:?}"
            )),
        };
        // Drop sets the pipeline to Null.
        result
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(bus) = self.pipeline.bus() {
            bus.unset_sync_handler();
        }
    }
}
