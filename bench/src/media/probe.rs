//! What a sampled receiver decodes: [`VideoProbe`] counts frames and reads the frame index
//! stamped in a tile (video latency), [`AudioProbe`] notes click onsets (audio latency).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use gst::prelude::*;
use tessera::types::RtpSink;

use super::build_err;
use super::dump::read_stamp;

/// Sets the payload type into an appsrc's caps from the first packet (like the mixer's inputs).
fn set_payload_caps(appsrc: &gst_app::AppSrc, packet: &[u8]) {
    if let Some(caps) = appsrc.caps() {
        let mut caps = caps.copy();
        if let Some(s) = caps.make_mut().structure_mut(0) {
            s.set("payload", i32::from(packet[1] & 0x7f));
        }
        appsrc.set_caps(Some(&caps));
    }
}

/// The part both probes share: a playing `appsrc name=src ! ... ! appsink name=out` pipeline
/// whose appsrc takes RTP (payload type set from the first packet), set to Null on drop.
struct DecodePipeline {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    caps_set: AtomicBool,
}

impl DecodePipeline {
    /// Builds `desc`, hands its appsink to `attach` (which installs the callbacks), and plays.
    fn start(
        desc: &str,
        what: &str,
        attach: impl FnOnce(&gst_app::AppSink),
    ) -> Result<DecodePipeline> {
        let pipeline = gst::parse::launch(desc)
            .map_err(|e| build_err(format!("building {what}"), e))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| build_err(what, "not a pipeline"))?;
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| build_err(what, "no appsrc"))?;
        let sink = pipeline
            .by_name("out")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| build_err(what, "no appsink"))?;
        attach(&sink);
        let decode = DecodePipeline {
            pipeline,
            appsrc,
            caps_set: AtomicBool::new(false),
        };
        decode
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| build_err(format!("starting {what}"), e))?;
        Ok(decode)
    }

    fn push(&self, packet: Bytes) {
        if packet.len() < 12 {
            return;
        }
        if !self.caps_set.swap(true, Ordering::AcqRel) {
            set_payload_caps(&self.appsrc, &packet);
        }
        let _ = self.appsrc.push_buffer(gst::Buffer::from_slice(packet));
    }
}

impl Drop for DecodePipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// What a video probe has seen.
#[derive(Debug, Default, Clone)]
pub struct VideoReport {
    /// Decode instants of every frame.
    pub decoded: Vec<Instant>,
    /// (stamp read, decode instant) for frames where the stamp was found.
    pub stamps: Vec<(u16, Instant)>,
    /// Size of the last frame.
    pub size: (u32, u32),
}

/// A sampled receiver's video decoder: RTP in, frame counts and stamps out.
pub struct VideoProbe {
    decode: DecodePipeline,
    report: Arc<Mutex<VideoReport>>,
    /// Notified when the depayloader or decoder asks for a keyframe (a loss): the receiver
    /// should send a PLI, as a browser would.
    keyframe_wanted: Arc<tokio::sync::Notify>,
}

