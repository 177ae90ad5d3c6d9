//! Simulated participants and viewers: each joins over WHIP or WHEP with a [`ClientPeer`],
//! replays the prepared media and drains or decodes what the server sends, in a task of its
//! own until it leaves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use tessera::types::{MediaKind, RtpSink};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::client::{ClientEvent, ClientPeer, Kinds};
use crate::media::dump::PreparedMedia;
use crate::media::probe::{AudioProbe, VideoProbe};
use crate::replay::{SendLog, replay};

/// Counts packets of tracks nobody decodes (so webrtc-rs's queue is always drained).
#[derive(Default)]
struct CountingSink(AtomicU64);

impl RtpSink for CountingSink {
    fn push(&self, _packet: Bytes) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a simulated participant does with what it receives.
#[derive(Clone)]
pub enum Receive {
    /// Drain and count.
    Discard,
    /// Decode video (reading the stamp in this tile) and/or audio (click onsets).
    Probe {
        video: Arc<VideoProbe>,
        audio: Option<Arc<AudioProbe>>,
    },
}

/// What a client sends and receives: audio and video.
pub const BOTH: Kinds = Kinds {
    video: true,
    audio: true,
    quiet: false,
};
/// Audio only.
pub const AUDIO: Kinds = Kinds {
    video: false,
    audio: true,
    quiet: false,
};
/// Audio only, from a participant who listens (its microphone sends near-silence).
pub const QUIET_AUDIO: Kinds = Kinds {
    video: false,
    audio: true,
    quiet: true,
};
/// Nothing (a viewer sends nothing).
pub const NOTHING: Kinds = Kinds {
    video: false,
    audio: false,
    quiet: false,
};

/// One simulated participant: a WebRTC peer owned by its own task.
pub struct Sim {
    session_url: String,
    /// Whether its connection is up.
    pub connected: watch::Receiver<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Joins simulated participants to the server at `base`.
pub struct Joiner {
    pub http: reqwest::Client,
    pub base: String,
    media: Arc<PreparedMedia>,
    /// Sessions joined so far (each is named after its number).
    joined: std::sync::atomic::AtomicUsize,
}

impl Joiner {
    pub fn new(base: String, media: Arc<PreparedMedia>) -> Result<Joiner> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Joiner {
            http,
            base,
            media,
            joined: Default::default(),
        })
    }

    /// Joins `room`: `send` picks what it replays, `whep` makes it a viewer. Returns once the
    /// server answered (the connection comes up in the background; see `Sim::connected`).
    pub async fn join(
        &self,
        room: &str,
        whep: bool,
        send: Kinds,
        receive: Kinds,
        handling: Receive,
        log: Option<(SendLog, SendLog)>,
    ) -> Result<Sim> {
        let (events_tx, mut events) = mpsc::channel::<ClientEvent>(64);
        let (mut peer, offer) = ClientPeer::offer(send, receive, events_tx)
            .await
            .context("making an offer")?;
        let (session_url, answer) = match self.post_offer(room, whep, offer).await {
            Ok(posted) => posted,
            Err(e) => {
                peer.close().await;
                return Err(e);
            }
        };
        peer.accept_answer(&answer)
            .await
            .context("applying the answer")?;
        let mut replays = JoinSet::new();
        for (kind, sends, dump) in [
            (MediaKind::Video, send.video, &self.media.video),
            (
                MediaKind::Audio,
                send.audio,
                if send.quiet {
                    &self.media.quiet
                } else {
                    &self.media.audio
                },
            ),
        ] {
            if sends {
                let (tx, rx) = broadcast::channel(256);
                peer.start_sending(kind, rx);
                let log = log.as_ref().map(|(v, a)| {
                    if kind == MediaKind::Video {
                        v.clone()
                    } else {
                        a.clone()
                    }
                });
                replays.spawn(replay(
                    Arc::new(dump.clone()),
                    tx,
                    log,
                    kind == MediaKind::Video,
                ));
            }
        }
        let (connected_tx, connected) = watch::channel(false);
        let (stop_tx, mut stop) = tokio::sync::oneshot::channel();
        let keyframe_wanted = match &handling {
            Receive::Probe { video, .. } => Some(video.keyframe_wanted()),
            Receive::Discard => None,
        };
        let task = tokio::spawn(async move {
            let discard: Arc<dyn RtpSink> = Arc::new(CountingSink::default());
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    // A sampled receiver that lost packets asks for a keyframe, as browsers do.
                    _ = async { keyframe_wanted.as_ref().expect("guarded by the branch condition").notified().await }, if keyframe_wanted.is_some() => {
                        peer.ask_keyframe().await;
                    }
                    ev = events.recv() => match ev {
                        Some(ClientEvent::Track(kind, track)) => {
                            let sink: Arc<dyn RtpSink> = match (&handling, kind) {
                                (Receive::Probe { video, .. }, MediaKind::Video) => video.clone(),
                                (Receive::Probe { audio: Some(a), .. }, MediaKind::Audio) => a.clone(),
                                _ => discard.clone(),
                            };
                            peer.start_receiving(kind, track, sink);
                        }
                        Some(ClientEvent::State(s)) => {
                            let _ = connected_tx.send(s == RTCPeerConnectionState::Connected);
                            if matches!(s, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) {
                                break;
                            }
                        }
                        None => break,
                    }
                }
            }
            replays.abort_all();
            peer.close().await;
        });
        Ok(Sim {
            session_url,
            connected,
            stop: Some(stop_tx),
            task,
        })
    }

    /// POSTs `offer` to `room`'s WHIP (or, with `whep`, WHEP) endpoint: the session's URL and
    /// the answer, or why the server refused it.
    pub async fn post_offer(
        &self,
        room: &str,
        whep: bool,
        offer: String,
    ) -> Result<(String, String)> {
        let endpoint = if whep { "whep" } else { "whip" };
        // A name, as people have: the server draws it on the tile (what a layout with labels
        // costs is measured with them).
        let n = self
            .joined
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = self
            .http
            .post(format!(
                "{}/rooms/{room}/{endpoint}?name=sim-{n}",
                self.base
            ))
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await
            .context("POST offer")?;
        if response.status().as_u16() != 201 {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            bail!("join refused: {status} {body}");
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let answer = response.text().await.context("reading the answer")?;
        Ok((format!("{}{location}", self.base), answer))
    }

    /// Turns `sim`'s camera off as a participant does (`PUT …/mute`): its tile shows the
    /// camera-off placeholder.
    pub async fn mute_video(&self, sim: &Sim) -> Result<()> {
        let response = self
            .http
            .put(format!("{}/mute", sim.session_url))
            .header("content-type", "application/json")
            .body(r#"{"video": true}"#)
            .send()
            .await
            .context("PUT mute")?;
        anyhow::ensure!(
            response.status().is_success(),
            "PUT mute: {}",
            response.status()
        );
        Ok(())
    }

    pub async fn leave(&self, mut sim: Sim) {
        let _ = self.http.delete(&sim.session_url).send().await;
        if let Some(stop) = sim.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut sim.task).await;
    }
}

pub async fn wait_connected<'a>(
    sims: impl IntoIterator<Item = &'a Sim>,
    deadline: Duration,
) -> Result<()> {
    for s in sims {
        let mut c = s.connected.clone();
        tokio::time::timeout(deadline, c.wait_for(|v| *v))
            .await
            .context("a participant did not connect in time")??;
    }
    Ok(())
}
