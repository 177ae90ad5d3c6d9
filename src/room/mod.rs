//! The domain: rooms, their sessions and their mix.
//!
//! [`Rooms`] is the registry (a tiny map behind a std Mutex, never held across `.await`) of
//! [`RoomHandle`]s. A handle is a cheap clone of the mailbox of one `RoomActor` task
//! (`actor.rs`), which alone owns the room's sessions, peers and mixer. The HTTP edge talks to
//! rooms only through [`Rooms`]; every answer comes back on a oneshot.

mod actor;
pub mod events;
pub mod keyframe;
pub mod layout;
pub mod tiers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::media::{MediaFactory, MixerStats};
use crate::peer::PeerFactory;
use crate::sdp::TrickleFragment;
use crate::types::{
    ConnectionState, OutputKey, RecordingFormat, Rect, SessionId, SessionKind, Tier,
};
use events::{EventBus, Published, RoomEvent};

/// Commands a room's mailbox holds before senders wait (backpressure on the HTTP edge).
const MAILBOX: usize = 64;
/// How long an HTTP request waits for its room to answer (a join includes ICE gathering).
const ROOM_REPLY_DEADLINE: Duration = Duration::from_secs(15);

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
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
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
    /// The session id (also the last segment of its URL).
    pub id: String,
    /// Participant, contributor or viewer.
    pub kind: SessionKind,
    /// The display name given at join (`?name=`), if any.
    pub name: Option<String>,
    /// The peer connection's state.
    pub state: ConnectionState,
    /// Its tile on the canvas, if it sends video.
    pub tile: Option<Rect>,
    /// It said its microphone is off (it sends no audio).
    #[serde(default)]
    pub audio_muted: bool,
    /// It said its camera is off: its tile shows a placeholder.
    #[serde(default)]
    pub video_muted: bool,
    /// The video output it receives (codec and tier), if it receives video.
    #[serde(default)]
    pub output: Option<OutputKey>,
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
    /// Encoders and inputs running in the room's pipeline.
    pub mixer: MixerStats,
}

