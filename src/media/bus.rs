//! What a room's pipelines report to the room, from GStreamer's threads.
//!
//! Bus handlers, pad probes and recording buses run on streaming threads and must never block,
//! and what they report is control: a pipeline failure ends the room, a keyframe request must
//! reach the sender, a latency change must be acted on. So nothing is sent as a message that a
//! full queue could drop: each report sets state in [`Signals`] (a failure, a flag, a set of
//! sessions) and wakes the room, which takes everything set since it last looked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use tokio::sync::Notify;

use crate::types::{AudioLevel, SessionId};

/// Levels an input may have waiting for its room at most (5 s of 20 ms packets): a room that
/// falls behind loses the oldest, which matter least to who is speaking now.
const MAX_WAITING_LEVELS: usize = 250;

/// Something the pipeline reports to its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixerEvent {
    /// The pipeline failed; the room should end. Carries the element path and debug string.
    Error(String),
    /// One session's input branch failed (its depayloader or decoder gave up on what it was
    /// sent): only that session should go. Carries the element path and debug string.
    InputFailed {
        /// The session whose media failed.
        session: SessionId,
        /// The element and GStreamer's words.
        error: String,
    },
    /// An element's latency changed (a branch was added): the room should ask the mixer to
    /// recalculate it, off the streaming threads.
    LatencyChanged,
    /// A session's video input needs a keyframe (join, loss, decode error): send it a PLI.
    KeyframeWanted(SessionId),
    /// A session's audio input started or stopped speaking (its decoded level, with the
    /// detector's attack and hang): where its voice goes changes.
    Speaking {
        /// The session.
        session: SessionId,
        /// Started (`true`) or stopped.
        speaking: bool,
    },
    /// An audio input's packet levels since its last report (it reports while it is not
    /// silent): who has the floor may change.
    Levels {
        /// The session.
        session: SessionId,
        /// Oldest first; the last arrived just now.
        levels: Vec<AudioLevel>,
    },
    /// A recording's pipeline failed (disk full, unwritable file); the room goes on.
    RecordingFailed {
        /// The recording.
        id: u64,
        /// The element and GStreamer's words.
        error: String,
    },
}

#[derive(Default)]
struct State {
    failure: Option<String>,
    /// Each failed input's first error (later ones add nothing).
    inputs_failed: BTreeMap<SessionId, String>,
    latency_changed: bool,
    keyframes: BTreeSet<SessionId>,
    /// Each input's latest speaking state not yet taken (a start and a stop in between collapse
    /// into the latest: the room only needs where it should end up).
    speaking: BTreeMap<SessionId, bool>,
    /// Each input's levels not yet taken.
    levels: BTreeMap<SessionId, Vec<AudioLevel>>,
    /// At most one entry per recording (its first failure).
    recordings_failed: Vec<(u64, String)>,
    /// Recordings already reported, so a second error of the same one adds nothing.
    recordings_reported: BTreeSet<u64>,
}

/// The reports of one room's pipelines, shared by their threads (writers) and the room
/// (reader, through [`MixerEvents`]).
#[derive(Default)]
pub struct Signals {
    /// A std Mutex: held for an insert or a take, never across an await.
    state: Mutex<State>,
    /// Wakes the room; a wake-up before it waits is kept (a permit), so none is lost.
    notify: Notify,
}

impl Signals {
    fn update(&self, f: impl FnOnce(&mut State)) {
        // A poisoned lock still holds consistent state: every update is a single assignment.
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.notify.notify_one();
    }

    /// The pipeline failed (only the first failure is kept: it is the cause).
    pub fn fail(&self, text: String) {
        self.update(|s| {
            s.failure.get_or_insert(text);
        });
    }

    /// `session`'s input branch failed (only its first error is kept).
    pub fn input_failed(&self, session: SessionId, text: String) {
        self.update(|s| {
            s.inputs_failed.entry(session).or_insert(text);
        });
    }

    /// Some element's latency changed.
    pub fn latency_changed(&self) {
        self.update(|s| s.latency_changed = true);
    }

