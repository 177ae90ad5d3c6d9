//! What the server measures of itself. Here: live counts of the resources a room owns, for
//! `GET /debug/counts`, the tests that prove a finished room leaves nothing behind, and
//! `tessera_rooms`. [`families`] has the Prometheus counters, [`room`] what each room's mixer
//! measures, [`scrape`] renders `GET /metrics`. Each counter is moved by the owner's constructor and Drop,
//! so a leak shows up as a count that never returns to zero.

mod families;
mod room;
mod scrape;

use std::sync::atomic::{AtomicI64, Ordering};

use serde::Serialize;

pub use families::{
    DirectionLabel, Families, HttpLabels, KindLabel, LeaveLabels, SessionCount, StateLabel,
    WebhookLabels, families, route_group,
};
pub use room::{DEFAULT_ROOM_LIMIT, InputClock, RoomMetrics, set_room_limit};
pub use scrape::{CONTENT_TYPE, render};

/// Rooms whose actor is running.
pub static ROOMS: AtomicI64 = AtomicI64::new(0);
/// GStreamer pipelines not yet set to Null and dropped.
pub static PIPELINES: AtomicI64 = AtomicI64::new(0);
/// WebRTC peer connections not yet closed.
pub static PEERS: AtomicI64 = AtomicI64::new(0);
/// Per-track media tasks (RTP readers and writers) still running.
pub static MEDIA_TASKS: AtomicI64 = AtomicI64::new(0);

/// A guard that counts one live resource in a counter for as long as it lives.
#[derive(Debug)]
pub struct Live(&'static AtomicI64);

impl Live {
    /// Counts one more in `counter` until the guard is dropped.
    pub fn new(counter: &'static AtomicI64) -> Live {
        counter.fetch_add(1, Ordering::Relaxed);
        Live(counter)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot of the counts.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Running room actors.
    pub rooms: i64,
    /// Live pipelines.
    pub pipelines: i64,
    /// Open peer connections.
    pub peers: i64,
    /// Running per-track media tasks.
    pub media_tasks: i64,
    /// Tasks alive on the async runtime (all of them, HTTP included).
    pub runtime_tasks: usize,
    /// Open UDP and TCP sockets of this process (from /proc/self/fd), listener included.
    pub sockets: usize,
    /// Threads of this process (from /proc/self/task).
    pub threads: usize,
}

/// Reads the counts now.
pub fn snapshot() -> Counts {
    let runtime_tasks = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks())
        .unwrap_or(0);
    Counts {
        rooms: ROOMS.load(Ordering::Relaxed),
        pipelines: PIPELINES.load(Ordering::Relaxed),
        peers: PEERS.load(Ordering::Relaxed),
        media_tasks: MEDIA_TASKS.load(Ordering::Relaxed),
        runtime_tasks,
        sockets: count_fds(|target| target.starts_with("socket:")),
        threads: std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(0),
    }
}

/// CPU seconds (user + system) used so far by process `pid` (`None`: this one), from
/// `/proc/<pid>/stat`; 0 if it cannot be read. The benchmark and the tests measure the server
/// with it, and admission control will read this process's.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The fields after the parenthesised command name (which may hold spaces); utime and stime
    // are the 12th and 13th of them, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn count_fds(pred: impl Fn(&str) -> bool) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| pred(&t.to_string_lossy()))
        .count()
}
