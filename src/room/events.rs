//! Room events: what a room tells the browsers watching it (`GET /rooms/{room}/events`, sent as
//! Server-Sent Events). Typed JSON, one `type` tag per message; the README lists them.
//!
//! Room actors publish on one process-wide [`EventBus`] (a tokio broadcast channel: a slow
//! reader lags and is sent a fresh snapshot, nobody waits). A stream always starts with a
//! `snapshot`, so a page that reconnects after a server restart starts from the truth.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{Canvas, RecordingInfo, SessionInfo};
use crate::types::{ConnectionState, Rect};

/// Events the bus holds for its slowest reader before that reader lags (and resyncs).
const BUS_BACKLOG: usize = 1024;

/// Why a session left its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It sent `DELETE` on its session URL.
    Left,
    /// Its peer closed the connection (DTLS close).
    Closed,
    /// ICE or DTLS failed: it vanished without saying goodbye.
    Failed,
    /// The server could not use its media.
    Dropped,
}

impl LeaveReason {
    /// A few words for the log.
    pub fn describe(self) -> &'static str {
        match self {
            LeaveReason::Left => "left (DELETE)",
            LeaveReason::Closed => "closed by the peer",
            LeaveReason::Failed => "failed (ICE/DTLS)",
            LeaveReason::Dropped => "dropped: its media cannot be decoded",
        }
    }
}

/// A tile of the layout and whose it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileInfo {
    /// The session shown there.
    pub id: String,
    /// Where on the canvas.
    pub rect: Rect,
}

/// One message of a room's event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEvent {
    /// The whole state; the first message of every stream and after the reader fell behind.
    /// `live` is false when no room of that name runs (yet).
    Snapshot {
        /// The room's name.
        room: String,
        /// Whether the room exists now.
        live: bool,
        /// Participants and contributors, in join (tile) order.
        participants: Vec<SessionInfo>,
        /// How many viewers watch.
        viewers: usize,
    },
    /// Someone who sends media joined (their peer connection may still be connecting).
    ParticipantJoined {
        /// Who.
        participant: SessionInfo,
    },
    /// A participant's state changed: connection state, mute flags or tile.
    ParticipantUpdated {
        /// Who, as they are now.
        participant: SessionInfo,
    },
    /// A participant left.
    ParticipantLeft {
        /// Their session id.
        id: String,
        /// Their display name.
        name: Option<String>,
        /// Why.
        reason: LeaveReason,
    },
    /// The number of viewers changed.
    ViewersChanged {
        /// How many watch now.
        viewers: usize,
    },
    /// The tiles moved (someone with video joined or left).
    LayoutChanged {
        /// The canvas the tiles are on.
        canvas: Canvas,
        /// The tiles, in join order.
        tiles: Vec<TileInfo>,
    },
    /// A session's connection is in trouble (disconnected: may recover; failed: it is gone).
    ConnectionProblem {
        /// The session.
        id: String,
        /// Its display name.
        name: Option<String>,
        /// The state it reached.
        state: ConnectionState,
    },
    /// A recording of the room started.
    RecordingStarted {
        /// It.
        recording: RecordingInfo,
    },
    /// A recording ended cleanly (stopped, or its room ended); its file is complete.
    RecordingStopped {
        /// It, as it ended.
        recording: RecordingInfo,
    },
    /// A recording failed (disk full, unwritable directory); the room goes on without it.
    RecordingFailed {
        /// It, with its `error`.
        recording: RecordingInfo,
    },
    /// The room ended (empty for its linger time, or the server is stopping).
    RoomEnded,
}

/// An event and the room it happened in.
#[derive(Debug, Clone)]
pub struct Published {
    /// The room's name.
    pub room: Arc<str>,
    /// What happened.
    pub event: RoomEvent,
}

/// The process-wide event bus. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Published>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(BUS_BACKLOG).0,
        }
    }
}

impl EventBus {
    /// Publishes an event; nobody listening is fine.
    pub fn publish(&self, room: &Arc<str>, event: RoomEvent) {
        let _ = self.tx.send(Published {
            room: room.clone(),
            event,
        });
    }

    /// A receiver of every event from now on, of every room (readers filter).
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SessionKind;

    #[test]
    fn events_are_tagged_snake_case_json_and_round_trip() {
        let joined = RoomEvent::ParticipantJoined {
            participant: SessionInfo {
                id: "1f".into(),
                kind: SessionKind::Participant,
                name: Some("Ann".into()),
                state: ConnectionState::Connecting,
                tile: None,
                audio_muted: false,
                video_muted: true,
                output: None,
            },
        };
        let text = serde_json::to_string(&joined).unwrap();
        assert!(
            text.starts_with(r#"{"type":"participant_joined","participant":{"id":"1f""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<RoomEvent>(&text).unwrap(), joined);
        let left = RoomEvent::ParticipantLeft {
            id: "1f".into(),
            name: None,
            reason: LeaveReason::Failed,
        };
        let text = serde_json::to_string(&left).unwrap();
        assert_eq!(
            text,
            r#"{"type":"participant_left","id":"1f","name":null,"reason":"failed"}"#
        );
        assert_eq!(
            serde_json::to_string(&RoomEvent::RoomEnded).unwrap(),
            r#"{"type":"room_ended"}"#
        );
    }
}
