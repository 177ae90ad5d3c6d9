//! Audio mixes: the room's shared "everyone" mix and one mix-minus per participant who is
//! speaking (every speaker but themselves), each a bin from `audio-mix.pipeline` whose
//! audiomixer gets one ghost sink pad per speaker linked into it, through a queue of its own.
//! Only speakers are linked anywhere: a silent input is decoded (its level is measured) and
//! mixed nowhere. Who speaks, and in which order the links and moves happen so that nobody
//! hears themselves, is the room's decision (`room/voice.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gst::prelude::*;

use super::input::JITTER_MS;
use super::measure::{MixPosition, watch_late_audio};
use super::mixer::Mixer;
use super::pads::{adopt_base_time, block_until_idle, remove_bin};
use super::video_output::Tap;
use super::{MediaError, Templates, build_err};
use crate::config::MixConfig;
use crate::types::SessionId;

/// Most audio a link from a speaker's input to one mix may hold while that mix is busy (see
/// `link_audio`); older audio is dropped, for that mix only.
const AUDIO_LINK_QUEUE: Duration = Duration::from_millis(200);

/// An audio mix (the "everyone" mix or one participant's mix-minus): a bin from
/// `audio-mix.pipeline` whose audiomixer gets one ghost sink pad per linked input.
pub(super) struct AudioMix {
    pub(super) bin: gst::Bin,
    pub(super) mixer: gst::Element,
    /// The valve before the encoder: closed while nobody listens.
    pub(super) gate: gst::Element,
    pub(super) tap: Tap,
    /// How far it has mixed (late input counts as an underrun, see `measure.rs`).
    position: Arc<MixPosition>,
}

/// A link from an input's tee into an audio mix.
pub(super) struct AudioLink {
    tee_pad: gst::Pad,
    /// Decouples the source's streaming thread from this mix (see `link_audio`).
    queue: gst::Element,
    ghost: gst::GhostPad,
    mixer_pad: gst::Pad,
}

impl Mixer {
    /// Gives `session` its own mix-minus (every speaker's audio but its own).
    pub(super) fn add_mix_minus(&mut self, session: SessionId) -> Result<Tap, MediaError> {
        if let Some(existing) = self.minus.get(&session) {
            return Ok(existing.tap.clone());
        }
        let voiced = self
            .speakers
            .iter()
            .any(|&s| s != session && self.audio_inputs.contains_key(&s));
        let audio = new_audio_mix(
            &self.templates,
            &self.pipeline,
            &self.mix,
            &format!("minus-{session}"),
            voiced,
        )?;
        let tap = audio.tap.clone();
        // Its encoder waits for the voices (see `open_when_voiced`).
        audio.gate.set_property("drop", true);
        // Started before anything is linked into it: its audiomixer is running by the time
        // the others' audio arrives, so none of it waits (and goes stale) in the links' queues.
        let started = audio
            .bin
            .sync_state_with_parent()
            .map(|_| ())
            .map_err(|e| build_err(format!("starting the mix-minus of {session}"), e));
        self.minus.insert(session, audio);
        let sources: Vec<SessionId> = self
            .speakers
            .iter()
            .copied()
            .filter(|&s| s != session && self.audio_inputs.contains_key(&s))
            .collect();
        let started = started.and_then(|()| {
            sources
                .into_iter()
                .try_for_each(|source| self.link_audio(source, Some(session)))
        });
        if let Err(e) = started {
            self.remove_mix_minus(session);
            return Err(e);
        }
        let voices: Vec<gst::Pad> = self
            .audio_links
            .iter()
            .filter(|((_, mix), _)| *mix == Some(session))
            .map(|(_, link)| link.ghost.clone().upcast())
            .collect();
        if let Some(mix) = self.minus.get(&session) {
            open_when_voiced(mix, &voices);
        }
        // Linking into a running pipeline posts no latency message: ask for the pipeline's
        // latency again, so every mix's budget covers the paths that now feed it.
        self.recalculate_latency();
        Ok(tap)
    }

    /// Removes `session`'s mix-minus and every link into it.
    pub(super) fn remove_mix_minus(&mut self, session: SessionId) {
        let links: Vec<_> = self
            .audio_links
            .keys()
            .copied()
            .filter(|&(_, mix)| mix == Some(session))
            .collect();
        for key in links {
            self.unlink_audio(key);
        }
        if let Some(mix) = self.minus.remove(&session) {
            remove_bin(&self.pipeline, &mix.bin);
        }
    }

    /// Links `session`'s voice into the shared mix and every other speaker's mix-minus
    /// (`speaking`), or out of every mix. Its input may come later: it is linked then.
    pub(super) fn set_speaker(&mut self, session: SessionId, speaking: bool) {
        if speaking {
            self.speakers.insert(session);
            if let Err(e) = self.link_speaker(session) {
                tracing::warn!(%session, "linking a speaker: {e}");
            }
        } else {
            self.speakers.remove(&session);
            self.unlink_source(session);
        }
    }

