//! What the compositor draws besides the videos (issue 14): each shown picture's label, the
//! border around the active speaker, and a canvas colour. Labels are drawn by each video input's
//! own `label` overlay (see `tiles.rs`): more compositor pads would cost the compositor on every
//! output frame (measured: four label pads and the border's four bars, 10% of a room of 4). The
//! border and the background are solid pictures from live sources at the canvas rate
//! (`video-highlight.pipeline`, `video-background.pipeline`) on compositor pads of their own,
//! drawn once per composite frame for every receiver. The border is made once; the background
//! is remade when its colour changes.

use std::collections::HashMap;

use super::mixer::Mixer;
use super::pads::{Edits, PadSource};
use super::tiles::zorder;
use crate::types::{Decorations, Highlight, Rect, SessionId};

/// The border's layer, above everything of its tile (a label too).
const Z_HIGHLIGHT: u32 = 5;
/// The background's zorder: under every region (the mix's clock pad is at 0, hidden).
const Z_BACKGROUND: u32 = 1;

/// The mixer's decorations.
#[derive(Default)]
pub(super) struct Decor {
    /// Each labelled session's text.
    labels: HashMap<SessionId, String>,
    highlight: Option<PadSource>,
    /// The colour shown and its picture.
    background: Option<(u32, PadSource)>,
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
            match self.add_pad_source(
                "video-highlight.pipeline",
                &fps,
                &["out0", "out1", "out2", "out3"],
                "highlight",
                |_| {},
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
            self.remove_pad_source(old);
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
        match self.add_pad_source(
            "video-background.pipeline",
            &values,
            &["out"],
            "background",
            |_| {},
        ) {
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
}
