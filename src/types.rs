//! The crate's own small vocabulary, shared by `room`, `peer` and `media` so that those two
//! never need to import each other (or each other's foreign crates).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies one session (a WHIP or WHEP resource) for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl SessionId {
    /// A fresh random id. Public: the room's state and events name sessions by it. The secret
    /// that makes a session's URL is a [`SessionSecret`].
    pub fn random() -> SessionId {
        SessionId(rand::random::<u64>() >> 11) // 53 bits: exact in JSON numbers too
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// The secret part of a session's URL (`/rooms/{room}/sessions/{secret}`): 128 random bits.
/// Holding it is holding the session (RFC 9725's session URL); it is never published.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionSecret(u128);

impl SessionSecret {
    /// A fresh secret.
    pub fn random() -> SessionSecret {
        SessionSecret(rand::random())
    }

    /// Reads the 32 hex digits of a URL.
    pub fn parse(s: &str) -> Option<SessionSecret> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u128::from_str_radix(s, 16).ok().map(SessionSecret))
            .flatten()
    }
}

impl fmt::Display for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for SessionSecret {
    // Logs name sessions by their public id; a secret in a log would hand the session over.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

/// How a request names a session: by its URL's secret (the owner's way) or by its public id
/// (an administrator's way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRef {
    /// The last segment of the session URL.
    Secret(SessionSecret),
    /// The `id` of `GET /rooms/{room}`.
    Public(SessionId),
}

impl SessionRef {
    /// A path segment: 32 hex digits are a secret, up to 16 a public id.
    pub fn parse(segment: &str) -> Option<SessionRef> {
        if let Some(secret) = SessionSecret::parse(segment) {
            return Some(SessionRef::Secret(secret));
        }
        (!segment.is_empty() && segment.len() <= 16)
            .then(|| u64::from_str_radix(segment, 16).ok())
            .flatten()
            .map(|id| SessionRef::Public(SessionId(id)))
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        })
    }
}

/// What a session does in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Sends media and receives the mix (a WHIP `sendrecv` offer).
    Participant,
    /// Sends media, receives nothing (a WHIP `sendonly` offer: a camera, OBS).
    Contributor,
    /// Receives the mix, sends nothing (a WHEP `recvonly` offer: a kiosk, a recorder).
    Viewer,
}

impl SessionKind {
    /// Whether the session contributes media to the mix.
    pub fn sends(self) -> bool {
        matches!(self, SessionKind::Participant | SessionKind::Contributor)
    }
    /// Whether the session receives the mix.
    pub fn receives(self) -> bool {
        matches!(self, SessionKind::Participant | SessionKind::Viewer)
    }
}

/// The codec of an incoming RTP stream, as negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputCodec {
    /// Audio or video.
    pub kind: MediaKind,
    /// MIME type, e.g. `video/VP8`.
    pub mime_type: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// The id of the RFC 6464 audio level header extension in its packets, when negotiated:
    /// the sender states each packet's level, so nothing needs decoding to know it.
    pub level_extension: Option<u8>,
}

/// Where a receiving task delivers RTP packets (marshalled, one packet per call).
///
/// Implemented by the media side (an appsrc); called by the peer side from its per-track task.
/// It must never block: a full input drops the oldest data and counts it.
pub trait RtpSink: Send + Sync {
    /// Hands over one RTP packet.
    fn push(&self, packet: Bytes);
}

/// A rectangle on the canvas, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub width: i32,
    /// Height.
    pub height: i32,
}

/// The state of a session's peer connection, as the room sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// Answered, ICE/DTLS not up yet.
    Connecting,
    /// Media can flow.
    Connected,
    /// Lost contact; may recover.
    Disconnected,
    /// ICE or DTLS failed: the session is over.
    Failed,
    /// Closed by either side: the session is over.
    Closed,
}

impl ConnectionState {
    /// Whether the session is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, ConnectionState::Failed | ConnectionState::Closed)
    }
}