    /// Links a speaker's input (if it has one) into every mix but its own that lacks it.
    pub(super) fn link_speaker(&mut self, session: SessionId) -> Result<(), MediaError> {
        if !self.audio_inputs.contains_key(&session) {
            return Ok(());
        }
        let mixes: Vec<Option<SessionId>> = std::iter::once(None)
            .chain(
                self.minus
                    .keys()
                    .filter(|&&m| m != session)
                    .map(|&m| Some(m)),
            )
            .filter(|&mix| !self.audio_links.contains_key(&(session, mix)))
            .collect();
        for mix in mixes {
            self.link_audio(session, mix)?;
        }
        if self.audio_muted.contains(&session) {
            self.set_muted_audio(session, true);
        }
        Ok(())
    }

    /// Unlinks `source`'s voice from every mix.
    pub(super) fn unlink_source(&mut self, source: SessionId) {
        let links: Vec<_> = self
            .audio_links
            .keys()
            .copied()
            .filter(|&(src, _)| src == source)
            .collect();
        for key in links {
            self.unlink_audio(key);
        }
    }

    /// Silences (or restores) `session`'s voice in every mix, whether or not it still sends.
    pub(super) fn set_muted_audio(&mut self, session: SessionId, muted: bool) {
        if muted {
            self.audio_muted.insert(session);
        } else {
            self.audio_muted.remove(&session);
        }
        for ((source, _), link) in &self.audio_links {
            if *source == session {
                link.mixer_pad.set_property("mute", muted);
            }
        }
    }

    pub(super) fn link_audio(
        &mut self,
        source: SessionId,
        mix: Option<SessionId>,
    ) -> Result<(), MediaError> {
        let context = || format!("linking the audio of {source} into mix {mix:?}");
        let tee = self
            .audio_inputs
            .get(&source)
            .and_then(|i| i.tee.clone())
            .ok_or_else(|| build_err(context(), "no such audio input"))?;
        let target = match mix {
            None => &self.everyone,
            Some(m) => self
                .minus
                .get(&m)
                .ok_or_else(|| build_err(context(), "no such mix"))?,
        };
        let mixer_pad = target
            .mixer
            .request_pad_simple("sink_%u")
            .ok_or_else(|| build_err(context(), "audiomixer gave no sink pad"))?;
        watch_late_audio(
            &mixer_pad,
            target.position.clone(),
            self.metrics.audio_underruns.clone(),
        );
        let ghost = gst::GhostPad::builder_with_target(&mixer_pad)
            .map_err(|e| build_err(context(), e))?
            .name(format!("in-{source}"))
            .build();
        ghost
            .set_active(true)
            .map_err(|e| build_err(context(), e))?;
        target
            .bin
            .add_pad(&ghost)
            .map_err(|e| build_err(context(), e))?;
        // A queue per branch: an audiomixer's sink pad blocks whoever pushes into it until it
        // has mixed that buffer, so without a queue one mix that is slow or still starting would
        // hold the source's streaming thread, and with it the source's audio in every other mix
        // (issue 9: a new mix-minus stalled a speaker's input for ~400 ms, after which every mix
        // dropped that speaker's late audio until the aggregator resynced). Leaky: a mix that
        // stalls for longer loses its own oldest audio, nobody else's.
        let queue = gst::ElementFactory::make("queue")
            .property("max-size-buffers", 0u32)
            .property("max-size-bytes", 0u32)
            .property("max-size-time", AUDIO_LINK_QUEUE.as_nanos() as u64)
            .property_from_str("leaky", "downstream")
            .property("silent", true)
            .build()
            .map_err(|e| build_err(context(), e))?;
        self.pipeline
            .add(&queue)
            .map_err(|e| build_err(context(), e))?;
        let queue_src = queue
            .static_pad("src")
            .ok_or_else(|| build_err(context(), "queue has no src pad"))?;
        let queue_sink = queue
            .static_pad("sink")
            .ok_or_else(|| build_err(context(), "queue has no sink pad"))?;
        queue_src
            .link(&ghost)
            .map_err(|e| build_err(context(), e))?;
        queue
            .sync_state_with_parent()
            .map_err(|e| build_err(context(), e))?;
        let tee_pad = tee
            .request_pad_simple("src_%u")
            .ok_or_else(|| build_err(context(), "tee gave no src pad"))?;
        tee_pad
            .link(&queue_sink)
            .map_err(|e| build_err(context(), e))?;
        self.audio_links.insert(
            (source, mix),
            AudioLink {
                tee_pad,
                queue,
                ghost,
                mixer_pad,
            },
        );
        Ok(())
    }

