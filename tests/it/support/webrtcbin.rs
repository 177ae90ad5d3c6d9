//! A second WebRTC client, built on GStreamer's own stack (webrtcbin 1.22), configured the way
//! GStreamer's WHIP and WHEP clients are: `bundle-policy=max-bundle`, every candidate gathered
//! before the offer is sent (no trickle). With max-bundle, webrtcbin writes every m-line but the
//! first as `m=... 0 ... a=bundle-only` (RFC 8843), which is what issue 9 is about.
//!
//! It sends a solid-colour picture (VP8 or H.264) and a sine tone (Opus) like [`TestClient`],
//! and hands what it receives (RTP from webrtcbin's src pads) to the same receivers the
//! webrtc-rs client uses, so tests measure both clients with the same analysis.
//!
//! Network: libnice gathers only on 127.0.0.1 (`add-local-ip-address`), UDP only.
//!
//! Ownership: the `WebrtcbinClient` owns its pipeline (dropping it sets it to Null) and the
//! receive pipelines; callbacks of webrtcbin only forward into channels and receivers.
//!
//! [`TestClient`]: super::TestClient

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;
use reqwest::Url;
use rtc::shared::marshal::Unmarshal;
use tokio::sync::{oneshot, watch};

use super::analysis::{Frame, Rgb};
use super::client::{GATHER_TIMEOUT, Role, offer_url};
use super::http;
use super::media::{AudioInput, AudioReceiver, Pipeline, RtpInput, VideoReceiver};

/// The video codec a webrtcbin client sends (and asks to receive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GstVideo {
    /// VP8 (`vp8enc`), payload type 96.
    Vp8,
    /// H.264 constrained baseline (`x264enc`), payload type 102.
    H264,
}

/// How a webrtcbin client joins.
#[derive(Clone, Copy, Debug)]
pub struct GstJoin {
    /// Participant (WHIP sendrecv), contributor (WHIP sendonly) or viewer (WHEP recvonly).
    pub role: Role,
    /// Its video codec.
    pub video: GstVideo,
    /// The colour it sends.
    pub colour: Rgb,
    /// The tone it sends.
    pub tone_hz: f32,
    /// Remove every `a=ssrc` line from the offer before sending it, as clients do whose
    /// encoder caps arrive after the offer is made (RFC 8843 §9.2 routing must then find the
    /// streams).
    pub strip_ssrcs: bool,
}

impl GstJoin {
    /// A VP8 client of `role` sending `colour` and `tone_hz`, SSRCs declared.
    pub fn new(role: Role, colour: Rgb, tone_hz: f32) -> GstJoin {
        GstJoin {
            role,
            video: GstVideo::Vp8,
            colour,
            tone_hz,
            strip_ssrcs: false,
        }
    }
}

/// A webrtcbin peer in a room.
pub struct WebrtcbinClient {
    name: String,
    session_url: Url,
    /// The offer it sent and the answer it got, as text (for assertions on SDP lines).
    pub offer: String,
    pub answer: String,
    video: Option<VideoReceiver>,
    audio: Option<AudioReceiver>,
    /// Declared after the receivers: it drops first, so no callback pushes into a receiver
    /// whose pipeline is already gone.
    pipeline: Pipeline,
}

