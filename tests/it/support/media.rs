//! The test client's media, independent of the network: GStreamer pipelines that produce RTP
//! (a solid-colour VP8 picture, an Opus sine tone) and consume it (VP8 RTP -> RGB frames), plus
//! the Opus receive path (RTP payloads -> a ring of recent mono samples).
//!
//! Ownership: each pipeline lives in a [`Pipeline`] guard whose drop sets it to Null. Producers
//! hand RTP packets out through a bounded channel that the appsink callback fills with
//! `try_send` (dropped and counted when full), so a slow network task never blocks a GStreamer
//! streaming thread. Consumers publish what they decoded through a `tokio::sync::watch`, which
//! the streaming thread updates without waiting and tests read with deadlines. Each pipeline's
//! bus is drained by a sync handler that keeps only errors and warnings, so nothing piles up on
//! a bus nobody reads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use gst::prelude::*;
use gst_video::prelude::*;
use tokio::sync::{mpsc, watch};

use super::analysis::{Frame, Rgb};

/// The payload types the test client offers (and the servers' pipelines default to).
pub const VP8_PAYLOAD_TYPE: u8 = tessera::rtp::codecs::VP8.payload_type;
pub const OPUS_PAYLOAD_TYPE: u8 = tessera::rtp::codecs::OPUS.payload_type;
/// Opus in WebRTC is always 48 kHz on the wire; the tests analyse it at that rate, mono.
pub const AUDIO_RATE: u32 = 48_000;

/// Encoded packets buffered between an appsink and the task that sends them. A 1280x720
/// keyframe is a few dozen packets; more than this backlog means the sender is stuck, and then
/// dropping is the honest thing to do.
const VIDEO_PACKET_BACKLOG: usize = 512;
const AUDIO_PACKET_BACKLOG: usize = 64;
/// How many decode instants a [`VideoState`] keeps for frame-rate measurement (~30 s at 30 fps).
const FRAME_LOG_LEN: usize = 1024;
/// Bytes the receive appsrc may queue before packets are dropped (and counted).
const RECEIVE_QUEUE_BYTES: u64 = 4 * 1024 * 1024;
/// Seconds of decoded audio an [`AudioState`] keeps.
const AUDIO_RING_SECONDS: usize = 3;
/// Opus frames are at most 120 ms; 48 kHz stereo.
const OPUS_MAX_FRAME_SAMPLES: usize = 5760;
/// Gaps in the audio sequence up to this many packets are concealed (so the sample timeline
/// stays roughly continuous); larger ones are just skipped over.
const MAX_CONCEALED_PACKETS: u16 = 10;
/// At most this many bus errors/warnings are kept per pipeline.
const MAX_BUS_MESSAGES: usize = 32;

static GST_INIT: Once = Once::new();

/// Initialise GStreamer once for the whole test binary.
pub fn init_gst() {
    GST_INIT.call_once(|| {
        gst::init().expect("GStreamer must initialise; are the GStreamer 1.22 libraries installed?")
    });
}

/// A GStreamer pipeline with one owner: dropping it sets it to Null.
pub struct Pipeline {
    pipeline: gst::Pipeline,
    what: String,
    /// Errors and warnings from the bus, written by the bus sync handler (on whatever thread
    /// posted them) and read by [`Pipeline::errors`]. A std Mutex: the critical sections are a
    /// push and a clone, never across an await.
    bus_messages: Arc<Mutex<Vec<String>>>,
}

