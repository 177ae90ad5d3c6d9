//! Admission control: who may start what, so that nobody can take the server down.
//!
//! - a rate per client address on `POST` and `PATCH` (governor; `429` with `Retry-After`);
//! - at most so many sessions not yet connected per address, and event streams per address
//!   (`429`), counted by [`Slot`]s their holders drop when done;
//! - at most so many rooms and sessions on the server (`503`);
//! - and, before a new session or room, the server's own CPU use over the last seconds
//!   ([`load`]): over `--max-load`, `503` with `Retry-After`, while running rooms keep going.
//!
//! The decisions are pure ([`decide_load`], [`Slots::try_take`]); the sampler that reads /proc
//! is the one task here, owned and stopped by whoever spawns it ([`Admission::run_sampler`]).

pub mod load;
mod slots;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

pub use load::LoadGauge;
pub use slots::{Slot, Slots};

/// How long a client is told to wait when the server is overloaded or full.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The limits, each a flag (see `src/config/cli.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Rooms on the server.
    pub max_rooms: usize,
    /// Sessions on the server (participants, contributors, viewers; joined or joining).
    pub max_sessions: usize,
    /// POST and PATCH requests per second per client address (the sustained rate).
    pub rate_per_sec: u32,
    /// How many of them may come at once.
    pub rate_burst: u32,
    /// Sessions not yet connected per client address.
    pub max_pending_per_addr: usize,
    /// Event streams open per client address.
    pub max_streams_per_addr: usize,
    /// The server's CPU use (a fraction of all its cores) over which new sessions wait.
    pub max_load: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_rooms: 100,
            max_sessions: 500,
            rate_per_sec: 10,
            rate_burst: 30,
            max_pending_per_addr: 20,
            max_streams_per_addr: 20,
            max_load: 0.85,
        }
    }
}

/// Why a request is not admitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The address sent too many POST/PATCH requests.
    #[error("too many requests from this address: wait {}", secs(*retry_after))]
    RateLimited { retry_after: Duration },
    /// The address has too many sessions that have not connected yet.
    #[error("this address has {0} sessions that have not connected yet: connect or end them first")]
    TooManyPending(usize),
    /// The address has too many event streams open.
    #[error("this address has {0} event streams open already")]
    TooManyStreams(usize),
    /// The server holds its most sessions.
    #[error("the server holds its most sessions ({0}): try again later")]
    TooManySessions(usize),
    /// The server holds its most rooms.
    #[error("the server holds its most rooms ({0}): try again later")]
    TooManyRooms(usize),
    /// The server's CPU is busy with the rooms it runs.
    #[error("the server is busy ({:.0}% of its CPU, over {:.0}%): try again in a few seconds", .load * 100.0, .max * 100.0)]
    Overloaded { load: f64, max: f64 },
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Refusal {
    /// Per client (429) or the server's (503).
    pub fn is_per_client(&self) -> bool {
        matches!(
            self,
            Refusal::RateLimited { .. } | Refusal::TooManyPending(_) | Refusal::TooManyStreams(_)
        )
    }

    /// The JSON error code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::TooManyPending(_) => "too_many_pending",
            Refusal::TooManyStreams(_) => "too_many_streams",
            Refusal::TooManySessions(_) => "server_full",
            Refusal::TooManyRooms(_) => "server_full",
            Refusal::Overloaded { .. } => "overloaded",
        }
    }

    /// What `Retry-After` says, in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::RateLimited { retry_after } => {
                retry_after.as_secs_f64().ceil().max(1.0) as u64
            }
            Refusal::TooManyPending(_) | Refusal::TooManyStreams(_) => 2,
            _ => BUSY_RETRY_AFTER.as_secs(),
        }
    }
}

/// Whether a new session may start at `load` (a fraction of all cores) under `max`.
pub fn decide_load(load: f64, max: f64) -> Result<(), Refusal> {
    if load > max {
        Err(Refusal::Overloaded { load, max })
    } else {
        Ok(())
    }
}

