//! The border around the active speaker's tile, drawn on the composed canvas by the mix's
//! `border` overlay (`overlaycomposition` after the compositor, `video-mix.pipeline`): four
//! thin rectangles blended once per composite frame, for every receiver. As four compositor
//! pads fed by a live source it cost the compositor a conversion and a blend per bar per frame
//! and a thread per room (the bench read the labels and border at 1.04-1.12x of the same
//! layout without them).
//!
//! A new border is handed over at a frame boundary like the pads' edits (`pads::Edits::call`):
//! the frame composed before the boundary is still drawn with the old one, so a tile and its
//! border always move together.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

use crate::types::{Highlight, Rect};

/// The border's colour as AYUV (BT.601 of #f2c200): the canvas's own family of formats, so
/// blending converts nothing.
const YELLOW_AYUV: [u8; 4] = [0xff, 176, 36, 163];

/// What the overlay draws: the border now, and the one that takes over after the frame that
/// is being drawn.
#[derive(Default)]
struct State {
    current: Option<gst_video::VideoOverlayComposition>,
    next: Option<Option<gst_video::VideoOverlayComposition>>,
}

/// The mix's border overlay, shared by the mixer's thread (which hands over new borders) and
/// the compositor's streaming thread (which draws them). A std Mutex held for a clone or a
/// swap, never across anything that waits.
#[derive(Clone, Default)]
pub(super) struct Border(Arc<Mutex<State>>);

impl Border {
    /// Draws on `overlay` (the mix's `overlaycomposition`) from now on.
    pub(super) fn attach(&self, overlay: &gst::Element) {
        let state = self.0.clone();
        overlay.connect("draw", false, move |_| {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            let drawn = s.current.clone();
            if let Some(next) = s.next.take() {
                s.current = next;
            }
            Some(drawn.to_value())
        });
    }

    /// The border for `highlight` (none: no border), for frames composed after the next
    /// frame boundary: call the result from the same `Edits` as the placements.
    pub(super) fn change(&self, highlight: Option<Highlight>) -> impl FnOnce() + Send + 'static {
        let composition = highlight.and_then(|h| match composition(h) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("drawing the speaker's border: {e}");
                None
            }
        });
        let state = self.0.clone();
        move || state.lock().unwrap_or_else(|p| p.into_inner()).next = Some(composition)
    }
}

/// The four bars (top, bottom, left, right) inside the edges of `h.rect`.
fn bars(h: Highlight) -> [Rect; 4] {
    let (r, t) = (
        h.rect,
        h.thickness.min(h.rect.width / 2).min(h.rect.height / 2),
    );
    [
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
    ]
}

fn composition(h: Highlight) -> Result<gst_video::VideoOverlayComposition, gst::glib::BoolError> {
    let rectangles = bars(h)
        .into_iter()
        .filter(|b| b.width > 0 && b.height > 0)
        .map(|b| {
            let (w, h) = (b.width as u32, b.height as u32);
            let mut buffer = gst::Buffer::from_mut_slice(YELLOW_AYUV.repeat((w * h) as usize));
            gst_video::VideoMeta::add(
                buffer.get_mut().expect("a new buffer is writable"),
                gst_video::VideoFrameFlags::empty(),
                gst_video::VideoFormat::Ayuv,
                w,
                h,
            )?;
            Ok(gst_video::VideoOverlayRectangle::new_raw(
                &buffer,
                b.x,
                b.y,
                w,
                h,
                gst_video::VideoOverlayFormatFlags::empty(),
            ))
        })
        .collect::<Result<Vec<_>, gst::glib::BoolError>>()?;
    gst_video::VideoOverlayComposition::new(&rectangles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bars_sit_inside_the_tile_edges() {
        let h = Highlight {
            rect: Rect {
                x: 0,
                y: 0,
                width: 960,
                height: 720,
            },
            thickness: 4,
        };
        let [top, bottom, left, right] = bars(h);
        assert_eq!((top.x, top.y, top.width, top.height), (0, 0, 960, 4));
        assert_eq!(
            (bottom.x, bottom.y, bottom.width, bottom.height),
            (0, 716, 960, 4)
        );
        assert_eq!((left.x, left.y, left.width, left.height), (0, 0, 4, 720));
        assert_eq!(
            (right.x, right.y, right.width, right.height),
            (956, 0, 4, 720)
        );
    }

    #[test]
    fn a_border_is_four_rectangles_of_its_colour() {
        gst::init().unwrap();
        let c = composition(Highlight {
            rect: Rect {
                x: 10,
                y: 20,
                width: 100,
                height: 50,
            },
            thickness: 2,
        })
        .unwrap();
        assert_eq!(c.n_rectangles(), 4);
        let top = c.rectangle(0).unwrap();
        assert_eq!(top.render_rectangle(), (10, 20, 100, 2));
    }
}
