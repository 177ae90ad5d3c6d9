//! The registry of live rooms: a tiny map of name → [`RoomHandle`], the per-name event
//! channels, the recordings store and the shutdown signal. It starts a room on its first join
//! (its pipeline on a thread of its own, then its actor) and forgets it when the actor ends; the
//! HTTP edge talks to rooms only through it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actor::RoomActor;
use super::api::{
    JoinAnswer, JoinError, JoinRequest, LayoutView, RecordingError, RecordingInfo, RecordingState,
    RoomInfo, SessionError, TrickleError,
};
use super::context::{Registration, RoomContext};
use super::events::{EventChannels, RoomEvent};
use super::handle::{MAILBOX, RoomCommand, RoomGone, RoomHandle};
use super::layout::LayoutSpec;
use super::recording::Recordings;
use crate::admission::Refusal;
use crate::auth::Caller;
use crate::config::Config;
use crate::media::MediaFactory;
use crate::peer::PeerFactory;
use crate::sdp::TrickleFragment;
use crate::types::{RecordingFormat, SessionRef};
use crate::webhooks::Webhooks;

pub(super) struct RoomsInner {
    config: Arc<Config>,
    media: MediaFactory,
    peers: PeerFactory,
    /// name → the live room of that name. Only lookups, inserts and removals happen under the
    /// lock, never an await.
    map: Mutex<HashMap<String, RoomHandle>>,
    /// Every room actor, so shutdown can wait for all of them.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled when the server drains: no new room starts, each running one ends once empty.
    draining: CancellationToken,
    /// Cancelled once [`Rooms::shutdown`] saw every room end: event streams close then.
    closed: CancellationToken,
    /// Each room name's event channel.
    events: EventChannels,
    /// Every recording of this process.
    recordings: Recordings,
    /// Where the rooms' events go besides their streams.
    webhooks: Webhooks,
}

impl RoomsInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomHandle>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts and
        // removals), so a poisoned lock is still a consistent map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes `room` if the entry is still the instance `instance` (a later room of the same
    /// name keeps its entry), and the event channels nobody uses any more.
    pub(super) fn forget(&self, room: &str, instance: u64) {
        let mut map = self.lock();
        if map.get(room).is_some_and(|h| h.instance == instance) {
            map.remove(room);
        }
        self.events.sweep(|name| map.contains_key(name));
    }
}

/// The registry of live rooms. Cheap to clone.
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<RoomsInner>,
}

impl Rooms {
    /// An empty registry.
    pub fn new(config: Arc<Config>, media: MediaFactory, webhooks: Webhooks) -> Rooms {
        let peers = PeerFactory::new(config.rtc.clone());
        let recordings = Recordings::new(config.recordings_dir.clone());
        Rooms {
            inner: Arc::new(RoomsInner {
                config,
                media,
                peers,
                map: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                draining: CancellationToken::new(),
                closed: CancellationToken::new(),
                events: EventChannels::default(),
                recordings,
                webhooks,
            }),
        }
    }

    fn get(&self, room: &str) -> Option<RoomHandle> {
        self.inner.lock().get(room).cloned()
    }