/// The server's admission state: limits, the rate limiter, the counted slots, the CPU gauge.
pub struct Admission {
    limits: Limits,
    rate: DefaultKeyedRateLimiter<IpAddr>,
    pending: Arc<Slots<IpAddr>>,
    streams: Arc<Slots<IpAddr>>,
    sessions: Arc<Slots<()>>,
    load: Arc<LoadGauge>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        let per_sec = NonZeroU32::new(limits.rate_per_sec.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(limits.rate_burst.max(1)).expect("at least 1");
        Admission {
            rate: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            pending: Slots::new(limits.max_pending_per_addr),
            streams: Slots::new(limits.max_streams_per_addr),
            sessions: Slots::new(limits.max_sessions),
            load: Arc::new(LoadGauge::default()),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A POST or PATCH from `addr`: within its rate?
    pub fn check_rate(&self, addr: IpAddr) -> Result<(), Refusal> {
        self.rate.check_key(&addr).map_err(|not_until| {
            let retry_after = not_until.wait_time_from(self.rate.clock().now());
            Refusal::RateLimited { retry_after }
        })
    }

    /// A new session from `addr` (`None`: see [`addr_key`]): the
    /// server's load and session count allow it, and the address has room for one more
    /// session that is not connected yet. The slots go with the session: the pending one is
    /// dropped when it connects, the server's when it ends.
    pub fn admit_session(&self, addr: Option<IpAddr>) -> Result<SessionSlots, Refusal> {
        decide_load(self.load.get(), self.limits.max_load)?;
        let server = self
            .sessions
            .try_take(())
            .ok_or(Refusal::TooManySessions(self.limits.max_sessions))?;
        let pending = self
            .pending
            .try_take(addr_key(addr))
            .ok_or(Refusal::TooManyPending(self.limits.max_pending_per_addr))?;
        Ok(SessionSlots(Arc::new(std::sync::Mutex::new(SlotsHeld {
            _server: server,
            pending: Some(pending),
        }))))
    }

    /// Whether a new room would be admitted now (`GET /readyz`): the load, the sessions and
    /// the `rooms` running are all under their limits. Takes nothing.
    pub fn ready(&self, rooms: usize) -> Result<(), Refusal> {
        decide_load(self.load.get(), self.limits.max_load)?;
        if self.sessions.count(&()) >= self.limits.max_sessions {
            return Err(Refusal::TooManySessions(self.limits.max_sessions));
        }
        if rooms >= self.limits.max_rooms {
            return Err(Refusal::TooManyRooms(self.limits.max_rooms));
        }
        Ok(())
    }

    /// An event stream for `addr`, held as long as the stream is open.
    pub fn admit_stream(&self, addr: Option<IpAddr>) -> Result<Slot<IpAddr>, Refusal> {
        self.streams
            .try_take(addr_key(addr))
            .ok_or(Refusal::TooManyStreams(self.limits.max_streams_per_addr))
    }

    /// The CPU gauge (what `/debug/counts` shows too).
    pub fn load(&self) -> &Arc<LoadGauge> {
        &self.load
    }

    /// Samples the process's CPU use until `stop` is cancelled, and forgets idle addresses of
    /// the rate limiter now and then. The caller owns the task.
    pub async fn run_sampler(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(load::SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            self.load.sample();
            ticks += 1;
            if ticks.is_multiple_of(120) {
                self.rate.retain_recent();
                self.rate.shrink_to_fit();
            }
        }
    }
}

/// The key an address is counted under: one we do not know (served without our accept loop)
/// counts as one address.
fn addr_key(addr: Option<IpAddr>) -> IpAddr {
    addr.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// What a session holds while it lives: its place among the server's sessions, and while it
/// has not connected, its place among its address's pending sessions. Clones share the same
/// places (a join retried on a fresh room carries them along); the last one dropped gives
/// them back.
#[derive(Debug, Clone)]
pub struct SessionSlots(Arc<std::sync::Mutex<SlotsHeld>>);

#[derive(Debug)]
struct SlotsHeld {
    _server: Slot<()>,
    pending: Option<Slot<IpAddr>>,
}

impl SessionSlots {
    /// It connected: its address may start another.
    pub fn connected(&self) {
        self.0.lock().expect("never left half-written").pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_rooms: 2,
            max_sessions: 3,
            rate_per_sec: 1,
            rate_burst: 2,
            max_pending_per_addr: 2,
            max_streams_per_addr: 1,
            max_load: 0.85,
        }
    }

    #[test]
    fn the_rate_allows_its_burst_then_says_how_long_to_wait() {
        let a = Admission::new(limits());
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(a.check_rate(one).is_ok());
        assert!(a.check_rate(one).is_ok());
        let Err(refusal) = a.check_rate(one) else {
            panic!("the third request at once is over the burst");
        };
        assert_eq!(refusal.code(), "rate_limited");
        assert!(refusal.is_per_client());
        assert!((1..=2).contains(&refusal.retry_after_secs()), "{refusal:?}");
        assert!(a.check_rate(two).is_ok(), "another address has its own");
    }

    #[test]
    fn pending_sessions_count_per_address_until_they_connect() {
        let a = Admission::new(limits());
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let first = a.admit_session(Some(one)).unwrap();
        let _second = a.admit_session(Some(one)).unwrap();
        assert_eq!(
            a.admit_session(Some(one)).unwrap_err(),
            Refusal::TooManyPending(2)
        );
        first.connected();
        let third = a.admit_session(Some(one)).unwrap();
        // Three sessions on the server: the fourth is refused whoever asks.
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        let full = a.admit_session(Some(other)).unwrap_err();
        assert_eq!(full, Refusal::TooManySessions(3));
        assert!(!full.is_per_client());
        drop(third);
        assert!(
            a.admit_session(Some(other)).is_ok(),
            "an ended session frees its place"
        );
    }

    #[test]
    fn streams_count_per_address() {
        let a = Admission::new(limits());
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let s = a.admit_stream(Some(one)).unwrap();
        assert_eq!(
            a.admit_stream(Some(one)).unwrap_err(),
            Refusal::TooManyStreams(1)
        );
        drop(s);
        assert!(a.admit_stream(Some(one)).is_ok());
    }

    #[test]
    fn load_over_the_limit_refuses_with_the_figures() {
        assert!(decide_load(0.85, 0.85).is_ok(), "at the limit is allowed");
        let refusal = decide_load(0.86, 0.85).unwrap_err();
        assert_eq!(refusal.code(), "overloaded");
        assert_eq!(refusal.retry_after_secs(), 5);
        assert!(refusal.to_string().contains("86%"), "{refusal}");
    }
}