impl WebrtcbinClient {
    /// Builds the pipeline, offers, POSTs to the room's WHIP or WHEP endpoint, applies the
    /// answer and waits (bounded) for ICE to connect.
    pub async fn join(base_url: &str, room: &str, name: &str, join: GstJoin) -> Result<Self> {
        let what = format!("{name} (webrtcbin) joining {room} as {:?}", join.role);
        let pipeline = Pipeline::launch(&description(&join), "webrtcbin client")?;
        let webrtc: gst::Element = pipeline.by_name("webrtc")?;
        let ice: gst::glib::Object = webrtc.property("ice-agent");
        // libnice skips loopback unless told to use it; and only it: tests stay on 127.0.0.1.
        ice.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
        ice.set_property("ice-tcp", false);

        let receives = join.role != Role::Contributor;
        let (video, audio, video_input, audio_input) = if receives {
            let video = VideoReceiver::with_codec(None, join.video == GstVideo::H264)?;
            let (audio, audio_input) = AudioReceiver::new()?;
            let video_input = video.input();
            (
                Some(video),
                Some(audio),
                Some(video_input),
                Some(audio_input),
            )
        } else {
            (None, None, None, None)
        };
        match join.role {
            Role::Viewer => {
                for caps in [video_caps(join.video, true), AUDIO_CAPS.to_owned()] {
                    let caps: gst::Caps = caps.parse().context("receive caps")?;
                    webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                        "add-transceiver",
                        &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
                    );
                }
            }
            Role::Contributor => {
                for i in 0..2i32 {
                    let t = webrtc
                        .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>(
                            "get-transceiver",
                            &[&i],
                        )
                        .with_context(|| format!("{what}: transceiver {i}"))?;
                    t.set_property(
                        "direction",
                        gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
                    );
                }
            }
            Role::Participant => {}
        }
        if receives {
            forward_received_rtp(&webrtc, video_input, audio_input);
        }

        // The offer is made once webrtcbin asks (its sink pads have caps by then), then the
        // candidates are gathered: the first complete local description is what a non-trickle
        // client sends.
        let (offer_tx, offer_rx) = oneshot::channel::<Result<(), String>>();
        let offer_tx = Mutex::new(Some(offer_tx));
        webrtc.connect("on-negotiation-needed", false, move |values| {
            let webrtc = values[0]
                .get::<gst::Element>()
                .expect("the signal's emitter");
            let sender = offer_tx.lock().ok().and_then(|mut s| s.take());
            let sender = sender?;
            let webrtc_for_reply = webrtc.clone();
            let promise = gst::Promise::with_change_func(move |reply| {
                let offer = match reply {
                    Ok(Some(reply)) => reply
                        .value("offer")
                        .ok()
                        .and_then(|v| v.get::<gst_webrtc::WebRTCSessionDescription>().ok()),
                    _ => None,
                };
                let result = match offer {
                    Some(offer) => {
                        webrtc_for_reply.emit_by_name::<()>(
                            "set-local-description",
                            &[&offer, &None::<gst::Promise>],
                        );
                        Ok(())
                    }
                    None => Err(format!("create-offer gave no offer: {reply:?}")),
                };
                let _ = sender.send(result);
            });
            webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
            None
        });
        let (gathered_tx, mut gathered) = watch::channel(false);
        webrtc.connect_notify(Some("ice-gathering-state"), move |webrtc, _| {
            let state =
                webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
            if state == gst_webrtc::WebRTCICEGatheringState::Complete {
                let _ = gathered_tx.send(true);
            }
        });
        let (connected_tx, mut connected) = watch::channel(false);
        webrtc.connect_notify(Some("ice-connection-state"), move |webrtc, _| {
            let state =
                webrtc.property::<gst_webrtc::WebRTCICEConnectionState>("ice-connection-state");
            if matches!(
                state,
                gst_webrtc::WebRTCICEConnectionState::Connected
                    | gst_webrtc::WebRTCICEConnectionState::Completed
            ) {
                let _ = connected_tx.send(true);
            }
        });
        pipeline.play()?;

