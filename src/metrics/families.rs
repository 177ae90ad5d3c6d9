//! What the server counts for Prometheus (`GET /metrics`), process-wide: sessions, joins and
//! leaves, HTTP requests, RTP in and out, feedback, keyframes, receivers, tier switches,
//! recordings. Each is a prometheus-client metric (atomics: recording one is a lock-free add,
//! cheap enough for every RTP packet); [`super::scrape`] renders them with what is read at
//! scrape time (rooms, the mixers' gauges, the process).
//!
//! One process-wide set ([`families`]): the counters are touched from every layer (the HTTP
//! edge, the peers' tasks, the mixers' streaming threads), and a global is what keeps them
//! out of every signature. Label values are bounded sets (kinds, reasons, route groups,
//! status codes, outputs), never a room name: per-room series are [`super::RoomMetrics`]'
//! and bounded by `--metrics-room-limit`.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label set of one `kind` (a session kind, a media kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind.
    pub kind: &'static str,
}

/// A leave and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaveLabels {
    /// The session's kind.
    pub kind: &'static str,
    /// Why it left (`LeaveReason`, snake case).
    pub reason: &'static str,
}

/// An HTTP request's route group and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// What the path is (`whip`, `whep`, `session`, `events`, ...; see [`route_group`]).
    pub route: &'static str,
    /// The status code.
    pub status: u16,
}

/// RTP of one direction and media kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RtpLabels {
    /// `in` (from senders) or `out` (to receivers).
    pub direction: &'static str,
    /// `audio` or `video`.
    pub kind: &'static str,
}

/// RTCP feedback of one direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `received` (from our receivers, about the mix) or `sent` (to our senders).
    pub direction: &'static str,
}

/// One encoded output of the mix (`vp8/high`, `h264/low`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabel {
    /// The output.
    pub output: String,
}

/// A recording's end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `finished` or `failed`.
    pub state: &'static str,
}

/// A webhook's fate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// Its event (`room_started`, ...).
    pub event: &'static str,
    /// `delivered`, `refused` (a 4xx), `failed` (every try), `dropped` (its queue was full).
    pub result: &'static str,
}

/// The process-wide metrics.
pub struct Families {
    /// Sessions now, by kind.
    pub sessions: Family<KindLabel, Gauge>,
    /// Sessions that joined (their offer was answered), by kind.
    pub joins: Family<KindLabel, Counter>,
    /// Sessions that left, by kind and reason.
    pub leaves: Family<LeaveLabels, Counter>,
    /// HTTP requests answered, by route group and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// RTP packets, by direction and kind.
    pub rtp_packets: Family<RtpLabels, Counter>,
    /// RTP bytes (whole packets, before SRTP), by direction and kind.
    pub rtp_bytes: Family<RtpLabels, Counter>,
    /// NACKs (RFC 4585 generic NACK) by direction.
    pub nacks: Family<DirectionLabel, Counter>,
    /// PLIs (and FIRs) by direction.
    pub plis: Family<DirectionLabel, Counter>,
    /// Keyframes forced on an output (coalesced requests, tier switches, new receivers).
    pub keyframes_forced: Counter,
    /// Moves of a receiver between tiers.
    pub tier_switches: Counter,
    /// Recordings running now.
    pub recordings_active: Gauge,
    /// Recordings started.
    pub recordings_started: Counter,
    /// Recordings that ended, by how.
    pub recordings_ended: Family<StateLabel, Counter>,
    /// Time to answer a join (offer in, answer out), all kinds.
    pub join_seconds: Histogram,
    /// Webhooks by event and result.
    pub webhooks: Family<WebhookLabels, Counter>,
}

/// The process's metrics.
pub fn families() -> &'static Families {
    static FAMILIES: LazyLock<Families> = LazyLock::new(Families::new);
    &FAMILIES
}

impl Families {
    fn new() -> Families {
        Families {
            sessions: Family::default(),
            joins: Family::default(),
            leaves: Family::default(),
            http_requests: Family::default(),
            rtp_packets: Family::default(),
            rtp_bytes: Family::default(),
            nacks: Family::default(),
            plis: Family::default(),
            keyframes_forced: Counter::default(),
            tier_switches: Counter::default(),
            recordings_active: Gauge::default(),
            recordings_started: Counter::default(),
            recordings_ended: Family::default(),
            join_seconds: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            webhooks: Family::default(),
        }
    }

