//! Placing the video inputs where the room's layout says: each input's compositor pad gets its
//! tile, stacking order and framing (see [`Placement::frame`]); inputs the layout leaves out are
//! hidden (alpha 0: the compositor skips them, still decoding, so they come back without a
//! keyframe). A picture's framing depends on its size, which is known only from its decoder's
//! caps and may change (a shared window resized): a caps probe re-frames it then. Every change
//! is applied between two composed frames (see `pads::FrameEdits`), so no frame shows a layout
//! half moved.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

use super::mixer::Mixer;
use super::pads::{Edits, FrameEdits};
use crate::types::{Framed, Placement, SessionId};

/// Stacking within a region's level: its tiles' video, the camera-off placeholder above it.
/// A region at z is drawn at `1 + z * Z_STEP` and up (the mix's clock pad is at 0).
pub(super) const Z_STEP: u32 = 8;
pub(super) const Z_VIDEO: u32 = 2;
pub(super) const Z_PLACEHOLDER: u32 = 3;

/// The compositor zorder of a layer of a tile at region level `z`.
pub(super) fn zorder(z: u32, layer: u32) -> u32 {
    1 + z * Z_STEP + layer
}

/// What an input's pad is framed by: its placement (none: hidden) and its picture's size.
#[derive(Debug, Default)]
pub(super) struct Framing {
    pub(super) placement: Option<Placement>,
    pub(super) source: Option<(u32, u32)>,
    /// The name drawn on the picture (none: labels off, or no name).
    pub(super) label: Option<String>,
    /// How the label overlay should draw it now, and how it was last set up (by its own
    /// streaming thread, see [`watch_label`]).
    pub(super) label_style: Option<LabelStyle>,
    label_applied: Option<LabelStyle>,
}

/// A label's text and size, in the decoded picture's pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LabelStyle {
    text: String,
    px: i32,
    xpad: i32,
    ypad: i32,
}

/// Shared by the mixer's thread (new placements) and the input's caps probe (new sizes): a
/// std Mutex held for a few property sets, never across anything that waits.
pub(super) type SharedFraming = Arc<Mutex<Framing>>;

fn lock(f: &SharedFraming) -> std::sync::MutexGuard<'_, Framing> {
    // Plain assignments under the lock: a poisoned one still holds consistent data.
    f.lock().unwrap_or_else(|p| p.into_inner())
}

/// Frames the compositor pad (and the crop) of a placed input. The pad's alpha is not touched
/// here: whether it shows is the mixer's (placement and camera-off).
pub(super) fn frame(
    edits: &mut Edits,
    framing: &mut Framing,
    pad: &gst::Pad,
    crop: Option<&gst::Element>,
) {
    let Some(placement) = framing.placement else {
        framing.label_style = None;
        return;
    };
    let framed = placement.frame(framing.source);
    framing.label_style = label_style(framing, &framed);
    let policy = if framed.keep_aspect {
        "keep-aspect-ratio"
    } else {
        "none"
    };
    edits.set_nick(pad, "sizing-policy", policy);
    edits.set(pad, "zorder", zorder(placement.z, Z_VIDEO));
    edits.geometry(pad, framed.rect);
    if let Some(crop) = crop {
        // Only what changes: a crop that is set renegotiates its branch.
        for (name, v) in [
            ("left", framed.crop.left),
            ("right", framed.crop.right),
            ("top", framed.crop.top),
            ("bottom", framed.crop.bottom),
        ] {
            if crop.property::<i32>(name) != v {
                edits.set(crop, name, v);
            }
        }
    }
}

/// How an input's label is drawn for the picture as the canvas shows it: the overlay draws on
/// the decoded picture, before the compositor scales it, so its size is the canvas size over
/// the scale.
fn label_style(framing: &Framing, framed: &Framed) -> Option<LabelStyle> {
    let (text, (_, h)) = (framing.label.as_ref()?, framing.source?);
    let shown = (h as i32 - framed.crop.top - framed.crop.bottom).max(1);
    // Source pixels per canvas pixel, vertically.
    let ratio = f64::from(shown) / f64::from(framed.rect.height.max(1));
    let px = (f64::from(framed.label_px()) * ratio).round().max(6.0) as i32;
    Some(LabelStyle {
        text: text.clone(),
        px,
        xpad: px / 2 + framed.crop.left,
        ypad: px / 3 + framed.crop.bottom,
    })
}

