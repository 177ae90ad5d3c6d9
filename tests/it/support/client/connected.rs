//! What a connected client shows the tests (its state, decoded frames and audio, counters),
//! the RTCP a test sends through it, and how it leaves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::Url;
use rtc::peer_connection::transport::RTCIceCandidatePair;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::support::analysis::{Frame, Rgb};
use crate::support::http::{self};
use crate::support::media::{AudioReceiver, AudioState, VideoReceiver, VideoState};

use super::pumps::send_pli;
use super::{ClientStats, Role, TestClient};

impl TestClient {
    /// The type of the local candidate of the pair ICE selected (`host`, `relay`, ...): how
    /// this client's media reaches the server.
    pub async fn selected_local_candidate(&self) -> Result<String> {
        Ok(format!("{}", self.selected_pair().await?.local().typ))
    }

    /// The server's end of the selected candidate pair: where this session's media goes.
    pub async fn selected_remote_address(&self) -> Result<std::net::SocketAddr> {
        let pair = self.selected_pair().await?;
        let remote = pair.remote();
        Ok(std::net::SocketAddr::new(
            remote.address.parse()?,
            remote.port,
        ))
    }

    async fn selected_pair(&self) -> Result<RTCIceCandidatePair> {
        // Bundled: every sender and receiver shares the one transport.
        let transport = match self.pc.get_senders().await.into_iter().next() {
            Some(sender) => sender.transport().await?,
            None => match self.pc.get_receivers().await.into_iter().next() {
                Some(receiver) => receiver.transport().await?,
                None => bail!("neither a sender nor a receiver"),
            },
        }
        .context("no transport yet")?;
        transport
            .ice_transport()
            .get_selected_candidate_pair()
            .await?
            .context("ICE selected no pair")
    }

    /// The session resource (`{base}{Location}`), for `DELETE` and friends.
    pub fn session_url(&self) -> &Url {
        &self.session_url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.connection.borrow()
    }

    /// Wait up to `deadline` for the connection to reach `state`. Fails early if it reaches
    /// `Failed` or `Closed` instead (unless that is what was asked for).
    pub async fn wait_for_state(
        &self,
        state: RTCPeerConnectionState,
        deadline: Duration,
    ) -> Result<()> {
        let mut connection = self.connection.clone();
        let reached = tokio::time::timeout(
            deadline,
            connection.wait_for(|s| {
                *s == state
                    || matches!(
                        s,
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                    )
            }),
        )
        .await;
        match reached {
            Ok(Ok(s)) if *s == state => Ok(()),
            Ok(Ok(s)) => bail!(
                "{}: connection went {} while waiting for {state}",
                self.name,
                *s
            ),
            Ok(Err(_)) => bail!("{}: the peer connection is gone", self.name),
            Err(_) => bail!(
                "{}: connection still {} after {deadline:?} waiting for {state}",
                self.name,
                *self.connection.borrow()
            ),
        }
    }

