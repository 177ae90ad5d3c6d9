//! What the compositor draws besides the videos (issue 14): each shown picture's label, the
//! border around the active speaker, and a canvas colour. Labels are drawn by each video input's
//! own `label` overlay (see `tiles.rs`): more compositor pads would cost the compositor on every
//! output frame (measured: four label pads and the border's four bars, 10% of a room of 4). The
//! border is drawn on the composed canvas (`border.rs`). The background is a solid picture from
//! a live source at the canvas rate (`video-background.pipeline`) on a compositor pad of its
//! own, under every tile, remade when its colour changes. All are drawn once per composite
//! frame for every receiver.

use std::collections::HashMap;

use super::border::Border;
use super::mixer::Mixer;
use super::pads::{Edits, PadSource};
use crate::types::{Decorations, Highlight, Rect, SessionId};

/// The background's zorder: under every region (the mix's clock pad is at 0, hidden).
const Z_BACKGROUND: u32 = 1;

/// The mixer's decorations.
#[derive(Default)]
pub(super) struct Decor {
    /// Each labelled session's text.
    labels: HashMap<SessionId, String>,
    /// The border drawn (or about to be) and its overlay.
    highlight: Option<Highlight>,
    pub(super) border: Border,
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
        if highlight != self.decor.highlight {
            self.decor.highlight = highlight;
            edits.call(self.decor.border.change(highlight));
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