/// Sets up an input's label overlay from its own streaming thread, before each frame enters it
/// (a probe on its sink pad), when the style changed: set from another thread, a change can
/// land while the overlay renders the previous one, and be lost.
pub(super) fn watch_label(overlay: &gst::Element, framing: SharedFraming) {
    let Some(sink) = overlay.static_pad("video_sink") else {
        return;
    };
    // Weak: the probe lives in the overlay's own pad; a strong reference would be a cycle
    // that keeps every removed overlay (its pango font map, ~0.7 MiB) for ever.
    let overlay = overlay.downgrade();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let Some(overlay) = overlay.upgrade() else {
            return gst::PadProbeReturn::Remove;
        };
        let mut f = lock(&framing);
        if f.label_style != f.label_applied {
            match &f.label_style {
                Some(style) => {
                    overlay.set_property("font-desc", format!("Sans Bold {}px", style.px));
                    overlay.set_property("xpad", style.xpad);
                    overlay.set_property("ypad", style.ypad);
                    overlay.set_property("text", style.text.as_str());
                    overlay.set_property("silent", false);
                }
                None => overlay.set_property("silent", true),
            }
            f.label_applied = f.label_style.clone();
        }
        gst::PadProbeReturn::Ok
    });
}

/// Re-frames an input whenever its decoder's picture size changes (the caps on `watched`, the
/// crop's sink pad), at the next frame boundary. The probe only reads the size and queues the
/// edits: no waiting.
pub(super) fn watch_source_size(
    watched: &gst::Pad,
    framing: SharedFraming,
    pad: gst::Pad,
    crop: Option<gst::Element>,
    frame_edits: Arc<FrameEdits>,
) {
    // Weak: `watched` is the crop's own sink pad (a strong reference would be a cycle).
    let crop = crop.map(|c| c.downgrade());
    watched.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view())
            && let Some(s) = caps.caps().structure(0)
            && let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height"))
        {
            let mut f = lock(&framing);
            let size = Some((w.max(0) as u32, h.max(0) as u32));
            if f.source != size {
                f.source = size;
                let mut edits = Edits::default();
                let crop = crop.as_ref().and_then(|c| c.upgrade());
                frame(&mut edits, &mut f, &pad, crop.as_ref());
                frame_edits.queue(edits);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

impl Mixer {
    /// Places every video input (and its placeholder) where `placements` says, and hides the
    /// ones it leaves out, all between the same two composed frames.
    pub(super) fn set_placements(&mut self, placements: &[Placement]) {
        self.placements = placements.iter().map(|p| (p.session, *p)).collect();
        let sessions: Vec<SessionId> = self
            .video_inputs
            .keys()
            .chain(self.placeholders.keys())
            .copied()
            .collect();
        let mut edits = Edits::default();
        for session in sessions {
            self.place(&mut edits, session);
        }
        self.commit(edits);
    }

    /// Frames `session`'s video pad and placeholder by its placement and camera state.
    pub(super) fn place(&self, edits: &mut Edits, session: SessionId) {
        let placement = self.placements.get(&session).copied();
        let muted = self.video_muted.contains(&session);
        if let Some(input) = self.video_inputs.get(&session)
            && let Some(pad) = &input.compositor_pad
        {
            let mut f = lock(&input.framing);
            f.placement = placement;
            f.label = self.decor.label(session);
            frame(edits, &mut f, pad, input.crop.as_ref());
            let shown = placement.is_some() && !muted;
            edits.set(pad, "alpha", if shown { 1.0f64 } else { 0.0 });
        }
        if let Some(p) = self.placeholders.get(&session) {
            if let Some(placement) = placement {
                // The still picture is letterboxed into the whole tile, above the video.
                edits.set_nick(p.pad(), "sizing-policy", "keep-aspect-ratio");
                edits.set(p.pad(), "zorder", zorder(placement.z, Z_PLACEHOLDER));
                edits.geometry(p.pad(), placement.rect);
            }
            let shown = placement.is_some() && muted;
            edits.set(p.pad(), "alpha", if shown { 1.0f64 } else { 0.0 });
        }
    }

    /// Applies `edits` between two composed frames (at once while the pipeline sleeps: no
    /// frame is composed then).
    pub(super) fn commit(&self, edits: Edits) {
        if self.is_awake() {
            self.frame_edits.queue(edits);
        } else {
            self.frame_edits.apply_queued();
            edits.apply();
        }
    }
}