    pub(super) fn unlink_audio(&mut self, key: (SessionId, Option<SessionId>)) {
        let Some(link) = self.audio_links.remove(&key) else {
            return;
        };
        block_until_idle(&link.tee_pad);
        if let Some(queue_sink) = link.queue.static_pad("sink") {
            let _ = link.tee_pad.unlink(&queue_sink);
        }
        if let Some(tee) = link.tee_pad.parent_element() {
            tee.release_request_pad(&link.tee_pad);
        }
        // Nothing feeds the queue any more: it can stop without waiting for data to drain.
        let _ = link.queue.set_state(gst::State::Null);
        let _ = self.pipeline.remove(&link.queue);
        let target = match key.1 {
            None => Some(&self.everyone),
            Some(m) => self.minus.get(&m),
        };
        if let Some(target) = target {
            let _ = target.bin.remove_pad(&link.ghost);
            target.mixer.release_request_pad(&link.mixer_pad);
        }
    }
}

/// How many of its own 10 ms output buffers a new mix-minus waits at most for its voices before it
/// sends anyway (a speaker whose sender just went away delivers nothing).
const VOICE_WAIT_PERIODS: usize = 15;

/// Opens a new mix-minus's encoder once every voice linked into it has delivered audio (or
/// after [`VOICE_WAIT_PERIODS`]). Its first packet is what a listener's writer moves to: were
/// it silence from a mixer whose inputs are still on their way, the listener would hear a gap
/// where the room was talking (issue 9's newcomer heard 0.5-1 s of near-silence that way).
fn open_when_voiced(mix: &AudioMix, voices: &[gst::Pad]) {
    let gate = mix.gate.clone();
    if voices.is_empty() {
        gate.set_property("drop", false);
        return;
    }
    let waiting = Arc::new(AtomicUsize::new(voices.len()));
    for pad in voices {
        let (gate, waiting) = (gate.clone(), waiting.clone());
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
                gate.set_property("drop", false);
            }
            gst::PadProbeReturn::Remove
        });
    }
    // The fallback counts the mix's own output (it mixes on its own clock, voices or not).
    if let Some(out) = mix.mixer.static_pad("src") {
        let periods = AtomicUsize::new(0);
        out.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if waiting.load(Ordering::Acquire) == 0 {
                return gst::PadProbeReturn::Remove;
            }
            if periods.fetch_add(1, Ordering::Relaxed) + 1 >= VOICE_WAIT_PERIODS {
                gate.set_property("drop", false);
                return gst::PadProbeReturn::Remove;
            }
            gst::PadProbeReturn::Ok
        });
    }
}

pub(super) fn new_audio_mix(
    templates: &Templates,
    pipeline: &gst::Pipeline,
    mix: &MixConfig,
    name: &str,
    voiced: bool,
) -> Result<AudioMix, MediaError> {
    let context = || format!("adding the audio mix {name}");
    // A mix made with the room (before it plays) starts at running time zero and mixes on its
    // own clock from then on, voices or not. One made while the room plays (a mix-minus)
    // with voices to link starts at its first voice's first instant, so the listener moved
    // onto it hears the room continue (issue 9); one with no voice yet starts at the running
    // time of its making (`set`), so its listener hears silence rather than nothing (at
    // `first` it waited for a voice that may never come). Started at zero while the room
    // plays, it would race through the seconds since the room started.
    let now = pipeline.current_running_time();
    let (start_selection, start_at) = match now {
        None => ("zero", None),
        Some(_) if voiced => ("first", None),
        Some(now) => ("set", Some(now)),
    };
    let upstream_ns = Duration::from_millis(JITTER_MS.into()).as_nanos() as u64;
    let desc = templates.render(
        "audio-mix.pipeline",
        &[
            ("audio_bps", (mix.audio_kbps * 1000).to_string()),
            ("start_selection", start_selection.to_owned()),
            ("upstream_ns", upstream_ns.to_string()),
        ],
    )?;
    let bin =
        gst::parse::bin_from_description(&desc, false).map_err(|e| build_err(context(), e))?;
    bin.set_property("name", format!("audio-{name}"));
    let mixer = bin
        .by_name("mix")
        .ok_or_else(|| build_err(context(), "audio-mix.pipeline has no element named mix"))?;
    if let Some(at) = start_at {
        mixer.set_property("start-time", at.nseconds());
    }
    let sink = bin
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| build_err(context(), "audio-mix.pipeline has no appsink named out"))?;
    let tap = Tap::attach(&sink, None);
    let gate = bin
        .by_name("gate")
        .ok_or_else(|| build_err(context(), "audio-mix.pipeline has no valve named gate"))?;
    adopt_base_time(pipeline, &bin);
    pipeline.add(&bin).map_err(|e| build_err(context(), e))?;
    let position = Arc::new(MixPosition::default());
    if let Some(src) = mixer.static_pad("src") {
        position.watch(&src);
    }
    Ok(AudioMix {
        bin,
        mixer,
        gate,
        tap,
        position,
    })
}