    /// `session`'s video input wants a keyframe.
    pub fn keyframe_wanted(&self, session: SessionId) {
        self.update(|s| {
            s.keyframes.insert(session);
        });
    }

    /// `session`'s audio input started or stopped speaking.
    pub fn speaking(&self, session: SessionId, speaking: bool) {
        self.update(|s| {
            s.speaking.insert(session, speaking);
        });
    }

    /// `session`'s audio input reports the levels of its latest packets.
    pub fn levels(&self, session: SessionId, levels: &[AudioLevel]) {
        self.update(|s| {
            let waiting = s.levels.entry(session).or_default();
            waiting.extend_from_slice(levels);
            let excess = waiting.len().saturating_sub(MAX_WAITING_LEVELS);
            waiting.drain(..excess);
        });
    }

    /// A recording's pipeline failed.
    pub fn recording_failed(&self, id: u64, error: String) {
        self.update(|s| {
            if s.recordings_reported.insert(id) {
                s.recordings_failed.push((id, error));
            }
        });
    }

    fn take(&self) -> Vec<MixerEvent> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        if let Some(e) = s.failure.take() {
            out.push(MixerEvent::Error(e));
        }
        out.extend(
            std::mem::take(&mut s.inputs_failed)
                .into_iter()
                .map(|(session, error)| MixerEvent::InputFailed { session, error }),
        );
        if std::mem::take(&mut s.latency_changed) {
            out.push(MixerEvent::LatencyChanged);
        }
        out.extend(
            std::mem::take(&mut s.keyframes)
                .into_iter()
                .map(MixerEvent::KeyframeWanted),
        );
        out.extend(
            std::mem::take(&mut s.speaking)
                .into_iter()
                .map(|(session, speaking)| MixerEvent::Speaking { session, speaking }),
        );
        out.extend(
            std::mem::take(&mut s.levels)
                .into_iter()
                .map(|(session, levels)| MixerEvent::Levels { session, levels }),
        );
        out.extend(
            s.recordings_failed
                .drain(..)
                .map(|(id, error)| MixerEvent::RecordingFailed { id, error }),
        );
        out
    }
}

/// The room's side of [`Signals`].
pub struct MixerEvents(pub(super) Arc<Signals>);

impl MixerEvents {
    /// Waits until something was reported, then takes everything reported since the last call
    /// (a failure first).
    pub async fn next(&self) -> Vec<MixerEvent> {
        loop {
            let events = self.0.take();
            if !events.is_empty() {
                return events;
            }
            self.0.notify.notified().await;
        }
    }
}

/// The element path and GStreamer's words of an error message.
pub(super) fn describe_error(msg: &gst::Message, err: &gst::message::Error) -> String {
    format!(
        "{}: {} ({})",
        msg.src()
            .map(|s| s.path_string().to_string())
            .unwrap_or_default(),
        err.error(),
        err.debug().map(|d| d.to_string()).unwrap_or_default()
    )
}

/// The session whose input branch holds `object` (an element inside a bin named by
/// [`super::input::input_bin_name`]), if any.
fn input_session(object: &gst::Object) -> Option<SessionId> {
    let mut object = object.clone();
    loop {
        if let Some(session) = super::input::session_of_input_bin(&object.name()) {
            return Some(session);
        }
        object = object.parent()?;
    }
}