    async fn get_or_start(&self, room: &str) -> Result<RoomHandle, JoinError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(JoinError::ShuttingDown);
        }
        if let Some(handle) = self.get(room) {
            return Ok(handle);
        }
        if self.inner.draining.is_cancelled() {
            return Err(JoinError::Draining);
        }
        let max_rooms = self.inner.config.limits.max_rooms;
        let full = || JoinError::Refused(Refusal::TooManyRooms(max_rooms));
        if self.inner.lock().len() >= max_rooms {
            return Err(full());
        }
        static INSTANCE: AtomicU64 = AtomicU64::new(1);
        // Built outside the lock, on the mixer's own thread (starting a pipeline takes
        // milliseconds of blocking work).
        let metrics = crate::metrics::RoomMetrics::start(room);
        let (mixer, mixer_events) = self
            .inner
            .media
            .start_mixer(room, &self.inner.config.mix, metrics.clone())
            .await
            .map_err(|e| JoinError::Internal(format!("starting the room's pipeline: {e}")))?;
        let (handle, rx) = {
            let mut map = self.inner.lock();
            if let Some(handle) = map.get(room) {
                // Someone else started it meanwhile; ours is dropped unused (its thread ends
                // and sets its pipeline to Null).
                return Ok(handle.clone());
            }
            if map.len() >= max_rooms {
                // Others started rooms meanwhile; ours is dropped unused.
                return Err(full());
            }
            let (tx, rx) = mpsc::channel(MAILBOX);
            let handle = RoomHandle {
                instance: INSTANCE.fetch_add(1, Ordering::Relaxed),
                tx,
            };
            map.insert(room.to_owned(), handle.clone());
            (handle, rx)
        };
        let ctx = RoomContext {
            name: room.into(),
            config: self.inner.config.clone(),
            media: self.inner.media.clone(),
            peers: self.inner.peers.clone(),
            events: self.inner.events.sender(room),
            recordings: self.inner.recordings.clone(),
            shutdown: self.inner.shutdown.clone(),
            draining: self.inner.draining.clone(),
            metrics,
            webhooks: self.inner.webhooks.clone(),
            registration: Registration {
                registry: Arc::downgrade(&self.inner),
                instance: handle.instance,
            },
        };
        let actor = RoomActor::new(ctx, mixer, mixer_events, rx);
        // Every line of the room's work carries `room` (JSON logs: in `span`).
        let span = tracing::info_span!("room", room = %room);
        self.inner
            .tracker
            .spawn(tracing::Instrument::instrument(actor.run(), span));
        Ok(handle)
    }

    /// Joins `room` (starting it if needed) with a WHIP (`whep == false`) or WHEP offer.
    pub async fn join(&self, room: &str, request: JoinRequest) -> Result<JoinAnswer, JoinError> {
        // A room may end between lookup and delivery; then a fresh one is started. Twice is
        // enough: the second room is brand new and has no linger timer running.
        for _ in 0..3 {
            let handle = self.get_or_start(room).await?;
            let request = request.clone();
            match handle
                .ask(|reply| RoomCommand::Join { request, reply })
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

    /// Ends a session: its owner leaving, or an administrator kicking it.
    pub async fn leave(
        &self,
        room: &str,
        target: SessionRef,
        caller: Caller,
    ) -> Result<(), SessionError> {
        let handle = self.get(room).ok_or(SessionError::Unknown)?;
        handle
            .ask(|reply| RoomCommand::Leave {
                target,
                caller,
                reply,
            })
            .await
            .unwrap_or(Err(SessionError::Unknown))
    }

    /// Ends `room` for everyone (an administrator's request). False if it is not running.
    pub async fn end(&self, room: &str) -> bool {
        match self.get(room) {
            Some(h) => h.ask(|reply| RoomCommand::End { reply }).await.is_ok(),
            None => false,
        }
    }

    /// Adds trickled candidates to a session (RFC 9725 `PATCH`).
    pub async fn trickle(
        &self,
        room: &str,
        target: SessionRef,
        caller: Caller,
        if_match: Option<String>,
        fragment: TrickleFragment,
    ) -> Result<(), TrickleError> {
        let handle = self.get(room).ok_or(TrickleError::UnknownSession)?;
        handle
            .ask(|reply| RoomCommand::Trickle {
                target,
                caller,
                if_match,
                fragment,
                reply,
            })
            .await
            .unwrap_or(Err(TrickleError::UnknownSession))
    }

    /// Records what a session stopped (or resumed) sending, or (an administrator) what the
    /// server holds muted; `None` leaves a flag as it is.
    pub async fn mute(
        &self,
        room: &str,
        target: SessionRef,
        caller: Caller,
        audio: Option<bool>,
        video: Option<bool>,
    ) -> Result<(), SessionError> {
        let handle = self.get(room).ok_or(SessionError::Unknown)?;
        handle
            .ask(|reply| RoomCommand::Mute {
                target,
                caller,
                audio,
                video,
                reply,
            })
            .await
            .unwrap_or(Err(SessionError::Unknown))
    }

    /// `room`'s layout and the tiles it gives now (`None`: no such room).
    pub async fn layout(&self, room: &str) -> Option<LayoutView> {
        let handle = self.get(room)?;
        handle.ask(|reply| RoomCommand::Layout { reply }).await.ok()
    }

    /// Gives `room` a new layout (`apply`), or says what it would show (a dry run).
    pub async fn set_layout(
        &self,
        room: &str,
        spec: LayoutSpec,
        apply: bool,
    ) -> Option<LayoutView> {
        let handle = self.get(room)?;
        handle
            .ask(|reply| RoomCommand::SetLayout { spec, apply, reply })
            .await
            .ok()
    }

    /// Pins or unpins a session of `room` (administrators).
    pub async fn pin(
        &self,
        room: &str,
        target: SessionRef,
        caller: Caller,
        pinned: bool,
    ) -> Result<(), SessionError> {
        let handle = self.get(room).ok_or(SessionError::Unknown)?;
        handle
            .ask(|reply| RoomCommand::Pin {
                target,
                caller,
                pinned,
                reply,
            })
            .await
            .unwrap_or(Err(SessionError::Unknown))
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
        let existing = self.inner.recordings.get(room, id).ok_or_else(|| {
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
                    self.inner
                        .recordings
                        .get(room, id)
                        .ok_or_else(|| RecordingError::NotFound(format!("no recording {id:x}")))
                }),
            None => Ok(existing),
        }
    }

    /// The recordings of `room`, oldest first, with their current sizes.
    pub fn recordings(&self, room: &str) -> Vec<RecordingInfo> {
        self.inner.recordings.list(room)
    }

    /// One recording, with its current size.
    pub fn recording(&self, room: &str, id: u64) -> Option<RecordingInfo> {
        self.inner.recordings.get(room, id)
    }

    /// The file of a recording.
    pub fn recording_path(
        &self,
        room: &str,
        format: RecordingFormat,
        id: &str,
    ) -> std::path::PathBuf {
        self.inner.recordings.path(room, format, id)
    }

    /// Every event of `room` from now on (its own channel: other rooms' events never reach
    /// this reader).
    pub fn subscribe_events(&self, room: &str) -> broadcast::Receiver<RoomEvent> {
        self.inner.events.subscribe(room)
    }

    /// Forgets the event channels nobody reads any more (an event stream ended).
    pub fn sweep_event_channels(&self) {
        let map = self.inner.lock();
        self.inner.events.sweep(|name| map.contains_key(name));
    }

    /// How many rooms have an event channel (for the tests that check nothing is left).
    pub fn event_channels(&self) -> usize {
        self.inner.events.len()
    }

    /// The `snapshot` event of `room`: its sessions, or `live: false` if it does not run.
    pub async fn snapshot(&self, room: &str) -> RoomEvent {
        match self.info(room).await {
            Some(info) => RoomEvent::Snapshot {
                room: info.name,
                live: true,
                participants: info.participants,
                viewers: info.viewers.len(),
                active_speaker: info.active_speaker,
            },
            None => RoomEvent::Snapshot {
                room: room.to_owned(),
                live: false,
                participants: Vec::new(),
                viewers: 0,
                active_speaker: None,
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
        let handles: Vec<RoomHandle> = self.inner.lock().values().cloned().collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            if let Ok(info) = h.ask(|reply| RoomCommand::Info { reply }).await {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Starts a drain: new rooms are refused ([`JoinError::Draining`]); the rooms that run
    /// keep running, accept joins, and end once empty.
    pub fn start_drain(&self) {
        self.inner.draining.cancel();
    }

    /// Whether the server drains.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.is_cancelled()
    }

    /// How many rooms run.
    pub fn count(&self) -> usize {
        self.inner.lock().len()
    }

    /// Resolves once no room runs (and none will start: call during a drain).
    pub async fn drained(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Ends every room and waits until their pipelines and peers are gone.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        self.inner.closed.cancel();
    }

    /// Resolves once the server closed every room for good (after [`Rooms::shutdown`]).
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.closed.clone().cancelled_owned()
    }
}
