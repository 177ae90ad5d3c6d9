//! A stand-in for tessera that sends every participant its own media back: just enough WHIP
//! (POST an offer, get `201` + `Location` + answer; `DELETE` the session) to check
//! [`TestClient`](super::client::TestClient) end to end without the real server.
//!
//! Each session is a webrtc-rs answerer built like the client's peer (loopback only, the same
//! codecs and interceptors). Its per-track tasks copy the client's RTP onto the outgoing tracks
//! and pass PLIs the other way, so a keyframe request from the client's decoder reaches the
//! client's own encoder. To make that path matter, the first 0.3 s of video are not reflected:
//! the client's decoder starts mid-GOP and has to ask for a keyframe.
//!
//! HTTP is hand-rolled (one request per connection, `Connection: close`): a test double needs
//! nothing more, and it keeps the double independent of the server's HTTP stack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState};

use super::client::{
    build_peer_connection, is_keyframe_request, local_track, opus_codec, set_local_and_gather,
    vp8_codec,
};

/// Video not reflected at the start of each session, in RTP time (90 kHz): 0.3 s.
const VIDEO_HOLDBACK: u32 = 90_000 * 3 / 10;
/// Deadline for reading one HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body accepted (an SDP offer is a few kB).
const MAX_REQUEST: usize = 1 << 20;

/// A running reflector. Dropping it stops accepting, aborts every session's tasks and closes
/// the sessions' peer connections.
pub struct Reflector {
    base_url: String,
    /// The accept loop and each connection's handler.
    tasks: JoinSet<()>,
    sessions: Arc<Sessions>,
}

/// Live sessions by id. A std Mutex around a tiny map; never held across an await.
#[derive(Default)]
struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    next_id: AtomicU64,
}

struct Session {
    pc: Arc<dyn PeerConnection>,
    /// The session's forwarding tasks (filled by its handler); aborted when the session ends.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Session {
    fn close(self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Called from drop paths that cannot await; close() is bounded and the runtime
            // ends with the test.
            runtime.spawn(async move {
                let _ = self.pc.close().await;
            });
        }
    }
}

impl Reflector {
    pub async fn start() -> Result<Reflector> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the reflector")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let sessions = Arc::new(Sessions::default());
        let mut tasks = JoinSet::new();
        let accepting = Arc::clone(&sessions);
        tasks.spawn(async move {
            // Connection handlers live in this inner set, so they die with the accept loop.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { break };
                        connections.spawn(serve(stream, Arc::clone(&accepting)));
                    }
                    // Reap finished handlers so the set does not grow without bound.
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Reflector {
            base_url,
            tasks,
            sessions,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn session_count(&self) -> usize {
        self.sessions.map.lock().map_or(0, |m| m.len())
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.tasks.abort_all();
        if let Ok(mut map) = self.sessions.map.lock() {
            for (_, session) in map.drain() {
                session.close();
            }
        }
    }
}

/// Serve one HTTP request on `stream`.
async fn serve(mut stream: TcpStream, sessions: Arc<Sessions>) {
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok((method, path, body))) => route(&method, &path, body, &sessions).await,
        Ok(Err(e)) => reply(400, &[], &format!("{e:#}")),
        Err(_) => return,
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn route(method: &str, target: &str, body: String, sessions: &Sessions) -> String {
    let path = target.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["rooms", room, "whip"]) => match answer(body, sessions).await {
            Ok((id, sdp)) => reply(
                201,
                &[
                    ("Location", &format!("/rooms/{room}/sessions/{id}")),
                    ("Content-Type", "application/sdp"),
                ],
                &sdp,
            ),
            Err(e) => reply(400, &[], &format!("{e:#}")),
        },
        ("DELETE", ["rooms", _, "sessions", id]) => {
            let removed = sessions.map.lock().ok().and_then(|mut m| m.remove(*id));
            match removed {
                Some(session) => {
                    session.close();
                    reply(204, &[], "")
                }
                None => reply(404, &[], "no such session"),
            }
        }
        _ => reply(404, &[], "not found"),
    }
}