/// What the HTTP edge asks of a room.
enum RoomCommand {
    Join {
        whep: bool,
        offer: String,
        name: Option<String>,
        quality: Option<Tier>,
        reply: oneshot::Sender<Result<JoinAnswer, JoinError>>,
    },
    Leave {
        session: SessionId,
        reply: oneshot::Sender<bool>,
    },
    Info {
        reply: oneshot::Sender<RoomInfo>,
    },
    Trickle {
        session: SessionId,
        if_match: Option<String>,
        fragment: TrickleFragment,
        reply: oneshot::Sender<Result<(), TrickleError>>,
    },
    Mute {
        session: SessionId,
        audio: Option<bool>,
        video: Option<bool>,
        reply: oneshot::Sender<bool>,
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
    instance: u64,
    tx: mpsc::Sender<RoomCommand>,
}

/// A command that could not be delivered because the room ended meanwhile.
struct RoomGone;

impl RoomHandle {
    async fn ask<T>(
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

struct RoomsInner {
    config: Arc<Config>,
    media: MediaFactory,
    peers: PeerFactory,
    /// name → the live room of that name. Only lookups, inserts and removals happen under the
    /// lock, never an await.
    map: Mutex<HashMap<String, RoomHandle>>,
    /// Every room actor, so shutdown can wait for all of them.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Every room's events, for the event streams.
    events: EventBus,
    /// Every recording of this process, by room, so they can be listed and downloaded after
    /// their room ended. A tiny map: updated by the room actors, read by the HTTP edge, never
    /// locked across an await.
    recordings: Mutex<HashMap<String, Vec<RecordingInfo>>>,
}

/// The registry of live rooms.
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<RoomsInner>,
}

/// Whether `name` is a valid room name: 1-64 of `[A-Za-z0-9_-]`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Rooms {
    /// An empty registry.
    pub fn new(config: Arc<Config>, media: MediaFactory) -> Rooms {
        let peers = PeerFactory::new(config.rtc.clone());
        Rooms {
            inner: Arc::new(RoomsInner {
                config,
                media,
                peers,
                map: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                events: EventBus::default(),
                recordings: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomHandle>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts and
        // removals), so a poisoned lock is still a consistent map.
        self.inner.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, room: &str) -> Option<RoomHandle> {
        self.lock().get(room).cloned()
    }

    fn get_or_start(&self, room: &str) -> Result<RoomHandle, JoinError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(JoinError::ShuttingDown);
        }
        if let Some(handle) = self.get(room) {
            return Ok(handle);
        }
        static INSTANCE: AtomicU64 = AtomicU64::new(1);
        let (events_tx, events_rx) = mpsc::channel(actor::MIXER_EVENT_QUEUE);
        // Built outside the lock: starting a pipeline takes milliseconds.
        let mixer = self
            .inner
            .media
            .start_mixer(room, &self.inner.config.mix, events_tx)
            .map_err(|e| JoinError::Internal(format!("starting the room's pipeline: {e}")))?;
        let mut map = self.lock();
        if let Some(handle) = map.get(room) {
            // Someone else started it meanwhile; ours is dropped (set to Null) unused.
            return Ok(handle.clone());
        }
        let (tx, rx) = mpsc::channel(MAILBOX);
        let handle = RoomHandle {
            instance: INSTANCE.fetch_add(1, Ordering::Relaxed),
            tx,
        };
        map.insert(room.to_owned(), handle.clone());
        drop(map);
        let actor = actor::RoomActor::new(
            room.to_owned(),
            handle.instance,
            self.clone(),
            mixer,
            events_rx,
            rx,
        );
        self.inner.tracker.spawn(actor.run());
        Ok(handle)
    }

    /// Removes `room` from the registry if it is still the instance `instance`. Called by the
    /// actor under the decision to end; returns false if the entry belongs to someone else.
    fn forget(&self, room: &str, instance: u64) {
        let mut map = self.lock();
        if map.get(room).is_some_and(|h| h.instance == instance) {
            map.remove(room);
        }
    }

    /// Joins `room` (starting it if needed) with a WHIP (`whep == false`) or WHEP offer.
    pub async fn join(
        &self,
        room: &str,
        whep: bool,
        offer: String,
        name: Option<String>,
        quality: Option<Tier>,
    ) -> Result<JoinAnswer, JoinError> {
        // A room may end between lookup and delivery; then a fresh one is started. Twice is
        // enough: the second room is brand new and has no linger timer running.
        for _ in 0..3 {
            let handle = self.get_or_start(room)?;
            let offer = offer.clone();
            let name = name.clone();
            match handle
                .ask(|reply| RoomCommand::Join {
                    whep,
                    offer,
                    name,
                    quality,
                    reply,
                })
                .await
            {
                Ok(answer) => return answer,
                Err(RoomGone) => continue,
            }
        }
        Err(JoinError::Internal(
            "the room kept closing during the join".into(),
        ))
    }

    /// Ends a session. False if there is no such room or session.
    pub async fn leave(&self, room: &str, session: SessionId) -> bool {
        match self.get(room) {
            Some(h) => h
                .ask(|reply| RoomCommand::Leave { session, reply })
                .await
                .unwrap_or(false),
            None => false,
        }
    }

    /// Adds trickled candidates to a session (RFC 9725 `PATCH`).
    pub async fn trickle(
        &self,
        room: &str,
        session: SessionId,
        if_match: Option<String>,
        fragment: TrickleFragment,
    ) -> Result<(), TrickleError> {
        let handle = self.get(room).ok_or(TrickleError::UnknownSession)?;
        handle
            .ask(|reply| RoomCommand::Trickle {
                session,
                if_match,
                fragment,
                reply,
            })
            .await
            .unwrap_or(Err(TrickleError::UnknownSession))
    }

    /// Records what a session stopped (or resumed) sending; `None` leaves a flag as it is.
    /// False if there is no such session.
    pub async fn mute(
        &self,
        room: &str,
        session: SessionId,
        audio: Option<bool>,
        video: Option<bool>,
    ) -> bool {
        match self.get(room) {
            Some(h) => h
                .ask(|reply| RoomCommand::Mute {
                    session,
                    audio,
                    video,
                    reply,
                })
                .await
                .unwrap_or(false),
            None => false,
        }
    }

    /// Starts recording `room` (which must be running).
    pub async fn start_recording(
        &self,
        room: &str,
        format: RecordingFormat,
    ) -> Result<RecordingInfo, RecordingError> {
        let handle = self.get(room).ok_or_else(|| {
            RecordingError::NotFound(format!("no room named {room:?} is running"))
        })?;
        handle
            .ask(|reply| RoomCommand::StartRecording { format, reply })
            .await
            .unwrap_or_else(|_| Err(RecordingError::NotFound(format!("the room {room:?} ended"))))
    }

    /// Stops a recording and returns it once its file is complete. Stopping one that already
    /// ended returns it as it is.
    pub async fn stop_recording(
        &self,
        room: &str,
        id: u64,
    ) -> Result<RecordingInfo, RecordingError> {
        let existing = self.recording(room, id).ok_or_else(|| {
            RecordingError::NotFound(format!("no recording {id:x} of room {room:?}"))
        })?;
        if existing.state != RecordingState::Recording {
            return Ok(existing);
        }
        match self.get(room) {
            Some(handle) => handle
                .ask(|reply| RoomCommand::StopRecording { id, reply })
                .await
                .unwrap_or_else(|_| {
                    self.recording(room, id)
                        .ok_or_else(|| RecordingError::NotFound(format!("no recording {id:x}")))
                }),
            None => Ok(existing),
        }
    }

    /// The recordings of `room`, oldest first, with their current sizes.
    pub fn recordings(&self, room: &str) -> Vec<RecordingInfo> {
        let list = self
            .recordings_lock()
            .get(room)
            .cloned()
            .unwrap_or_default();
        list.into_iter().map(|r| self.with_size(r)).collect()
    }

    /// One recording, with its current size.
    pub fn recording(&self, room: &str, id: u64) -> Option<RecordingInfo> {
        let id = format!("{id:x}");
        let found = self
            .recordings_lock()
            .get(room)?
            .iter()
            .find(|r| r.id == id)
            .cloned()?;
        Some(self.with_size(found))
    }

    /// The file of a recording.
    pub fn recording_path(
        &self,
        room: &str,
        format: RecordingFormat,
        id: &str,
    ) -> std::path::PathBuf {
        self.inner
            .config
            .recordings_dir
            .join(room)
            .join(format!("{id}.{}", format.name()))
    }

    fn with_size(&self, mut r: RecordingInfo) -> RecordingInfo {
        r.bytes = std::fs::metadata(self.recording_path(&r.room, r.format, &r.id))
            .map(|m| m.len())
            .unwrap_or(0);
        r
    }

    fn recordings_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<RecordingInfo>>> {
        // Single pushes and field updates: a poisoned lock still holds a consistent map.
        self.inner
            .recordings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records (or updates) a recording's entry; called by its room actor.
    fn put_recording(&self, info: &RecordingInfo) {
        let mut map = self.recordings_lock();
        let list = map.entry(info.room.clone()).or_default();
        match list.iter_mut().find(|r| r.id == info.id) {
            Some(r) => *r = info.clone(),
            None => list.push(info.clone()),
        }
    }

    /// Every room event from now on (readers keep their room's).
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Published> {
        self.inner.events.subscribe()
    }

    /// The `snapshot` event of `room`: its sessions, or `live: false` if it does not run.
    pub async fn snapshot(&self, room: &str) -> RoomEvent {
        match self.info(room).await {
            Some(info) => RoomEvent::Snapshot {
                room: info.name,
                live: true,
                participants: info.participants,
                viewers: info.viewers.len(),
            },
            None => RoomEvent::Snapshot {
                room: room.to_owned(),
                live: false,
                participants: Vec::new(),
                viewers: 0,
            },
        }
    }

    /// The state of one room.
    pub async fn info(&self, room: &str) -> Option<RoomInfo> {
        let handle = self.get(room)?;
        handle.ask(|reply| RoomCommand::Info { reply }).await.ok()
    }

    /// The state of every room.
    pub async fn list(&self) -> Vec<RoomInfo> {
        let handles: Vec<RoomHandle> = self.lock().values().cloned().collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            if let Ok(info) = h.ask(|reply| RoomCommand::Info { reply }).await {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Ends every room and waits until their pipelines and peers are gone.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}