/// Turns a room pipeline's bus messages into [`Signals`], on the posting thread.
pub(super) fn watch_bus(pipeline: &gst::Pipeline, signals: Arc<Signals>) {
    let Some(bus) = pipeline.bus() else { return };
    bus.set_sync_handler(move |_, msg| {
        use gst::MessageView;
        match msg.view() {
            // What a session sends is the one thing in a room a stranger controls: when its
            // branch fails, only that session goes; anything else fails the room.
            MessageView::Error(err) => {
                let text = describe_error(msg, err);
                match msg.src().and_then(input_session) {
                    Some(session) => {
                        tracing::warn!(%session, "an input failed: {text}");
                        signals.input_failed(session, text);
                    }
                    None => {
                        tracing::error!("pipeline error: {text}");
                        signals.fail(text);
                    }
                }
            }
            MessageView::Warning(w) => {
                let path = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                // An input's warnings (a frame it could not decode) are as many as a sender
                // likes to cause: not worth a line each at the default level.
                if msg.src().and_then(input_session).is_some() {
                    tracing::debug!("input warning: {path}: {}", w.error());
                } else {
                    tracing::warn!("pipeline warning: {path}: {}", w.error());
                }
            }
            MessageView::Latency(_) => signals.latency_changed(),
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
}

/// Reports keyframe requests that reach an input's appsrc from its depayloader or decoder.
pub(super) fn watch_keyframe_requests(
    appsrc: &gst_app::AppSrc,
    session: SessionId,
    signals: Arc<Signals>,
) {
    let Some(pad) = appsrc.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(event)) = &info.data
            && gst_video::ForceKeyUnitEvent::is(event)
        {
            signals.keyframe_wanted(session);
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_are_state_not_messages_and_none_is_lost() {
        let signals = Arc::new(Signals::default());
        let events = MixerEvents(signals.clone());
        // Many reports before the room looks: they collapse, nothing is dropped.
        for i in 0..10_000 {
            signals.keyframe_wanted(SessionId(i % 3));
            signals.latency_changed();
        }
        signals.recording_failed(7, "disk full".into());
        signals.recording_failed(7, "again".into());
        signals.fail("first".into());
        signals.fail("second".into());
        let got = events.next().await;
        assert_eq!(got[0], MixerEvent::Error("first".into()));
        assert_eq!(got[1], MixerEvent::LatencyChanged);
        assert_eq!(
            &got[2..5],
            &[0, 1, 2].map(|i| MixerEvent::KeyframeWanted(SessionId(i)))
        );
        assert_eq!(
            got[5],
            MixerEvent::RecordingFailed {
                id: 7,
                error: "disk full".into()
            }
        );
        assert_eq!(got.len(), 6);
        // A report from another thread wakes a waiting reader.
        let s = signals.clone();
        let waiter = tokio::spawn(async move { events.next().await });
        std::thread::spawn(move || s.keyframe_wanted(SessionId(9)));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken within the deadline")
            .expect("the reader task ran");
        assert_eq!(got, [MixerEvent::KeyframeWanted(SessionId(9))]);
    }

    #[test]
    fn issue16_an_inputs_error_drops_its_session_and_any_other_ends_the_room() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let signals = Arc::new(Signals::default());
        watch_bus(&pipeline, signals.clone());
        let input = gst::Bin::with_name(&super::super::input::input_bin_name(
            crate::types::MediaKind::Video,
            SessionId(0xab),
        ));
        let decoder = gst::ElementFactory::make("identity")
            .name("decoder")
            .build()
            .unwrap();
        input.add(&decoder).unwrap();
        let compositor = gst::ElementFactory::make("identity")
            .name("compositor")
            .build()
            .unwrap();
        pipeline
            .add_many([input.upcast_ref(), &compositor])
            .unwrap();
        let post = |element: &gst::Element, text: &str| {
            element.post_message(
                gst::message::Error::builder(gst::StreamError::Decode, text)
                    .src(element)
                    .build(),
            )
        };
        // Posted from inside the session's bin: that session fails, the room goes on.
        post(&decoder, "garbage").unwrap();
        post(&decoder, "more garbage").unwrap();
        let taken = signals.take();
        assert!(
            matches!(&taken[..], [MixerEvent::InputFailed { session, error }]
                if *session == SessionId(0xab) && error.contains("garbage")),
            "{taken:?}"
        );
        // From anything else: the room fails.
        post(&compositor, "broken").unwrap();
        let taken = signals.take();
        assert!(
            matches!(&taken[..], [MixerEvent::Error(e)] if e.contains("broken")),
            "{taken:?}"
        );
    }
}