    /// Registers every family under its name (counters get `_total` from the encoder; units
    /// are in the names).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "tessera_sessions",
            "Sessions now, by kind",
            self.sessions.clone(),
        );
        registry.register("tessera_joins", "Sessions that joined", self.joins.clone());
        registry.register(
            "tessera_leaves",
            "Sessions that left, by reason",
            self.leaves.clone(),
        );
        registry.register(
            "tessera_http_requests",
            "HTTP requests answered, by route group and status",
            self.http_requests.clone(),
        );
        registry.register(
            "tessera_rtp_packets",
            "RTP packets, in from senders and out to receivers",
            self.rtp_packets.clone(),
        );
        registry.register(
            "tessera_rtp_bytes",
            "RTP bytes, in from senders and out to receivers",
            self.rtp_bytes.clone(),
        );
        registry.register("tessera_nacks", "RTCP NACKs", self.nacks.clone());
        registry.register("tessera_plis", "RTCP PLIs and FIRs", self.plis.clone());
        registry.register(
            "tessera_keyframes_forced",
            "Keyframes forced on an output",
            self.keyframes_forced.clone(),
        );
        registry.register(
            "tessera_tier_switches",
            "Receivers moved between tiers",
            self.tier_switches.clone(),
        );
        registry.register(
            "tessera_recordings_active",
            "Recordings running now",
            self.recordings_active.clone(),
        );
        registry.register(
            "tessera_recordings_started",
            "Recordings started",
            self.recordings_started.clone(),
        );
        registry.register(
            "tessera_recordings_ended",
            "Recordings ended, by state (finished or failed)",
            self.recordings_ended.clone(),
        );
        registry.register(
            "tessera_join_seconds",
            "Time from an offer to its answer",
            self.join_seconds.clone(),
        );
        registry.register(
            "tessera_webhooks",
            "Webhooks by event and result (delivered, refused, failed, dropped)",
            self.webhooks.clone(),
        );
    }

    /// Counts an RTP packet of `len` bytes.
    pub fn rtp(&self, direction: &'static str, kind: &'static str, len: usize) {
        let labels = RtpLabels { direction, kind };
        self.rtp_packets.get_or_create(&labels).inc();
        self.rtp_bytes.get_or_create(&labels).inc_by(len as u64);
    }
}

/// A session counted in `tessera_sessions` while it lives (and in `tessera_joins` once).
#[derive(Debug)]
pub struct SessionCount(KindLabel);

impl SessionCount {
    /// Counts a session of `kind` that joined.
    pub fn joined(kind: &'static str) -> SessionCount {
        let label = KindLabel { kind };
        families().joins.get_or_create(&label).inc();
        families().sessions.get_or_create(&label).inc();
        SessionCount(label)
    }

    /// Counts its leave, and why.
    pub fn left(&self, reason: &'static str) {
        let labels = LeaveLabels {
            kind: self.0.kind,
            reason,
        };
        families().leaves.get_or_create(&labels).inc();
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        families().sessions.get_or_create(&self.0).dec();
    }
}

/// The route group of a request path, for `tessera_http_requests` (bounded: no room names or
/// ids in it).
pub fn route_group(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] | ["readyz"] => "health",
        ["metrics"] => "metrics",
        ["ice-servers"] => "ice_servers",
        ["debug", ..] => "debug",
        ["rooms"] => "rooms",
        ["rooms", _] => "room",
        ["rooms", _, "whip"] => "whip",
        ["rooms", _, "whep"] => "whep",
        ["rooms", _, "events"] => "events",
        ["rooms", _, "layout"] => "layout",
        ["rooms", _, "recordings", ..] => "recordings",
        ["rooms", _, "sessions", ..] => "session",
        ["rooms", ..] => "other",
        _ => "web",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_group_without_names_or_ids() {
        assert_eq!(route_group("/rooms/a/whip"), "whip");
        assert_eq!(route_group("/rooms/a/sessions/abc/mute"), "session");
        assert_eq!(route_group("/rooms/a/recordings/1/file"), "recordings");
        assert_eq!(route_group("/rooms/a"), "room");
        assert_eq!(route_group("/readyz"), "health");
        assert_eq!(route_group("/js/app.js"), "web");
        assert_eq!(route_group("/"), "web");
    }
}
