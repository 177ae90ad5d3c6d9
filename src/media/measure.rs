//! The pad probes that measure a room's pipeline for `GET /metrics` (the numbers go into the
//! room's [`RoomMetrics`]): the composite's frame interval, each encoder's time per frame and
//! the frames dropped before it, each video input's last decoded frame, and audio that reaches
//! a mix too late. Each probe does a clock read and an atomic add on a streaming thread; none
//! blocks or allocates per buffer (the encoder's small queue of start times aside).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::InputClock;

/// Frames an encoder may hold before their start times are forgotten (an encoder that drops a
/// frame never outputs it).
const IN_FLIGHT: usize = 16;

/// Observes the wall-clock time between the frames `compositor` pushes.
pub(super) fn watch_frame_interval(compositor: &gst::Element, histogram: Histogram) {
    let Some(src) = compositor.static_pad("src") else {
        return;
    };
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let now = Instant::now();
        // Only this pad's streaming thread takes it.
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = last.replace(now) {
            histogram.observe(now.duration_since(before).as_secs_f64());
        }
        gst::PadProbeReturn::Ok
    });
}

/// Observes how long each frame spends in `encoder` (matched by timestamp from its sink pad to
/// its src pad), and counts the frames `queue` (the leaky queue before it) drops.
pub(super) fn watch_encoder(
    encoder: &gst::Element,
    queue: Option<&gst::Element>,
    histogram: Histogram,
    drops: Counter,
) {
    if let Some(queue) = queue {
        // A leaky queue that is full says so, then drops its oldest buffer: one overrun, one
        // frame lost before the encoder.
        queue.set_property("silent", false);
        queue.connect("overrun", false, move |_| {
            drops.inc();
            None
        });
    }
    let (Some(sink), Some(src)) = (encoder.static_pad("sink"), encoder.static_pad("src")) else {
        return;
    };
    let started: Arc<Mutex<VecDeque<(gst::ClockTime, Instant)>>> = Arc::default();
    let into = started.clone();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
            let mut started = into.lock().unwrap_or_else(|p| p.into_inner());
            if started.len() == IN_FLIGHT {
                started.pop_front();
            }
            started.push_back((pts, Instant::now()));
        }
        gst::PadProbeReturn::Ok
    });
    src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
            let mut started = started.lock().unwrap_or_else(|p| p.into_inner());
            // Frames before this one that never came out were dropped inside the encoder.
            while let Some(&(t, at)) = started.front() {
                if t > pts {
                    break;
                }
                started.pop_front();
                if t == pts {
                    histogram.observe(at.elapsed().as_secs_f64());
                    break;
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Ticks `clock` for every decoded frame leaving an input through `pad`.
pub(super) fn watch_input_frames(pad: &gst::Pad, clock: Arc<InputClock>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        clock.tick();
        gst::PadProbeReturn::Ok
    });
}

/// Where a mix has got to: the running time its aggregator last output up to.
#[derive(Default)]
pub(super) struct MixPosition(AtomicU64);

impl MixPosition {
    /// Follows the mix's output through `src` (the audiomixer's src pad).
    pub(super) fn watch(self: &Arc<Self>, src: &gst::Pad) {
        let position = self.clone();
        src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(end) = info.buffer().and_then(|b| running_end(pad, b)) {
                position.0.store(end.nseconds(), Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// Counts an underrun for each buffer reaching `sink` (an audiomixer sink pad) that ends before
/// where the mix has already got to: the mix went out without it, so listeners heard a gap.
pub(super) fn watch_late_audio(sink: &gst::Pad, mix: Arc<MixPosition>, underruns: Counter) {
    sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let done = mix.0.load(Ordering::Relaxed);
        if done > 0
            && let Some(end) = info.buffer().and_then(|b| running_end(pad, b))
            && end.nseconds() <= done
        {
            underruns.inc();
        }
        gst::PadProbeReturn::Ok
    });
}

/// The running time at which `buffer` ends, in `pad`'s segment.
fn running_end(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<gst::ClockTime> {
    let segment = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = segment.segment().downcast_ref::<gst::ClockTime>()?.clone();
    let end = buffer.pts()? + buffer.duration().unwrap_or(gst::ClockTime::ZERO);
    segment.to_running_time(end)
}
