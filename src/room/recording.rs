//! Recordings: the store of every recording of this process (listed and downloaded also after
//! their room ended), and what a room does to start, feed and finish one. The recording's
//! pipeline is started on the mixer's thread (it creates the directory and the file) and
//! finished on a blocking thread (the muxer writes its index); the actor only awaits them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::actor::RoomActor;
use super::api::{RecordingError, RecordingInfo, RecordingState};
use super::events::RoomEvent;
use crate::media::Recorder;
use crate::types::{RecordingFormat, RtpSink};

/// Every recording of this process, by room. Cheap to clone; updated by the room actors, read
/// by the HTTP edge.
#[derive(Clone)]
pub struct Recordings {
    inner: Arc<RecordingsInner>,
}

struct RecordingsInner {
    dir: PathBuf,
    /// room → its recordings, oldest first. A tiny map behind a std Mutex: single pushes and
    /// updates, never held across an await.
    map: Mutex<HashMap<String, Vec<RecordingInfo>>>,
}

impl Recordings {
    /// An empty store whose files go under `dir`.
    pub fn new(dir: PathBuf) -> Recordings {
        Recordings {
            inner: Arc::new(RecordingsInner {
                dir,
                map: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<RecordingInfo>>> {
        // Single pushes and field updates: a poisoned lock still holds a consistent map.
        self.inner.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The recordings of `room`, oldest first, with their current sizes.
    pub fn list(&self, room: &str) -> Vec<RecordingInfo> {
        let list = self.lock().get(room).cloned().unwrap_or_default();
        list.into_iter().map(|r| self.with_size(r)).collect()
    }

    /// One recording, with its current size.
    pub fn get(&self, room: &str, id: u64) -> Option<RecordingInfo> {
        let id = format!("{id:x}");
        let found = self
            .lock()
            .get(room)?
            .iter()
            .find(|r| r.id == id)
            .cloned()?;
        Some(self.with_size(found))
    }

    /// The file of a recording.
    pub fn path(&self, room: &str, format: RecordingFormat, id: &str) -> PathBuf {
        self.inner
            .dir
            .join(room)
            .join(format!("{id}.{}", format.name()))
    }

    fn with_size(&self, mut r: RecordingInfo) -> RecordingInfo {
        r.bytes = std::fs::metadata(self.path(&r.room, r.format, &r.id))
            .map(|m| m.len())
            .unwrap_or(0);
        r
    }

    /// Records (or updates) a recording's entry.
    pub(super) fn put(&self, info: &RecordingInfo) {
        let mut map = self.lock();
        let list = map.entry(info.room.clone()).or_default();
        match list.iter_mut().find(|r| r.id == info.id) {
            Some(r) => *r = info.clone(),
            None => list.push(info.clone()),
        }
    }
}

/// A recording in progress: its pipeline and the two tasks that feed it from the room's
/// outputs (aborted when it ends).
pub(super) struct ActiveRecording {
    pub(super) id: u64,
    pub(super) info: RecordingInfo,
    pub(super) started: Instant,
    pub(super) recorder: Recorder,
    pub(super) feeders: JoinSet<()>,
}

/// Copies one output's packets into a recording until the output closes. A lagging recorder
/// loses packets; its depayloader then waits for the next keyframe.
async fn feed(mut output: tokio::sync::broadcast::Receiver<bytes::Bytes>, sink: impl RtpSink) {
    loop {
        match output.recv().await {
            Ok(p) => sink.push(p),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl RoomActor {
    /// Starts recording the room in `format`: the recording's pipeline takes the format's video
    /// output and the "everyone" audio as they are (nothing is encoded again).
    pub(super) async fn start_recording(
        &mut self,
        format: RecordingFormat,
    ) -> Result<RecordingInfo, RecordingError> {
        let key = format.output();
        let Some(video) = self.mixer.subscribe_video(key) else {
            return Err(RecordingError::Unsupported(format!(
                "this server cannot encode {} for a {} recording",
                key.codec.name(),
                format.name()
            )));
        };
        let audio = self.mixer.everyone_audio().subscribe();
        let id = rand::random::<u64>() >> 12;
        let hex = format!("{id:x}");
        let room = self.ctx.name.clone();
        let path = self.ctx.recordings.path(&room, format, &hex);
        let mut info = RecordingInfo {
            id: hex.clone(),
            room: room.to_string(),
            format,
            state: RecordingState::Recording,
            error: None,
            started_at: unix_now(),
            duration_secs: 0.0,
            bytes: 0,
            file: format!("/rooms/{room}/recordings/{hex}/file"),
        };
        let recorder = match self.mixer.start_recording(id, format, path.clone()).await {
            Ok(r) => r,
            Err(e) => {
                let e = e.to_string();
                tracing::error!(%room, "recording {hex} failed to start: {e}");
                info.state = RecordingState::Failed;
                info.error = Some(e.clone());
                recording_ended("failed");
                self.ctx.recordings.put(&info);
                self.ctx
                    .publish(RoomEvent::RecordingFailed { recording: info });
                return Err(RecordingError::Storage(e));
            }
        };
        let mut feeders = JoinSet::new();
        feeders.spawn(feed(video, recorder.video.clone()));
        feeders.spawn(feed(audio, recorder.audio.clone()));
        tracing::info!(%room, recording = %hex, path = %path.display(), "recording started");
        crate::metrics::families().recordings_started.inc();
        crate::metrics::families().recordings_active.inc();
        self.recordings.push(ActiveRecording {
            id,
            info: info.clone(),
            started: Instant::now(),
            recorder,
            feeders,
        });
        self.update_receivers().await;
        // The file must start at a keyframe, now rather than at the next periodic one.
        self.request_keyframe(key, "recording").await;
        self.ctx.recordings.put(&info);
        self.ctx.publish(RoomEvent::RecordingStarted {
            recording: info.clone(),
        });
        Ok(info)
    }

    /// Drains a recording in the background (its muxer writes the index, on a blocking
    /// thread), then records and announces how it ended, and answers `reply` if someone waits.
    pub(super) fn finish_recording(
        &mut self,
        mut r: ActiveRecording,
        reply: Option<oneshot::Sender<Result<RecordingInfo, RecordingError>>>,
    ) {
        r.feeders.abort_all();
        crate::metrics::families().recordings_active.dec();
        let recordings = self.ctx.recordings.clone();
        let events = self.ctx.events.clone();
        let webhooks = self.ctx.webhooks.clone();
        let room = self.ctx.name.clone();
        let recorder = r.recorder;
        let mut info = r.info;
        info.duration_secs = r.started.elapsed().as_secs_f64();
        self.background.spawn(async move {
            let result = tokio::task::spawn_blocking(move || recorder.finish())
                .await
                .unwrap_or_else(|e| Err(format!("finishing the recording panicked: {e}")));
            let event = match result {
                Ok(()) => {
                    info.state = RecordingState::Stopped;
                    recording_ended("finished");
                    tracing::info!(%room, recording = %info.id, "recording stopped");
                    RoomEvent::RecordingStopped {
                        recording: info.clone(),
                    }
                }
                Err(e) => {
                    tracing::error!(%room, recording = %info.id, "recording ended badly: {e}");
                    recording_ended("failed");
                    info.state = RecordingState::Failed;
                    info.error = Some(e);
                    RoomEvent::RecordingFailed {
                        recording: info.clone(),
                    }
                }
            };
            recordings.put(&info);
            // With its size, now that its file is complete.
            let event = match event {
                RoomEvent::RecordingStopped { recording } => RoomEvent::RecordingStopped {
                    recording: recordings.get(&room, r.id).unwrap_or(recording),
                },
                other => other,
            };
            super::context::notify(&webhooks, &recordings, &room, &event);
            let _ = events.send(event);
            if let Some(reply) = reply {
                let _ = reply.send(Ok(recordings.get(&room, r.id).unwrap_or(info)));
            }
        });
    }

    /// A recording's pipeline failed: only the recording ends; the room and everyone in it go
    /// on. Dropping its recorder sets its pipeline to Null.
    pub(super) async fn recording_failed(&mut self, id: u64, error: String) {
        let Some(idx) = self.recordings.iter().position(|r| r.id == id) else {
            return;
        };
        let mut r = self.recordings.remove(idx);
        r.feeders.abort_all();
        crate::metrics::families().recordings_active.dec();
        recording_ended("failed");
        let mut info = r.info.clone();
        info.state = RecordingState::Failed;
        info.error = Some(error);
        info.duration_secs = r.started.elapsed().as_secs_f64();
        self.ctx.recordings.put(&info);
        self.ctx
            .publish(RoomEvent::RecordingFailed { recording: info });
        self.update_receivers().await;
    }
}

/// Counts a recording that ended `state` (`finished` or `failed`).
fn recording_ended(state: &'static str) {
    let label = crate::metrics::StateLabel { state };
    crate::metrics::families()
        .recordings_ended
        .get_or_create(&label)
        .inc();
}
