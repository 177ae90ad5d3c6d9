//! The encoded outputs of a room: each video output (a codec at a tier) is a bin from
//! `video-output-{codec}.pipeline` on a request pad of the canvas tee, idle behind its valve
//! until someone receives it; each output (audio mixes too) ends in an appsink whose callback
//! broadcasts the RTP packets to every subscriber ([`Tap`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use gst::prelude::*;
use tokio::sync::broadcast;

use super::{MediaError, Templates, build_err};
use crate::config::MixConfig;
use crate::rate_cap::RateCap;
use crate::types::OutputKey;

/// Packets an output may run ahead of its slowest subscriber before that subscriber drops
/// (~1.5 s of 2 Mbit/s video at 1200-byte packets).
const OUTPUT_BACKLOG: usize = 512;

/// Where an output's packets can be taken: subscribe for every RTP packet from then on, and
/// read how much it produced. Cheap to clone; the room holds one per output it may need, so
/// subscribing never waits on the mixer's thread.
#[derive(Debug, Clone)]
pub struct Tap {
    tx: broadcast::Sender<Bytes>,
    packets: Arc<AtomicU64>,
    /// Bytes produced so far (what a receiver of this output must carry).
    bytes: Arc<AtomicU64>,
}

impl Tap {
    /// Every packet from now on. A subscriber that falls behind by [`OUTPUT_BACKLOG`] packets
    /// loses the oldest (and is told how many).
    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.tx.subscribe()
    }

    /// RTP packets produced so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Bytes produced so far (sampled over time: the output's actual bitrate).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Broadcasts `appsink`'s samples: the callback only copies the packet out and sends it
    /// (no subscriber is fine). With a `cap` (video), each packet first waits for its
    /// departure: the wait holds the output's own streaming thread, as a sink synchronising
    /// to the clock does, so the encoder behind it pauses and the leaky queue before the
    /// encoder drops raw frames meanwhile (frame rate, not packets, gives way), and no other
    /// output or room waits.
    pub(super) fn attach(appsink: &gst_app::AppSink, cap: Option<Arc<Mutex<RateCap>>>) -> Tap {
        let (tx, _) = broadcast::channel(OUTPUT_BACKLOG);
        let packets = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (cb_tx, cb_packets, cb_bytes) = (tx.clone(), packets.clone(), bytes.clone());
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer()
                        && let Ok(map) = buffer.map_readable()
                    {
                        if let Some(cap) = &cap {
                            let now = Instant::now();
                            let leave = lock(cap).send(now, map.len());
                            if leave > now {
                                std::thread::sleep(leave - now);
                            }
                        }
                        cb_packets.fetch_add(1, Ordering::Relaxed);
                        cb_bytes.fetch_add(map.len() as u64, Ordering::Relaxed);
                        let _ = cb_tx.send(Bytes::copy_from_slice(map.as_slice()));
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Tap { tx, packets, bytes }
    }
}

/// One encoded video output (a codec at a tier): a bin from `video-output-{codec}.pipeline` on
/// a request pad of the canvas tee.
pub(super) struct VideoOutput {
    /// Kept for the pipeline graph's lifetime (the pipeline owns it).
    _bin: gst::Bin,
    /// The valve at its head: closed while nobody receives this output.
    pub(super) gate: gst::Element,
    pub(super) encoder: gst::Element,
    pub(super) tap: Tap,
    /// Keeps the encoder within its bitrate on any picture (see [`crate::rate_cap`]); shared
    /// with the probes on the encoder's pads, which run on the output's streaming thread.
    cap: Arc<Mutex<RateCap>>,
}

impl VideoOutput {
    /// Raw frames the bitrate cap kept from the encoder so far.
    pub(super) fn capped_frames(&self) -> u64 {
        lock(&self.cap).dropped()
    }

    /// Asks the encoder for a keyframe now (the room coalesces requests).
    pub(super) fn force_keyframe(&self) {
        lock(&self.cap).keyframe_requested();
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        if let Some(pad) = self.encoder.static_pad("src") {
            // An upstream event sent into the encoder's src pad is handled by the encoder.
            pad.send_event(event);
        }
    }
}

/// The share of its tier's bitrate a swinging encoder aims at (see `video-output-vp8.pipeline`).
const AIM_PERCENT: u32 = 95;

/// The rendered description of one video output.
pub(super) fn output_description(
    templates: &Templates,
    key: OutputKey,
    mix: &MixConfig,
) -> Result<String, MediaError> {
    let (width, height, kbps) = mix.output(key);
    templates.render(
        &format!("video-output-{}.pipeline", key.codec.name()),
        &[
            ("width", width.to_string()),
            ("height", height.to_string()),
            ("video_kbps", kbps.to_string()),
            ("video_bps", (kbps * 1000).to_string()),
            // What an encoder whose rate control swings (libvpx: up to 1.07x over 2 s on the
            // bench's picture) aims at, so that it stays under the cap (src/rate_cap.rs).
            (
                "video_aim_bps",
                (kbps * 1000 * AIM_PERCENT / 100).to_string(),
            ),
        ],
    )
}