    /// Wait up to `deadline` for the server to drop us: `Disconnected`, `Failed` or `Closed`.
    pub async fn wait_for_disconnect(&self, deadline: Duration) -> Result<RTCPeerConnectionState> {
        let mut connection = self.connection.clone();
        let gone = |s: &RTCPeerConnectionState| {
            matches!(
                s,
                RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        };
        match tokio::time::timeout(deadline, connection.wait_for(gone)).await {
            Ok(Ok(s)) => Ok(*s),
            Ok(Err(_)) => Ok(RTCPeerConnectionState::Closed),
            Err(_) => bail!(
                "{}: still {} after {deadline:?}",
                self.name,
                *self.connection.borrow()
            ),
        }
    }

    fn video(&self) -> Result<&VideoReceiver> {
        self.video
            .as_ref()
            .with_context(|| format!("{} is a {:?} and receives no video", self.name, self.role))
    }

    fn audio(&self) -> Result<&AudioReceiver> {
        self.audio
            .as_ref()
            .with_context(|| format!("{} is a {:?} and receives no audio", self.name, self.role))
    }

    /// The most recently decoded frame (None before the first, or for a contributor).
    pub fn latest_frame(&self) -> Option<Arc<Frame>> {
        self.video.as_ref()?.state().borrow().latest.clone()
    }

    /// A snapshot of the video receive state (frame count, decode instants, latest frame).
    pub fn video_state(&self) -> VideoState {
        self.video
            .as_ref()
            .map(|v| v.state().borrow().clone())
            .unwrap_or_default()
    }

    pub fn frame_count(&self) -> u64 {
        self.video.as_ref().map_or(0, |v| v.state().borrow().frames)
    }

    pub fn first_frame_at(&self) -> Option<Instant> {
        self.video.as_ref()?.state().borrow().first_frame_at
    }

    /// Frames decoded per second over the `window` ending now.
    pub fn fps_over(&self, window: Duration) -> f64 {
        self.video
            .as_ref()
            .map_or(0.0, |v| v.state().borrow().fps_over(window))
    }

    /// Wait up to `deadline` for a decoded frame that satisfies `predicate`; the latest frame
    /// counts, so one that already matches returns at once.
    pub async fn wait_for_frame(
        &self,
        deadline: Duration,
        predicate: impl FnMut(&Frame) -> bool,
    ) -> Result<Arc<Frame>> {
        self.video()?
            .wait_for_frame(deadline, predicate)
            .await
            .with_context(|| format!("{}: waiting for a frame ({:?})", self.name, self.stats()))
    }

    /// Wait up to `deadline` until `n` more frames have been decoded.
    pub async fn wait_for_new_frames(&self, n: u64, deadline: Duration) -> Result<()> {
        let mut state = self.video()?.state();
        let target = state.borrow().frames + n;
        match tokio::time::timeout(deadline, state.wait_for(|s| s.frames >= target)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("{}: the video receiver stopped", self.name),
            Err(_) => bail!(
                "{}: {n} new frames not decoded within {deadline:?} ({:?})",
                self.name,
                self.stats()
            ),
        }
    }

    /// The most recent `duration` of received audio, mono, 48 kHz.
    pub fn audio_window(&self, duration: Duration) -> Vec<f32> {
        self.audio
            .as_ref()
            .map(|a| a.window(duration))
            .unwrap_or_default()
    }

    /// Wait up to `deadline` for `duration` of audio received after this call, and return it.
    pub async fn next_audio(&self, duration: Duration, deadline: Duration) -> Result<Vec<f32>> {
        self.audio()?
            .next_window(duration, deadline)
            .await
            .with_context(|| format!("{}: waiting for audio ({:?})", self.name, self.stats()))
    }

    /// The received audio between `from` and `to` (counted from its first sample), once it
    /// has all arrived, within `deadline`.
    pub async fn audio_between(
        &self,
        from: Duration,
        to: Duration,
        deadline: Duration,
    ) -> Result<Vec<f32>> {
        self.audio()?
            .since_start(from, to, deadline)
            .await
            .with_context(|| format!("{}: waiting for audio ({:?})", self.name, self.stats()))
    }

    /// The offer it sent and the answer it got, as negotiated (SDP).
    pub async fn descriptions(&self) -> Result<(String, String)> {
        let local = self.pc.local_description().await.context("no offer")?;
        let remote = self.pc.remote_description().await.context("no answer")?;
        Ok((local.sdp, remote.sdp))
    }

    /// Paints its camera `colour` from the next frame on (as delta frames: no keyframe).
    pub fn set_colour(&self, colour: Rgb) -> Result<()> {
        self.sources
            .iter()
            .find_map(|s| s.set_colour(colour).ok())
            .with_context(|| format!("{} sends no picture", self.name))
    }

    /// Sets the volume of the tone it sends (0.3 as it joins; 0 is a silent microphone, Opus
    /// packets of silence as a browser sends them).
    pub fn set_tone_volume(&self, volume: f64) -> Result<()> {
        self.sources
            .iter()
            .find_map(|s| s.set_volume(volume).ok())
            .with_context(|| format!("{} sends no tone", self.name))
    }

    /// A snapshot of the audio receive state.
    pub fn audio_state(&self) -> AudioState {
        self.audio
            .as_ref()
            .map(|a| a.state().borrow().clone())
            .unwrap_or_default()
    }

    pub fn first_audio_at(&self) -> Option<Instant> {
        self.audio.as_ref()?.state().borrow().first_sample_at
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            video_packets_sent: load(&c.video_packets_sent),
            audio_packets_sent: load(&c.audio_packets_sent),
            send_errors: load(&c.send_errors),
            video_packets_received: load(&c.video_packets_received),
            video_bytes_received: load(&c.video_bytes_received),
            audio_packets_received: load(&c.audio_packets_received),
            plis_sent: load(&c.plis_sent),
            keyframe_requests_received: load(&c.keyframe_requests_received),
            keyframes_received: load(&c.keyframes_received),
            video_frames_received: load(&c.video_frames_received),
        }
    }

    /// Send the server a PLI for the video it sends us, as a test's own keyframe request.
    pub async fn send_pli(&self) -> Result<()> {
        let track = self.remote_video_track()?;
        send_pli(&*track, None, &self.counters).await
    }

    /// The video track the server sends us, once it arrived.
    fn remote_video_track(&self) -> Result<Arc<dyn TrackRemote>> {
        self.remote_video
            .lock()
            .expect("the remote video slot lock is never poisoned")
            .clone()
            .with_context(|| format!("{}: no video track from the server yet", self.name))
    }

    /// Tell the server our downlink can take `bps` bit/s (an RTCP REMB), as a browser's
    /// congestion controller does.
    pub async fn send_remb(&self, bps: u64) -> Result<()> {
        let track = self.remote_video_track()?;
        let media_ssrc = *track
            .ssrcs()
            .await
            .first()
            .context("the remote video track has no SSRC")?;
        let remb = rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 0,
            bitrate: bps as f32,
            ssrcs: vec![media_ssrc],
        };
        track
            .write_rtcp(vec![Box::new(remb)])
            .await
            .context("sending a REMB")
    }

    /// Leave politely: `DELETE` the session (which must answer 2xx), then close the connection.
    pub async fn leave(mut self) -> Result<()> {
        let token = self.token.clone();
        let response = http::send(
            reqwest::Method::DELETE,
            &self.session_url,
            token.as_deref(),
            None,
        )
        .await?;
        self.close().await;
        anyhow::ensure!(
            response.is_success(),
            "{}: DELETE {} answered HTTP {}: {}",
            self.name,
            self.session_url,
            response.status,
            response.body
        );
        Ok(())
    }

    /// Stops every media task (what it sends and what it reads) but keeps the connection up:
    /// a sender whose camera froze.
    pub fn stop_media(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
    }

    /// Vanish without a `DELETE`: close the connection (DTLS close_notify, then silence), as a
    /// closed browser tab would.
    pub async fn disconnect(mut self) {
        self.close().await;
    }

    async fn close(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
        // Errors only mean it is already closed.
        let _ = self.pc.close().await;
        self.closed = true;
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
        if !self.closed
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Drop cannot await, and a connection left open keeps its driver task running.
            // close() is bounded (~100 ms), and the task dies with the test's runtime anyway,
            // so this is the one detached task here.
            let pc = Arc::clone(&self.pc);
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
        // The pipelines (sources, receivers) go to Null as their fields drop.
    }
}
