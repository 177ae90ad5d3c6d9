//! Small pipeline surgery shared by the branches: placing a compositor pad, waiting for a pad to
//! go idle before unlinking it, taking a bin out of a running pipeline.

use std::time::Duration;

use gst::prelude::*;

use crate::types::Rect;

/// How long removing a branch may wait for its pad to go idle.
const UNLINK_DEADLINE: Duration = Duration::from_secs(2);

/// Sets a bin to Null and removes it from the pipeline.
pub(super) fn remove_bin(pipeline: &gst::Pipeline, bin: &gst::Bin) {
    let _ = bin.set_state(gst::State::Null);
    let _ = pipeline.remove(bin);
}

/// Places a compositor sink pad at `rect`.
pub(super) fn set_geometry(pad: &gst::Pad, rect: Rect) {
    pad.set_property("xpos", rect.x);
    pad.set_property("ypos", rect.y);
    pad.set_property("width", rect.width);
    pad.set_property("height", rect.height);
}

/// Waits until no data is flowing through `pad` (an IDLE probe: it fires at once if the pad is
/// idle, else between two buffers), with a deadline so a wedged branch cannot hang its room.
/// Blocking: called on the mixer's own thread only (see `handle.rs`).
pub(super) fn block_until_idle(pad: &gst::Pad) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let probe = pad.add_probe(gst::PadProbeType::IDLE, move |_, _| {
        let _ = tx.try_send(());
        gst::PadProbeReturn::Remove
    });
    if rx.recv_timeout(UNLINK_DEADLINE).is_err() {
        tracing::warn!(pad = %pad.name(), "pad did not go idle in time; unlinking anyway");
        if let Some(id) = probe {
            pad.remove_probe(id);
        }
    }
}
