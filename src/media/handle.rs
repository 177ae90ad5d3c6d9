//! The mixer behind a handle: a room's pipeline lives on a thread of its own, and the room only
//! sends it commands.
//!
//! GStreamer's structural work blocks: removing a branch waits (up to 2 s per pad) for the pad
//! to go idle, state changes wait for elements, a recording creates its directory and file. On
//! a tokio worker that would stall every task of the process (a 2-core machine has two
//! workers). So each room's [`Mixer`] is built, changed and dropped on its own thread, which
//! takes [`Command`]s in order from a bounded channel. The room awaits a reply only where it
//! needs a value (an input to push into, a recorder, the stats), always with a deadline; every
//! other command it sends and goes on (the order of commands is the order of effects).
//!
//! Channel: `commands` is control, bounded ([`COMMANDS`]): a room that sends faster than its
//! mixer works waits for room in it (backpressure), nothing is dropped.
//!
//! Ownership: the [`MixerHandle`] owns the thread. Dropping it closes the channel; the thread
//! then drops the mixer (its pipeline goes to Null) and ends. [`MixerHandle::shutdown`] does the
//! same and waits for it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::bus::{MixerEvents, Signals};
use super::input::RtpInput;
use super::mixer::{Mixer, MixerStats, Taps};
use super::video_output::Tap;
use super::{MediaError, Recorder, Templates};
use crate::config::MixConfig;
use crate::types::{
    Decorations, InputCodec, OutputKey, Placement, RecordingFormat, SessionId, VideoCodec,
};

/// Commands the room may queue before it waits for the mixer.
const COMMANDS: usize = 64;
/// How long the room waits for a reply: the commands queued before it (a branch removal may
/// take 2 s per pad) and the work itself.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);

/// What the room asks of its mixer.
enum Command {
    AddInput {
        session: SessionId,
        codec: InputCodec,
        placement: Option<Placement>,
        reply: oneshot::Sender<Result<RtpInput, MediaError>>,
    },
    AddMixMinus {
        session: SessionId,
        reply: oneshot::Sender<Result<Tap, MediaError>>,
    },
    RemoveMixMinus(SessionId),
    SetSpeaker {
        session: SessionId,
        speaking: bool,
        done: oneshot::Sender<()>,
    },
    RemoveSession {
        session: SessionId,
        /// Told when its branches are out (for whoever wants to wait).
        done: Option<oneshot::Sender<()>>,
    },
    SetPlacements(Vec<Placement>),
    SetDecorations(Decorations),
    SetMutedAudio {
        session: SessionId,
        muted: bool,
    },
    SetMutedVideo {
        session: SessionId,
        muted: bool,
        name: String,
    },
    SetReceivers {
        video: BTreeSet<OutputKey>,
        everyone_audio: bool,
    },
    ForceKeyframe(OutputKey),
    RecalculateLatency,
    StartRecording {
        id: u64,
        format: RecordingFormat,
        path: PathBuf,
        reply: oneshot::Sender<Result<Recorder, MediaError>>,
    },
    Stats {
        reply: oneshot::Sender<MixerStats>,
    },
    Wake,
    Sleep,
}