/// Builds one video output bin and links it to a request pad of the canvas tee (not yet
/// playing: the pipeline starts it).
pub(super) fn add_video_output(
    templates: &Templates,
    pipeline: &gst::Pipeline,
    canvas: &gst::Element,
    key: OutputKey,
    mix: &MixConfig,
    metrics: &crate::metrics::RoomMetrics,
) -> Result<VideoOutput, MediaError> {
    let context = || format!("adding the {key} video output");
    let desc = output_description(templates, key, mix)?;
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| build_err(context(), e))?;
    bin.set_property(
        "name",
        format!("video-{}-{}", key.codec.name(), key.tier.name()),
    );
    let by_name = |name: &str| {
        bin.by_name(name)
            .ok_or_else(|| build_err(context(), format!("no element named {name}")))
    };
    let gate = by_name("gate")?;
    let encoder = by_name("enc")?;
    let sink = by_name("out")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| build_err(context(), "out is not an appsink"))?;
    let (_, _, kbps) = mix.output(key);
    let cap = Arc::new(Mutex::new(RateCap::new(u64::from(kbps) * 1000)));
    let tap = Tap::attach(&sink, Some(cap.clone()));
    cap_encoder(&encoder, &cap).map_err(|e| build_err(context(), e))?;
    let output = key.to_string();
    super::measure::watch_encoder(
        &encoder,
        bin.by_name("ahead").as_ref(),
        metrics.encode(&output),
        metrics.encoder_drops(&output),
    );
    pipeline.add(&bin).map_err(|e| build_err(context(), e))?;
    let tee_pad = canvas
        .request_pad_simple("src_%u")
        .ok_or_else(|| build_err(context(), "the canvas tee gave no pad"))?;
    let sink_pad = bin
        .static_pad("sink")
        .ok_or_else(|| build_err(context(), "the output has no sink pad"))?;
    tee_pad
        .link(&sink_pad)
        .map_err(|e| build_err(context(), e))?;
    Ok(VideoOutput {
        _bin: bin,
        gate,
        encoder,
        tap,
        cap,
    })
}

/// The cap's state stays valid whatever a panicking holder was doing (it only counts).
fn lock(cap: &Mutex<RateCap>) -> std::sync::MutexGuard<'_, RateCap> {
    cap.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Puts `cap` around `encoder`: each raw frame asks it before entering and, admitted, is shown
/// the cap's steady time; each encoded frame (a buffer on the encoder's src pad: one frame,
/// keyframes without the delta flag) teaches it the size of the next and gets its real time
/// back. The encoders emit each frame as they take it (no lookahead), so the frame leaving is
/// the one that entered. Both probes run on the output's own streaming thread and take the
/// lock for a few instructions.
fn cap_encoder(encoder: &gst::Element, cap: &Arc<Mutex<RateCap>>) -> Result<(), &'static str> {
    let sink = encoder
        .static_pad("sink")
        .ok_or("the encoder has no sink pad")?;
    let src = encoder
        .static_pad("src")
        .ok_or("the encoder has no src pad")?;
    let before = cap.clone();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let mut cap = lock(&before);
        let pts = info.buffer().and_then(|b| b.pts()).map(|t| t.nseconds());
        if !cap.admit(Instant::now(), pts) {
            // Handled, not Drop: the buffer is ours (dropped here), and GStreamer 1.22 would
            // unref the NULL that gstreamer-rs leaves after Drop (a CRITICAL per frame).
            return gst::PadProbeReturn::Handled;
        }
        if let Some(buffer) = info.buffer_mut()
            && let Some(pts) = buffer.pts()
        {
            let steady = cap.steady_pts(pts.nseconds());
            buffer
                .make_mut()
                .set_pts(gst::ClockTime::from_nseconds(steady));
        }
        gst::PadProbeReturn::Ok
    });
    let after = cap.clone();
    src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer_mut() {
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let behind = lock(&after).encoded(buffer.size() as u64, keyframe);
            if behind > 0 {
                // The encoder keeps its own offset (x264enc's is 1000 hours): move its times
                // forward by what the steady clock held back, both of them (no reordering).
                let behind = gst::ClockTime::from_nseconds(behind);
                let buffer = buffer.make_mut();
                buffer.set_pts(buffer.pts().map(|t| t + behind));
                buffer.set_dts(buffer.dts().map(|t| t + behind));
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}
