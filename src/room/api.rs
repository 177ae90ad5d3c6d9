//! What the room answers, as the HTTP edge and the event streams see it: the results and errors
//! of each request, and the room's state (serialised as JSON, one type per shape).

use serde::Serialize;

use super::events::TileInfo;
use super::layout::LayoutSpec;
use crate::auth::{Caller, Denied};
use crate::media::MixerStats;
use crate::types::{
    ConnectionState, OutputKey, RecordingFormat, Rect, SessionId, SessionKind, SessionSecret, Tier,
};

/// What a join asks for.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// WHEP (a viewer) rather than WHIP.
    pub whep: bool,
    /// The SDP offer.
    pub offer: String,
    /// `?name=` (a token's name wins).
    pub name: Option<String>,
    /// `?quality=`.
    pub quality: Option<Tier>,
    /// `?source=screen`: a screen share (a sendonly offer with video).
    pub screen: bool,
    /// `?owner=`: the public id of the session sharing its screen (open servers; with tokens
    /// the token's identity ties them).
    pub owner: Option<SessionId>,
    /// Who asks: what kinds of session it may make, and whose the session is.
    pub caller: Caller,
    /// Its places under the admission limits, held as long as it lives.
    pub slots: crate::admission::SessionSlots,
}

/// Why a join was refused.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The offer is malformed or asks for something this endpoint does not serve.
    #[error("{0}")]
    BadOffer(String),
    /// No offered codec can be decoded (or, for receivers, encoded).
    #[error("{0}")]
    UnsupportedCodec(String),
    /// The room has as many sending sessions as it may.
    #[error("the room is full: it holds at most {0} participants")]
    RoomFull(usize),
    /// The caller's token does not allow the kind of session the offer makes.
    #[error("{0}")]
    Forbidden(Denied),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The server drains before it stops: it starts no new room.
    #[error(
        "the server is draining before it stops: it starts no new room (the rooms it runs \
         still take joins); try again later or elsewhere"
    )]
    Draining,
    /// A limit of the server or of the caller's address (admission control).
    #[error("{0}")]
    Refused(crate::admission::Refusal),
    /// Something failed on our side.
    #[error("{0}")]
    Internal(String),
}

/// Why a trickle `PATCH` was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrickleError {
    /// No such session (or room).
    #[error("no such session")]
    UnknownSession,
    /// `If-Match` names another ICE session than the current one (RFC 9725: 412).
    #[error("If-Match does not match the session's ETag {0}")]
    EtagMismatch(String),
    /// New ICE credentials or `If-Match: *`: an ICE restart, which this server does not do
    /// (RFC 9725: 422 when only one of trickle and restart is supported).
    #[error("ICE restarts are not supported; end this session and join again")]
    RestartUnsupported,
    /// The caller may not act on this session.
    #[error("{0}")]
    Denied(Denied),
}

/// Why a request about a session (leave, mute) was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session (or room).
    #[error("no such session")]
    Unknown,
    /// The caller may not act on it.
    #[error("{0}")]
    Denied(Denied),
}

/// Why a recording could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// No such room (a room exists while someone is in it) or recording.
    #[error("{0}")]
    NotFound(String),
    /// The room cannot encode the format's video codec here.
    #[error("{0}")]
    Unsupported(String),
    /// The file could not be created or written.
    #[error("{0}")]
    Storage(String),
}

/// Where a recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Writing.
    Recording,
    /// Ended cleanly: the file is complete.
    Stopped,
    /// Ended by an error (`error` says which); the file holds what was written before.
    Failed,
}

/// A recording as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RecordingInfo {
    /// Its id (the last segment of its URL).
    pub id: String,
    /// The room recorded.
    pub room: String,
    /// WebM or MP4.
    pub format: RecordingFormat,
    /// Where it stands.
    pub state: RecordingState,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When it started, in seconds since the Unix epoch.
    pub started_at: f64,
    /// How long it recorded (so far), in seconds.
    pub duration_secs: f64,
    /// The file's size now.
    pub bytes: u64,
    /// Where to download it.
    pub file: String,
}

/// The answer to a successful join.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    /// The new session.
    pub session: SessionId,
    /// The secret of its URL.
    pub secret: SessionSecret,
    /// The SDP answer, candidates included.
    pub sdp: String,
    /// What the session is.
    pub kind: SessionKind,
    /// The entity tag of its ICE session (RFC 9725 §4.3.1), quoted.
    pub etag: String,
}

/// A session as `GET /rooms/{room}` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SessionInfo {
    /// The session's public id (its URL has a secret of its own; administrators kick and
    /// mute by this id).
    pub id: String,
    /// Participant, contributor or viewer.
    pub kind: SessionKind,
    /// The display name given at join (`?name=`), if any.
    pub name: Option<String>,
    /// The peer connection's state.
    pub state: ConnectionState,
    /// Its tile on the canvas, if the layout shows its video.
    pub tile: Option<Rect>,
    /// A screen share (`?source=screen`) rather than a camera.
    pub screen: bool,
    /// Pinned (`PUT .../pin`): the layouts' `pinned` selector picks it.
    pub pinned: bool,
    /// It said its microphone is off (it sends no audio).
    #[serde(default)]
    pub audio_muted: bool,
    /// It said its camera is off: its tile shows a placeholder.
    #[serde(default)]
    pub video_muted: bool,
    /// It is speaking: its voice is in the mix, and it hears a mix of its own (every speaker
    /// but itself) once moved there.
    #[serde(default)]
    pub speaking: bool,
    /// The video output it receives (codec and tier), if it receives video.
    #[serde(default)]
    pub output: Option<OutputKey>,
    /// Packets it sent that were dropped before the mix (its inputs were full, or a stream
    /// the offer declared no SSRC for queued too long).
    #[serde(default)]
    pub dropped_packets: u64,
    /// Packets of its microphone held back as near-silence while it did not speak (never
    /// decoded or mixed).
    #[serde(default)]
    pub held_packets: u64,
    /// Packets of its microphone whose level it stated itself (RFC 6464 header extension), so
    /// the server decoded none of them to know whether it speaks.
    #[serde(default)]
    pub stated_levels: u64,
    /// What its video sender is told it may send (REMB, in bit/s): its tile's bitrate.
    #[serde(default)]
    pub uplink_limit_bps: Option<u64>,
    /// Packets of the mix it receives that its sending tasks skipped, having fallen behind.
    #[serde(default)]
    pub lagged_packets: u64,
}

/// The canvas of a room's mix.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// A room as `GET /rooms/{room}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RoomInfo {
    /// The room's name.
    pub name: String,
    /// The mix's canvas.
    pub canvas: Canvas,
    /// Sessions that send media (participants and contributors), in join order.
    pub participants: Vec<SessionInfo>,
    /// Sessions that only receive.
    pub viewers: Vec<SessionInfo>,
    /// Who has the floor (a session id), if anyone spoke yet.
    pub active_speaker: Option<String>,
    /// Encoders and inputs running in the room's pipeline.
    pub mixer: MixerStats,
}

/// A room's layout as `GET /rooms/{room}/layout` shows it (and a dry run answers): the layout,
/// who has the floor, and the tiles it gives for the room's sessions now.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutView {
    /// The layout (as given, with every default filled in).
    pub layout: LayoutSpec,
    /// Who has the floor.
    pub active_speaker: Option<String>,
    /// The canvas.
    pub canvas: Canvas,
    /// The tiles, region by region (sessions in no tile are not shown, still heard).
    pub tiles: Vec<TileInfo>,
}

/// Whether `name` is a valid room name: 1-64 of `[A-Za-z0-9_-]`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
