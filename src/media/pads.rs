//! Small pipeline surgery shared by the branches: placing a compositor pad, waiting for a pad to
//! go idle before unlinking it, taking a bin out of a running pipeline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;

use super::mixer::Mixer;
use super::{MediaError, build_err};
use crate::types::Rect;

/// How long removing a branch may wait for its pad to go idle.
const UNLINK_DEADLINE: Duration = Duration::from_secs(2);

/// Gives every element of `bin` the running time's origin of `pipeline` (if it plays) before
/// the bin joins it. Added to a playing pipeline, a bin's elements get its clock at once but
/// each one's base time only when it reaches Playing; an aggregator whose thread runs in
/// between reads running time from a base time of 0 and races ahead of real time (see
/// `Mixer::set_base_time_everywhere`, which closes the same window when the pipeline starts).
pub(super) fn adopt_base_time(pipeline: &gst::Pipeline, bin: &gst::Bin) {
    if pipeline.current_running_time().is_none() {
        return;
    }
    let base = pipeline.base_time().unwrap_or(gst::ClockTime::ZERO);
    bin.set_base_time(base);
    for element in bin.iterate_recurse().into_iter().flatten() {
        element.set_base_time(base);
    }
}

/// Sets a bin to Null and removes it from the pipeline.
pub(super) fn remove_bin(pipeline: &gst::Pipeline, bin: &gst::Bin) {
    let _ = bin.set_state(gst::State::Null);
    let _ = pipeline.remove(bin);
}

/// Property changes of compositor pads (and their inputs' crops) that belong together: a new
/// layout moves several pads, and a frame composed with half of them moved would show a tile
/// twice or a hole. They are applied between two composed frames ([`FrameEdits`]).
#[derive(Default)]
pub(super) struct Edits(Vec<Edit>);

enum Edit {
    Value(gst::Object, &'static str, gst::glib::SendValue),
    /// An enum property by its nick (`sizing-policy`).
    Nick(gst::Object, &'static str, &'static str),
    /// Anything else that belongs to the same frame boundary (the border's new picture).
    Call(Box<dyn FnOnce() + Send>),
}

impl Edits {
    /// Sets `name` of `object` to `value`.
    pub(super) fn set(
        &mut self,
        object: &impl IsA<gst::Object>,
        name: &'static str,
        value: impl gst::glib::value::ToSendValue,
    ) {
        self.0.push(Edit::Value(
            object.clone().upcast(),
            name,
            value.to_send_value(),
        ));
    }

    /// Sets the enum property `name` of `object` by its nick.
    pub(super) fn set_nick(
        &mut self,
        object: &impl IsA<gst::Object>,
        name: &'static str,
        nick: &'static str,
    ) {
        self.0.push(Edit::Nick(object.clone().upcast(), name, nick));
    }

    /// Runs `f` at the same frame boundary as the other edits.
    pub(super) fn call(&mut self, f: impl FnOnce() + Send + 'static) {
        self.0.push(Edit::Call(Box::new(f)));
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
        for edit in self.0 {
            match edit {
                Edit::Value(object, name, v) => object.set_property_from_value(name, &v),
                Edit::Nick(object, name, nick) => object.set_property_from_str(name, nick),
                Edit::Call(f) => f(),
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

/// A bin of pictures drawn on the canvas besides the inputs (the camera-off placeholder, the
/// speaker's border, the background), and the compositor pads it feeds.
pub(super) struct PadSource {
    bin: gst::Bin,
    pub(super) pads: Vec<gst::Pad>,
}

impl PadSource {
    /// Its first (for most: only) compositor pad.
    pub(super) fn pad(&self) -> &gst::Pad {
        &self.pads[0]
    }
}

impl Mixer {
    /// Builds a picture source's bin from `template` (`setup` sees it before it starts) and
    /// links each of its `outs` (element names whose src pads alone are ghosted: a ghosted text
    /// pad would make a textoverlay draw that stream instead of its `text`) to a new compositor
    /// pad, hidden until placed.
    pub(super) fn add_pad_source(
        &mut self,
        template: &str,
        values: &[(&str, String)],
        outs: &[&str],
        name: &str,
        setup: impl FnOnce(&gst::Bin),
    ) -> Result<PadSource, MediaError> {
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
        setup(&bin);
        self.pipeline
            .add(&bin)
            .map_err(|e| build_err(context(), e))?;
        let mut source = PadSource {
            bin: bin.clone(),
            pads: Vec::new(),
        };
        let linked = (0..outs.len()).try_for_each(|i| {
            let pad = self
                .compositor
                .request_pad_simple("sink_%u")
                .ok_or_else(|| build_err(context(), "compositor gave no sink pad"))?;
            pad.set_property("alpha", 0.0f64);
            source.pads.push(pad.clone());
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
                Ok(source)
            }
            Err(e) => {
                self.remove_pad_source(source);
                Err(e)
            }
        }
    }

    /// Unlinks a picture source's pads, releases them and removes its bin.
    pub(super) fn remove_pad_source(&self, source: PadSource) {
        for pad in &source.pads {
            if let Some(src) = pad.peer() {
                block_until_idle(&src);
                let _ = src.unlink(pad);
            }
            self.compositor.release_request_pad(pad);
        }
        remove_bin(&self.pipeline, &source.bin);
    }
}