/// A codec the room encodes its mixed video in.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// VP8: every browser; the default.
    #[default]
    Vp8,
    /// H.264 constrained baseline (packetization-mode 1, profile-level-id 42e01f): what kiosks
    /// and set-top boxes decode in hardware.
    H264,
}

impl VideoCodec {
    /// Every codec, in the server's own order of preference.
    pub const ALL: [VideoCodec; 2] = [VideoCodec::Vp8, VideoCodec::H264];

    /// The codec an SDP `rtpmap` names this way, if it is one of ours.
    pub fn from_sdp_name(name: &str) -> Option<VideoCodec> {
        if name.eq_ignore_ascii_case("VP8") {
            Some(VideoCodec::Vp8)
        } else if name.eq_ignore_ascii_case("H264") {
            Some(VideoCodec::H264)
        } else {
            None
        }
    }

    /// Lower-case name, as in file names (`video-output-h264.pipeline`).
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "vp8",
            VideoCodec::H264 => "h264",
        }
    }
}

/// A rung of the room's encoding ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The full canvas at the full bitrate (default 1280x720, 2 Mbit/s).
    High,
    /// Half the canvas at a low bitrate (default 640x360, 600 kbit/s).
    Low,
}

impl Tier {
    /// Both tiers, best first.
    pub const ALL: [Tier; 2] = [Tier::High, Tier::Low];

    /// `high` or `low`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::High => "high",
            Tier::Low => "low",
        }
    }
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Tier, String> {
        match s {
            "high" => Ok(Tier::High),
            "low" => Ok(Tier::Low),
            other => Err(format!("quality must be high or low, not {other:?}")),
        }
    }
}

/// One encoded video output of a room: a codec at a tier. Each is encoded at most once per
/// room, and only while someone receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutputKey {
    /// The codec.
    pub codec: VideoCodec,
    /// The tier.
    pub tier: Tier,
}

impl fmt::Display for OutputKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.codec.name(), self.tier.name())
    }
}

/// The container of a recording.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingFormat {
    /// WebM: VP8 + Opus.
    #[default]
    Webm,
    /// Fragmented MP4: H.264 + Opus.
    Mp4,
}

impl RecordingFormat {
    /// The video output the recording takes (always the high tier).
    pub fn output(self) -> OutputKey {
        OutputKey {
            codec: match self {
                RecordingFormat::Webm => VideoCodec::Vp8,
                RecordingFormat::Mp4 => VideoCodec::H264,
            },
            tier: Tier::High,
        }
    }

    /// `webm` or `mp4`: the file extension and the pipeline description's suffix.
    pub fn name(self) -> &'static str {
        match self {
            RecordingFormat::Webm => "webm",
            RecordingFormat::Mp4 => "mp4",
        }
    }

    /// The file's media type.
    pub fn content_type(self) -> &'static str {
        match self {
            RecordingFormat::Webm => "video/webm",
            RecordingFormat::Mp4 => "video/mp4",
        }
    }
}

impl std::str::FromStr for RecordingFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<RecordingFormat, String> {
        match s {
            "webm" => Ok(RecordingFormat::Webm),
            "mp4" => Ok(RecordingFormat::Mp4),
            other => Err(format!("the format must be webm or mp4, not {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_segment_names_a_session_by_its_secret_or_its_public_id() {
        let secret = SessionSecret::random();
        let text = secret.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(
            SessionRef::parse(&text),
            Some(SessionRef::Secret(secret)),
            "a secret reads back"
        );
        assert_eq!(
            SessionRef::parse("1f"),
            Some(SessionRef::Public(SessionId(0x1f)))
        );
        let id = SessionId::random();
        assert_eq!(
            SessionRef::parse(&id.to_string()),
            Some(SessionRef::Public(id))
        );
        for bad in [
            "",
            "xyz",
            "0123456789abcdef0",
            &"g".repeat(32),
            &"0".repeat(33),
        ] {
            assert_eq!(SessionRef::parse(bad), None, "{bad:?}");
        }
        assert!(
            !format!("{secret:?}").contains(&text),
            "Debug hides the secret"
        );
    }
}