        tokio::time::timeout(GATHER_TIMEOUT, offer_rx)
            .await
            .map_err(|_| anyhow!("{what}: no offer within {GATHER_TIMEOUT:?}"))?
            .map_err(|_| anyhow!("{what}: the offer callback was dropped"))?
            .map_err(|e| anyhow!("{what}: {e}"))?;
        tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|done| *done))
            .await
            .map_err(|_| {
                anyhow!("{what}: ICE gathering did not complete within {GATHER_TIMEOUT:?}")
            })?
            .map_err(|_| anyhow!("{what}: webrtcbin went away"))?;
        let local = webrtc
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .with_context(|| format!("{what}: no local description"))?;
        let mut offer = local
            .sdp()
            .as_text()
            .with_context(|| format!("{what}: writing the offer"))?;
        if join.strip_ssrcs {
            offer = offer
                .split_inclusive('\n')
                .filter(|line| !line.starts_with("a=ssrc"))
                .collect();
        }

        let url = offer_url(base_url, room, join.role, name)?;
        let response = http::post(&url, "application/sdp", offer.clone())
            .await
            .context(what.clone())?;
        if response.status != 201 {
            bail!(
                "{what}: expected 201, got {}: {}",
                response.status,
                response.body
            );
        }
        let location = response
            .location
            .as_deref()
            .with_context(|| format!("{what}: 201 without Location"))?;
        let session_url = Url::parse(base_url)?.join(location)?;
        let answer_sdp = gst_sdp::SDPMessage::parse_buffer(response.body.as_bytes())
            .map_err(|e| anyhow!("{what}: the answer is not SDP: {e}"))?;
        let answer = gst_webrtc::WebRTCSessionDescription::new(
            gst_webrtc::WebRTCSDPType::Answer,
            answer_sdp,
        );
        webrtc.emit_by_name::<()>("set-remote-description", &[&answer, &None::<gst::Promise>]);
        tokio::time::timeout(CONNECT_TIMEOUT, connected.wait_for(|up| *up))
            .await
            .map_err(|_| {
                anyhow!(
                    "{what}: ICE did not connect within {CONNECT_TIMEOUT:?}; pipeline: {:?}",
                    pipeline.errors()
                )
            })?
            .map_err(|_| anyhow!("{what}: webrtcbin went away"))?;
        Ok(WebrtcbinClient {
            name: name.to_owned(),
            session_url,
            offer,
            answer: response.body,
            video,
            audio,
            pipeline,
        })
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its session URL (the WHIP/WHEP resource).
    pub fn session_url(&self) -> &Url {
        &self.session_url
    }

    /// Waits (bounded) for a decoded frame satisfying `predicate`.
    pub async fn wait_for_frame(
        &self,
        deadline: Duration,
        predicate: impl FnMut(&Frame) -> bool,
    ) -> Result<Arc<Frame>> {
        let video = self
            .video
            .as_ref()
            .context("this client receives no video")?;
        video.wait_for_frame(deadline, predicate).await
    }

    /// `duration` of audio that arrived after this call (bounded by `deadline`).
    pub async fn next_audio(&self, duration: Duration, deadline: Duration) -> Result<Vec<f32>> {
        let audio = self
            .audio
            .as_ref()
            .context("this client receives no audio")?;
        audio.next_window(duration, deadline).await
    }

    /// The audio between `from` and `to` after its first decoded sample (bounded wait).
    pub async fn audio_since_start(
        &self,
        from: Duration,
        to: Duration,
        deadline: Duration,
    ) -> Result<Vec<f32>> {
        let audio = self
            .audio
            .as_ref()
            .context("this client receives no audio")?;
        audio.since_start(from, to, deadline).await
    }

    /// When the first decoded audio sample arrived.
    pub fn first_audio_at(&self) -> Option<Instant> {
        self.audio.as_ref()?.state().borrow().first_sample_at
    }

    /// Errors and warnings its pipeline posted (for failure messages).
    pub fn errors(&self) -> Vec<String> {
        self.pipeline.errors()
    }

    /// Leaves politely (WHIP/WHEP DELETE), then drops everything.
    pub async fn leave(self) -> Result<()> {
        let response = http::delete(&self.session_url).await?;
        if !response.is_success() {
            bail!("{}: DELETE answered {}", self.name, response.status);
        }
        Ok(())
    }
}