/// The room's side of its mixer. See the module docs.
pub struct MixerHandle {
    commands: mpsc::Sender<Command>,
    taps: Taps,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MixerHandle {
    /// Builds a room's pipeline on a thread of its own and waits (bounded) until it is built;
    /// it starts playing on [`MixerHandle::wake`].
    pub(super) async fn start(
        templates: Arc<Templates>,
        codecs: Vec<VideoCodec>,
        room: String,
        mix: MixConfig,
        metrics: Arc<crate::metrics::RoomMetrics>,
    ) -> Result<(MixerHandle, MixerEvents), MediaError> {
        let signals = Arc::new(Signals::default());
        let events = MixerEvents(signals.clone());
        let (commands, rx) = mpsc::channel(COMMANDS);
        let (started_tx, started) = oneshot::channel();
        let span = tracing::info_span!("room", room = %room);
        let thread = std::thread::Builder::new()
            .name(format!("mixer-{room}"))
            .spawn(move || {
                let _in_room = span.enter();
                match Mixer::start(templates, &codecs, &room, &mix, signals, metrics) {
                    Ok(mixer) => {
                        let _ = started_tx.send(Ok(mixer.taps()));
                        run(mixer, rx);
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| MediaError::Stopped(format!("starting the mixer thread: {e}")))?;
        let taps = await_reply(started).await??;
        let handle = MixerHandle {
            commands,
            taps,
            thread: Some(thread),
        };
        Ok((handle, events))
    }

    /// Starts the pipeline (if it sleeps): a session is connected.
    pub async fn wake(&self) {
        self.send(Command::Wake).await;
    }

    /// Stops the pipeline until the next [`MixerHandle::wake`]: the room is empty.
    pub async fn sleep(&self) {
        self.send(Command::Sleep).await;
    }

    async fn send(&self, command: Command) {
        // Fails only when the thread is gone (its mixer failed to start or panicked); the room
        // learns it from the replies it waits for.
        if self.commands.send(command).await.is_err() {
            tracing::error!("the mixer thread is gone; command dropped");
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| MediaError::Stopped("the mixer thread is gone".into()))?;
        await_reply(rx).await
    }

    /// Adds a decoding branch for `session`'s incoming track; returns where to push its RTP.
    /// Video gets a compositor pad at `placement`; audio is mixed while its sender speaks.
    pub async fn add_input(
        &self,
        session: SessionId,
        codec: InputCodec,
        placement: Option<Placement>,
    ) -> Result<RtpInput, MediaError> {
        self.ask(|reply| Command::AddInput {
            session,
            codec,
            placement,
            reply,
        })
        .await?
    }

    /// Gives `session` its own mix-minus (every speaker's audio but its own); returns its tap.
    pub async fn add_mix_minus(&self, session: SessionId) -> Result<Tap, MediaError> {
        self.ask(|reply| Command::AddMixMinus { session, reply })
            .await?
    }

    /// Removes `session`'s mix-minus, in order with the other commands.
    pub async fn remove_mix_minus(&self, session: SessionId) {
        self.send(Command::RemoveMixMinus(session)).await;
    }

    /// Links `session`'s voice into the shared mix and the other speakers' mixes, or out of
    /// all of them; waits (bounded) until done, so that what the room does next (moving a
    /// writer to the shared mix) comes after.
    pub async fn set_speaker(&self, session: SessionId, speaking: bool) -> Result<(), MediaError> {
        self.ask(|done| Command::SetSpeaker {
            session,
            speaking,
            done,
        })
        .await
    }

    /// Removes everything of `session` (inputs, mix-minus, links, placeholder), in order with
    /// the other commands; returns at once.
    pub async fn remove_session(&self, session: SessionId) {
        self.send(Command::RemoveSession {
            session,
            done: None,
        })
        .await;
    }

    /// The same, waiting (bounded) until the branches are out.
    pub async fn remove_session_and_wait(&self, session: SessionId) -> Result<(), MediaError> {
        self.ask(|done| Command::RemoveSession {
            session,
            done: Some(done),
        })
        .await
    }

    /// Moves the video inputs to their places (a new layout, speaker or session); the ones
    /// left out are hidden.
    pub async fn set_placements(&self, placements: Vec<Placement>) {
        self.send(Command::SetPlacements(placements)).await;
    }

    /// Draws the layout's labels, the speaker's border and the background.
    pub async fn set_decorations(&self, decorations: Decorations) {
        self.send(Command::SetDecorations(decorations)).await;
    }

    /// Silences (or restores) `session`'s voice in every mix.
    pub async fn set_muted_audio(&self, session: SessionId, muted: bool) {
        self.send(Command::SetMutedAudio { session, muted }).await;
    }

    /// Shows a placeholder with `name` in `session`'s tile (camera off), or its video again.
    pub async fn set_muted_video(&self, session: SessionId, muted: bool, name: String) {
        self.send(Command::SetMutedVideo {
            session,
            muted,
            name,
        })
        .await;
    }

    /// Runs the video outputs in `video` and idles the others, and runs or idles the
    /// "everyone" audio encoder (an output that starts again opens with a keyframe).
    pub async fn set_receivers(&self, video: BTreeSet<OutputKey>, everyone_audio: bool) {
        self.send(Command::SetReceivers {
            video,
            everyone_audio,
        })
        .await;
    }

    /// Asks one output's encoder for a keyframe (the room coalesces requests).
    pub async fn force_keyframe(&self, key: OutputKey) {
        self.send(Command::ForceKeyframe(key)).await;
    }

    /// Re-distributes latency after branches came or went.
    pub async fn recalculate_latency(&self) {
        self.send(Command::RecalculateLatency).await;
    }

    /// Starts recording into `path` (its directory is created, on the mixer's thread).
    pub async fn start_recording(
        &self,
        id: u64,
        format: RecordingFormat,
        path: PathBuf,
    ) -> Result<Recorder, MediaError> {
        self.ask(|reply| Command::StartRecording {
            id,
            format,
            path,
            reply,
        })
        .await?
    }

    /// The counts for the room's debug info.
    pub async fn stats(&self) -> Result<MixerStats, MediaError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Every packet of one video output from now on, if the room has that output.
    pub fn subscribe_video(&self, key: OutputKey) -> Option<broadcast::Receiver<Bytes>> {
        self.taps.video.get(&key).map(Tap::subscribe)
    }

    /// Bytes a video output has produced so far.
    pub fn output_bytes(&self, key: OutputKey) -> Option<u64> {
        self.taps.video.get(&key).map(Tap::bytes)
    }

    /// The "everyone" audio mix.
    pub fn everyone_audio(&self) -> &Tap {
        &self.taps.everyone
    }

    /// Stops the mixer and waits until its pipeline is Null and its thread has ended.
    pub async fn shutdown(mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Closing the channel ends the thread's loop once it has done what was queued.
        let (commands, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, commands));
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Waits for a reply from the mixer thread, within [`REPLY_DEADLINE`].
async fn await_reply<T>(rx: oneshot::Receiver<T>) -> Result<T, MediaError> {
    match tokio::time::timeout(REPLY_DEADLINE, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(MediaError::Stopped("the mixer thread is gone".into())),
        Err(_) => Err(MediaError::Stopped(format!(
            "the mixer did not answer within {REPLY_DEADLINE:?}"
        ))),
    }
}

/// The mixer thread: every command in order, until the handle is dropped.
fn run(mut mixer: Mixer, mut commands: mpsc::Receiver<Command>) {
    while let Some(command) = commands.blocking_recv() {
        match command {
            Command::AddInput {
                session,
                codec,
                placement,
                reply,
            } => {
                let _ = reply.send(mixer.add_input(session, &codec, placement));
            }
            Command::AddMixMinus { session, reply } => {
                let _ = reply.send(mixer.add_mix_minus(session));
            }
            Command::RemoveMixMinus(session) => mixer.remove_mix_minus(session),
            Command::SetSpeaker {
                session,
                speaking,
                done,
            } => {
                mixer.set_speaker(session, speaking);
                let _ = done.send(());
            }
            Command::RemoveSession { session, done } => {
                let took = std::time::Instant::now();
                mixer.remove_session(session);
                tracing::debug!(%session, "its branches came out in {:?}", took.elapsed());
                if let Some(done) = done {
                    let _ = done.send(());
                }
                release_freed_memory();
            }
            Command::SetPlacements(placements) => mixer.set_placements(&placements),
            Command::SetDecorations(d) => mixer.set_decorations(&d),
            Command::SetMutedAudio { session, muted } => mixer.set_muted_audio(session, muted),
            Command::SetMutedVideo {
                session,
                muted,
                name,
            } => mixer.set_muted_video(session, muted, &name),
            Command::SetReceivers {
                video,
                everyone_audio,
            } => mixer.set_receivers(&video, everyone_audio),
            Command::ForceKeyframe(key) => mixer.force_keyframe(key),
            Command::RecalculateLatency => mixer.recalculate_latency(),
            Command::StartRecording {
                id,
                format,
                path,
                reply,
            } => {
                let _ = reply.send(mixer.start_recording(id, format, &path));
            }
            Command::Stats { reply } => {
                let _ = reply.send(mixer.stats());
            }
            Command::Sleep => {
                let took = std::time::Instant::now();
                mixer.sleep();
                tracing::debug!("the pipeline stopped in {:?}", took.elapsed());
            }
            Command::Wake => {
                let took = std::time::Instant::now();
                if let Err(e) = mixer.wake() {
                    // The room learns it from the pipeline's bus (an error it re-reads).
                    tracing::error!("{e}");
                }
                tracing::debug!("the pipeline started in {:?}", took.elapsed());
            }
        }
    }
    // The handle is gone: the pipeline goes to Null here, on this thread.
    drop(mixer);
    release_freed_memory();
}

/// Gives the memory a session's branches (or a room's pipeline) freed back to the system.
/// glibc's malloc keeps freed memory for reuse and returns only what lies at the top of its
/// heap, so a heap that served sessions of different lifetimes stays at its high-water mark:
/// measured, 200 joins and leaves left RSS 11% above its baseline with no live allocation to
/// show for it (heaptrack), and kept growing with more. `malloc_trim` releases the free pages
/// inside the heap too. Called on the mixer's own thread, after the room was told the session
/// is out: it takes about a millisecond and nothing waits on it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's own free lists; it takes
    // the allocator's locks like any malloc call.
    unsafe {
        libc::malloc_trim(0);
    }
}
