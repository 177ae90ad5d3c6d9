//! A room's mailbox: the commands the HTTP edge sends its actor, and the cheap handle they go
//! through. Every command carries a oneshot for its answer, awaited with a deadline.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::api::{
    JoinAnswer, JoinError, JoinRequest, LayoutView, RecordingError, RecordingInfo, RoomInfo,
    SessionError, TrickleError,
};
use super::layout::LayoutSpec;
use crate::auth::Caller;
use crate::sdp::TrickleFragment;
use crate::types::{RecordingFormat, SessionRef};

/// Commands a room's mailbox holds before senders wait (backpressure on the HTTP edge).
pub(super) const MAILBOX: usize = 64;
/// How long an HTTP request waits for its room to answer (a join includes ICE gathering).
const ROOM_REPLY_DEADLINE: Duration = Duration::from_secs(15);

/// What the HTTP edge asks of a room.
pub(super) enum RoomCommand {
    Join {
        request: JoinRequest,
        reply: oneshot::Sender<Result<JoinAnswer, JoinError>>,
    },
    Leave {
        target: SessionRef,
        caller: Caller,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// An administrator ends the room for everyone.
    End {
        reply: oneshot::Sender<()>,
    },
    Info {
        reply: oneshot::Sender<RoomInfo>,
    },
    Trickle {
        target: SessionRef,
        caller: Caller,
        if_match: Option<String>,
        fragment: TrickleFragment,
        reply: oneshot::Sender<Result<(), TrickleError>>,
    },
    Mute {
        target: SessionRef,
        caller: Caller,
        audio: Option<bool>,
        video: Option<bool>,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// The layout and the tiles it gives now.
    Layout {
        reply: oneshot::Sender<LayoutView>,
    },
    /// A new layout (checked at the edge): applied, or only composed (a dry run).
    SetLayout {
        spec: LayoutSpec,
        apply: bool,
        reply: oneshot::Sender<LayoutView>,
    },
    /// An administrator pins or unpins a session (the layouts' `pinned` selector).
    Pin {
        target: SessionRef,
        caller: Caller,
        pinned: bool,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    StartRecording {
        format: RecordingFormat,
        reply: oneshot::Sender<Result<RecordingInfo, RecordingError>>,
    },
    StopRecording {
        id: u64,
        reply: oneshot::Sender<Result<RecordingInfo, RecordingError>>,
    },
}

/// The mailbox of one room. Cheap to clone; the actor ends when the room does.
#[derive(Clone)]
pub struct RoomHandle {
    /// Distinguishes this room from a later one of the same name.
    pub(super) instance: u64,
    /// The room actor reads the other end. Bounded ([`MAILBOX`]): a sender waits for room
    /// (backpressure on the HTTP edge), no command is dropped.
    pub(super) tx: mpsc::Sender<RoomCommand>,
}

/// A command that could not be delivered because the room ended meanwhile.
pub(super) struct RoomGone;

impl RoomHandle {
    pub(super) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> RoomCommand,
    ) -> Result<T, RoomGone> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| RoomGone)?;
        match tokio::time::timeout(ROOM_REPLY_DEADLINE, rx).await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(RoomGone),
        }
    }
}
