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

impl MediaKind {
    /// `audio` or `video`.
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    /// Its name in lower case (metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            SessionKind::Participant => "participant",
            SessionKind::Contributor => "contributor",
            SessionKind::Viewer => "viewer",
        }
    }

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

/// How a picture fills its tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Whole, letterboxed on the background.
    #[default]
    Contain,
    /// Filling the tile, cropped to its shape.
    Cover,
}

/// Where one session's video goes on the canvas: the room decides (its layout), the mixer
/// places the compositor pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Whose video.
    pub session: SessionId,
    /// The tile.
    pub rect: Rect,
    /// Stacking order: higher is drawn above lower.
    pub z: u32,
    /// How the picture fills the tile.
    pub fit: Fit,
    /// Whether a picture smaller than its tile is scaled up (a screen share is not: text
    /// scaled up is blurry, so it is shown at its own size, centred).
    pub upscale: bool,
}

/// One audio packet's level, as an input reports it to its room: -dBov as RFC 6464 has it (0
/// the loudest, 127 silence) and how much audio the packet carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// -dBov.
    pub dbov: u8,
    /// Its duration in ms.
    pub ms: u16,
}

/// A name drawn on a tile's picture (server-rendered, once per frame of that picture for every
/// receiver), along its bottom-left edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Whose picture.
    pub session: SessionId,
    /// What it says.
    pub text: String,
}

/// The border drawn around the active speaker's tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Highlight {
    /// The tile (the border is drawn above every region).
    pub rect: Rect,
    /// The border's width in pixels.
    pub thickness: i32,
}

/// What the room's layout draws besides the videos.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decorations {
    /// Names on tiles (empty with labels off).
    pub labels: Vec<Label>,
    /// The active speaker's border (none with the highlight off, or without a shown speaker).
    pub highlight: Option<Highlight>,
    /// The canvas colour, 0xRRGGBB.
    pub background: u32,
}

/// Pixels cut from each edge of a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Crop {
    /// From the left.
    pub left: i32,
    /// From the right.
    pub right: i32,
    /// From the top.
    pub top: i32,
    /// From the bottom.
    pub bottom: i32,
}

/// How one picture is drawn: where its compositor pad goes, what is cut off it first, and
/// whether the compositor should letterbox it (when its size is not known yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// The pad's rectangle.
    pub rect: Rect,
    /// What to crop off the decoded picture.
    pub crop: Crop,
    /// Let the compositor keep the aspect ratio inside `rect`.
    pub keep_aspect: bool,
}

impl Framed {
    /// The height of a label's text on the canvas for this picture, in pixels: a twelfth of the
    /// picture's height, readable on a phone in a thumbnail and not shouting in a large tile.
    pub fn label_px(&self) -> i32 {
        (self.rect.height / 12).clamp(12, 28)
    }
}

impl Placement {
    /// How a picture of `source` (width, height; `None` before its first frame) is drawn.
    /// Contain: scaled to fit, centred (never scaled up unless `upscale`). Cover: cropped to
    /// the tile's shape, then scaled to fill it.
    pub fn frame(&self, source: Option<(u32, u32)>) -> Framed {
        let cell = self.rect;
        let whole = Framed {
            rect: cell,
            crop: Crop::default(),
            keep_aspect: true,
        };
        let Some((w, h)) = source.filter(|(w, h)| *w > 0 && *h > 0) else {
            return whole;
        };
        let (w, h) = (i64::from(w), i64::from(h));
        let (cw, ch) = (i64::from(cell.width.max(2)), i64::from(cell.height.max(2)));
        let even = |v: i64| (v & !1) as i32;
        match self.fit {
            Fit::Contain => {
                // The scale is min(cw / w, ch / h) (and at most 1 without upscale), kept as a
                // fraction so the edges are exact.
                let (mut num, mut den) = if cw * h <= ch * w { (cw, w) } else { (ch, h) };
                if !self.upscale && num > den {
                    (num, den) = (1, 1);
                }
                let fw = even(w * num / den).max(2);
                let fh = even(h * num / den).max(2);
                Framed {
                    rect: Rect {
                        x: cell.x + even((cw - i64::from(fw)) / 2),
                        y: cell.y + even((ch - i64::from(fh)) / 2),
                        width: fw,
                        height: fh,
                    },
                    crop: Crop::default(),
                    keep_aspect: false,
                }
            }
            Fit::Cover => {
                let mut crop = Crop::default();
                if w * ch > h * cw {
                    // Wider than the tile: cut the sides.
                    let cut = even(w - h * cw / ch);
                    crop.left = even(i64::from(cut) / 2);
                    crop.right = cut - crop.left;
                } else {
                    let cut = even(h - w * ch / cw);
                    crop.top = even(i64::from(cut) / 2);
                    crop.bottom = cut - crop.top;
                }
                Framed {
                    rect: cell,
                    crop,
                    keep_aspect: false,
                }
            }
        }
    }
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

    #[test]
    fn pictures_are_contained_covered_and_screens_never_scaled_up() {
        let rect = |x, y, width, height| Rect {
            x,
            y,
            width,
            height,
        };
        let place = |fit, upscale| Placement {
            session: SessionId(1),
            rect: rect(0, 0, 960, 720),
            z: 0,
            fit,
            upscale,
        };
        // Before the first frame the compositor letterboxes.
        assert!(place(Fit::Contain, true).frame(None).keep_aspect);
        // A 16:9 camera in a 4:3 tile: full width, bars above and below.
        let f = place(Fit::Contain, true).frame(Some((640, 360)));
        assert_eq!(f.rect, rect(0, 90, 960, 540));
        // Cover: the sides are cut to 4:3, the tile is filled.
        let f = place(Fit::Cover, true).frame(Some((640, 360)));
        assert_eq!(
            (f.rect, f.crop.left, f.crop.right),
            (rect(0, 0, 960, 720), 80, 80)
        );
        // A small screen stays at its own size, centred; a large one is scaled down.
        let f = place(Fit::Contain, false).frame(Some((800, 600)));
        assert_eq!(f.rect, rect(80, 60, 800, 600));
        let f = place(Fit::Contain, false).frame(Some((1920, 1080)));
        assert_eq!(f.rect, rect(0, 90, 960, 540));
    }
}
