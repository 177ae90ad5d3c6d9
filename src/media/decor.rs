//! What the compositor draws besides the videos (issue 14): each shown picture's label, the
//! border around the active speaker, and a canvas colour. Labels are drawn by each video input's
//! own `label` overlay (see `tiles.rs`): more compositor pads would cost the compositor on every
//! output frame (measured: four label pads and the border's four bars, 10% of a room of 4). The
//! border and the background are solid pictures from live sources at the canvas rate
//! (`video-highlight.pipeline`, `video-background.pipeline`) on compositor pads of their own,
//! drawn once per composite frame for every receiver. The border is made once; the background
//! is remade when its colour changes.

use std::collections::HashMap;

use gst::prelude::*;

use super::mixer::Mixer;
use super::pads::{Edits, block_until_idle, remove_bin};
use super::tiles::zorder;
use super::{MediaError, build_err};
use crate::types::{Decorations, Highlight, Rect, SessionId};

/// The border's layer, above everything of its tile (a label too).
const Z_HIGHLIGHT: u32 = 5;
/// The background's zorder: under every region (the mix's clock pad is at 0, hidden).
const Z_BACKGROUND: u32 = 1;

/// A decoration's bin and the compositor pads it feeds.
pub(super) struct Still {
    bin: gst::Bin,
    pads: Vec<gst::Pad>,
}

/// The mixer's decorations.
#[derive(Default)]
pub(super) struct Decor {
    /// Each labelled session's text.
    labels: HashMap<SessionId, String>,
    highlight: Option<Still>,
    /// The colour shown and its picture.
    background: Option<(u32, Still)>,
}

impl Decor {
    /// The text of `session`'s label, if it has one.
    pub(super) fn label(&self, session: SessionId) -> Option<String> {
        self.labels.get(&session).cloned()
    }
}

impl Mixer {
    /// Draws `d`: labels re-texted (on their inputs), the border moved or hidden, the background
    /// remade if its colour changed; all between the same two composed frames.
    pub(super) fn set_decorations(&mut self, d: &Decorations) {
        let labels: HashMap<SessionId, String> = d
            .labels
            .iter()
            .map(|l| (l.session, l.text.clone()))
            .collect();
        let mut edits = Edits::default();
        if labels != self.decor.labels {
            self.decor.labels = labels;
            let sessions: Vec<SessionId> = self.video_inputs.keys().copied().collect();
            for session in sessions {
                self.place(&mut edits, session);
            }
        }
        self.set_highlight(&mut edits, d.highlight);
        self.set_background(&mut edits, d.background);
        self.commit(edits);
    }

    fn set_highlight(&mut self, edits: &mut Edits, highlight: Option<Highlight>) {
        if highlight.is_some() && self.decor.highlight.is_none() {
            let fps = [("fps", self.mix.fps.to_string())];
            match self.add_still(
                "video-highlight.pipeline",
                &fps,
                &["out0", "out1", "out2", "out3"],
                "highlight",
            ) {
                Ok(still) => self.decor.highlight = Some(still),
                Err(e) => tracing::warn!("adding the speaker's border: {e}"),
            }
        }
        let Some(still) = &self.decor.highlight else {
            return;
        };
        let Some(h) = highlight else {
            for pad in &still.pads {
                edits.set(pad, "alpha", 0.0f64);
            }
            return;
        };
        let (r, t) = (
            h.rect,
            h.thickness.min(h.rect.width / 2).min(h.rect.height / 2),
        );
        let bars = [
            Rect { height: t, ..r },
            Rect {
                y: r.y + r.height - t,
                height: t,
                ..r
            },
            Rect { width: t, ..r },
            Rect {
                x: r.x + r.width - t,
                width: t,
                ..r
            },
        ];
        for (pad, bar) in still.pads.iter().zip(bars) {
            edits.set(pad, "zorder", zorder(h.z, Z_HIGHLIGHT));
            edits.geometry(pad, bar);
            edits.set(pad, "alpha", 1.0f64);
        }
    }

    fn set_background(&mut self, edits: &mut Edits, rgb: u32) {
        if self.decor.background.as_ref().map(|(c, _)| *c) == Some(rgb)
            || (rgb == 0 && self.decor.background.is_none())
        {
            return;
        }
        if let Some((_, old)) = self.decor.background.take() {
            self.remove_still(old);
        }
        // Black is the compositor's own background: nothing to draw.
        if rgb == 0 {
            return;
        }
        let values = [
            ("argb", format!("0x{:08x}", 0xff00_0000 | rgb)),
            ("width", self.mix.width.to_string()),
            ("height", self.mix.height.to_string()),
            ("fps", self.mix.fps.to_string()),
        ];
        match self.add_still("video-background.pipeline", &values, &["out"], "background") {
            Ok(still) => {
                let pad = &still.pads[0];
                edits.set(pad, "zorder", Z_BACKGROUND);
                edits.set(pad, "alpha", 1.0f64);
                edits.geometry(
                    pad,
                    Rect {
                        x: 0,
                        y: 0,
                        width: self.mix.width as i32,
                        height: self.mix.height as i32,
                    },
                );
                self.decor.background = Some((rgb, still));
            }
            Err(e) => tracing::warn!("adding the background: {e}"),
        }
    }

    /// Builds a still picture's bin from `template` and links each of its `outs` (element names
    /// whose src pads are ghosted) to a new compositor pad, hidden until placed.
    fn add_still(
        &mut self,
        template: &str,
        values: &[(&str, String)],
        outs: &[&str],
        name: &str,
    ) -> Result<Still, MediaError> {
        let context = || format!("adding {name} ({template})");
        let desc = self.templates.render(template, values)?;
        let bin =
            gst::parse::bin_from_description(&desc, false).map_err(|e| build_err(context(), e))?;
        bin.set_property("name", name);
        for (i, out) in outs.iter().enumerate() {
            let src = bin
                .by_name(out)
                .and_then(|e| e.static_pad("src"))
                .ok_or_else(|| build_err(context(), format!("no element named {out}")))?;
            let ghost = gst::GhostPad::builder_with_target(&src)
                .map_err(|e| build_err(context(), e))?
                .name(format!("src_{i}"))
                .build();
            bin.add_pad(&ghost).map_err(|e| build_err(context(), e))?;
        }
        self.pipeline
            .add(&bin)
            .map_err(|e| build_err(context(), e))?;
        let mut still = Still {
            bin: bin.clone(),
            pads: Vec::new(),
        };
        let linked = (0..outs.len()).try_for_each(|i| {
            let pad = self
                .compositor
                .request_pad_simple("sink_%u")
                .ok_or_else(|| build_err(context(), "compositor gave no sink pad"))?;
            pad.set_property("alpha", 0.0f64);
            still.pads.push(pad.clone());
            let src = bin
                .static_pad(&format!("src_{i}"))
                .ok_or_else(|| build_err(context(), "a ghost pad went missing"))?;
            src.link(&pad)
                .map(|_| ())
                .map_err(|e| build_err(context(), e))
        });
        match linked.and_then(|_| {
            bin.sync_state_with_parent()
                .map_err(|e| build_err(context(), e))
        }) {
            Ok(()) => {
                self.dump_graph(&format!("added-{name}"));
                Ok(still)
            }
            Err(e) => {
                self.remove_still(still);
                Err(e)
            }
        }
    }

    fn remove_still(&self, still: Still) {
        for pad in &still.pads {
            if let Some(src) = pad.peer() {
                block_until_idle(&src);
                let _ = src.unlink(pad);
            }
            self.compositor.release_request_pad(pad);
        }
        remove_bin(&self.pipeline, &still.bin);
    }
}