/// Answer a WHIP offer with a reflecting peer; returns the session id and the answer SDP.
async fn answer(offer: String, sessions: &Sessions) -> Result<(String, String)> {
    let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::default());
    let video_out = Arc::new(local_track(
        "reflector",
        RtpCodecKind::Video,
        vp8_codec().rtp_codec,
    ));
    let audio_out = Arc::new(local_track(
        "reflector",
        RtpCodecKind::Audio,
        opus_codec().rtp_codec,
    ));
    let tasks = Arc::new(Mutex::new(JoinSet::new()));
    let handler = Arc::new(ReflectHandler {
        gathering: gathering_tx,
        video_out: Arc::clone(&video_out),
        audio_out: Arc::clone(&audio_out),
        tasks: Arc::clone(&tasks),
    });
    let pc = build_peer_connection(handler).await?;
    let session = Session {
        pc: Arc::clone(&pc),
        tasks,
    };
    let result = async {
        pc.set_remote_description(RTCSessionDescription::offer(offer)?)
            .await
            .context("applying the offer")?;
        pc.add_track(Arc::clone(&video_out) as Arc<dyn TrackLocal>)
            .await?;
        pc.add_track(Arc::clone(&audio_out) as Arc<dyn TrackLocal>)
            .await?;
        let answer = pc
            .create_answer(None)
            .await
            .context("creating the answer")?;
        set_local_and_gather(&*pc, answer, &mut gathering).await
    }
    .await;
    match result {
        Ok(sdp) => {
            let id = sessions.next_id.fetch_add(1, Ordering::Relaxed).to_string();
            sessions
                .map
                .lock()
                .map_err(|_| anyhow::anyhow!("session map poisoned"))?
                .insert(id.clone(), session);
            Ok((id, sdp))
        }
        Err(e) => {
            session.close();
            Err(e)
        }
    }
}

struct ReflectHandler {
    gathering: watch::Sender<RTCIceGatheringState>,
    video_out: Arc<TrackLocalStaticRTP>,
    audio_out: Arc<TrackLocalStaticRTP>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ReflectHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = track.kind().await;
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        match kind {
            RtpCodecKind::Video => {
                tasks.spawn(reflect(
                    Arc::clone(&track),
                    Arc::clone(&self.video_out),
                    true,
                ));
                tasks.spawn(pass_keyframe_requests(Arc::clone(&self.video_out), track));
            }
            RtpCodecKind::Audio => {
                tasks.spawn(reflect(track, Arc::clone(&self.audio_out), false));
            }
            _ => {}
        }
    }
}

/// Copy the client's RTP onto our outgoing track (our SSRC; the payload type is the same
/// codec's on both sides). Video is held back for the first [`VIDEO_HOLDBACK`].
async fn reflect(input: Arc<dyn TrackRemote>, output: Arc<TrackLocalStaticRTP>, holdback: bool) {
    let Some(ssrc) = output.ssrcs().await.first().copied() else {
        return;
    };
    let mut first_timestamp = None;
    while let Some(event) = input.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(mut packet) => {
                let first = *first_timestamp.get_or_insert(packet.header.timestamp);
                if holdback && packet.header.timestamp.wrapping_sub(first) < VIDEO_HOLDBACK {
                    continue;
                }
                packet.header.ssrc = ssrc;
                // Not yet bound, or closing: this packet is lost, like on a real network.
                let _ = output.write_rtp(packet).await;
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// A PLI/FIR the client sends about our video becomes a PLI about the client's video.
async fn pass_keyframe_requests(output: Arc<TrackLocalStaticRTP>, input: Arc<dyn TrackRemote>) {
    while let Some(event) = output.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = event
            && packets.iter().any(|p| is_keyframe_request(p.as_ref()))
            && let Some(media_ssrc) = input.ssrcs().await.first().copied()
        {
            let _ = input
                .write_rtcp(vec![Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                })])
                .await;
        }
    }
}

/// Read one request: method, target, body (by Content-Length).
async fn read_request(stream: &mut TcpStream) -> Result<(String, String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-request");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST {
            bail!("request headers too large");
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default().to_owned();
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if content_length > MAX_REQUEST {
        bail!("body too large");
    }
    let mut body = buf[header_end..].to_vec();
    while body.len() < content_length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-body");
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(content_length);
    Ok((
        method,
        target,
        String::from_utf8(body).context("body is not UTF-8")?,
    ))
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let reason = match status {
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let mut response = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    response
}
