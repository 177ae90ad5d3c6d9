//! What the compositor draws besides the videos (issue 14): each shown tile's label, the border
//! around the active speaker, and a canvas colour. Each is a still picture repeated a few times
//! a second (`video-label.pipeline`, `video-highlight.pipeline`, `video-background.pipeline`) on
//! compositor pads of its own: drawn once per composite frame for every receiver, and cheap
//! (a label is a 640x48 band, the border four thin bars). Labels are made on first use and kept
//! (hidden when unshown) until their session leaves; the border is made once; the background
//! is remade when its colour changes.

use std::collections::HashMap;

use gst::prelude::*;

use super::mixer::Mixer;
use super::pads::{Edits, block_until_idle, remove_bin};
use super::tiles::zorder;
use super::{MediaError, build_err};
use crate::types::{Decorations, Highlight, Rect, SessionId};

/// A label's layer, above its tile's video and placeholder.
const Z_LABEL: u32 = 4;
/// The border's layer, above everything of its tile (a label too).
const Z_HIGHLIGHT: u32 = 5;
/// The background's zorder: under every region (the mix's clock pad is at 0, hidden).
const Z_BACKGROUND: u32 = 1;
/// How opaque a label's band is: the picture shows through a little.
const LABEL_ALPHA: f64 = 0.85;

/// A still picture's bin and the compositor pads it feeds.
pub(super) struct Still {
    bin: gst::Bin,
    pads: Vec<gst::Pad>,
}

/// The mixer's decorations.
#[derive(Default)]
pub(super) struct Decor {
    labels: HashMap<SessionId, (Still, String)>,
    highlight: Option<Still>,
    /// The colour shown and its picture.
    background: Option<(u32, Still)>,
}

impl Mixer {
    /// Draws `d`: labels made, moved, re-texted or hidden; the border moved or hidden; the
    /// background remade if its colour changed.
    pub(super) fn set_decorations(&mut self, d: &Decorations) {
        let mut edits = Edits::default();
        for label in &d.labels {
            if !self.decor.labels.contains_key(&label.session) {
                match self.add_still(
                    "video-label.pipeline",
                    &[],
                    &["out"],
                    &format!("label-{}", label.session),
                ) {
                    Ok(still) => {
                        self.decor
                            .labels
                            .insert(label.session, (still, String::new()));
                    }
                    Err(e) => {
                        tracing::warn!(session = %label.session, "adding a label: {e}");
                        continue;
                    }
                }
            }
            let Some((still, text)) = self.decor.labels.get_mut(&label.session) else {
                continue;
            };
            if *text != label.text {
                if let Some(overlay) = still.bin.by_name("text") {
                    overlay.set_property("text", &label.text);
                }
                *text = label.text.clone();
            }
            let pad = &still.pads[0];
            edits.set(pad, "zorder", zorder(label.z, Z_LABEL));
            edits.geometry(pad, label.rect);
            edits.set(pad, "alpha", LABEL_ALPHA);
        }
        for (session, (still, _)) in &self.decor.labels {
            if !d.labels.iter().any(|l| l.session == *session) {
                edits.set(&still.pads[0], "alpha", 0.0f64);
            }
        }
        self.set_highlight(&mut edits, d.highlight);
        self.set_background(&mut edits, d.background);
        self.commit(edits);
    }

    fn set_highlight(&mut self, edits: &mut Edits, highlight: Option<Highlight>) {
        if highlight.is_some() && self.decor.highlight.is_none() {
            match self.add_still(
                "video-highlight.pipeline",
                &[],
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

    /// Removes `session`'s label (it left).
    pub(super) fn remove_label(&mut self, session: SessionId) {
        if let Some((still, _)) = self.decor.labels.remove(&session) {
            self.remove_still(still);
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
