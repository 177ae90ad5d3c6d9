//! The tile of a participant whose camera is off: a still picture with their name
//! (`video-placeholder.pipeline`) on a compositor pad above their video, made on the first mute
//! and kept until the session leaves; hidden (alpha 0) while the camera is on.

use gst::prelude::*;

use super::MediaError;
use super::mixer::Mixer;
use super::pads::{Edits, PadSource};
use crate::types::SessionId;

/// The tile of a participant whose camera is off: a still picture with their name, on a
/// compositor pad above their video (`video-placeholder.pipeline`). Made on the first mute and
/// kept until the session leaves; hidden (alpha 0) while the camera is on.
pub(super) type Placeholder = PadSource;

impl Mixer {
    /// Shows `name` in `session`'s tile instead of its video (camera off), or its video again.
    /// Back on, the video replaces the placeholder at its first new frame, so nobody sees the
    /// frozen frame from before the mute.
    pub(super) fn set_muted_video(&mut self, session: SessionId, muted: bool, name: &str) {
        if muted {
            self.video_muted.insert(session);
            // A camera that is off sends nothing on purpose: not a stale source.
            self.metrics.forget_input(session);
            if let Err(e) = self.show_placeholder(session, name) {
                tracing::warn!(%session, "showing the camera-off placeholder: {e}");
            }
            // The video is hidden, so the compositor does not even convert its stale frame.
            let mut edits = Edits::default();
            self.place(&mut edits, session);
            self.commit(edits);
            return;
        }
        self.video_muted.remove(&session);
        if let Some(clock) = self
            .video_inputs
            .get(&session)
            .and_then(|i| i.clock.clone())
        {
            self.metrics.rewatch_input(session, clock);
        }
        let placeholder = self.placeholders.get(&session).map(|p| p.pad().clone());
        let input = self.video_inputs.get(&session);
        let video_pad = self.video_pad(session);
        let src = input.and_then(|i| i.bin.static_pad("src"));
        let framing = input.map(|i| i.framing.clone());
        match (video_pad, src, framing) {
            (Some(video_pad), Some(src), Some(framing)) => {
                src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    // Shown only if the layout still places it by then.
                    let placed = framing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .placement
                        .is_some();
                    if placed {
                        video_pad.set_property("alpha", 1.0f64);
                    }
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
        if self.placeholders.contains_key(&session) {
            return Ok(());
        }
        // The text is drawn once, on the first picture: it is set before the bin starts.
        let fps = [("fps", self.mix.fps.to_string())];
        let placeholder = self.add_pad_source(
            "video-placeholder.pipeline",
            &fps,
            &["out"],
            &format!("placeholder-{session}"),
            |bin| {
                if let Some(label) = bin.by_name("label") {
                    label.set_property("text", name);
                }
            },
        )?;
        self.placeholders.insert(session, placeholder);
        // Above the session's video, filling its tile, if the layout shows it.
        let mut edits = Edits::default();
        self.place(&mut edits, session);
        self.commit(edits);
        Ok(())
    }
}
