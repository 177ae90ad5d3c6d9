//! What a room's mixer measures from inside its pipeline: the composite's frame interval, each
//! output's encode time and frames dropped before its encoder, each input's freshness (time
//! since its last decoded frame), audio arriving too late for its mix (underruns), and the
//! latency the pipeline adds. The media layer records into a [`RoomMetrics`] from pad probes
//! (atomics and prometheus-client metrics, no locks on the hot path but the tiny input map);
//! [`super::scrape`] reads the gauges at scrape time.
//!
//! Cardinality: the first `--metrics-room-limit` rooms running at once get a `room` label of
//! their own name; rooms beyond share `room="_other"` (their histograms and counters add up,
//! their gauges take the worst). A room's series go away when it ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::types::SessionId;

/// The label of the rooms over the limit.
pub const OTHER_ROOMS: &str = "_other";

/// The default of `--metrics-room-limit`.
pub const DEFAULT_ROOM_LIMIT: usize = 100;

/// A room's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomLabel {
    /// The room's name, or `_other`.
    pub room: String,
}

/// A room's output.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomOutputLabels {
    /// The room's name, or `_other`.
    pub room: String,
    /// The output (`vp8/high`, ...).
    pub output: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn frame_interval_histogram() -> Histogram {
    // A healthy 30 fps room sits in the 0.035 bucket; 25 fps in 0.04 / 0.05.
    Histogram::new([
        0.010, 0.020, 0.030, 0.035, 0.040, 0.050, 0.067, 0.100, 0.200, 0.500, 1.0,
    ])
}

fn encode_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.033, 0.050, 0.100,
    ])
}

/// Every room's mixer metrics, and which rooms have labels of their own.
pub struct MixerFamilies {
    /// Wall-clock time between two composed frames.
    pub frame_interval: HistogramFamily<RoomLabel>,
    /// Time a frame spends in an output's encoder.
    pub encode: HistogramFamily<RoomOutputLabels>,
    /// Frames an output's queue dropped before its encoder (the encoder was behind).
    pub encoder_drops: Family<RoomOutputLabels, Counter>,
    /// Audio that reached a mix after the mix had gone out without it.
    pub audio_underruns: Family<RoomLabel, Counter>,
    /// The rooms that measure, for the gauges read at scrape.
    pub(super) rooms: Mutex<Vec<Weak<RoomMetrics>>>,
    /// How many rooms get a label of their own.
    limit: AtomicU64,
}

/// The mixers' metrics.
pub fn mixer_families() -> &'static MixerFamilies {
    static MIXERS: LazyLock<MixerFamilies> = LazyLock::new(|| MixerFamilies {
        frame_interval: Family::new_with_constructor(frame_interval_histogram),
        encode: Family::new_with_constructor(encode_histogram),
        encoder_drops: Family::default(),
        audio_underruns: Family::default(),
        rooms: Mutex::new(Vec::new()),
        limit: AtomicU64::new(DEFAULT_ROOM_LIMIT as u64),
    });
    &MIXERS
}

/// Sets `--metrics-room-limit`.
pub fn set_room_limit(limit: usize) {
    mixer_families()
        .limit
        .store(limit as u64, Ordering::Relaxed);
}

impl MixerFamilies {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<RoomMetrics>>> {
        // Pushes, retains and reads: a poisoned list is still a list.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rooms measuring now.
    pub(super) fn live(&self) -> Vec<Arc<RoomMetrics>> {
        let mut rooms = self.lock();
        rooms.retain(|w| w.strong_count() > 0);
        rooms.iter().filter_map(Weak::upgrade).collect()
    }
}

/// When an input last delivered a decoded frame, as nanoseconds since [`epoch`].
#[derive(Debug, Default)]
pub struct InputClock {
    last_ns: AtomicU64,
}

impl InputClock {
    /// A frame came out of the decoder now.
    pub fn tick(&self) {
        self.last_ns.store(since_epoch(), Ordering::Relaxed);
    }
}

fn epoch() -> Instant {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    *EPOCH
}

fn since_epoch() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// One room's mixer metrics (shared by its actor and its mixer's probes).
#[derive(Debug)]
pub struct RoomMetrics {
    /// The `room` label: the name, or [`OTHER_ROOMS`].
    pub label: String,
    /// The composite's frame interval.
    pub frame_interval: Histogram,
    /// Audio underruns of any of its mixes.
    pub audio_underruns: Counter,
    /// Video inputs not muted, and when each last delivered a frame. A std Mutex: inserts and
    /// removals from the mixer's thread, a read per scrape; the probes hold their own clock.
    inputs: Mutex<HashMap<SessionId, Arc<InputClock>>>,
    /// Receivers per output, as the room last set them.
    receivers: Mutex<BTreeMap<String, u64>>,
    /// The latency the room's pipeline is configured with (what its mixers wait for inputs).
    pipeline_latency_ns: AtomicU64,
}

impl RoomMetrics {
    /// Starts measuring a room named `name`.
    pub fn start(name: &str) -> Arc<RoomMetrics> {
        let families = mixer_families();
        let mut rooms = families.lock();
        rooms.retain(|w| w.strong_count() > 0);
        let limit = families.limit.load(Ordering::Relaxed) as usize;
        let own = rooms
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|r| r.label != OTHER_ROOMS)
            .count();
        let label = choose_label(name, own, limit);
        let room = RoomLabel {
            room: label.clone(),
        };
        let metrics = Arc::new(RoomMetrics {
            frame_interval: families.frame_interval.get_or_create(&room).clone(),
            audio_underruns: families.audio_underruns.get_or_create(&room).clone(),
            label,
            inputs: Mutex::new(HashMap::new()),
            receivers: Mutex::new(BTreeMap::new()),
            pipeline_latency_ns: AtomicU64::new(0),
        });
        rooms.push(Arc::downgrade(&metrics));
        metrics
    }

