//! What a webhook says (typed JSON, one `event` tag per kind), which room events become one
//! (pure), and its signature: HMAC-SHA256 of the exact body with the API secret.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::room::events::{LeaveReason, RoomEndReason, RoomEvent};
use crate::room::{RecordingInfo, SessionInfo};

/// The header that carries the signature: `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "tessera-signature";
/// The header that names the API key whose secret signed it.
pub const KEY_HEADER: &str = "tessera-key";

/// One webhook: an id (unique; a receiver that sees one twice after a retry ignores it), when
/// it happened, the room, and what.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    /// Unique per event (16 hex digits).
    pub id: String,
    /// When, RFC 3339 with milliseconds, UTC.
    pub timestamp: String,
    /// The room's name.
    pub room: String,
    /// What happened.
    #[serde(flatten)]
    pub body: WebhookBody,
}

/// What happened, tagged `event`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WebhookBody {
    /// The room started (its first join).
    RoomStarted,
    /// The room ended.
    RoomEnded {
        /// Why.
        reason: RoomEndReason,
    },
    /// A session that sends media joined.
    ParticipantJoined {
        /// Who.
        participant: SessionInfo,
    },
    /// It left.
    ParticipantLeft {
        /// Who.
        participant: Departed,
        /// Why.
        reason: LeaveReason,
    },
    /// A recording started.
    RecordingStarted {
        /// It.
        recording: RecordingInfo,
    },
    /// A recording ended with a complete file.
    RecordingFinished {
        /// It (`bytes`, `duration_secs`).
        recording: RecordingInfo,
        /// Its file on the server's disk.
        path: String,
    },
    /// A recording failed (`error` says why).
    RecordingFailed {
        /// It.
        recording: RecordingInfo,
    },
}

/// A participant who left.
#[derive(Debug, Clone, Serialize)]
pub struct Departed {
    /// Its session id.
    pub id: String,
    /// Its display name.
    pub name: Option<String>,
}

impl WebhookBody {
    /// The webhook a room event makes, if any (`path` gives a finished recording's file).
    pub fn from_room_event(
        event: &RoomEvent,
        path: impl Fn(&RecordingInfo) -> String,
    ) -> Option<WebhookBody> {
        Some(match event {
            RoomEvent::ParticipantJoined { participant } => WebhookBody::ParticipantJoined {
                participant: participant.clone(),
            },
            RoomEvent::ParticipantLeft { id, name, reason } => WebhookBody::ParticipantLeft {
                participant: Departed {
                    id: id.clone(),
                    name: name.clone(),
                },
                reason: *reason,
            },
            RoomEvent::RecordingStarted { recording } => WebhookBody::RecordingStarted {
                recording: recording.clone(),
            },
            RoomEvent::RecordingStopped { recording } => WebhookBody::RecordingFinished {
                path: path(recording),
                recording: recording.clone(),
            },
            RoomEvent::RecordingFailed { recording } => WebhookBody::RecordingFailed {
                recording: recording.clone(),
            },
            RoomEvent::RoomEnded { reason } => WebhookBody::RoomEnded { reason: *reason },
            _ => return None,
        })
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_leave_becomes_participant_left_with_its_reason() {
        let event = RoomEvent::ParticipantLeft {
            id: "abc".into(),
            name: Some("Ann".into()),
            reason: LeaveReason::Left,
        };
        let body = WebhookBody::from_room_event(&event, |_| String::new()).expect("a webhook");
        let hook = Webhook {
            id: "1".into(),
            timestamp: "t".into(),
            room: "r".into(),
            body,
        };
        assert_eq!(
            serde_json::to_value(&hook).unwrap(),
            serde_json::json!({"id": "1", "timestamp": "t", "room": "r",
                "event": "participant_left", "participant": {"id": "abc", "name": "Ann"},
                "reason": "left"})
        );
        let speaker = RoomEvent::ActiveSpeaker {
            id: None,
            name: None,
        };
        assert!(WebhookBody::from_room_event(&speaker, |_| String::new()).is_none());
    }
}
