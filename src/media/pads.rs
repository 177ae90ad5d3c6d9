//! Small pipeline surgery shared by the branches: placing a compositor pad, waiting for a pad to
//! go idle before unlinking it, taking a bin out of a running pipeline.

use std::sync::{Arc, Mutex};
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

/// Property changes of compositor pads (and their inputs' crops) that belong together: a new
/// layout moves several pads, and a frame composed with half of them moved would show a tile
/// twice or a hole. They are applied between two composed frames ([`FrameEdits`]).
#[derive(Default)]
pub(super) struct Edits(Vec<(gst::Object, &'static str, Edit)>);

enum Edit {
    Value(gst::glib::SendValue),
    /// An enum property by its nick (`sizing-policy`).
    Nick(&'static str),
}

impl Edits {
    /// Sets `name` of `object` to `value`.
    pub(super) fn set(
        &mut self,
        object: &impl IsA<gst::Object>,
        name: &'static str,
        value: impl gst::glib::value::ToSendValue,
    ) {
        self.0.push((
            object.clone().upcast(),
            name,
            Edit::Value(value.to_send_value()),
        ));
    }

    /// Sets the enum property `name` of `object` by its nick.
    pub(super) fn set_nick(
        &mut self,
        object: &impl IsA<gst::Object>,
        name: &'static str,
        nick: &'static str,
    ) {
        self.0
            .push((object.clone().upcast(), name, Edit::Nick(nick)));
    }

    /// Places a compositor sink pad at `rect`.
    pub(super) fn geometry(&mut self, pad: &gst::Pad, rect: Rect) {
        self.set(pad, "xpos", rect.x);
        self.set(pad, "ypos", rect.y);
        self.set(pad, "width", rect.width);
        self.set(pad, "height", rect.height);
    }

    /// Sets every property now.
    pub(super) fn apply(self) {
        for (object, name, edit) in self.0 {
            match edit {
                Edit::Value(v) => object.set_property_from_value(name, &v),
                Edit::Nick(nick) => object.set_property_from_str(name, nick),
            }
        }
    }
}

/// The edits waiting for the next frame boundary, shared by the mixer's thread (and the inputs'
/// caps probes), which queue them, and a probe on the compositor's output, which applies them
/// on the compositor's own thread right after it pushed a frame, before it composes the next.
/// A std Mutex: held to push or to take the queue, never across anything that waits.
#[derive(Default)]
pub(super) struct FrameEdits(Mutex<Vec<Edits>>);

impl FrameEdits {
    /// Queues `edits` for the next frame boundary.
    pub(super) fn queue(&self, edits: Edits) {
        self.lock().push(edits);
    }

    /// Applies whatever is queued (the compositor's thread, between two frames; or the mixer's
    /// while the pipeline does not play).
    pub(super) fn apply_queued(&self) {
        let queued = std::mem::take(&mut *self.lock());
        for edits in queued {
            edits.apply();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Edits>> {
        // Pushes and takes only: a poisoned lock still holds a consistent queue.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the queue after every frame `compositor` pushes.
    pub(super) fn watch(self: &Arc<Self>, compositor: &gst::Element) {
        let Some(src) = compositor.static_pad("src") else {
            return;
        };
        let edits = self.clone();
        src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            edits.apply_queued();
            gst::PadProbeReturn::Ok
        });
    }
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