impl Pipeline {
    /// Build from a `gst-launch` description; `what` names it in errors.
    pub fn launch(description: &str, what: &str) -> Result<Pipeline> {
        init_gst();
        let element = gst::parse::launch(description)
            .with_context(|| format!("building the {what} pipeline: {description}"))?;
        // A description of one element (a receive-only webrtcbin) makes that element alone.
        let pipeline = match element.downcast::<gst::Pipeline>() {
            Ok(pipeline) => pipeline,
            Err(element) => {
                let pipeline = gst::Pipeline::new();
                pipeline
                    .add(&element)
                    .with_context(|| format!("putting the {what} element in a pipeline"))?;
                pipeline
            }
        };
        let bus_messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bus_messages);
        let bus = pipeline.bus().expect("a pipeline always has a bus");
        bus.set_sync_handler(move |_, message| {
            let text = match message.view() {
                gst::MessageView::Error(e) => Some(format!(
                    "error from {}: {} ({:?})",
                    e.src().map(|s| s.path_string()).unwrap_or_default(),
                    e.error(),
                    e.debug()
                )),
                gst::MessageView::Warning(w) => Some(format!(
                    "warning from {}: {} ({:?})",
                    w.src().map(|s| s.path_string()).unwrap_or_default(),
                    w.error(),
                    w.debug()
                )),
                _ => None,
            };
            if let Some(text) = text
                && let Ok(mut messages) = sink.lock()
                && messages.len() < MAX_BUS_MESSAGES
            {
                messages.push(text);
            }
            // Nobody pops this bus; dropping here keeps messages from accumulating.
            gst::BusSyncReply::Drop
        });
        Ok(Pipeline {
            pipeline,
            what: what.to_owned(),
            bus_messages,
        })
    }

    /// The element named `name`, as type `T`.
    pub fn by_name<T: IsA<gst::Element>>(&self, name: &str) -> Result<T> {
        self.pipeline
            .by_name(name)
            .with_context(|| format!("the {} pipeline has no element {name:?}", self.what))?
            .downcast::<T>()
            .map_err(|_| {
                anyhow!(
                    "element {name:?} of the {} pipeline has the wrong type",
                    self.what
                )
            })
    }

    pub fn play(&self) -> Result<()> {
        self.pipeline
            .set_state(gst::State::Playing)
            .with_context(|| {
                format!(
                    "setting the {} pipeline to Playing: {:?}",
                    self.what,
                    self.errors()
                )
            })?;
        Ok(())
    }

    /// Errors and warnings posted so far (for failure messages).
    pub fn errors(&self) -> Vec<String> {
        self.bus_messages
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    pub fn gst(&self) -> &gst::Pipeline {
        &self.pipeline
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Never blocks for long: no callback of ours waits on anything.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Counters shared between a streaming thread and the test.
#[derive(Default, Debug)]
pub struct PacketCounters {
    pub packets: AtomicU64,
    pub dropped: AtomicU64,
}

impl PacketCounters {
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Asks a video encoder for a keyframe. Cheap to clone; safe from any thread.
#[derive(Clone)]
pub struct KeyframeTrigger {
    encoder: gst::Element,
    requests: Arc<AtomicU64>,
}

impl KeyframeTrigger {
    /// Send an upstream force-key-unit event into the encoder's src pad; the encoder makes the
    /// next frame a keyframe. Returns whether the event was accepted.
    pub fn request(&self) -> bool {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        self.encoder
            .static_pad("src")
            .is_some_and(|pad| pad.send_event(event))
    }

    /// How many keyframes have been requested through this trigger.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// What a test peer sends as video.
#[derive(Clone, Copy, Debug)]
pub struct VideoSourceSpec {
    pub colour: Rgb,
    /// Noise instead of the colour: what a low-light camera gives, the hardest to encode.
    pub snow: bool,
    pub width: u32,
    pub height: u32,
    /// Frames between keyframes (30 = one a second at 30 fps).
    pub keyframe_interval: u32,
}

/// A live encoder whose RTP packets come out of [`RtpSource::take_packets`].
pub struct RtpSource {
    pipeline: Pipeline,
    keyframes: Option<KeyframeTrigger>,
    /// The consumer end; the producer end lives in the appsink callback.
    packets: Option<mpsc::Receiver<Bytes>>,
    counters: Arc<PacketCounters>,
}

impl RtpSource {
    /// A solid-colour VP8 picture at 30 fps, packetised with payload type 96 (the sender
    /// rewrites PT and SSRC to what was negotiated).
    pub fn video(spec: VideoSourceSpec) -> Result<RtpSource> {
        let pattern = if spec.snow {
            "snow".to_owned()
        } else {
            format!("solid-color foreground-color={}", argb(spec.colour))
        };
        let description = format!(
            "videotestsrc name=picture is-live=true pattern={pattern} \
             ! video/x-raw,width={w},height={h},framerate=30/1 \
             ! vp8enc name=encoder deadline=1 cpu-used=-6 threads=1 \
               keyframe-max-dist={kf} lag-in-frames=0 end-usage=cbr target-bitrate=300000 \
             ! rtpvp8pay mtu=1200 pt={pt} picture-id-mode=15-bit \
             ! appsink name=sink sync=false",
            w = spec.width,
            h = spec.height,
            kf = spec.keyframe_interval.max(1),
            pt = VP8_PAYLOAD_TYPE,
        );
        let pipeline = Pipeline::launch(&description, "video source")?;
        let encoder: gst::Element = pipeline.by_name("encoder")?;
        let mut source = Self::with_appsink(pipeline, VIDEO_PACKET_BACKLOG)?;
        source.keyframes = Some(KeyframeTrigger {
            encoder,
            requests: Arc::new(AtomicU64::new(0)),
        });
        Ok(source)
    }

    /// A sine tone at `hz` (volume 0.3, i.e. about -10.5 dBFS), Opus in 20 ms frames,
    /// payload type 111.
    pub fn audio(hz: f32) -> Result<RtpSource> {
        let description = format!(
            "audiotestsrc name=tone is-live=true wave=sine freq={hz} volume=0.3 \
             ! audioconvert ! audioresample \
             ! audio/x-raw,rate={AUDIO_RATE},channels=2 \
             ! opusenc \
             ! rtpopuspay pt={OPUS_PAYLOAD_TYPE} \
             ! appsink name=sink sync=false"
        );
        let pipeline = Pipeline::launch(&description, "audio source")?;
        Self::with_appsink(pipeline, AUDIO_PACKET_BACKLOG)
    }

    fn with_appsink(pipeline: Pipeline, backlog: usize) -> Result<RtpSource> {
        let appsink: gst_app::AppSink = pipeline.by_name("sink")?;
        let (tx, rx) = mpsc::channel::<Bytes>(backlog);
        let counters = Arc::new(PacketCounters::default());
        let counted = Arc::clone(&counters);
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    // Full (the sender is behind) or closed (nobody sends any more): either way
                    // the packet is dropped and counted, and the encoder keeps running.
                    match tx.try_send(Bytes::copy_from_slice(&map)) {
                        Ok(()) => counted.packets.fetch_add(1, Ordering::Relaxed),
                        Err(_) => counted.dropped.fetch_add(1, Ordering::Relaxed),
                    };
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Ok(RtpSource {
            pipeline,
            keyframes: None,
            packets: Some(rx),
            counters,
        })
    }

    /// Sets a solid-colour video source's colour, from its next frame on.
    pub fn set_colour(&self, colour: Rgb) -> Result<()> {
        let picture: gst::Element = self.pipeline.by_name("picture")?;
        picture.set_property("foreground-color", argb(colour));
        Ok(())
    }

    /// Sets an audio source's volume (0.3 as built; 0 sends Opus frames of silence).
    pub fn set_volume(&self, volume: f64) -> Result<()> {
        let tone: gst::Element = self.pipeline.by_name("tone")?;
        tone.set_property("volume", volume);
        Ok(())
    }

    /// Start producing. Packets produced before anyone takes the receiver queue up to the
    /// backlog and are then dropped.
    pub fn start(&self) -> Result<()> {
        self.pipeline.play()
    }

    /// The packet stream (once).
    pub fn take_packets(&mut self) -> Option<mpsc::Receiver<Bytes>> {
        self.packets.take()
    }

    /// For video sources, the handle that forces a keyframe.
    pub fn keyframe_trigger(&self) -> Option<KeyframeTrigger> {
        self.keyframes.clone()
    }

    /// Packets handed to the channel / dropped because it was full or closed.
    pub fn counters(&self) -> Arc<PacketCounters> {
        Arc::clone(&self.counters)
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

/// What a [`VideoReceiver`] has decoded so far. Written by the appsink's streaming thread.
#[derive(Default, Clone)]
pub struct VideoState {
    pub frames: u64,
    pub latest: Option<Arc<Frame>>,
    pub first_frame_at: Option<Instant>,
    /// Decode instants of the most recent frames, oldest first, at most [`FRAME_LOG_LEN`].
    pub decoded_at: VecDeque<Instant>,
}

impl VideoState {
    /// Frames decoded per second over the `window` that ends now.
    pub fn fps_over(&self, window: Duration) -> f64 {
        let now = Instant::now();
        let Some(start) = now.checked_sub(window) else {
            return 0.0;
        };
        let n = self
            .decoded_at
            .iter()
            .rev()
            .take_while(|t| **t >= start)
            .count();
        n as f64 / window.as_secs_f64()
    }
}

/// Where RTP packets enter a receive pipeline. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct RtpInput {
    appsrc: gst_app::AppSrc,
    counters: Arc<PacketCounters>,
}

impl RtpInput {
    /// Queue one RTP packet. Dropped (and counted) when the pipeline is behind by more than
    /// [`RECEIVE_QUEUE_BYTES`] or has stopped; returns whether it was queued.
    pub fn push(&self, packet: &[u8]) -> bool {
        if self.appsrc.current_level_bytes() >= RECEIVE_QUEUE_BYTES {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self
            .appsrc
            .push_buffer(gst::Buffer::from_slice(packet.to_vec()))
        {
            Ok(_) => {
                self.counters.packets.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn counters(&self) -> Arc<PacketCounters> {
        Arc::clone(&self.counters)
    }
}

/// VP8 RTP in, RGB frames out:
/// `appsrc ! rtpjitterbuffer ! rtpvp8depay ! vp8dec ! videoconvert ! RGB ! appsink`.
///
/// When the depayloader or decoder needs a keyframe (it lost packets, or joined mid-GOP), it
/// sends a force-key-unit event upstream; a probe on the appsrc turns that into a message on
/// [`VideoReceiver::take_keyframe_requests`], which the client answers with an RTCP PLI.
pub struct VideoReceiver {
    pipeline: Pipeline,
    input: RtpInput,
    state: watch::Receiver<VideoState>,
    /// The consumer end of the keyframe-request channel; the producer is the pad probe.
    keyframe_requests: Option<mpsc::Receiver<()>>,
    keyframe_request_count: Arc<AtomicU64>,
}

impl VideoReceiver {
    /// Build and start the pipeline. `payload_type`, when known, goes into the RTP caps.
    pub fn new(payload_type: Option<u8>) -> Result<VideoReceiver> {
        Self::with_codec(payload_type, false)
    }

    /// The same for H.264 (`rtph264depay ! avdec_h264`) when `h264`, else VP8.
    pub fn with_codec(payload_type: Option<u8>, h264: bool) -> Result<VideoReceiver> {
        let pt = payload_type
            .map(|pt| format!(",payload={pt}"))
            .unwrap_or_default();
        let (name, depay, decoder) = if h264 {
            ("H264", "rtph264depay", "avdec_h264")
        } else {
            ("VP8", "rtpvp8depay", "vp8dec")
        };
        let description = format!(
            "appsrc name=src is-live=true format=time do-timestamp=true \
               caps=\"application/x-rtp,media=video,encoding-name={name},clock-rate=90000{pt}\" \
             ! rtpjitterbuffer latency=50 \
             ! {depay} request-keyframe=true wait-for-keyframe=true \
             ! {decoder} \
             ! videoconvert \
             ! video/x-raw,format=RGB \
             ! appsink name=sink sync=false max-buffers=2 drop=true"
        );
        let pipeline = Pipeline::launch(&description, "video receiver")?;
        let appsrc: gst_app::AppSrc = pipeline.by_name("src")?;
        let appsink: gst_app::AppSink = pipeline.by_name("sink")?;

        let (state_tx, state) = watch::channel(VideoState::default());
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let frame = rgb_frame(&sample).map_err(|_| gst::FlowError::Error)?;
                    let now = Instant::now();
                    state_tx.send_modify(|s| {
                        s.frames += 1;
                        s.latest = Some(Arc::new(frame));
                        s.first_frame_at.get_or_insert(now);
                        if s.decoded_at.len() == FRAME_LOG_LEN {
                            s.decoded_at.pop_front();
                        }
                        s.decoded_at.push_back(now);
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );

        // Capacity 1: requests coalesce; one pending PLI answers any number of them.
        let (request_tx, keyframe_requests) = mpsc::channel::<()>(1);
        let keyframe_request_count = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&keyframe_request_count);
        appsrc
            .static_pad("src")
            .context("appsrc has a src pad")?
            .add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if let Some(event) = info.event()
                    && gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
                {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let _ = request_tx.try_send(());
                }
                gst::PadProbeReturn::Ok
            });

        pipeline.play()?;
        Ok(VideoReceiver {
            pipeline,
            input: RtpInput {
                appsrc,
                counters: Arc::new(PacketCounters::default()),
            },
            state,
            keyframe_requests: Some(keyframe_requests),
            keyframe_request_count,
        })
    }

    pub fn input(&self) -> RtpInput {
        self.input.clone()
    }

    /// A receiver that ticks whenever the pipeline wants a keyframe (once).
    pub fn take_keyframe_requests(&mut self) -> Option<mpsc::Receiver<()>> {
        self.keyframe_requests.take()
    }

    /// How many force-key-unit events the pipeline has sent upstream.
    pub fn keyframe_requests(&self) -> u64 {
        self.keyframe_request_count.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> watch::Receiver<VideoState> {
        self.state.clone()
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Wait up to `deadline` for a decoded frame satisfying `predicate` (the latest frame is
    /// checked first, so a frame that already matches returns at once).
    pub async fn wait_for_frame(
        &self,
        deadline: Duration,
        mut predicate: impl FnMut(&Frame) -> bool,
    ) -> Result<Arc<Frame>> {
        let mut state = self.state.clone();
        let waited = tokio::time::timeout(
            deadline,
            state.wait_for(|s| s.latest.as_deref().is_some_and(&mut predicate)),
        )
        .await;
        match waited {
            Ok(Ok(s)) => Ok(s.latest.clone().expect("the predicate saw a frame")),
            Ok(Err(_)) => Err(anyhow!("the video receiver stopped")),
            Err(_) => {
                let s = self.state.borrow();
                Err(anyhow!(
                    "no matching frame within {deadline:?}: {} frames decoded, latest {:?}, \
                     {} packets in ({} dropped), {} keyframe requests, pipeline: {:?}",
                    s.frames,
                    s.latest,
                    self.input.counters.packets(),
                    self.input.counters.dropped(),
                    self.keyframe_requests(),
                    self.pipeline.errors()
                ))
            }
        }
    }
}

/// Copy a decoded RGB sample into a tightly packed [`Frame`] (GStreamer pads rows to 4 bytes).
fn rgb_frame(sample: &gst::Sample) -> Result<Frame> {
    let caps = sample.caps().context("decoded sample has no caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).context("decoded caps are not video")?;
    let buffer = sample.buffer().context("decoded sample has no buffer")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .context("mapping the decoded frame")?;
    let (width, height) = (frame.width(), frame.height());
    let stride = frame.plane_stride()[0] as usize;
    let plane = frame.plane_data(0).context("reading the RGB plane")?;
    let row_len = width as usize * 3;
    let mut data = Vec::with_capacity(row_len * height as usize);
    for row in 0..height as usize {
        data.extend_from_slice(&plane[row * stride..row * stride + row_len]);
    }
    Ok(Frame {
        width,
        height,
        data,
    })
}

/// What an [`AudioReceiver`] has decoded so far. Written by the task that reads the track.
#[derive(Default, Clone)]
pub struct AudioState {
    /// The last [`AUDIO_RING_SECONDS`] of decoded audio, mono (the mean of the two channels),
    /// [`AUDIO_RATE`] Hz, oldest first.
    pub ring: VecDeque<f32>,
    /// Samples (mono) decoded in total, including concealed ones.
    pub total_samples: u64,
    pub first_sample_at: Option<Instant>,
    pub packets: u64,
    pub concealed_packets: u64,
    pub decode_errors: u64,
}

impl AudioState {
    /// The most recent `duration` of audio (less if not that much has arrived yet).
    pub fn window(&self, duration: Duration) -> Vec<f32> {
        let n = samples_in(duration).min(self.ring.len());
        self.ring
            .iter()
            .skip(self.ring.len() - n)
            .copied()
            .collect()
    }
}

fn samples_in(duration: Duration) -> usize {
    (duration.as_secs_f64() * f64::from(AUDIO_RATE)).round() as usize
}

/// The read side of received audio.
pub struct AudioReceiver {
    state: watch::Receiver<AudioState>,
}

/// The write side: owned by the one task that reads the remote audio track, which feeds it
/// every Opus payload in arrival order. Decoding a 20 ms Opus frame takes microseconds, so this
/// runs inline in that task without blocking it.
pub struct AudioInput {
    decoder: opus::Decoder,
    state: watch::Sender<AudioState>,
    last_sequence: Option<u16>,
    /// Samples per channel of the last good packet: the length of concealment for a lost one.
    last_frame_samples: usize,
    scratch: Vec<f32>,
}

impl AudioReceiver {
    pub fn new() -> Result<(AudioReceiver, AudioInput)> {
        let decoder = opus::Decoder::new(AUDIO_RATE, opus::Channels::Stereo)
            .context("creating the Opus decoder")?;
        let (tx, rx) = watch::channel(AudioState::default());
        Ok((
            AudioReceiver { state: rx },
            AudioInput {
                decoder,
                state: tx,
                last_sequence: None,
                last_frame_samples: 960,
                scratch: vec![0.0; OPUS_MAX_FRAME_SAMPLES * 2],
            },
        ))
    }

    pub fn state(&self) -> watch::Receiver<AudioState> {
        self.state.clone()
    }

    /// The most recent `duration` of audio.
    pub fn window(&self, duration: Duration) -> Vec<f32> {
        self.state.borrow().window(duration)
    }

    /// The audio between `from` and `to` after the first decoded sample, once it has arrived
    /// (bounded by `deadline`). `to - from` must fit the ring ([`AUDIO_RING_SECONDS`]).
    pub async fn since_start(
        &self,
        from: Duration,
        to: Duration,
        deadline: Duration,
    ) -> Result<Vec<f32>> {
        let (first, last) = (samples_in(from) as u64, samples_in(to) as u64);
        let mut state = self.state.clone();
        let waited =
            tokio::time::timeout(deadline, state.wait_for(|s| s.total_samples >= last)).await;
        let s = match waited {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => bail!("the audio receiver stopped"),
            Err(_) => bail!(
                "{to:?} of audio did not arrive within {deadline:?}: {} samples",
                self.state.borrow().total_samples
            ),
        };
        // Ring index of sample i (counted from the first): len - (total - i).
        let back = (s.total_samples - first) as usize;
        if back > s.ring.len() {
            bail!("{from:?}..{to:?} is no longer in the {AUDIO_RING_SECONDS} s ring");
        }
        let start = s.ring.len() - back;
        Ok(s.ring
            .iter()
            .skip(start)
            .take((last - first) as usize)
            .copied()
            .collect())
    }

    /// Wait up to `deadline` until `duration` of audio has arrived *after this call*, then
    /// return the most recent `duration`: audio that reflects the room as it is now.
    pub async fn next_window(&self, duration: Duration, deadline: Duration) -> Result<Vec<f32>> {
        let mut state = self.state.clone();
        let target = state.borrow().total_samples + samples_in(duration) as u64;
        match tokio::time::timeout(deadline, state.wait_for(|s| s.total_samples >= target)).await {
            Ok(Ok(s)) => Ok(s.window(duration)),
            Ok(Err(_)) => Err(anyhow!("the audio receiver stopped")),
            Err(_) => {
                let s = self.state.borrow();
                Err(anyhow!(
                    "{duration:?} of new audio did not arrive within {deadline:?}: \
                     {} packets, {} samples, {} decode errors",
                    s.packets,
                    s.total_samples,
                    s.decode_errors
                ))
            }
        }
    }
}

impl AudioInput {
    /// Decode one Opus RTP payload. Sequence gaps up to [`MAX_CONCEALED_PACKETS`] are filled
    /// with the decoder's concealment; late or duplicate packets are skipped.
    pub fn push(&mut self, sequence: u16, payload: &[u8]) {
        let mut conceal = 0u16;
        if let Some(last) = self.last_sequence {
            let gap = sequence.wrapping_sub(last);
            if gap == 0 || gap >= 0x8000 {
                return; // a duplicate or a late packet: its moment has passed
            }
            if gap - 1 <= MAX_CONCEALED_PACKETS {
                conceal = gap - 1;
            }
        }
        self.last_sequence = Some(sequence);

        let mut decoded: Vec<f32> = Vec::new();
        let mut errors = 0;
        for _ in 0..conceal {
            let len = self.last_frame_samples * 2;
            match self
                .decoder
                .decode_float(&[], &mut self.scratch[..len], false)
            {
                Ok(n) => mix_down(&self.scratch[..n * 2], &mut decoded),
                Err(_) => errors += 1,
            }
        }
        match self.decoder.decode_float(payload, &mut self.scratch, false) {
            Ok(n) => {
                self.last_frame_samples = n.max(1);
                mix_down(&self.scratch[..n * 2], &mut decoded);
            }
            Err(_) => errors += 1,
        }

        let now = Instant::now();
        let capacity = AUDIO_RING_SECONDS * AUDIO_RATE as usize;
        self.state.send_modify(|s| {
            s.packets += 1;
            s.concealed_packets += u64::from(conceal);
            s.decode_errors += errors;
            if !decoded.is_empty() {
                s.first_sample_at.get_or_insert(now);
            }
            s.total_samples += decoded.len() as u64;
            s.ring.extend(decoded.iter().copied());
            let excess = s.ring.len().saturating_sub(capacity);
            s.ring.drain(..excess);
        });
    }
}

fn mix_down(interleaved: &[f32], out: &mut Vec<f32>) {
    out.extend(interleaved.chunks_exact(2).map(|lr| 0.5 * (lr[0] + lr[1])));
}

/// What a media file holds, decoded: a video frame every `frame_every` seconds (by timestamp)
/// and all of its audio, mono 48 kHz.
pub struct DecodedFile {
    /// (seconds from the first frame, frame).
    pub frames: Vec<(f64, Frame)>,
    /// Video frames decoded in all.
    pub frame_count: u64,
    pub audio: Vec<f32>,
}

impl DecodedFile {
    /// The kept frame nearest to `secs`.
    pub fn frame_at(&self, secs: f64) -> Option<&Frame> {
        self.frames
            .iter()
            .min_by(|a, b| (a.0 - secs).abs().total_cmp(&(b.0 - secs).abs()))
            .map(|(_, f)| f)
    }

    /// The audio between `from` and `to` seconds.
    pub fn audio_between(&self, from: f64, to: f64) -> &[f32] {
        let at = |s: f64| ((s * AUDIO_RATE as f64) as usize).min(self.audio.len());
        &self.audio[at(from)..at(to)]
    }
}

/// Decodes a recording (WebM or MP4) with `decodebin`, as fast as it goes, within `deadline`.
pub fn decode_file(
    path: &std::path::Path,
    frame_every: f64,
    deadline: Duration,
) -> Result<DecodedFile> {
    let description = format!(
        "filesrc location=\"{}\" ! decodebin name=d \
         d. ! queue ! videoconvert ! video/x-raw,format=RGB ! appsink name=video sync=false \
         d. ! queue ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,channels=1,rate={AUDIO_RATE} \
            ! appsink name=audio sync=false",
        path.display()
    );
    let pipeline = Pipeline::launch(&description, "file decoder")?;
    let video: gst_app::AppSink = pipeline.by_name("video")?;
    let audio: gst_app::AppSink = pipeline.by_name("audio")?;
    pipeline.play()?;
    let end = Instant::now() + deadline;
    let mut out = DecodedFile {
        frames: Vec::new(),
        frame_count: 0,
        audio: Vec::new(),
    };
    let (mut video_done, mut audio_done) = (false, false);
    let mut first_pts: Option<gst::ClockTime> = None;
    let mut next_keep = 0.0;
    while !(video_done && audio_done) {
        if Instant::now() > end {
            bail!("decoding {} took over {deadline:?}", path.display());
        }
        if let Some(e) = pipeline
            .errors()
            .into_iter()
            .find(|e| e.starts_with("error"))
        {
            bail!("decoding {}: {e}", path.display());
        }
        if !video_done {
            match video.try_pull_sample(gst::ClockTime::from_mseconds(20)) {
                Some(sample) => {
                    out.frame_count += 1;
                    let pts = sample.buffer().and_then(|b| b.pts()).unwrap_or_default();
                    let first = *first_pts.get_or_insert(pts);
                    let secs = pts.saturating_sub(first).nseconds() as f64 / 1e9;
                    if secs >= next_keep {
                        out.frames.push((secs, rgb_frame(&sample)?));
                        next_keep = secs + frame_every;
                    }
                }
                None => video_done = video.is_eos(),
            }
        }
        if !audio_done {
            match audio.try_pull_sample(gst::ClockTime::from_mseconds(5)) {
                Some(sample) => {
                    if let Some(buffer) = sample.buffer()
                        && let Ok(map) = buffer.map_readable()
                    {
                        out.audio.extend(
                            map.as_slice()
                                .chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        );
                    }
                }
                None => audio_done = audio.is_eos(),
            }
        }
    }
    Ok(out)
}

/// `colour` as videotestsrc's opaque ARGB.
fn argb((r, g, b): Rgb) -> u32 {
    0xff00_0000u32 | (u32::from(r) << 16) | (u32::from(g) << 8) | u32::from(b)
}