/// Deadline for ICE to connect once the answer is applied.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Opus as RFC 7587 writes it: `opus/48000/2`.
const AUDIO_CAPS: &str = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,\
                          clock-rate=48000,encoding-params=(string)2";

/// The caps of the video webrtcbin sends (the payloader's own parameters join them) or, for a
/// viewer, asks to receive.
fn video_caps(video: GstVideo, receive_only: bool) -> String {
    match (video, receive_only) {
        (GstVideo::Vp8, _) => {
            "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000".into()
        }
        (GstVideo::H264, false) => {
            "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000".into()
        }
        (GstVideo::H264, true) => "application/x-rtp,media=video,encoding-name=H264,payload=102,\
                                   clock-rate=90000,packetization-mode=(string)1,\
                                   profile-level-id=(string)42e01f,\
                                   level-asymmetry-allowed=(string)1"
            .into(),
    }
}

/// The client's pipeline: webrtcbin plus, for senders, a test picture and a tone.
fn description(join: &GstJoin) -> String {
    let webrtc = "webrtcbin name=webrtc bundle-policy=max-bundle latency=50";
    if join.role == Role::Viewer {
        return webrtc.to_owned();
    }
    let (r, g, b) = (join.colour.0, join.colour.1, join.colour.2);
    let encode = match join.video {
        GstVideo::Vp8 => "vp8enc deadline=1 cpu-used=8 keyframe-max-dist=30 target-bitrate=500000 \
                          ! rtpvp8pay pt=96 mtu=1200"
            .to_owned(),
        GstVideo::H264 => "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 \
                           bitrate=500 ! video/x-h264,profile=constrained-baseline \
                           ! rtph264pay pt=102 mtu=1200 config-interval=-1 \
                           aggregate-mode=zero-latency"
            .to_owned(),
    };
    format!(
        "{webrtc} \
         videotestsrc is-live=true pattern=solid-color foreground-color=0xff{r:02x}{g:02x}{b:02x} \
           ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert ! {encode} \
           ! {video_caps} ! webrtc. \
         audiotestsrc is-live=true wave=sine freq={hz} volume=0.3 \
           ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 \
           ! {AUDIO_CAPS} ! webrtc.",
        video_caps = video_caps(join.video, false),
        hz = join.tone_hz,
    )
}

/// Links every src pad webrtcbin adds to an appsink whose callback hands the RTP to the video
/// receiver or decodes the Opus, by the `media` of the pad's caps.
fn forward_received_rtp(webrtc: &gst::Element, video: Option<RtpInput>, audio: Option<AudioInput>) {
    let audio = Arc::new(Mutex::new(audio));
    webrtc.connect_pad_added(move |webrtc, pad| {
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        let Some(pipeline) = webrtc.parent().and_then(|p| p.downcast::<gst::Bin>().ok()) else {
            return;
        };
        let Ok(sink) = gst::ElementFactory::make("appsink")
            .property("sync", false)
            .build()
        else {
            return;
        };
        let sink = sink
            .downcast::<gst_app::AppSink>()
            .expect("appsink is an AppSink");
        let (video, audio) = (video.clone(), Arc::clone(&audio));
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let is_audio = sample
                        .caps()
                        .and_then(|c| c.structure(0))
                        .and_then(|s| s.get::<&str>("media").ok())
                        == Some("audio");
                    let Some(buffer) = sample.buffer() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let Ok(map) = buffer.map_readable() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    if is_audio {
                        if let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &map[..])
                            && let Ok(mut audio) = audio.lock()
                            && let Some(audio) = audio.as_mut()
                        {
                            audio.push(packet.header.sequence_number, &packet.payload);
                        }
                    } else if let Some(video) = &video {
                        video.push(&map);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        if pipeline.add(&sink).is_err() {
            return;
        }
        let _ = sink.sync_state_with_parent();
        if let Some(sink_pad) = sink.static_pad("sink") {
            let _ = pad.link(&sink_pad);
        }
    });
}
