//! Room events: what a room tells the browsers watching it (`GET /rooms/{room}/events`, sent as
//! Server-Sent Events). Typed JSON, one `type` tag per message; the README lists them.
//!
//! Each room name has its own channel ([`EventChannels`]): the room publishes into it, and an
//! event stream subscribes to its room's alone, so a busy room never makes the readers of a
//! quiet one fall behind. The channel is a tokio broadcast: a reader that falls behind is told
//! so and sent a fresh snapshot (state re-read; nothing is lost that matters), and nobody
//! waits. A stream always starts with a `snapshot`, so a page that reconnects after a server
//! restart starts from the truth. Channels are keyed by name, not by room instance, so a stream
//! lives across a room's end and restart.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{Canvas, RecordingInfo, SessionInfo};
use crate::types::{ConnectionState, Fit, Rect};

/// Events a room's channel holds for its slowest reader before that reader lags (and resyncs).
const BACKLOG: usize = 1024;

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
    /// An administrator removed it (`DELETE` of its public id).
    Kicked,
    /// An administrator ended the room (`DELETE /rooms/{room}`).
    RoomEnded,
    /// The server stopped (a drain that timed out, or a second signal).
    Shutdown,
}

impl LeaveReason {
    /// Its name as the events write it (metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Closed => "closed",
            LeaveReason::Failed => "failed",
            LeaveReason::Dropped => "dropped",
            LeaveReason::Kicked => "kicked",
            LeaveReason::RoomEnded => "room_ended",
            LeaveReason::Shutdown => "shutdown",
        }
    }

    /// A few words for the log.
    pub fn describe(self) -> &'static str {
        match self {
            LeaveReason::Left => "left (DELETE)",
            LeaveReason::Closed => "closed by the peer",
            LeaveReason::Failed => "failed (ICE/DTLS)",
            LeaveReason::Dropped => "dropped: its media cannot be decoded",
            LeaveReason::Kicked => "removed by an administrator",
            LeaveReason::RoomEnded => "the room was ended by an administrator",
            LeaveReason::Shutdown => "the server shut down",
        }
    }
}

/// A tile of the layout and whose it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileInfo {
    /// The session shown there.
    pub id: String,
    /// The layout's region it is in.
    pub region: String,
    /// Where on the canvas.
    pub rect: Rect,
    /// Its stacking order (higher is drawn above).
    pub z: u32,
    /// How its picture fills it.
    pub fit: Fit,
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
        /// Who has the floor (a session id).
        active_speaker: Option<String>,
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
    /// The tiles moved (someone with video joined or left, a new layout, pin or speaker).
    LayoutChanged {
        /// The canvas the tiles are on.
        canvas: Canvas,
        /// The tiles, region by region.
        tiles: Vec<TileInfo>,
    },
    /// The floor moved: who the active speaker is now (`null` once they left).
    ActiveSpeaker {
        /// Their session id.
        id: Option<String>,
        /// Their display name.
        name: Option<String>,
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
    /// The room ended.
    RoomEnded {
        /// Why.
        reason: RoomEndReason,
    },
}

/// Why a room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEndReason {
    /// It was empty for its linger time (at once while the server drains).
    Empty,
    /// An administrator ended it (`DELETE /rooms/{room}`).
    Ended,
    /// The server stopped before it emptied (drain timeout, second signal).
    Shutdown,
    /// Its pipeline failed.
    Failed,
}

/// The event channel of every room name that has a room or a reader.
#[derive(Default)]
pub struct EventChannels {
    /// name → its channel. A tiny map behind a std Mutex: lookups, inserts and a sweep, never
    /// held across an await.
    map: Mutex<HashMap<String, broadcast::Sender<RoomEvent>>>,
}

impl EventChannels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<RoomEvent>>> {
        // Single inserts and removals: a poisoned lock still holds a consistent map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel a room publishes into (made if no reader made it first).
    pub fn sender(&self, room: &str) -> broadcast::Sender<RoomEvent> {
        self.lock()
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .clone()
    }

    /// Every event of `room` from now on.
    pub fn subscribe(&self, room: &str) -> broadcast::Receiver<RoomEvent> {
        self.sender(room).subscribe()
    }

    /// Forgets the channels nobody reads and no room publishes into (`live` says which rooms
    /// run), so names that come and go leave nothing behind.
    pub fn sweep(&self, live: impl Fn(&str) -> bool) {
        self.lock()
            .retain(|room, tx| tx.receiver_count() > 0 || live(room));
    }

    /// How many channels exist (for the tests that check nothing is left behind).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no channel exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SessionKind;

    #[tokio::test]
    async fn each_room_has_its_own_channel_and_unused_ones_are_forgotten() {
        let channels = EventChannels::default();
        let busy = channels.sender("busy");
        let mut quiet_reader = channels.subscribe("quiet");
        let quiet = channels.sender("quiet");
        for _ in 0..10_000 {
            let _ = busy.send(RoomEvent::RoomEnded {
                reason: RoomEndReason::Empty,
            });
        }
        let _ = quiet.send(RoomEvent::ViewersChanged { viewers: 1 });
        // The quiet room's reader sees its one event, not the busy room's thousands.
        assert_eq!(
            quiet_reader.try_recv().expect("its event"),
            RoomEvent::ViewersChanged { viewers: 1 }
        );
        assert!(quiet_reader.try_recv().is_err());
        drop((busy, quiet));
        assert_eq!(channels.len(), 2);
        // "quiet" still has a reader; "busy" has neither a reader nor a live room.
        channels.sweep(|_| false);
        assert_eq!(channels.len(), 1);
        drop(quiet_reader);
        channels.sweep(|_| false);
        assert!(channels.is_empty());
    }

    #[test]
    fn events_are_tagged_snake_case_json_and_round_trip() {
        let joined = RoomEvent::ParticipantJoined {
            participant: SessionInfo {
                id: "1f".into(),
                kind: SessionKind::Participant,
                name: Some("Ann".into()),
                state: ConnectionState::Connecting,
                tile: None,
                screen: false,
                pinned: false,
                audio_muted: false,
                video_muted: true,
                speaking: false,
                output: None,
                dropped_packets: 0,
                held_packets: 0,
                stated_levels: 0,
                uplink_limit_bps: None,
                lagged_packets: 3,
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
            serde_json::to_string(&RoomEvent::RoomEnded {
                reason: RoomEndReason::Shutdown
            })
            .unwrap(),
            r#"{"type":"room_ended","reason":"shutdown"}"#
        );
    }
}