impl VideoProbe {
    /// A decoder that reads the stamp in `stamp_tile` (x, y, w, h of the composite), if given.
    pub fn new(stamp_tile: Option<(i32, i32, i32, i32)>) -> Result<VideoProbe> {
        let desc = "appsrc name=src is-live=true format=time do-timestamp=true leaky-type=downstream max-bytes=4000000 \
                    caps=application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000 \
                    ! rtpvp8depay wait-for-keyframe=true request-keyframe=true ! vp8dec threads=1 \
                    ! appsink name=out sync=false max-buffers=2 drop=true caps=video/x-raw,format=I420";
        let report = Arc::new(Mutex::new(VideoReport::default()));
        let cb_report = report.clone();
        let attach = move |sink: &gst_app::AppSink| {
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let now = Instant::now();
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let info = sample
                            .caps()
                            .and_then(|c| gst_video::VideoInfo::from_caps(c).ok());
                        let stamp = match (stamp_tile, sample.buffer(), &info) {
                            (Some(tile), Some(buffer), Some(info)) => {
                                buffer.map_readable().ok().and_then(|map| {
                                    read_stamp(map.as_slice(), info.stride()[0] as usize, tile)
                                })
                            }
                            _ => None,
                        };
                        // Poisoning would need a panic in this very callback; keep going regardless.
                        let mut r = cb_report.lock().unwrap_or_else(|p| p.into_inner());
                        r.decoded.push(now);
                        if let Some(info) = info {
                            r.size = (info.width(), info.height());
                        }
                        if let Some(s) = stamp {
                            r.stamps.push((s, now));
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            )
        };
        let decode = DecodePipeline::start(desc, "a video probe", attach)?;
        let keyframe_wanted = Arc::new(tokio::sync::Notify::new());
        if let Some(pad) = decode.appsrc.static_pad("src") {
            let wanted = keyframe_wanted.clone();
            pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(event)) = &info.data
                    && gst_video::ForceKeyUnitEvent::is(event)
                {
                    wanted.notify_one();
                }
                gst::PadProbeReturn::Ok
            });
        }
        Ok(VideoProbe {
            decode,
            report,
            keyframe_wanted,
        })
    }

    /// Notified whenever the decoder needs a keyframe.
    pub fn keyframe_wanted(&self) -> Arc<tokio::sync::Notify> {
        self.keyframe_wanted.clone()
    }

    /// A copy of what it has seen so far.
    pub fn report(&self) -> VideoReport {
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Frames it decoded per second from `from` until `to`.
    pub fn fps_between(&self, from: Instant, to: Instant) -> f64 {
        let report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        let n = report
            .decoded
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count();
        n as f64 / to.duration_since(from).as_secs_f64()
    }
}

impl RtpSink for VideoProbe {
    fn push(&self, packet: Bytes) {
        self.decode.push(packet);
    }
}

/// A sampled receiver's audio decoder: RTP in, click onsets out.
pub struct AudioProbe {
    decode: DecodePipeline,
    onsets: Arc<Mutex<Vec<Instant>>>,
}

impl AudioProbe {
    /// A decoder that notes the instant of every click (a jump from quiet to loud).
    pub fn new() -> Result<AudioProbe> {
        let desc = "appsrc name=src is-live=true format=time do-timestamp=true leaky-type=downstream max-bytes=1000000 \
                    caps=application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000 \
                    ! rtpopusdepay ! opusdec ! audioconvert \
                    ! appsink name=out sync=false caps=audio/x-raw,format=S16LE,rate=48000,channels=1";
        let onsets = Arc::new(Mutex::new(Vec::new()));
        let cb_onsets = onsets.clone();
        // Samples since the signal was last loud: a click counts after 200 ms of quiet.
        let mut quiet_for = usize::MAX;
        let attach = move |sink: &gst_app::AppSink| {
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let now = Instant::now();
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let Some(buffer) = sample.buffer() else {
                            return Ok(gst::FlowSuccess::Ok);
                        };
                        let Ok(map) = buffer.map_readable() else {
                            return Ok(gst::FlowSuccess::Ok);
                        };
                        for s in map.as_slice().chunks_exact(2) {
                            let v = i16::from_le_bytes([s[0], s[1]]).unsigned_abs();
                            if v > 8000 {
                                if quiet_for > 48_000 / 5 {
                                    // The buffer arrived whole just now; its samples are in the past
                                    // of `now`, which only makes latency read slightly high.
                                    cb_onsets
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .push(now);
                                }
                                quiet_for = 0;
                            } else {
                                quiet_for = quiet_for.saturating_add(1);
                            }
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            )
        };
        Ok(AudioProbe {
            decode: DecodePipeline::start(desc, "an audio probe", attach)?,
            onsets,
        })
    }

    /// Instants of the clicks heard so far.
    pub fn onsets(&self) -> Vec<Instant> {
        self.onsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl RtpSink for AudioProbe {
    fn push(&self, packet: Bytes) {
        self.decode.push(packet);
    }
}
