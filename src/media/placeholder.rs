//! The tile of a participant whose camera is off: a still picture with their name
//! (`video-placeholder.pipeline`) on a compositor pad above their video, made on the first mute
//! and kept until the session leaves; hidden (alpha 0) while the camera is on.

use gst::prelude::*;

use super::mixer::Mixer;
use super::pads::{Edits, block_until_idle, remove_bin};
use super::{MediaError, build_err};
use crate::types::SessionId;

/// The tile of a participant whose camera is off: a still picture with their name, on a
/// compositor pad above their video (`video-placeholder.pipeline`). Made on the first mute and
/// kept until the session leaves; hidden (alpha 0) while the camera is on.
pub(super) struct Placeholder {
    bin: gst::Bin,
    pub(super) pad: gst::Pad,
}

impl Mixer {
    /// Shows `name` in `session`'s tile instead of its video (camera off), or its video again.
    /// Back on, the video replaces the placeholder at its first new frame, so nobody sees the
    /// frozen frame from before the mute.
    pub(super) fn set_muted_video(&mut self, session: SessionId, muted: bool, name: &str) {
        if muted {
            self.video_muted.insert(session);
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
        let placeholder = self.placeholders.get(&session).map(|p| p.pad.clone());
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
        // Hidden until placed.
        pad.set_property("alpha", 0.0f64);
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
                // Above the session's video, filling its tile, if the layout shows it.
                let mut edits = Edits::default();
                self.place(&mut edits, session);
                self.commit(edits);
                self.dump_graph(&format!("placeholder-{session}"));
                Ok(())
            }
            Err(e) => {
                self.remove_placeholder(placeholder);
                Err(e)
            }
        }
    }

    pub(super) fn remove_placeholder(&self, p: Placeholder) {
        if let Some(src) = p.bin.static_pad("src") {
            block_until_idle(&src);
            if let Some(peer) = src.peer() {
                let _ = src.unlink(&peer);
            }
        }
        self.compositor.release_request_pad(&p.pad);
        remove_bin(&self.pipeline, &p.bin);
    }
}