    /// The encode-time histogram of `output`.
    pub fn encode(&self, output: &str) -> Histogram {
        mixer_families()
            .encode
            .get_or_create(&self.output_labels(output))
            .clone()
    }

    /// The counter of frames dropped before `output`'s encoder.
    pub fn encoder_drops(&self, output: &str) -> Counter {
        mixer_families()
            .encoder_drops
            .get_or_create(&self.output_labels(output))
            .clone()
    }

    fn output_labels(&self, output: &str) -> RoomOutputLabels {
        RoomOutputLabels {
            room: self.label.clone(),
            output: output.to_owned(),
        }
    }

    /// A video input to watch (its clock starts now: a new input is fresh until it is late).
    pub fn watch_input(&self, session: SessionId) -> Arc<InputClock> {
        let clock = Arc::new(InputClock::default());
        clock.tick();
        lock(&self.inputs).insert(session, clock.clone());
        clock
    }

    /// An input that went away, or whose camera is off (it sends nothing on purpose).
    pub fn forget_input(&self, session: SessionId) {
        lock(&self.inputs).remove(&session);
    }

    /// Puts back an input whose camera came back on.
    pub fn rewatch_input(&self, session: SessionId, clock: Arc<InputClock>) {
        clock.tick();
        lock(&self.inputs).insert(session, clock);
    }

    /// The stalest input: how long since its last frame (`None` without inputs).
    pub fn worst_freshness(&self) -> Option<Duration> {
        let now = since_epoch();
        lock(&self.inputs)
            .values()
            .map(|c| Duration::from_nanos(now.saturating_sub(c.last_ns.load(Ordering::Relaxed))))
            .max()
    }

    /// Sets how many receivers each output has.
    pub fn set_receivers(&self, counts: BTreeMap<String, u64>) {
        *lock(&self.receivers) = counts;
    }

    /// How many receivers each output has.
    pub fn receivers(&self) -> BTreeMap<String, u64> {
        lock(&self.receivers).clone()
    }

    /// Records the pipeline's configured latency.
    pub fn set_pipeline_latency(&self, latency: Duration) {
        self.pipeline_latency_ns
            .store(latency.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The pipeline's configured latency.
    pub fn pipeline_latency(&self) -> Duration {
        Duration::from_nanos(self.pipeline_latency_ns.load(Ordering::Relaxed))
    }
}

/// A new room's label, when `own` rooms have labels of their own and `limit` may.
fn choose_label(name: &str, own: usize, limit: usize) -> String {
    if own < limit {
        name.to_owned()
    } else {
        OTHER_ROOMS.to_owned()
    }
}

impl Drop for RoomMetrics {
    fn drop(&mut self) {
        // A room of its own takes its series with it; `_other` is shared and stays.
        if self.label == OTHER_ROOMS {
            return;
        }
        let families = mixer_families();
        let room = RoomLabel {
            room: self.label.clone(),
        };
        families.frame_interval.remove(&room);
        families.audio_underruns.remove(&room);
        use crate::types::{OutputKey, Tier, VideoCodec};
        let outputs = VideoCodec::ALL
            .iter()
            .flat_map(|&codec| Tier::ALL.iter().map(move |&tier| OutputKey { codec, tier }));
        for output in outputs {
            let labels = self.output_labels(&output.to_string());
            families.encode.remove(&labels);
            families.encoder_drops.remove(&labels);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single inserts, removals and reads: a poisoned lock still guards whole values.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_over_the_limit_share_one_label() {
        assert_eq!(choose_label("a", 0, 1), "a");
        assert_eq!(choose_label("b", 1, 1), OTHER_ROOMS);
        assert_eq!(choose_label("c", 0, 0), OTHER_ROOMS);
    }

    #[test]
    fn freshness_is_the_stalest_watched_input() {
        let room = RoomMetrics::start("metrics-test");
        assert_eq!(room.worst_freshness(), None);
        let s1 = SessionId(1);
        let _clock = room.watch_input(s1);
        let fresh = room.worst_freshness().expect("an input");
        assert!(fresh < Duration::from_secs(1), "{fresh:?}");
        room.forget_input(s1);
        assert_eq!(room.worst_freshness(), None);
    }
}
